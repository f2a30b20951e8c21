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
from .census import load_census_frame, load_census_intersectional_sources, load_census_sources
from .collator import DataCollatorForFairMTL
from .features import encode_features, fit_feature_encoding
from .folktables_acs import ACSTask, load_acs_frame, load_acs_sources
from .hub import load_bias_in_bios, load_hatexplain, load_hub_text_source, load_moji
from .text import (
    load_bug,
    load_bug_frame,
    load_bug_sources,
    load_reddit_bias,
    load_reddit_bias_frame,
    load_text_transfer_sources,
)

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
    "load_moji",
    "load_reddit_bias",
    "load_reddit_bias_frame",
    "load_text_transfer_sources",
    "without_attributes",
]
