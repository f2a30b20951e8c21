"""Per-task figures that qualify every gap: balanced accuracy and the collapse guard.

A model that predicts one class for (almost) every row has equal rates in every group, so its gaps are near 0
although it has learned nothing about the task (census income is 6 % positive: predicting "≤ 50k" everywhere is
94 % accurate and "perfectly fair"). A task whose held-out predictions are one class for at least
`COLLAPSE_THRESHOLD` of its labelled rows is *collapsed*: reports, cards and `relative_scores` flag it and never
count its gaps as fair.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..modeling_fairmtl import IGNORE_INDEX

COLLAPSE_THRESHOLD = 0.95
"""Share of labelled held-out rows predicted as one class from which a task counts as collapsed."""


def majority_prediction_share(y_pred: Any) -> float:
    """Share of the rows predicted as the most frequent predicted class (NaN without rows)."""
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if not y_pred.size:
        return math.nan
    return float(np.bincount(y_pred).max() / y_pred.size)


def is_collapsed(share: float, threshold: float = COLLAPSE_THRESHOLD) -> bool:
    """Whether a majority-prediction share marks a collapsed task (NaN, no rows, is not collapsed)."""
    return bool(math.isfinite(share) and share >= threshold)


def balanced_accuracy(y_true: Any, y_pred: Any) -> float:
    """Mean recall over the classes present in `y_true` (scikit-learn's `balanced_accuracy_score`); NaN
    without rows."""
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    classes = np.unique(y_true)
    if not classes.size:
        return math.nan
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))


def task_metrics(y_true: Any, y_pred: Any, threshold: float = COLLAPSE_THRESHOLD) -> dict[str, float]:
    """Accuracy, balanced accuracy and the collapse guard of one task's labelled rows.

    Args:
        y_true: `[N]` labels, -100 = missing (dropped).
        y_pred: `[N]` predicted classes, or `[N, C]` scores (argmax is taken).
        threshold: Collapse threshold on the majority-prediction share.

    Returns:
        `accuracy`, `balanced_accuracy`, `majority_prediction_share` and `collapsed` (1.0 or 0.0).
    """
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = y_pred.argmax(axis=-1)
    y_pred = y_pred.reshape(-1).astype(np.int64)
    labelled = y_true != IGNORE_INDEX
    y_true, y_pred = y_true[labelled], y_pred[labelled]
    share = majority_prediction_share(y_pred)
    return {
        "accuracy": float((y_true == y_pred).mean()) if y_true.size else math.nan,
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "majority_prediction_share": share,
        "collapsed": float(is_collapsed(share, threshold)),
    }
