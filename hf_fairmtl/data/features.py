"""Tabular feature encoding fitted on training rows and stored as JSON in `FairMTLConfig.feature_encoding`.

Numeric columns are standardised with the training mean and standard deviation (missing values become
the training mean, i.e. 0 after standardising). Categorical columns are one-hot encoded over the
categories seen in training (optionally only the `max_categories` most frequent, the rest sharing one
`__other__` slot); a category never seen in training, and a missing value not seen in training, encode as
all zeros rather than raising, because raw rows at inference time legitimately contain rare codes.

The encoding is a plain dict of lists and floats, so `config.feature_encoding = encoding` survives
`save_pretrained`/`from_pretrained`, and `encode_features(raw_rows, model.config.feature_encoding)`
reproduces the training features from raw rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pandas as pd

ENCODING_VERSION = 1
OTHER_CATEGORY = "__other__"
MISSING_CATEGORY = "__missing__"


def category_key(value: Any) -> str:
    """The string a raw categorical value is stored under.

    Codes read from CSV files arrive as `1`, `1.0` or `"1"` depending on whether the column had gaps;
    all three must hit the same one-hot slot, so integral numbers are written without a decimal point.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING_CATEGORY
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def _keys(series: pd.Series) -> pd.Series:
    # Map the distinct values only: the same few codes repeat over hundreds of thousands of rows.
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    names = np.array([category_key(v) for v in uniques] + [MISSING_CATEGORY], dtype=object)
    return pd.Series(names[codes], index=series.index)


def fit_feature_encoding(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    max_categories: int | None = None,
) -> dict[str, Any]:
    """Fit the encoding on training rows.

    Args:
        frame: Training rows with raw columns.
        numeric: Columns to standardise (ordinal codes such as education level belong here too).
        categorical: Columns to one-hot encode.
        max_categories: Keep only this many most frequent categories per column; the rest share an
            `__other__` slot (`None`: keep all).

    Returns:
        A JSON-able dict: `{"version", "numeric": [{"column", "mean", "std"}], "categorical":
        [{"column", "categories", "other"}], "feature_names", "num_features"}`.

    Raises:
        ValueError: A column is missing from `frame`, appears twice, or a numeric column is not numeric.
    """
    columns = list(numeric) + list(categorical)
    if len(set(columns)) != len(columns):
        raise ValueError(f"A column is listed twice in numeric/categorical: {columns}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"Feature column(s) {missing} not in the data (columns: {list(frame.columns)})")
    if len(frame) == 0:
        raise ValueError("Cannot fit a feature encoding on 0 rows")
    numeric_specs = []
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().all():
            raise ValueError(f"Numeric feature column {column!r} has no numeric values")
        std = float(values.std(ddof=0))
        numeric_specs.append({"column": column, "mean": float(values.mean()), "std": std if std > 0 else 1.0})
    categorical_specs = []
    for column in categorical:
        counts = _keys(frame[column]).value_counts()
        # Most frequent first, ties broken by name, so refitting the same data gives the same layout.
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        other = max_categories is not None and len(ordered) > max_categories
        kept = [name for name, _ in (ordered[:max_categories] if other else ordered)]
        categorical_specs.append({"column": column, "categories": sorted(kept), "other": bool(other)})
    names = [spec["column"] for spec in numeric_specs]
    for spec in categorical_specs:
        names += [f"{spec['column']}={name}" for name in spec["categories"]]
        if spec["other"]:
            names.append(f"{spec['column']}={OTHER_CATEGORY}")
    return {
        "version": ENCODING_VERSION,
        "numeric": numeric_specs,
        "categorical": categorical_specs,
        "feature_names": names,
        "num_features": len(names),
    }


def encode_features(frame: pd.DataFrame | Mapping[str, Sequence[Any]], encoding: Mapping[str, Any]) -> np.ndarray:
    """Encode raw rows with a stored encoding.

    Args:
        frame: Raw rows (a DataFrame, or a dict of columns such as a `datasets` batch).
        encoding: The dict from `fit_feature_encoding` (e.g. `model.config.feature_encoding`).

    Returns:
        `float32 [N, num_features]`, columns in `encoding["feature_names"]` order.

    Raises:
        ValueError: A column the encoding needs is missing, or the encoding is not one of ours.
    """
    if not isinstance(encoding, Mapping) or encoding.get("version") != ENCODING_VERSION:
        raise ValueError("Not a feature encoding written by hf_fairmtl.data.features.fit_feature_encoding")
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(dict(frame))
    needed = [s["column"] for s in encoding["numeric"]] + [s["column"] for s in encoding["categorical"]]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"Raw rows lack feature column(s) {missing} that the stored encoding needs")
    out = np.zeros((len(frame), encoding["num_features"]), dtype=np.float32)
    position = 0
    for spec in encoding["numeric"]:
        values = pd.to_numeric(frame[spec["column"]], errors="coerce").to_numpy(dtype=np.float64)
        values = np.where(np.isnan(values), spec["mean"], values)
        out[:, position] = (values - spec["mean"]) / spec["std"]
        position += 1
    for spec in encoding["categorical"]:
        slots = {name: i for i, name in enumerate(spec["categories"])}
        width = len(slots) + (1 if spec["other"] else 0)
        fallback = len(slots) if spec["other"] else -1
        keys = _keys(frame[spec["column"]])
        index = keys.map(slots).fillna(fallback).to_numpy(dtype=np.int64)
        if spec["other"]:
            # Missing values were counted as their own category when fitting; only *unseen* ones go to other.
            index[(keys == MISSING_CATEGORY).to_numpy() & (index == fallback)] = -1
        rows = np.flatnonzero(index >= 0)
        out[rows, position + index[rows]] = 1.0
        position += width
    return out


def encoded_dataset(
    frame: pd.DataFrame,
    encoding: Mapping[str, Any],
    keep_columns: Sequence[str],
) -> datasets.Dataset:
    """A `datasets.Dataset` with a `features` list column plus `keep_columns` (labels, groups) of `frame`."""
    import pyarrow as pa
    from datasets.table import InMemoryTable

    matrix = encode_features(frame, encoding)
    arrays = {"features": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])}
    for column in keep_columns:
        arrays[column] = pa.Array.from_pandas(frame[column])
    return datasets.Dataset(InMemoryTable(pa.table(arrays)))


def split_frame(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random train/test split of a frame (row order kept within each part)."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(frame), dtype=bool)
    is_test[rng.permutation(len(frame))[: int(round(test_size * len(frame)))]] = True
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


def subsample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most `max_rows` random rows (original order kept), for quick runs on big tables."""
    if max_rows is None or len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    if max_rows <= 0:
        raise ValueError(f"max_rows must be positive, got {max_rows}")
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[keep].reset_index(drop=True)
