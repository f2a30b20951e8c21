"""Loaders for fairness data sets on the Hugging Face Hub, returning `TaskSource`s.

Every loader calls `datasets.load_dataset(path, ..., split=split)`. The default `path` is the Hub id;
pass a builder name and `data_files` (e.g. `path="parquet", data_files={"train": "bios.parquet"}`) to
read local files of the same schema through the same code (that is how the tests run offline).

Schemas, as published on the data set cards (checked when this was written):

* Bias in Bios, `LabHC/bias_in_bios` (splits train 257,478 / dev 39,642 / test 99,069): `hard_text`
  (the biography without its first sentence, which names the occupation), `profession` (int 0-27, names
  in `BIOS_PROFESSIONS`), `gender` (int, 0 male / 1 female).
* HateXplain, `Hate-speech-CNERG/hatexplain` (train 15,383 / validation 1,922 / test 1,924): `id`,
  `annotators` (per annotator: `label` 0 hatespeech / 1 normal / 2 offensive, `annotator_id`,
  `target`: communities the post targets), `rationales`, `post_tokens`. The demographic information is
  the *targeted community* (e.g. "African", "Women"), not the annotators' or authors' demographics. The
  Hub repository is script-based; datasets >= 4 no longer runs loading scripts, so load its parquet
  conversion (`revision="refs/convert/parquet"`) or local JSON/parquet files via `data_files`.
* Moji / TwitterAAE sentiment, `LabHC/moji` (train 1,613,790 / dev 179,310 / test 448,276 with the
  default 80 % dialect-confidence threshold): `text`, `label` (sentiment), `sa` (dialect: African-American
  vs Standard American English, inferred by Blodgett et al.'s model). The card does not say which
  integer is which; we assume `label` 1 = positive and `sa` 1 = AAE (AAE is the small group, about 5 % of
  rows: check with `Counter(ds["sa"])` and pass `dialect_vocab` if yours differs).
* Trustpilot (Hovy et al. 2015, reviews with author gender and age): no copy with demographics exists on
  the Hub that we could find; use `load_hub_text_source` with your local copy's column names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets

from ..utils import suggest_names
from .builder import TaskSource

BIAS_IN_BIOS_ID = "LabHC/bias_in_bios"
HATEXPLAIN_ID = "Hate-speech-CNERG/hatexplain"
MOJI_ID = "LabHC/moji"

BIOS_PROFESSIONS = [
    "accountant",
    "architect",
    "attorney",
    "chiropractor",
    "comedian",
    "composer",
    "dentist",
    "dietitian",
    "dj",
    "filmmaker",
    "interior_designer",
    "journalist",
    "model",
    "nurse",
    "painter",
    "paralegal",
    "pastor",
    "personal_trainer",
    "photographer",
    "physician",
    "poet",
    "professor",
    "psychologist",
    "rapper",
    "software_engineer",
    "surgeon",
    "teacher",
    "yoga_teacher",
]
BIOS_GENDERS = ["male", "female"]

HATEXPLAIN_LABELS = ["hatespeech", "normal", "offensive"]
# Target communities of the HateXplain annotation scheme, grouped into the attributes we expose.
HATEXPLAIN_TARGETS = {
    "race": ["African", "Arab", "Asian", "Caucasian", "Hispanic", "Indian"],
    "gender": ["Men", "Women"],
    "religion": ["Buddhism", "Christian", "Hindu", "Islam", "Jewish"],
}

MOJI_SENTIMENTS = ["negative", "positive"]
MOJI_DIALECTS = ["sae", "aae"]


def _load(path: str, split: str, data_files: Any, load_kwargs: Mapping[str, Any]) -> datasets.Dataset:
    dataset = datasets.load_dataset(path, data_files=data_files, split=split, **dict(load_kwargs))
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"load_dataset({path!r}, split={split!r}) did not return one split")
    return dataset


def _require_columns(dataset: datasets.Dataset, columns: Sequence[str], what: str) -> None:
    for column in columns:
        if column not in dataset.column_names:
            raise ValueError(
                f"{what}: expected column {column!r}{suggest_names(column, dataset.column_names)} "
                f"(columns: {dataset.column_names})"
            )


def _cap(dataset: datasets.Dataset, max_rows: int | None, seed: int) -> datasets.Dataset:
    if max_rows is None or len(dataset) <= max_rows:
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_rows))


def load_bias_in_bios(
    split: str = "train",
    path: str = BIAS_IN_BIOS_ID,
    data_files: Any = None,
    max_rows: int | None = None,
    seed: int = 0,
    name: str = "bias_in_bios",
    **load_kwargs: Any,
) -> TaskSource:
    """Bias in Bios: task `profession` (28 classes, ids as published), attribute `gender` (0 male, 1 female).

    Use `label_vocab={"profession": BIOS_PROFESSIONS}` and `group_vocab={"gender": BIOS_GENDERS}` in the
    config: the columns are ids already, the vocabularies only name them.
    """
    dataset = _cap(_load(path, split, data_files, load_kwargs), max_rows, seed)
    _require_columns(dataset, ["hard_text", "profession", "gender"], "Bias in Bios")
    return TaskSource(dataset, {"profession": "profession"}, {"gender": "gender"}, name, "hard_text")


def _majority(votes: Sequence[Any]) -> Any:
    """The value more than half of the annotators gave, else None (HateXplain's own aggregation rule)."""
    counts: dict[Any, int] = {}
    for vote in votes:
        counts[vote] = counts.get(vote, 0) + 1
    winner = max(counts.items(), key=lambda item: item[1], default=(None, 0))
    return winner[0] if winner[1] * 2 > len(votes) else None


def _annotator_lists(annotators: Any) -> tuple[list[Any], list[list[str]]]:
    """Labels and target lists per annotator, whether `annotators` is a list of dicts or a dict of lists."""
    if isinstance(annotators, Mapping):
        return list(annotators.get("label", [])), [list(t or []) for t in annotators.get("target", [])]
    labels = [a.get("label") for a in annotators]
    targets = [list(a.get("target") or []) for a in annotators]
    return labels, targets


def hatexplain_row(example: Mapping[str, Any]) -> dict[str, Any]:
    """Derived columns of one HateXplain post (used with `Dataset.map`).

    Returns `text` (tokens joined by spaces), `hate_label` (majority of hatespeech/normal/offensive, None
    without a majority), `toxic` (1 hatespeech or offensive, 0 normal, None without a majority) and one
    column per attribute in `HATEXPLAIN_TARGETS`: the community of that kind that a majority of
    annotators named as targeted, None if none (or more than one) did.
    """
    labels, targets = _annotator_lists(example["annotators"])
    # Labels may arrive as class ids (Hub ClassLabel) or names (the original JSON release).
    names = [HATEXPLAIN_LABELS[v] if isinstance(v, int) else str(v) for v in labels]
    label = _majority(names) if names else None
    row = {
        "text": " ".join(example["post_tokens"]),
        "hate_label": label,
        "toxic": None if label is None else int(label != "normal"),
    }
    votes: dict[str, int] = {}
    for annotator_targets in targets:
        for community in set(annotator_targets):
            votes[community] = votes.get(community, 0) + 1
    majority_targets = {c for c, n in votes.items() if n * 2 > len(targets)}
    for attribute, communities in HATEXPLAIN_TARGETS.items():
        hits = [c.lower() for c in communities if c in majority_targets]
        row[f"target_{attribute}"] = hits[0] if len(hits) == 1 else None
    return row


def hatexplain_group_vocab() -> dict[str, list[str]]:
    """Group names of the HateXplain attributes (`target_race`, `target_gender`, `target_religion`)."""
    return {f"target_{a}": sorted(c.lower() for c in cs) for a, cs in HATEXPLAIN_TARGETS.items()}


def load_hatexplain(
    split: str = "train",
    path: str = HATEXPLAIN_ID,
    data_files: Any = None,
    max_rows: int | None = None,
    seed: int = 0,
    name: str = "hatexplain",
    **load_kwargs: Any,
) -> TaskSource:
    """HateXplain: tasks `hate_label` (3 classes by name) and `toxic` (binary); attributes `target_race`,
    `target_gender`, `target_religion` (the community a majority of annotators said the post targets).

    Config vocabularies: `label_vocab={"hate_label": HATEXPLAIN_LABELS}`, `group_vocab=hatexplain_group_vocab()`
    (or `fit_vocabularies`).
    """
    dataset = _cap(_load(path, split, data_files, load_kwargs), max_rows, seed)
    _require_columns(dataset, ["annotators", "post_tokens"], "HateXplain")
    derived = {f"target_{a}": datasets.Value("string") for a in HATEXPLAIN_TARGETS}
    features = datasets.Features(
        {"text": datasets.Value("string"), "hate_label": datasets.Value("string"), "toxic": datasets.Value("int64")}
        | derived
    )
    # Explicit features: a batch whose posts all lack a majority would otherwise infer a null column type.
    dataset = dataset.map(
        hatexplain_row, remove_columns=dataset.column_names, features=features, desc="HateXplain labels"
    )
    attributes = {f"target_{a}": f"target_{a}" for a in HATEXPLAIN_TARGETS}
    return TaskSource(dataset, {"hate_label": "hate_label", "toxic": "toxic"}, attributes, name, "text")


def load_moji(
    split: str = "train",
    path: str = MOJI_ID,
    data_files: Any = None,
    max_rows: int | None = None,
    seed: int = 0,
    name: str = "moji",
    **load_kwargs: Any,
) -> TaskSource:
    """Moji (TwitterAAE sentiment): task `sentiment` (column `label`), attribute `dialect` (column `sa`).

    Both columns are ids; name them with `label_vocab={"sentiment": MOJI_SENTIMENTS}` and
    `group_vocab={"dialect": MOJI_DIALECTS}` (see the module docstring for the assumed id order).
    Pass `revision="moji_conf_09"` for the 90 %-confidence version.
    """
    dataset = _cap(_load(path, split, data_files, load_kwargs), max_rows, seed)
    _require_columns(dataset, ["text", "label", "sa"], "Moji")
    return TaskSource(dataset, {"sentiment": "label"}, {"dialect": "sa"}, name, "text")


def load_hub_text_source(
    path: str,
    tasks: Mapping[str, str],
    attributes: Mapping[str, str] | None = None,
    text_column: str = "text",
    split: str = "train",
    data_files: Any = None,
    max_rows: int | None = None,
    seed: int = 0,
    name: str | None = None,
    **load_kwargs: Any,
) -> TaskSource:
    """Any flat text data set on the Hub (or local files) as a `TaskSource`, e.g. a Trustpilot copy:
    `load_hub_text_source("csv", {"rating": "rating"}, {"gender": "gender"}, data_files="reviews.csv")`.
    """
    dataset = _cap(_load(path, split, data_files, load_kwargs), max_rows, seed)
    return TaskSource(dataset, dict(tasks), dict(attributes or {}), name or path.rsplit("/", 1)[-1], text_column)
