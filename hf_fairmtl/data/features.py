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

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pandas as pd

from ..feature_encoding import (  # the inference half ships with checkpoints
    ENCODING_VERSION,
    OTHER_CATEGORY,
    category_keys,
    encode_features,
)


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
        numeric_specs.append(
            {
                "column": column,
                "mean": float(values.mean()),
                "std": std if std > 0 else 1.0,
            }
        )
    categorical_specs = []
    for column in categorical:
        counts = category_keys(frame[column]).value_counts()
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
