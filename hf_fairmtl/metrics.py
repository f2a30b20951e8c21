"""Group fairness metrics, a `compute_metrics` for `Trainer`, and ARA/AREO relative scores.

Definitions (hard predictions; NumPy in, Python floats out):

- Rows labelled -100 are dropped everywhere. Rows of unknown group (-1, any negative id) count in
  `accuracy` and in nothing else.
- Binary tasks: class 1 is the positive class. Per group `g`: `tpr_g = P(ŷ=1 | y=1, g)`,
  `fpr_g = P(ŷ=1 | y=0, g)`, `selection_rate_g = P(ŷ=1 | g)`, `count_g` = rows of `g`.
- Multi-class tasks: the same per class `c`, one-vs-rest (`tpr_g_c = P(ŷ=c | y=c, g)`, …), keys
  suffixed with the class id.
- A rate with an empty denominator (a group without positives for `tpr`, without negatives for `fpr`,
  without rows) is NaN, and that group is skipped in the gap of that rate.
- `tpr_gap`, `fpr_gap`, `dp_gap` (selection-rate gap): max − min over groups, as fairlearn's
  `MetricFrame(...).difference()`; 0.0 when fewer than two groups have the rate defined (no measurable
  gap). Multi-class: the one-vs-rest gaps averaged over the classes where they are defined (macro).
- `eo_violation = tpr_gap + fpr_gap` (L2T-FMT, Roy & Ntoutsi 2022, Eq. 1).
- `eps_deo`: ε-differential equalized odds of the hard predictions with the smoothing of the `eps_deo`
  loss: `rate = (hits + α/2) / (count + α)`, `ε = (max − min of log TPR) + (max − min of log FPR)` over
  groups with rows; multi-class: max over the one-vs-rest classes.
- `rms_tpr_gap`: fairlib's TPR GAP (Han et al. 2022; Shen et al. 2022): for every class `c` (class 0 of a
  binary task included) `gap_c = Σ_g |TPR_{g,c} − TPR_c|`, with `TPR_c` over all known-group rows,
  then the root mean square over classes with positives. Unlike fairlib, rates are not smoothed by 1e-5.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .configuration_fairmtl import FairMTLConfig
from .groups import attribute_group_ids
from .losses.eps_deo import DEFAULT_CONCENTRATION
from .modeling_fairmtl import IGNORE_INDEX

FAIRNESS_METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fairness_metric")
"""Folder of the local `evaluate` module: `evaluate.load(FAIRNESS_METRIC_PATH)` works offline."""

GAP_METRIC_TITLES = {
    "tpr_gap": "TPR gap",
    "fpr_gap": "FPR gap",
    "eo_violation": "EO violation",
    "dp_gap": "DP gap",
    "eps_deo": "ε-DEO",
    "rms_tpr_gap": "RMS TPR gap",
}
"""Every gap metric of [`fairness_metrics`] (key suffix) with the title reports and model cards show for it."""
GAP_METRICS = tuple(GAP_METRIC_TITLES)


def _rate(hits: np.ndarray, total: np.ndarray) -> np.ndarray:
    """`hits / total`, NaN where `total` is 0."""
    return np.where(total > 0, hits / np.maximum(total, 1), np.nan)


def _spread(rates: np.ndarray) -> np.ndarray:
    """Max − min over groups (axis 0) of the defined rates; NaN where fewer than two are defined."""
    defined = ~np.isnan(rates)
    high = np.where(defined, rates, -np.inf).max(axis=0, initial=-np.inf)  # `initial`: no groups at all is fine
    low = np.where(defined, rates, np.inf).min(axis=0, initial=np.inf)
    return np.where(defined.sum(axis=0) >= 2, high - low, np.nan)


def _mean_or_zero(values: np.ndarray) -> float:
    """Mean of the defined values; 0.0 when none is (no measurable gap)."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else 0.0


def fairness_metrics(
    y_true: Any,
    y_pred: Any,
    groups: Any,
    num_classes: int | None = None,
    group_names: Sequence[str] | None = None,
    alpha: float = DEFAULT_CONCENTRATION,
) -> dict[str, float]:
    """Accuracy, per-group rates and group-gap metrics of one task and one protected attribute.

    See the module docstring for the definitions.

    Args:
        y_true: `[N]` labels, -100 = missing (dropped).
        y_pred: `[N]` predicted classes, or `[N, C]` scores/logits (argmax is taken).
        groups: `[N]` group ids, negative = unknown.
        num_classes: Number of classes; inferred as `max(label, prediction) + 1` (at least 2) when `None`.
        group_names: Names of the group ids (`group_names[g]` names id `g`); per-group keys then use the
            names and cover every named group (NaN for a group absent from the data). Without names,
            keys use the ids of the groups present.
        alpha: Smoothing concentration of `eps_deo`.

    Returns:
        `accuracy`, `tpr_{g}`, `fpr_{g}`, `selection_rate_{g}`, `count_{g}` (multi-class: `tpr_{g}_{c}`, …),
        `tpr_gap`, `fpr_gap`, `eo_violation`, `dp_gap`, `eps_deo`, `rms_tpr_gap`.

    Raises:
        ValueError: On arrays of different lengths, labels/predictions outside `[0, num_classes)`, or
            group ids without a name in `group_names`.
    """
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = y_pred.argmax(axis=-1)
    y_pred = y_pred.reshape(-1).astype(np.int64)
    groups = np.asarray(groups).reshape(-1).astype(np.int64)
    if not len(y_true) == len(y_pred) == len(groups):
        raise ValueError(
            f"y_true, y_pred and groups must have the same length, got {len(y_true)}, {len(y_pred)}, {len(groups)}"
        )
    labelled = y_true != IGNORE_INDEX
    y_true, y_pred, groups = y_true[labelled], y_pred[labelled], groups[labelled]

    if num_classes is None:
        num_classes = max(2, int(max(y_true.max(initial=0), y_pred.max(initial=0))) + 1)
    for name, values in (("label", y_true), ("prediction", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise ValueError(f"A {name} ({bad}) is outside [0, {num_classes}) (use {IGNORE_INDEX} for a missing label)")

    known = groups >= 0
    if group_names is not None:
        names = [str(name) for name in group_names]
        if known.any() and groups.max() >= len(names):
            raise ValueError(f"Group id {int(groups.max())} has no name: group_names has {len(names)} entries")
        group_ids = np.arange(len(names))
    else:
        group_ids = np.unique(groups[known])
        names = [str(g) for g in group_ids]
    num_groups = int(group_ids.max()) + 1 if group_ids.size else 0

    # confusion[g, y, ŷ] for the known-group rows, in one bincount.
    flat = (groups[known] * num_classes + y_true[known]) * num_classes + y_pred[known]
    confusion = np.bincount(flat, minlength=num_groups * num_classes * num_classes)
    confusion = confusion.reshape(num_groups, num_classes, num_classes)[group_ids].astype(np.float64)

    positives = confusion.sum(axis=2)  # [G, C]: rows labelled c
    predicted = confusion.sum(axis=1)  # [G, C]: rows predicted c
    true_pos = np.diagonal(confusion, axis1=1, axis2=2)  # [G, C]
    rows = confusion.sum(axis=(1, 2))[:, None]  # [G, 1]
    negatives = rows - positives
    false_pos = predicted - true_pos

    tpr = _rate(true_pos, positives)
    fpr = _rate(false_pos, negatives)
    selection = _rate(predicted, np.broadcast_to(rows, predicted.shape))

    results: dict[str, float] = {"accuracy": float((y_true == y_pred).mean()) if y_true.size else math.nan}
    classes = [1] if num_classes == 2 else list(range(num_classes))
    for index, name in enumerate(names):
        for c in classes:
            suffix = f"{name}" if num_classes == 2 else f"{name}_{c}"
            results[f"tpr_{suffix}"] = float(tpr[index, c])
            results[f"fpr_{suffix}"] = float(fpr[index, c])
            results[f"selection_rate_{suffix}"] = float(selection[index, c])
        results[f"count_{name}"] = float(rows[index, 0])

    clash = sorted(set(GAP_METRICS) & set(results))
    if clash:  # e.g. a group named "gap" would overwrite tpr_gap
        raise ValueError(f"Group names produce keys that clash with the gap metrics: {clash}; rename the groups")
    results["tpr_gap"] = _mean_or_zero(_spread(tpr[:, classes]))
    results["fpr_gap"] = _mean_or_zero(_spread(fpr[:, classes]))
    results["eo_violation"] = results["tpr_gap"] + results["fpr_gap"]
    results["dp_gap"] = _mean_or_zero(_spread(selection[:, classes]))

    # ε-DEO: smoothed rates never hit 0, so their logs are finite; NaN marks groups without rows.
    def log_smoothed(hits: np.ndarray, total: np.ndarray) -> np.ndarray:
        return np.where(total > 0, np.log((hits + alpha / 2) / (total + alpha)), np.nan)

    tpr_spread = np.nan_to_num(_spread(log_smoothed(true_pos, positives)[:, classes]))
    fpr_spread = np.nan_to_num(_spread(log_smoothed(false_pos, negatives)[:, classes]))
    results["eps_deo"] = float((tpr_spread + fpr_spread).max())

    overall_tpr = _rate(true_pos.sum(axis=0), positives.sum(axis=0))  # [C]
    class_gaps = np.nansum(np.abs(tpr - overall_tpr), axis=0)  # NaN groups (no positives) are skipped
    has_positives = positives.sum(axis=0) > 0
    results["rms_tpr_gap"] = float(np.sqrt(np.mean(class_gaps[has_positives] ** 2))) if has_positives.any() else 0.0
    return results


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def make_compute_metrics(
    config: FairMTLConfig,
    attributes: Sequence[str] | None = None,
    alpha: float = DEFAULT_CONCENTRATION,
) -> Callable[[Any], dict[str, float]]:
    """Build a `compute_metrics` for `Trainer` that reports accuracy and group fairness per task.

    The returned function takes an `EvalPrediction` (or a `(predictions, label_ids)` pair) where
    `predictions` is the tuple of per-task logits `[N, C_t]` in `config.tasks` order and `label_ids` the
    tuple `(labels [N, T], group_labels [N, A])` (Trainer passes both label columns). It returns
    `{task}_accuracy` and `{task}_{attr}_{metric}` for every `metric` of [`fairness_metrics`] but
    accuracy, for every attribute (intersectional ones as `"gender*race"`), plus `mean_accuracy` and
    `mean_eo_violation` (mean over the tasks × attributes with at least two groups present; a convenient
    `metric_for_best_model` with `greater_is_better=False`). Rows labelled -100 for a task are left out of
    that task, a task with no labelled row gets no keys at all, and a task × attribute whose labelled rows
    have no known group gets no `{task}_{attr}_*` keys. When `label_ids` has no group column only
    the accuracies are reported. Trainer adds the `eval_` prefix.

    Args:
        config: The model config (tasks, classes, attributes, group names).
        attributes: Attribute names to report; default `config.group_attribute_names`.
        alpha: Smoothing of `eps_deo`.

    Raises:
        ValueError: At build time for an unknown attribute; at call time for predictions or labels that
            do not match the config's tasks.
    """
    attributes = list(config.group_attribute_names if attributes is None else attributes)
    names = {attr: config.group_names(attr) for attr in attributes}  # validates the attribute names now
    tasks = list(config.tasks)

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        if hasattr(eval_pred, "predictions"):
            predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
        else:
            predictions, label_ids = eval_pred
        predictions = _as_tuple(predictions)
        if len(predictions) != len(tasks):
            raise ValueError(f"Got logits for {len(predictions)} task(s), the config has {len(tasks)}: {tasks}")
        label_parts = _as_tuple(label_ids)
        labels = np.asarray(label_parts[0])
        group_labels = np.asarray(label_parts[1]).astype(np.int64) if len(label_parts) > 1 else None
        if labels.ndim == 1:
            labels = labels[:, None]
        if labels.shape[1] != len(tasks):
            raise ValueError(f"labels must have one column per task {tasks}, got shape {list(labels.shape)}")

        results: dict[str, float] = {}
        violations = []
        for t, task in enumerate(tasks):
            y_true = labels[:, t].astype(np.int64)
            y_pred = np.asarray(predictions[t]).argmax(axis=-1)
            labelled = y_true != IGNORE_INDEX
            if not labelled.any():
                # A task this evaluation set has no label for gets no figures (rather than NaNs or fake zeros).
                continue
            results[f"{task}_accuracy"] = float((y_pred[labelled] == y_true[labelled]).mean())
            if group_labels is None:
                continue
            for attr in attributes:
                group_ids = attribute_group_ids(config, group_labels, attr)[labelled]
                if not (group_ids >= 0).any():
                    # No labelled row of this task has a known group (a target task in the transfer setting,
                    # evaluated on training-like rows): no figures, rather than empty per-group NaNs and zero gaps.
                    continue
                figures = fairness_metrics(
                    y_true[labelled],
                    y_pred[labelled],
                    group_ids,
                    num_classes=config.task_num_labels[task],
                    group_names=names[attr],
                    alpha=alpha,
                )
                figures.pop("accuracy")
                results.update({f"{task}_{attr}_{key}": value for key, value in figures.items()})
                if np.unique(group_ids[group_ids >= 0]).size >= 2:  # a gap needs two groups to mean anything
                    violations.append(figures["eo_violation"])
        accuracies = [results[f"{task}_accuracy"] for task in tasks if f"{task}_accuracy" in results]
        if accuracies:
            results["mean_accuracy"] = float(np.mean(accuracies))
        if violations:
            results["mean_eo_violation"] = float(np.mean(violations))
        return results

    return compute_metrics


def relative_scores(mtl: Mapping[str, Mapping[str, float]], stl: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """ARA and AREO of a multi-task model against single-task models (Roy & Ntoutsi 2022).

    `ARA = mean_t Acc_MTL(t) / Acc_STL(t)` (higher is better) and `AREO = mean_t EO_MTL(t) / EO_STL(t)`
    (lower is better), with EO the `eo_violation`.

    Args:
        mtl: task → `{"accuracy": …, "eo_violation": …}` of the multi-task model.
        stl: The same for the single-task models, with exactly the same tasks.

    Returns:
        `ARA`, `AREO`, and per task `{task}_relative_accuracy`, `{task}_relative_eo_violation`.

    Raises:
        ValueError: When the task sets differ or are empty, a figure is missing or not finite, or an STL
            accuracy or EO violation is 0 (the ratio is undefined; a perfectly fair STL model cannot be a
            reference for AREO).
    """
    if set(mtl) != set(stl):
        raise ValueError(
            f"MTL and STL results must cover the same tasks: only in MTL {sorted(set(mtl) - set(stl))}, "
            f"only in STL {sorted(set(stl) - set(mtl))}"
        )
    if not mtl:
        raise ValueError("relative_scores needs at least one task")
    results: dict[str, float] = {}
    for task in mtl:
        ratios = []
        for key in ("accuracy", "eo_violation"):
            try:
                ours, reference = float(mtl[task][key]), float(stl[task][key])
            except KeyError as error:
                raise ValueError(f"Task {task!r} lacks {error.args[0]!r} in its MTL or STL results") from None
            if not (math.isfinite(ours) and math.isfinite(reference)):
                raise ValueError(f"Task {task!r}: {key} must be finite, got MTL {ours} and STL {reference}")
            if reference == 0:
                raise ValueError(f"Task {task!r}: the STL {key} is 0, so the relative score is undefined")
            ratios.append(ours / reference)
        results[f"{task}_relative_accuracy"], results[f"{task}_relative_eo_violation"] = ratios
    results["ARA"] = float(np.mean([results[f"{task}_relative_accuracy"] for task in mtl]))
    results["AREO"] = float(np.mean([results[f"{task}_relative_eo_violation"] for task in mtl]))
    return results
