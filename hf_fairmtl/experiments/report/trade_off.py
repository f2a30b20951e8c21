"""The report's first plot: accuracy vs EO violation per task, every method (and sweep point) as a point.

Each method family (`weighted`, with its sweep points `weighted[λ=1]`, `weighted[λ=3]`, …) gets its Pareto front;
the point with the smallest distance to the utopia point (DTO, as fairlib defines it) on the **validation** rows is
circled at its held-out figures (on the held-out rows themselves only when the run has no validation figures, and
then the report says so). A point is the mean over seeds; it is *collapsed* (hollow, never on a front, never
recommended) when most of its seeds predicted one class for the task. On tabular data the run's fairlearn anchors
(`anchors.json`) are drawn as black marks: references on the same features, on no front and never the DTO pick.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...metrics.keys import attribute_key, task_key
from ..run_folder import RunResults
from ..sweeps import TradeOffPoint, plot_trade_off, recommend, split_method_name

EO_RANGE = 2.0
"""EO violation = |ΔTPR| + |ΔFPR| lies in [0, 2]: DTO's fairness axis is 1 − gap / 2."""


@dataclass(frozen=True)
class TradeOffPlot:
    """One trade-off plot of the report: its task, attribute, file and the DTO pick among the run's methods.

    `pick` is the picked method's held-out point; `picked_on` says which rows chose it (`"validation"`, or
    `"held-out"` for a run without validation figures).
    """

    task: str
    attribute: str
    path: Path
    pick: TradeOffPoint | None
    picked_on: str = "validation"


def _mean_point(
    method: str, label: str, accuracy: np.ndarray, gaps: np.ndarray, collapsed: np.ndarray, marker: str = ""
) -> TradeOffPoint | None:
    """The mean over seeds as one point; collapsed when most seeds collapsed; `None` without finite figures."""
    if not np.isfinite(gaps).any() or not np.isfinite(accuracy).any():
        return None
    return TradeOffPoint(
        method=method,
        accuracy=float(np.nanmean(accuracy)),
        gap=float(np.nanmean(gaps)),
        collapsed=bool(np.nanmean(np.nan_to_num(collapsed)) > 0.5) if collapsed.size else False,
        label=label,
        marker=marker,
    )


def trade_off_points(run: RunResults, task: str, attr: str, split: str = "test") -> list[TradeOffPoint]:
    """One point per method of the run for `task` and `attr` (mean over seeds), in run order, on the held-out
    (`split="test"`) or validation rows; a method without figures on that split has no point."""
    points = []
    for method in run.methods:
        point = _mean_point(
            split_method_name(method)[0],
            method,
            run.values(method, task_key(task, "accuracy"), split),
            run.values(method, attribute_key(task, attr, "eo_violation"), split),
            run.values(method, task_key(task, "collapsed"), split),
        )
        if point is not None:
            points.append(point)
    return points


def anchor_points(run: RunResults, task: str, attr: str) -> list[TradeOffPoint]:
    """One point per fairlearn anchor of the run for `task` and `attr` (mean over seeds), labelled for the legend."""
    from ..anchors import ANCHOR_LABELS, ANCHOR_MARKERS  # scikit-learn loads with the anchors module

    points = []
    for anchor in run.anchor_names:
        point = _mean_point(
            "fairlearn",
            ANCHOR_LABELS.get(anchor, anchor),
            run.anchor_values(anchor, task, attr, "accuracy"),
            run.anchor_values(anchor, task, attr, "eo_violation"),
            run.anchor_values(anchor, task, attr, "collapsed"),
            ANCHOR_MARKERS.get(anchor, ""),
        )
        if point is not None:
            points.append(point)
    return points


def dto_pick(run: RunResults, task: str, attr: str, points: list[TradeOffPoint]) -> tuple[int | None, str]:
    """Index in `points` (the held-out points) of the method DTO picks, and which rows picked it.

    The pick is made on the validation figures, so the held-out figures that report it were not used to choose it;
    a method without validation figures (e.g. `+thresholds` rows, fitted on the validation rows) is no candidate.
    Only a run without any validation figures falls back to the held-out points (`"held-out"`).
    """
    validation = trade_off_points(run, task, attr, split="validation")
    if not validation:
        return recommend(points, gap_range=EO_RANGE), "held-out"
    chosen = recommend(validation, gap_range=EO_RANGE)
    label = None if chosen is None else validation[chosen].label
    return next((i for i, point in enumerate(points) if point.label == label), None), "validation"


def plot_trade_offs(run: RunResults, plots_dir: str | os.PathLike) -> list[TradeOffPlot]:
    """One trade-off plot per task and attribute that has EO figures, in task order, with the run's anchors.

    The DTO pick ([`dto_pick`]) is chosen among the run's methods only (collapsed ones out); the anchors are never
    candidates.
    """
    plots = []
    for task in run.info.tasks:
        for attr in run.info.attributes:
            points = trade_off_points(run, task, attr)
            if not points:
                continue
            anchors = anchor_points(run, task, attr) if run.anchors else []
            name = f"trade_off_{task}_{attr}".replace("*", "x").replace("/", "_")
            title = f"{task}: held-out accuracy vs EO violation ({attr})"
            pick, picked_on = dto_pick(run, task, attr, points)
            path = plot_trade_off(
                points, Path(plots_dir) / f"{name}.png", title, anchors=anchors, pick=pick, gap_range=EO_RANGE
            )
            plots.append(TradeOffPlot(task, attr, path, None if pick is None else points[pick], picked_on))
    return plots
