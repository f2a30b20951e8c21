"""The user's own table files as train/test sources (`--train_files`, `--test_files`, `--task_columns`, ...)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import pandas as pd

from ..data import SourceSplits, TaskSource, fit_vocabularies
from ..data.features import encoded_dataset, fit_feature_encoding, split_frame
from ..utils import suggest_names

if TYPE_CHECKING:
    from .arguments import DataArguments


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A csv/tsv/json/jsonl/parquet file, or a `datasets.save_to_disk` folder, as a DataFrame."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Data file {str(path)!r} does not exist")
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            raise ValueError(f"{str(path)!r} is a DatasetDict; point to one split's folder")
        return loaded.to_pandas()
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[Path], pd.DataFrame]] = {
        ".csv": pd.read_csv,
        ".tsv": lambda p: pd.read_csv(p, sep="\t"),
        ".json": pd.read_json,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".parquet": pd.read_parquet,
    }
    if suffix not in readers:
        raise ValueError(f"Cannot read {str(path)!r}: use one of {', '.join(readers)} or a save_to_disk folder")
    return readers[suffix](path)


def file_splits(data_args: DataArguments, feature_encoding: Mapping[str, Any] | None = None) -> SourceSplits:
    """Train/test sources from the user's table files (`--train_files`, `--test_files`).

    Label and group vocabularies are fitted on the training files only, as the API expects: a group or class that
    only a held-out file has is an error naming the attribute and value, not a new id. An attribute no training
    file has (known only at evaluation time, the transfer setting) takes its group names from the held-out files.

    Args:
        data_args: The data settings.
        feature_encoding: Tabular files only: encode with this fitted encoding (a saved model's) instead of
            fitting one on the training files.

    Raises:
        ValueError: A column or file missing, or a held-out group unseen in training.
    """
    task_columns: dict[str, str] = dict(data_args.task_columns or {})
    attribute_columns: dict[str, str] = dict(data_args.attribute_columns or {})
    train_frames, test_frames = _read_frames(data_args)
    _check_columns(data_args, train_frames, test_frames)
    tabular = bool(data_args.feature_columns or data_args.categorical_columns)
    encoding = dict(feature_encoding) if feature_encoding is not None else None
    if tabular and encoding is None:
        encoding = fit_feature_encoding(
            pd.concat(list(train_frames.values()), ignore_index=True),
            list(data_args.feature_columns or []),
            list(data_args.categorical_columns or []),
        )

    def source(name: str, frame: pd.DataFrame) -> TaskSource | None:
        tasks = {t: c for t, c in task_columns.items() if c in frame.columns}
        if not tasks:
            return None
        attributes = {a: c for a, c in attribute_columns.items() if c in frame.columns}
        if tabular:
            table = encoded_dataset(frame, encoding, list(dict.fromkeys([*tasks.values(), *attributes.values()])))
            return TaskSource(table, tasks, attributes, name, text_column=None, feature_columns=["features"])
        keep = list(dict.fromkeys([data_args.text_column, *tasks.values(), *attributes.values()]))
        table = datasets.Dataset.from_pandas(frame[keep].reset_index(drop=True), preserve_index=False)
        return TaskSource(table, tasks, attributes, name, text_column=data_args.text_column)

    train = [s for s in (source(n, f) for n, f in train_frames.items()) if s is not None]
    test = [s for s in (source(n, f) for n, f in test_frames.items()) if s is not None]
    if not test:
        raise ValueError(f"No test file has any of the task columns {sorted(task_columns.values())}")
    label_vocab, group_vocab = fit_vocabularies(train) if train else fit_vocabularies(test)
    group_vocab = _with_heldout_only_attributes(group_vocab, test)
    return SourceSplits(
        train=train,
        test=test,
        tasks=list(task_columns),
        protected_attributes=list(attribute_columns),
        group_vocab=group_vocab,
        label_vocab=label_vocab,
        feature_encoding=encoding,
    )


def _read_frames(data_args: DataArguments) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Train and test tables by source name; without test files, a `--test_size` split of each train file."""
    train_frames = {_source_name(p, i): read_table(p) for i, p in enumerate(data_args.train_files or [])}
    if data_args.test_files:
        return train_frames, {_source_name(p, i): read_table(p) for i, p in enumerate(data_args.test_files)}
    parts = {
        name: split_frame(frame, data_args.test_size, data_args.split_seed) for name, frame in train_frames.items()
    }
    return {name: train for name, (train, _) in parts.items()}, {name: test for name, (_, test) in parts.items()}


def _check_columns(
    data_args: DataArguments, train_frames: dict[str, pd.DataFrame], test_frames: dict[str, pd.DataFrame]
) -> None:
    """Every task column in some training file (test files without train files), every attribute column in some
    file, and the input columns in every file.

    Raises:
        ValueError: Naming the missing column, its file or role, and close matches.
    """
    frames = list(train_frames.values()) + list(test_frames.values())
    columns = sorted({c for frame in frames for c in frame.columns})
    reference = list(train_frames.values()) or list(test_frames.values())
    for role, mapping in (("task", data_args.task_columns or {}), ("attribute", data_args.attribute_columns or {})):
        for name, column in mapping.items():
            if not any(column in frame.columns for frame in (reference if role == "task" else frames)):
                raise ValueError(
                    f"Column {column!r} of {role} {name!r} is in none of the data files"
                    f"{suggest_names(column, columns)} (columns: {columns})"
                )
    tabular = bool(data_args.feature_columns or data_args.categorical_columns)
    inputs = list(data_args.feature_columns or []) + list(data_args.categorical_columns or [])
    for name, frame in {**train_frames, **test_frames}.items():
        missing = [c for c in (inputs if tabular else [data_args.text_column]) if c not in frame.columns]
        if missing:
            kind = "input" if tabular else "text"
            raise ValueError(
                f"File {name!r} lacks {kind} column {missing[0]!r}{suggest_names(missing[0], frame.columns)}"
            )


def _source_name(path: str, index: int) -> str:
    return f"{Path(path).stem or 'source'}_{index}"


def _with_heldout_only_attributes(group_vocab: dict[str, list[str]], test: list[TaskSource]) -> dict[str, list[str]]:
    """The training vocabularies, plus the group names of attributes that only held-out files have.

    Raises:
        ValueError: A held-out file has a group of a trained attribute that no training file has.
    """
    _, heldout_vocab = fit_vocabularies(test)
    merged = dict(group_vocab)
    for attr, names in heldout_vocab.items():
        if attr not in group_vocab:
            merged[attr] = names  # known only at evaluation time: naming its groups leaks no label
            continue
        unseen = [name for name in names if name not in group_vocab[attr]]
        if unseen:
            sources = [s.name for s in test if attr in s.attributes]
            raise ValueError(
                f"Attribute {attr!r}: held-out group(s) {unseen[:5]} (in {', '.join(sources)}) never occur in the "
                f"training files (training groups: {group_vocab[attr]}); group vocabularies come from the training "
                "files only, so map or drop these rows, or add training rows of these groups"
            )
    return merged
