"""Group fairness metrics of one task and one protected attribute: [`fairness_metrics`].

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
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..losses.eps_deo import DEFAULT_CONCENTRATION
from ..modeling_fairmtl import IGNORE_INDEX
from .keys import COUNT, group_metric_name

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
RATE_GAPS = {"tpr_gap": "tpr", "fpr_gap": "fpr", "dp_gap": "selection_rate"}
"""Gap metrics derived from a per-group base rate by max − min over groups (like fairlearn's
`metrics/_generated_metrics.py`, which derives `*_difference` metrics from base metrics)."""


def _rate(hits: np.ndarray, total: np.ndarray) -> np.ndarray:
    """`hits / total`, NaN where `total` is 0."""
    return np.where(total > 0, hits / np.maximum(total, 1), np.nan)


def _spread(rates: np.ndarray) -> np.ndarray:
    """Max − min over groups (axis −2: `[..., G, C]`) of the defined rates; NaN where fewer than two are defined."""
    defined = ~np.isnan(rates)
    high = np.where(defined, rates, -np.inf).max(axis=-2, initial=-np.inf)  # `initial`: no groups at all is fine
    low = np.where(defined, rates, np.inf).min(axis=-2, initial=np.inf)
    return np.where(defined.sum(axis=-2) >= 2, high - low, np.nan)


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
    y_true, y_pred, groups, num_classes = _labelled_arrays(y_true, y_pred, groups, num_classes)
    names, confusion = _group_confusion(y_true, y_pred, groups, num_classes, group_names)
    counts = _confusion_counts(confusion)
    positives, negatives, true_pos, false_pos, rows = (
        counts[k] for k in ("positives", "negatives", "true_pos", "false_pos", "rows")
    )
    rates = _base_rates(counts)

    results: dict[str, float] = {"accuracy": float((y_true == y_pred).mean()) if y_true.size else math.nan}
    classes = _scored_classes(num_classes)
    for index, name in enumerate(names):
        for c in classes:
            for rate, values in rates.items():
                results[group_metric_name(rate, name, None if num_classes == 2 else c)] = float(values[index, c])
        results[group_metric_name(COUNT, name)] = float(rows[index, 0])

    clash = sorted(set(GAP_METRICS) & set(results))
    if clash:  # e.g. a group named "gap" would overwrite tpr_gap
        raise ValueError(f"Group names produce keys that clash with the gap metrics: {clash}; rename the groups")
    for gap, rate in RATE_GAPS.items():
        results[gap] = _mean_or_zero(_spread(rates[rate][:, classes]))
    results["eo_violation"] = results["tpr_gap"] + results["fpr_gap"]

    # ε-DEO: smoothed rates never hit 0, so their logs are finite; NaN marks groups without rows.
    def log_smoothed(hits: np.ndarray, total: np.ndarray) -> np.ndarray:
        return np.where(total > 0, np.log((hits + alpha / 2) / (total + alpha)), np.nan)

    tpr_spread = np.nan_to_num(_spread(log_smoothed(true_pos, positives)[:, classes]))
    fpr_spread = np.nan_to_num(_spread(log_smoothed(false_pos, negatives)[:, classes]))
    results["eps_deo"] = float((tpr_spread + fpr_spread).max())

    overall_tpr = _rate(true_pos.sum(axis=0), positives.sum(axis=0))  # [C]
    class_gaps = np.nansum(np.abs(rates["tpr"] - overall_tpr), axis=0)  # NaN groups (no positives) are skipped
    has_positives = positives.sum(axis=0) > 0
    results["rms_tpr_gap"] = float(np.sqrt(np.mean(class_gaps[has_positives] ** 2))) if has_positives.any() else 0.0
    return {key: results[key] for key in _ordered(results)}


def equalized_odds_violation(y_true: Any, y_pred: Any, groups: Any, num_classes: int | None = None) -> float:
    """`fairness_metrics(...)["eo_violation"]` alone: `tpr_gap + fpr_gap`, without the other figures.

    Same arguments and definitions as [`fairness_metrics`]; see [`equalized_odds_violations`] for several
    predictions of the same rows at once.
    """
    y_true, y_pred, groups, num_classes = _labelled_arrays(y_true, y_pred, groups, num_classes)
    return float(equalized_odds_violations(y_true, y_pred[None], groups, num_classes)[0])


def equalized_odds_violations(y_true: Any, y_preds: Any, groups: Any, num_classes: int) -> np.ndarray:
    """EO violation of K predictions of the same rows, `[K]`, from one confusion count: what the L2T-FMT teacher
    scores a task's current head and both look-ahead candidates by.

    Args:
        y_true: `[N]` labels, -100 = missing (dropped).
        y_preds: `[K, N]` predicted classes.
        groups: `[N]` group ids, negative = unknown (dropped).
        num_classes: Number of classes.

    Raises:
        ValueError: On arrays of different lengths or classes outside `[0, num_classes)`.
    """
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_preds = np.asarray(y_preds).astype(np.int64)
    groups = np.asarray(groups).reshape(-1).astype(np.int64)
    if y_preds.ndim != 2 or y_preds.shape[1] != y_true.size or groups.size != y_true.size:
        raise ValueError(
            f"y_preds must be [K, {y_true.size}] and groups [{y_true.size}], got {list(y_preds.shape)} and "
            f"{list(groups.shape)}"
        )
    labelled = y_true != IGNORE_INDEX
    y_true, y_preds, groups = y_true[labelled], y_preds[:, labelled], groups[labelled]
    for name, values in (("label", y_true), ("prediction", y_preds)):
        _check_classes(name, values, num_classes)
    _, confusion = _group_confusion(y_true, y_preds, groups, num_classes, None)
    rates = _base_rates(_confusion_counts(confusion))
    classes = _scored_classes(num_classes)
    gaps = [_spread(rates[rate][..., classes]) for rate in ("tpr", "fpr")]
    return np.array([_mean_or_zero(tpr) + _mean_or_zero(fpr) for tpr, fpr in zip(*gaps, strict=True)])


def _scored_classes(num_classes: int) -> list[int]:
    """Classes the gaps are computed for: the positive class of a binary task, every class otherwise."""
    return [1] if num_classes == 2 else list(range(num_classes))


def _confusion_counts(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per group and class (`[..., G, C]`; `rows` `[..., G, 1]`) counts of `confusion[..., g, y, ŷ]`, one-vs-rest."""
    positives = confusion.sum(axis=-1)  # rows labelled c
    predicted = confusion.sum(axis=-2)  # rows predicted c
    true_pos = np.diagonal(confusion, axis1=-2, axis2=-1)
    rows = confusion.sum(axis=(-2, -1))[..., None]
    return {
        "positives": positives,
        "negatives": rows - positives,
        "predicted": predicted,
        "true_pos": true_pos,
        "false_pos": predicted - true_pos,
        "rows": rows,
    }


def _base_rates(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`tpr`, `fpr` and `selection_rate` per group and class from [`_confusion_counts`] (NaN where undefined)."""
    predicted = counts["predicted"]
    return {
        "tpr": _rate(counts["true_pos"], counts["positives"]),
        "fpr": _rate(counts["false_pos"], counts["negatives"]),
        "selection_rate": _rate(predicted, np.broadcast_to(counts["rows"], predicted.shape)),
    }


def _ordered(results: dict[str, float]) -> list[str]:
    # The gaps in GAP_METRICS order after the per-group figures, as before the derived-gap table.
    return [key for key in results if key not in GAP_METRICS] + list(GAP_METRICS)


def _labelled_arrays(
    y_true: Any, y_pred: Any, groups: Any, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Flat int arrays of the labelled rows (predictions argmaxed from scores), and the checked class count."""
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
        _check_classes(name, values, num_classes)
    return y_true, y_pred, groups, num_classes


def _check_classes(name: str, values: np.ndarray, num_classes: int) -> None:
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)].reshape(-1)[0]
        raise ValueError(f"A {name} ({bad}) is outside [0, {num_classes}) (use {IGNORE_INDEX} for a missing label)")


def _group_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, num_classes: int, group_names: Sequence[str] | None
) -> tuple[list[str], np.ndarray]:
    """Group names and `confusion[g, y, ŷ]` of the known-group rows (one bincount); `y_pred` `[K, N]` (K predictions
    of the same rows) gives `confusion[k, g, y, ŷ]`."""
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
    preds = np.atleast_2d(y_pred)[:, known]
    candidates = np.arange(len(preds))[:, None]
    flat = (((candidates * num_groups + groups[known]) * num_classes + y_true[known]) * num_classes + preds).reshape(-1)
    shape = (len(preds), num_groups, num_classes, num_classes)
    confusion = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)[:, group_ids].astype(np.float64)
    return names, confusion if np.ndim(y_pred) == 2 else confusion[0]
