"""Group fairness metrics, a `compute_metrics` for `Trainer`, ARA/AREO relative scores, and metric keys.

- [`keys`]: builds and parses every metric key (`eval_{task}_accuracy`, `eval_{task}_{attr}_eo_violation`, …).
- [`group`]: [`fairness_metrics`] of one task and attribute (definitions in its docstring).
- [`task`]: balanced accuracy and the collapse guard (`majority_prediction_share`, `collapsed`).
- [`compute`]: [`make_compute_metrics`] for `Trainer`.
- [`relative`]: [`relative_scores`] (ARA/AREO, with and without collapsed tasks).
"""

import os

from .compute import make_compute_metrics
from .group import (
    GAP_METRIC_TITLES,
    GAP_METRICS,
    RATE_GAPS,
    equalized_odds_violation,
    equalized_odds_violations,
    fairness_metrics,
)
from .relative import relative_scores, task_is_collapsed
from .task import COLLAPSE_THRESHOLD, balanced_accuracy, is_collapsed, majority_prediction_share, task_metrics

FAIRNESS_METRIC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fairness_metric")
"""Folder of the local `evaluate` module: `evaluate.load(FAIRNESS_METRIC_PATH)` works offline."""

__all__ = [
    "COLLAPSE_THRESHOLD",
    "FAIRNESS_METRIC_PATH",
    "GAP_METRICS",
    "GAP_METRIC_TITLES",
    "RATE_GAPS",
    "balanced_accuracy",
    "equalized_odds_violation",
    "equalized_odds_violations",
    "fairness_metrics",
    "is_collapsed",
    "majority_prediction_share",
    "make_compute_metrics",
    "relative_scores",
    "task_is_collapsed",
    "task_metrics",
]
