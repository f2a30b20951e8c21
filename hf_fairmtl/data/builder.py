"""Turn several single-task tables ("sources") into one multi-task dataset with partial labels.

Each source is a table as users have it (`text`, `sentiment`, `gender`, ...) plus a spec saying which
column holds which task and which protected attribute. The builder writes every row in the contract of
`DESIGN.md`: `labels` `[T]` in `config.tasks` order (-100 where the source lacks the task or the value is
missing), `group_labels` `[A]` in `config.protected_attributes` order (-1 where unknown), a `source`
column, and the model inputs (`input_ids`/`attention_mask`, raw `text`, or `features`).

How a label or attribute value becomes an id:

* a string (category name) maps through `config.label_vocab[task]` / `config.group_vocab[attr]`; a name
  missing from the vocabulary raises (an unseen category at evaluation time is an error, not a silent -1);
* an integer or boolean is already an id: it is range-checked against the task's class count (or the
  attribute's vocabulary size when there is one) and kept as is;
* `None`, NaN and negative integers mean "missing" (-100 for labels, -1 for groups).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
from datasets.table import InMemoryTable

from ..configuration_fairmtl import FairMTLConfig
from ..utils import suggest_names

IGNORE_INDEX = -100
UNKNOWN_GROUP = -1
MIXING_STRATEGIES = ("concatenate", "proportional", "temperature", "round_robin")


@dataclass
class TaskSource:
    """One table of examples and what its columns mean.

    Args:
        dataset: The rows (`datasets.Dataset`; a `pandas.DataFrame` is converted).
        tasks: Task name (as in `FairMTLConfig.tasks`) -> column holding that task's label. A source
            may carry any subset of the configured tasks; the others become -100.
        attributes: Protected attribute name (as in `FairMTLConfig.protected_attributes`) -> column.
            Attributes a source lacks become -1 (unknown), which is how "no demographic labels" is said.
        name: Written to the `source` column; defaults to `source_{i}` (its position) when empty.
        text_column: Column holding the raw text, for text encoders; ignored when `feature_columns` is set.
        feature_columns: Numeric columns stacked (in this order) into the float `features` vector for the
            tabular encoder, or a single column that already holds a list of floats per row.
    """

    dataset: datasets.Dataset
    tasks: dict[str, str]
    attributes: dict[str, str] = field(default_factory=dict)
    name: str = ""
    text_column: str | None = "text"
    feature_columns: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.dataset, pd.DataFrame):
            self.dataset = datasets.Dataset.from_pandas(self.dataset, preserve_index=False)
        if not isinstance(self.dataset, datasets.Dataset):
            raise TypeError(
                f"TaskSource {self.name!r}: `dataset` must be a datasets.Dataset or pandas.DataFrame, "
                f"got {type(self.dataset).__name__} (pick a split of a DatasetDict, e.g. dataset['train'])"
            )
        if not isinstance(self.tasks, Mapping) or not self.tasks:
            raise ValueError(f"TaskSource {self.name!r}: `tasks` must be a non-empty dict task name -> label column")
        self.tasks = dict(self.tasks)
        self.attributes = dict(self.attributes or {})
        if self.feature_columns is not None:
            self.feature_columns = list(self.feature_columns)
        self.validate_columns()

    @property
    def is_tabular(self) -> bool:
        return self.feature_columns is not None

    def validate_columns(self) -> None:
        """Raise a `ValueError` naming the source, the role and close column names for any missing column."""
        columns = self.dataset.column_names
        wanted = [(f"task {task!r}", column) for task, column in self.tasks.items()]
        wanted += [(f"attribute {attr!r}", column) for attr, column in self.attributes.items()]
        if self.feature_columns is not None:
            if not self.feature_columns:
                raise ValueError(f"TaskSource {self.name!r}: `feature_columns` is empty")
            wanted += [("features", column) for column in self.feature_columns]
        elif self.text_column is not None:
            wanted.append(("text", self.text_column))
        else:
            raise ValueError(
                f"TaskSource {self.name!r}: set `text_column` (text models) or `feature_columns` (tabular)"
            )
        for role, column in wanted:
            if column not in columns:
                raise ValueError(
                    f"TaskSource {self.name!r}: column {column!r} for {role} is not in the dataset"
                    f"{suggest_names(column, columns)} (columns: {columns})"
                )


@dataclass
class SourceSplits:
    """Train and test `TaskSource`s of one packaged setting, with what a matching config needs.

    `FairMTLConfig(**splits.config_kwargs(), encoder=...)` (text) or
    `FairMTLConfig(**splits.config_kwargs())` (tabular: `num_features` and `feature_encoding` included)
    builds a config whose tasks, attributes and vocabularies fit the sources.

    Attributes:
        train: The training source, or a list of them when the setting has several.
        test: The evaluation source, or a list of them.
        tasks: Task names in config order.
        protected_attributes: Attribute names in config order.
        group_vocab: Group names per attribute (fixed by the loader, so ids never depend on a sample).
        label_vocab: Class names per task, for tasks whose label columns hold names.
        intersections: Attribute combinations to evaluate, e.g. `[["sex", "race"]]`.
        feature_encoding: The fitted tabular encoding (`None` for text).
    """

    train: TaskSource | list[TaskSource]
    test: TaskSource | list[TaskSource]
    tasks: list[str]
    protected_attributes: list[str]
    group_vocab: dict[str, list[str]]
    label_vocab: dict[str, list[str]] = field(default_factory=dict)
    intersections: list[list[str]] = field(default_factory=list)
    feature_encoding: dict[str, Any] | None = None

    @property
    def train_sources(self) -> list[TaskSource]:
        return list(self.train) if isinstance(self.train, (list, tuple)) else [self.train]

    @property
    def test_sources(self) -> list[TaskSource]:
        return list(self.test) if isinstance(self.test, (list, tuple)) else [self.test]

    @property
    def num_features(self) -> int | None:
        return int(self.feature_encoding["num_features"]) if self.feature_encoding else None

    def config_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "tasks": list(self.tasks),
            "label_vocab": {k: list(v) for k, v in self.label_vocab.items()},
            "protected_attributes": list(self.protected_attributes),
            "group_vocab": {k: list(v) for k, v in self.group_vocab.items()},
            "intersections": [list(c) for c in self.intersections],
        }
        if self.feature_encoding is not None:
            kwargs["num_features"] = self.num_features
            kwargs["feature_encoding"] = self.feature_encoding
        return kwargs


def without_attributes(source: TaskSource, name: str | None = None) -> TaskSource:
    """The same rows declared with no demographic columns (a target task "without demographic labels").

    The attribute columns stay in the table; the builder just writes -1 for them.
    """
    return replace(source, attributes={}, name=name if name is not None else source.name)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _column_kind(values: Sequence[Any]) -> str:
    """`"str"` for category names, `"int"` for ids (ints, bools, integral floats), `"empty"` when all missing."""
    kinds = set()
    for value in values:
        if _is_missing(value):
            continue
        if isinstance(value, str):
            kinds.add("str")
        elif isinstance(value, (bool, np.bool_, int, np.integer)):
            kinds.add("int")
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            kinds.add("int")
        else:
            raise ValueError(
                f"holds {value!r} ({type(value).__name__}), which is neither an integer id nor a category name "
                "(non-integral values are refused, not rounded)"
            )
    if len(kinds) > 1:
        raise ValueError("mixes category names (str) and integer ids; use one kind per column")
    return kinds.pop() if kinds else "empty"


def _arrow_table(dataset: datasets.Dataset, columns: Sequence[str]) -> pa.Table:
    """The rows of `dataset` as an Arrow table; `dataset.data` would ignore a `select`/`shuffle` index map."""
    return dataset.select_columns(list(columns)).with_format("arrow")[:]


def _column_values(dataset: datasets.Dataset, column: str) -> list[Any]:
    return _arrow_table(dataset, [column]).column(column).to_pylist()


def fit_vocabularies(
    sources: Sequence[TaskSource],
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Category names per task and per attribute, to pass as `label_vocab` / `group_vocab` to the config.

    String columns give their distinct non-missing values, sorted, so the same data always gives the same
    ids. Integer or boolean columns are ids already: they get the names `"0"`, `"1"`, ... up to their
    largest id (at least two for a task, since a task needs two classes), so ids are unchanged. Fit on the
    training sources only and reuse the result for evaluation: a category that appears only at evaluation
    time then raises in `build_multitask_dataset` instead of silently shifting ids.

    Args:
        sources: The training sources.

    Returns:
        `(label_vocab, group_vocab)`, each `name -> list of category names` in id order.

    Raises:
        ValueError: If a column mixes names and ids, or the same task/attribute is a string column in one
            source and an integer column in another.
    """
    label_values: dict[str, list[tuple[str, list[Any]]]] = {}
    group_values: dict[str, list[tuple[str, list[Any]]]] = {}
    for index, source in enumerate(sources):
        source_name = source.name or f"source_{index}"
        for task, column in source.tasks.items():
            label_values.setdefault(task, []).append(
                (f"{source_name}.{column}", _column_values(source.dataset, column))
            )
        for attr, column in source.attributes.items():
            group_values.setdefault(attr, []).append(
                (f"{source_name}.{column}", _column_values(source.dataset, column))
            )
    label_vocab = {task: _fit_one(f"task {task!r}", parts, min_size=2) for task, parts in label_values.items()}
    group_vocab = {attr: _fit_one(f"attribute {attr!r}", parts, min_size=1) for attr, parts in group_values.items()}
    return label_vocab, group_vocab


def _fit_one(role: str, parts: list[tuple[str, list[Any]]], min_size: int) -> list[str]:
    kinds = {}
    for where, values in parts:
        try:
            kinds[where] = _column_kind(values)
        except ValueError as err:
            raise ValueError(f"Column {where} ({role}) {err}") from None
    used = {kind for kind in kinds.values() if kind != "empty"}
    if len(used) > 1:
        raise ValueError(f"{role} is a string column in some sources and an integer column in others: {kinds}")
    values = [v for _, column in parts for v in column if not _is_missing(v)]
    if used == {"str"}:
        return sorted(set(values))
    ids = [int(v) for v in values if int(v) >= 0]
    size = max(max(ids, default=-1) + 1, min_size)
    return [str(i) for i in range(size)]


def _encode_column(
    values: list[Any],
    vocab: list[str] | None,
    num_classes: int | None,
    missing: int,
    where: str,
    vocab_field: str,
) -> np.ndarray:
    """Ids of one label/attribute column; `where` names source, column and task/attribute in errors."""
    try:
        kind = _column_kind(values)
    except ValueError as err:
        raise ValueError(f"{where} {err}") from None
    out = np.full(len(values), missing, dtype=np.int64)
    if kind == "empty":
        return out
    if kind == "str":
        if not vocab:
            raise ValueError(
                f"{where} holds category names but the config has no {vocab_field} for it; "
                f"fit one with fit_vocabularies(sources) and pass it to FairMTLConfig"
            )
        index = {name: i for i, name in enumerate(vocab)}
        unseen = sorted({v for v in values if not _is_missing(v) and v not in index})
        if unseen:
            raise ValueError(
                f"{where} has categories {unseen[:5]} not in {vocab_field} {vocab}{suggest_names(unseen[0], vocab)}; "
                f"unseen categories are not mapped silently: refit the vocabulary on all training sources, "
                f"or map/drop these rows"
            )
        for i, value in enumerate(values):
            if not _is_missing(value):
                out[i] = index[value]
        return out
    ids = np.array([missing if _is_missing(v) else int(v) for v in values], dtype=np.int64)
    ids[ids < 0] = missing
    limit = num_classes if num_classes is not None else (len(vocab) if vocab else None)
    if limit is not None:
        bad = ids >= limit
        if bad.any():
            raise ValueError(
                f"{where} has id {int(ids[bad][0])} outside [0, {limit}); integer columns are class ids, "
                f"so map them to 0..{limit - 1} (or use category names with a {vocab_field})"
            )
    return ids


def _fixed_list_array(matrix: np.ndarray) -> pa.FixedSizeListArray:
    width = matrix.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), width)


def _features_matrix(source: TaskSource, source_name: str) -> np.ndarray:
    columns = source.feature_columns or []
    table = _arrow_table(source.dataset, columns)
    first_type = table.schema.field(columns[0]).type
    if len(columns) == 1 and (pa.types.is_list(first_type) or pa.types.is_fixed_size_list(first_type)):
        rows = table.column(columns[0]).to_pylist()
        widths = {len(row) for row in rows if row is not None}
        if None in rows or len(widths) != 1:
            raise ValueError(
                f"Source {source_name!r}: feature column {columns[0]!r} needs one equal-length list per row"
            )
        matrix = np.asarray(rows, dtype=np.float32)
    else:
        parts = []
        for column in columns:
            try:
                parts.append(np.asarray(table.column(column).to_numpy(), dtype=np.float32))
            except (ValueError, TypeError, pa.ArrowException):
                raise ValueError(
                    f"Source {source_name!r}: feature column {column!r} is not numeric; encode categorical "
                    f"columns first (hf_fairmtl.data.features.fit_feature_encoding)"
                ) from None
        matrix = np.stack(parts, axis=1)
    if np.isnan(matrix).any():
        bad = columns[int(np.isnan(matrix).any(axis=0).argmax())] if len(columns) > 1 else columns[0]
        raise ValueError(f"Source {source_name!r}: feature column {bad!r} has missing values (NaN); impute first")
    return matrix


def _source_table(source: TaskSource, source_name: str, config: FairMTLConfig) -> datasets.Dataset:
    """One source in the output schema (before tokenization)."""
    unknown_tasks = [task for task in source.tasks if task not in config.tasks]
    if unknown_tasks:
        task = unknown_tasks[0]
        raise ValueError(
            f"Source {source_name!r}: task {task!r} is not in config.tasks {config.tasks}"
            f"{suggest_names(task, config.tasks)}"
        )
    unknown_attrs = [attr for attr in source.attributes if attr not in config.protected_attributes]
    if unknown_attrs:
        attr = unknown_attrs[0]
        raise ValueError(
            f"Source {source_name!r}: attribute {attr!r} is not in config.protected_attributes "
            f"{config.protected_attributes}{suggest_names(attr, config.protected_attributes)}"
        )
    num_rows = len(source.dataset)
    labels = np.full((num_rows, len(config.tasks)), IGNORE_INDEX, dtype=np.int64)
    for task, column in source.tasks.items():
        labels[:, config.tasks.index(task)] = _encode_column(
            _column_values(source.dataset, column),
            config.label_vocab.get(task),
            config.task_num_labels[task],
            IGNORE_INDEX,
            f"Source {source_name!r}, column {column!r} (task {task!r})",
            f"label_vocab[{task!r}]",
        )
    groups = np.full((num_rows, len(config.protected_attributes)), UNKNOWN_GROUP, dtype=np.int64)
    for attr, column in source.attributes.items():
        groups[:, config.protected_attributes.index(attr)] = _encode_column(
            _column_values(source.dataset, column),
            config.group_vocab.get(attr),
            None,
            UNKNOWN_GROUP,
            f"Source {source_name!r}, column {column!r} (attribute {attr!r})",
            f"group_vocab[{attr!r}]",
        )
    arrays = {
        "labels": _fixed_list_array(labels) if config.tasks else pa.array([[]] * num_rows, pa.list_(pa.int64())),
        "group_labels": _fixed_list_array(groups)
        if config.protected_attributes
        else pa.array([[] for _ in range(num_rows)], pa.list_(pa.int64())),
        "source": pa.array([source_name] * num_rows, pa.string()),
    }
    if source.is_tabular:
        matrix = _features_matrix(source, source_name)
        if config.num_features and matrix.shape[1] != config.num_features:
            raise ValueError(
                f"Source {source_name!r}: {matrix.shape[1]} features but config.num_features is {config.num_features}"
            )
        arrays["features"] = _fixed_list_array(matrix)
    else:
        arrays["text"] = _text_column(source, source_name)
    return datasets.Dataset(InMemoryTable(pa.table(arrays)))


def _text_column(source: TaskSource, source_name: str) -> pa.Array:
    """The source's text as one Arrow string array; a non-string column or a missing text is refused by row."""
    text = _arrow_table(source.dataset, [source.text_column]).column(source.text_column).combine_chunks()
    if pa.types.is_null(text.type) or not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        raise ValueError(
            f"Source {source_name!r}: text column {source.text_column!r} must hold strings, got {text.type}"
        )
    if text.null_count:
        rows = np.flatnonzero(text.is_null().to_numpy(zero_copy_only=False))
        raise ValueError(
            f"Source {source_name!r}: text column {source.text_column!r} is missing (None) at row {int(rows[0])}"
            f"{f' and {len(rows) - 1} more row(s)' if len(rows) > 1 else ''}; drop or fill those rows first"
        )
    return text.cast(pa.string())


def check_max_length(max_length: Any, tokenizer: Any = None, setting: str = "max_length") -> None:
    """Refuse a truncation length that would not truncate or would leave no room for text.

    Args:
        max_length: `None` (the tokenizer's own limit) or a positive integer.
        tokenizer: When given, `max_length` must also exceed the special tokens it adds (`[CLS]`/`[SEP]`):
            transformers' tokenizers do not truncate at all below that (only warn).
        setting: The name used in the error message.

    Raises:
        ValueError: Naming `setting`, for a non-integer, a value < 1, or one the special tokens fill.
    """
    if max_length is None:
        return
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ValueError(f"{setting} must be a positive integer or None (the tokenizer's limit), got {max_length!r}")
    special = tokenizer.num_special_tokens_to_add() if tokenizer is not None else 0
    if max_length <= special:
        raise ValueError(
            f"{setting}={max_length} leaves no room for text: the tokenizer adds {special} special tokens, so "
            f"{setting} must be at least {special + 1} (tokenizers silently skip truncation below that)"
        )


def _mixing_indices(
    sizes: list[int],
    mixing: str,
    num_samples: int | None,
    temperature: float,
    seed: int,
) -> np.ndarray | None:
    """Row indices into the concatenation of the sources, or `None` for plain concatenation.

    `datasets.interleave_datasets` draws until a source is exhausted, so its output size depends on the
    draw; here every strategy returns exactly `num_samples` rows, and a source that runs out starts a new
    shuffled pass (so small sources are oversampled, never truncated).
    """
    if mixing == "concatenate":
        if num_samples is not None:
            raise ValueError("num_samples applies to sampled mixing; use mixing='proportional' to resize the set")
        return None
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0] + sizes[:-1])
    if mixing == "round_robin":
        total = num_samples if num_samples is not None else len(sizes) * max(sizes)
        choice = np.arange(total) % len(sizes)
    else:
        power = 1.0 if mixing == "proportional" else 1.0 / temperature
        weights = np.asarray(sizes, dtype=np.float64) ** power
        total = num_samples if num_samples is not None else sum(sizes)
        choice = rng.choice(len(sizes), size=total, p=weights / weights.sum())
    indices = np.empty(total, dtype=np.int64)
    for k, size in enumerate(sizes):
        slots = np.flatnonzero(choice == k)
        passes = -(-len(slots) // size) if len(slots) else 0
        order = np.concatenate([rng.permutation(size) for _ in range(passes)]) if passes else np.empty(0, np.int64)
        indices[slots] = offsets[k] + order[: len(slots)]
    return indices


def build_multitask_dataset(
    sources: Sequence[TaskSource],
    config: FairMTLConfig,
    tokenizer: Any = None,
    max_length: int | None = 128,
    mixing: str = "concatenate",
    num_samples: int | None = None,
    temperature: float = 2.0,
    seed: int = 0,
    keep_text: bool = False,
) -> datasets.Dataset:
    """Merge sources into one dataset in the `FairMTLModel` data contract.

    Args:
        sources: The tables to merge. Each may carry any subset of `config.tasks` and
            `config.protected_attributes`; what a source lacks becomes -100 / -1.
        config: Gives the task and attribute order and the vocabularies that map category names to ids.
        tokenizer: When given (text sources), `text` is tokenized into `input_ids`/`attention_mask`
            (truncated to `max_length`, not padded: `DataCollatorForFairMTL` pads per batch). Without one,
            the raw `text` column is kept so the dataset can be tokenized later or by the collator.
        max_length: Truncation length for the tokenizer (`None`: the tokenizer's own limit); it must leave room
            for at least one token besides the special tokens (`check_max_length`).
        mixing: How rows of the sources are combined:
            `"concatenate"` (default): every row once, sources one after another (the Trainer shuffles);
            `"proportional"`: `num_samples` rows drawn with source probability ∝ size;
            `"temperature"`: source probability ∝ size^(1/temperature) (T=1 proportional, large T uniform),
            which oversamples small sources;
            `"round_robin"`: one row from each source in turn (equal share per source); by default
            `len(sources) * largest source` rows, so every row of every source appears at least once.
            Sampled strategies draw without replacement within a pass over a source and start a new
            shuffled pass when it runs out.
        num_samples: Rows to draw for sampled mixing (default: total rows of the sources; for
            `"round_robin"` see above).
        temperature: Temperature of `"temperature"` mixing (default 2.0).
        seed: Seed for the sampled strategies.
        keep_text: Keep the raw `text` column next to `input_ids` when tokenizing (it is dropped by default;
            the collator drops string columns anyway).

    Returns:
        A `datasets.Dataset` with `labels` (`int64 [T]`), `group_labels` (`int64 [A]`), `source` (str) and
        either `input_ids`/`attention_mask` (tokenized text), `text` (raw text, no tokenizer), or
        `features` (`float32 [F]`, tabular sources).

    Raises:
        ValueError: Bad mixing name, empty or mixed-modality sources, a source task/attribute missing from
            the config, missing columns, unseen categories, ids out of range, non-integral or non-id labels,
            a missing (None) text, a `max_length` that cannot truncate, wrong feature width.
    """
    if mixing not in MIXING_STRATEGIES:
        raise ValueError(
            f"mixing={mixing!r} is not one of {MIXING_STRATEGIES}{suggest_names(mixing, MIXING_STRATEGIES)}"
        )
    if mixing == "temperature" and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if num_samples is not None and num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if isinstance(sources, TaskSource):
        sources = [sources]
    if not sources:
        raise ValueError("build_multitask_dataset needs at least one TaskSource")
    names: list[str] = []
    for index, source in enumerate(sources):
        if not isinstance(source, TaskSource):
            raise TypeError(f"sources[{index}] is a {type(source).__name__}, not a TaskSource")
        name = source.name or f"source_{index}"
        if name in names:
            raise ValueError(f"Two sources are named {name!r}; give each TaskSource a distinct `name`")
        names.append(name)
        source.validate_columns()
        if len(source.dataset) == 0:
            raise ValueError(f"Source {name!r} is empty (0 rows); drop it or check its filtering/split")
    modalities = {source.is_tabular for source in sources}
    if len(modalities) > 1:
        raise ValueError("Sources mix tabular (`feature_columns`) and text sources; one model has one encoder")
    tabular = modalities.pop()
    if tabular and config.encoder_type != "tabular":
        raise ValueError(
            "Tabular sources (`feature_columns`) need a tabular config (`num_features`), not a text encoder"
        )
    if not tabular and config.encoder_type == "tabular":
        raise ValueError("Text sources need a config with a text `encoder`; this config is tabular")
    if tokenizer is not None and tabular:
        raise ValueError("A tokenizer was given but the sources are tabular (`feature_columns`)")
    check_max_length(max_length, tokenizer)

    tables = [_source_table(source, name, config) for source, name in zip(sources, names, strict=True)]
    merged = datasets.concatenate_datasets(tables) if len(tables) > 1 else tables[0]
    if tokenizer is not None:
        merged = merged.map(
            _tokenize,
            batched=True,
            fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
            remove_columns=None if keep_text else ["text"],
            desc="Tokenizing",
        )
    indices = _mixing_indices([len(t) for t in tables], mixing, num_samples, temperature, seed)
    if indices is not None:
        merged = merged.select(indices)
    return merged


def _tokenize(batch: dict[str, list[Any]], tokenizer: Any, max_length: int | None) -> dict[str, Any]:
    # No padding here: the collator pads each batch to its own longest row, which is much cheaper on CPU.
    encoded = tokenizer(
        batch["text"],
        truncation=max_length is not None,
        max_length=max_length,
        return_token_type_ids=False,
    )
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
