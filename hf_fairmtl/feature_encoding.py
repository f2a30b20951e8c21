"""Apply a stored tabular feature encoding to raw rows (the inference half of `hf_fairmtl.data.features`).

This file is copied next to checkpoints with the inference pipeline (`pipelines.py` imports it) and loaded with
``trust_remote_code=True`` where ``hf_fairmtl`` is not installed, so it imports nothing from ``hf_fairmtl``. The
encoding itself (a JSON dict in `FairMTLConfig.feature_encoding`) is fitted by
`hf_fairmtl.data.features.fit_feature_encoding`; see that module for the layout. pandas is needed only to encode
raw rows, so a text checkpoint loads without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

try:  # optional: only raw tabular rows need it (and `trust_remote_code` does not demand it inside a try)
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is a dependency of hf_fairmtl itself
    pd = None

ENCODING_VERSION = 1
OTHER_CATEGORY = "__other__"
MISSING_CATEGORY = "__missing__"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (pd is not None and value is pd.NA)


def category_key(value: Any) -> str:
    """The string a raw categorical value is stored under.

    Codes read from CSV files arrive as `1`, `1.0` or `"1"` depending on whether the column had gaps;
    all three must hit the same one-hot slot, so integral numbers are written without a decimal point.
    """
    if _is_missing(value):
        return MISSING_CATEGORY
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def category_keys(series: Any) -> Any:
    """`category_key` of every value of a pandas Series (mapping only the distinct values, for big tables)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    names = np.array([category_key(v) for v in uniques] + [MISSING_CATEGORY], dtype=object)
    return pd.Series(names[codes], index=series.index)


def encode_features(frame: Any, encoding: Mapping[str, Any]) -> np.ndarray:
    """Encode raw rows with a stored encoding.

    Args:
        frame: Raw rows: a `pandas.DataFrame`, or a dict of columns such as a `datasets` batch.
        encoding: The dict from `fit_feature_encoding` (e.g. `model.config.feature_encoding`).

    Returns:
        `float32 [N, num_features]`, columns in `encoding["feature_names"]` order.

    Raises:
        ValueError: A column the encoding needs is missing, or the encoding is not one of ours.
        ImportError: pandas is not installed.
    """
    if pd is None:
        raise ImportError("Encoding raw tabular rows needs pandas: pip install pandas")
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
        position += _one_hot(out, position, category_keys(frame[spec["column"]]), spec)
    return out


def _one_hot(out: np.ndarray, position: int, keys: Any, spec: Mapping[str, Any]) -> int:
    """Write one categorical column's one-hot block at `position`; returns the block's width."""
    slots = {name: i for i, name in enumerate(spec["categories"])}
    width = len(slots) + (1 if spec["other"] else 0)
    fallback = len(slots) if spec["other"] else -1
    index = keys.map(slots).fillna(fallback).to_numpy(dtype=np.int64)
    if spec["other"]:
        # Missing values were counted as their own category when fitting; only *unseen* ones go to other.
        index[(keys == MISSING_CATEGORY).to_numpy() & (index == fallback)] = -1
    rows = np.flatnonzero(index >= 0)
    out[rows, position + index[rows]] = 1.0
    return width
