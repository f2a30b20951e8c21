"""`make_compute_metrics`: a `compute_metrics` for `Trainer` with accuracy, the collapse guard and group fairness
per task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from transformers.utils import logging

from ..configuration_fairmtl import FairMTLConfig
from ..groups import attribute_group_ids
from ..losses.eps_deo import DEFAULT_CONCENTRATION
from ..modeling_fairmtl import IGNORE_INDEX
from .group import fairness_metrics
from .keys import attribute_key, overall_key, task_key
from .task import COLLAPSE_THRESHOLD, task_metrics

logger = logging.get_logger(__name__)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _split_eval_pred(eval_pred: Any, tasks: Sequence[str]) -> tuple[tuple[Any, ...], np.ndarray, np.ndarray | None]:
    """(per-task logits, labels `[N, T]`, group labels `[N, A]` or `None`) of an `EvalPrediction` or a pair."""
    if hasattr(eval_pred, "predictions"):
        predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
    else:
        predictions, label_ids = eval_pred
    predictions = _as_tuple(predictions)
    if len(predictions) != len(tasks):
        raise ValueError(f"Got logits for {len(predictions)} task(s), the config has {len(tasks)}: {list(tasks)}")
    label_parts = _as_tuple(label_ids)
    labels = np.asarray(label_parts[0])
    group_labels = np.asarray(label_parts[1]).astype(np.int64) if len(label_parts) > 1 else None
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.shape[1] != len(tasks):
        raise ValueError(f"labels must have one column per task {list(tasks)}, got shape {list(labels.shape)}")
    return predictions, labels, group_labels


def make_compute_metrics(
    config: FairMTLConfig,
    attributes: Sequence[str] | None = None,
    alpha: float = DEFAULT_CONCENTRATION,
    collapse_threshold: float = COLLAPSE_THRESHOLD,
) -> Callable[[Any], dict[str, float]]:
    """Build a `compute_metrics` for `Trainer` that reports accuracy and group fairness per task.

    The returned function takes an `EvalPrediction` (or a `(predictions, label_ids)` pair) where
    `predictions` is the tuple of per-task logits `[N, C_t]` in `config.tasks` order and `label_ids` the
    tuple `(labels [N, T], group_labels [N, A])` (Trainer passes both label columns). It returns, per task,
    `{task}_accuracy`, `{task}_balanced_accuracy`, `{task}_majority_prediction_share` and `{task}_collapsed`
    (1.0 when one class is predicted for at least `collapse_threshold` of the task's labelled rows: its gaps are
    then no evidence of fairness, and a warning is logged), and `{task}_{attr}_{metric}` for every `metric` of
    [`fairness_metrics`] but accuracy, for every attribute (intersectional ones as `"gender*race"`), plus
    `mean_accuracy`, `num_collapsed_tasks` and `mean_eo_violation` (mean over the tasks × attributes with at
    least two groups present; a convenient `metric_for_best_model` with `greater_is_better=False`). Keys are built
    by `hf_fairmtl.metrics.keys`. Rows labelled -100 for a task are left out of that task, a task with no
    labelled row gets no keys at all, and a task × attribute whose labelled rows have no known group gets no
    `{task}_{attr}_*` keys. When `label_ids` has no group column only the per-task figures are reported. Trainer
    adds the `eval_` prefix.

    Args:
        config: The model config (tasks, classes, attributes, group names).
        attributes: Attribute names to report; default `config.group_attribute_names`.
        alpha: Smoothing of `eps_deo`.
        collapse_threshold: Majority-prediction share from which a task counts as collapsed.

    Raises:
        ValueError: At build time for an unknown attribute; at call time for predictions or labels that
            do not match the config's tasks.
    """
    attributes = list(config.group_attribute_names if attributes is None else attributes)
    names = {attr: config.group_names(attr) for attr in attributes}  # validates the attribute names now
    tasks = list(config.tasks)

    def group_figures(task: str, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> dict[str, dict]:
        figures = {}
        for attr in attributes:
            group_ids = attribute_group_ids(config, groups, attr)
            if not (group_ids >= 0).any():
                # No labelled row of this task has a known group (a target task in the transfer setting,
                # evaluated on training-like rows): no figures, rather than empty per-group NaNs and zero gaps.
                continue
            values = fairness_metrics(
                y_true, y_pred, group_ids, config.task_num_labels[task], group_names=names[attr], alpha=alpha
            )
            values.pop("accuracy")
            figures[attr] = (values, np.unique(group_ids[group_ids >= 0]).size >= 2)
        return figures

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        predictions, labels, group_labels = _split_eval_pred(eval_pred, tasks)
        results: dict[str, float] = {}
        violations, accuracies, collapsed = [], [], []
        for t, task in enumerate(tasks):
            y_true = labels[:, t].astype(np.int64)
            labelled = y_true != IGNORE_INDEX
            if not labelled.any():
                # A task this evaluation set has no label for gets no figures (rather than NaNs or fake zeros).
                continue
            y_true, y_pred = y_true[labelled], np.asarray(predictions[t]).argmax(axis=-1)[labelled]
            summary = task_metrics(y_true, y_pred, collapse_threshold)
            results.update({task_key(task, metric): value for metric, value in summary.items()})
            accuracies.append(summary["accuracy"])
            if summary["collapsed"]:
                collapsed.append(f"{task} ({summary['majority_prediction_share']:.1%} one class)")
            if group_labels is None:
                continue
            for attr, (values, measurable) in group_figures(task, y_true, y_pred, group_labels[labelled]).items():
                results.update({attribute_key(task, attr, key): value for key, value in values.items()})
                if measurable:  # a gap needs two groups to mean anything
                    violations.append(values["eo_violation"])
        if accuracies:
            results[overall_key("mean_accuracy")] = float(np.mean(accuracies))
            results[overall_key("num_collapsed_tasks")] = float(len(collapsed))
        if violations:
            results[overall_key("mean_eo_violation")] = float(np.mean(violations))
        if collapsed:
            logger.warning(
                f"Collapsed task(s): {', '.join(collapsed)} of the evaluated rows; their group gaps say nothing "
                "about fairness (see balanced_accuracy)."
            )
        return results

    return compute_metrics
