"""ARA and AREO: a multi-task model's accuracy and EO violation relative to single-task models."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .keys import task_key
from .task import is_collapsed

RELATIVE_FIGURES = ("accuracy", "eo_violation")
WITHOUT_COLLAPSED = "without_collapsed"


def task_is_collapsed(figures: Mapping[str, Any]) -> bool:
    """Whether a task's figures mark it collapsed: `collapsed` true, or `majority_prediction_share` ≥ 0.95."""
    if "collapsed" in figures:
        return bool(float(figures["collapsed"]))
    share = figures.get("majority_prediction_share")
    return share is not None and is_collapsed(float(share))


def _ratios(task: str, mtl: Mapping[str, Any], stl: Mapping[str, Any], collapsed: bool) -> list[float]:
    ratios = []
    for key in RELATIVE_FIGURES:
        try:
            ours, reference = float(mtl[key]), float(stl[key])
        except KeyError as error:
            raise ValueError(f"Task {task!r} lacks {error.args[0]!r} in its MTL or STL results") from None
        if not (math.isfinite(ours) and math.isfinite(reference)):
            raise ValueError(f"Task {task!r}: {key} must be finite, got MTL {ours} and STL {reference}")
        if reference == 0 and not collapsed:
            raise ValueError(f"Task {task!r}: the STL {key} is 0, so the relative score is undefined")
        ratios.append(ours / reference if reference else math.nan)
    return ratios


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def relative_scores(mtl: Mapping[str, Mapping[str, Any]], stl: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """ARA and AREO of a multi-task model against single-task models (Roy & Ntoutsi 2022).

    `ARA = mean_t Acc_MTL(t) / Acc_STL(t)` (higher is better) and `AREO = mean_t EO_MTL(t) / EO_STL(t)`
    (lower is better), with EO the `eo_violation`.

    Collapse guard: a task is *collapsed* when its MTL or its STL figures say so (`collapsed`, or a
    `majority_prediction_share` ≥ 0.95, as `make_compute_metrics` reports them): a constant predictor's EO
    violation is near 0 without being fair, so a collapsed MTL task "wins" AREO and a collapsed STL reference
    makes the ratio meaningless. `ARA`/`AREO` are over every task; `ARA_without_collapsed`/`AREO_without_collapsed`
    leave the collapsed tasks out (NaN when every task collapsed). A collapsed task whose STL figure is 0 gets
    a NaN ratio, left out of both means, instead of an error.

    Args:
        mtl: task → `{"accuracy": …, "eo_violation": …}` (optionally `collapsed` / `majority_prediction_share`)
            of the multi-task model.
        stl: The same for the single-task models, with exactly the same tasks.

    Returns:
        `ARA`, `AREO`, `ARA_without_collapsed`, `AREO_without_collapsed`, `num_collapsed_tasks`, and per task
        `{task}_relative_accuracy`, `{task}_relative_eo_violation`, `{task}_collapsed` (1.0 or 0.0).

    Raises:
        ValueError: When the task sets differ or are empty, a figure is missing or not finite, or the STL
            accuracy or EO violation of a task that did not collapse is 0 (the ratio is undefined; a perfectly fair
            STL model cannot be a reference for AREO).
    """
    if set(mtl) != set(stl):
        raise ValueError(
            f"MTL and STL results must cover the same tasks: only in MTL {sorted(set(mtl) - set(stl))}, "
            f"only in STL {sorted(set(stl) - set(mtl))}"
        )
    if not mtl:
        raise ValueError("relative_scores needs at least one task")
    results: dict[str, float] = {}
    collapsed = {task: task_is_collapsed(mtl[task]) or task_is_collapsed(stl[task]) for task in mtl}
    for task in mtl:
        ratios = _ratios(task, mtl[task], stl[task], collapsed[task])
        results[task_key(task, "relative_accuracy")], results[task_key(task, "relative_eo_violation")] = ratios
        results[task_key(task, "collapsed")] = float(collapsed[task])
    kept = [task for task in mtl if not collapsed[task]]
    for name, figure in (("ARA", "accuracy"), ("AREO", "eo_violation")):
        results[name] = _mean([results[task_key(task, f"relative_{figure}")] for task in mtl])
        results[f"{name}_{WITHOUT_COLLAPSED}"] = _mean([results[task_key(task, f"relative_{figure}")] for task in kept])
    results["num_collapsed_tasks"] = float(sum(collapsed.values()))
    return results
