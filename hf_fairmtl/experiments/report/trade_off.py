"""The report's first plot: accuracy vs EO violation per task, every method (and sweep point) as a point.

Each method family (`weighted`, with its sweep points `weighted[λ=1]`, `weighted[λ=3]`, …) gets its Pareto front;
the point with the smallest distance to the utopia point (DTO, as fairlib defines it) is circled. A point is the
mean over seeds; it is *collapsed* (hollow, never on a front, never recommended) when most of its seeds predicted
one class for the task.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ...metrics.keys import attribute_key, task_key
from ..run_folder import RunResults
from ..sweeps import TradeOffPoint, plot_trade_off, split_method_name


def trade_off_points(run: RunResults, task: str, attr: str) -> list[TradeOffPoint]:
    """One point per method of the run for `task` and `attr` (mean over seeds), in run order."""
    points = []
    for method in run.methods:
        accuracy = float(np.nanmean(run.values(method, task_key(task, "accuracy"))))
        gaps = run.values(method, attribute_key(task, attr, "eo_violation"))
        if not np.isfinite(gaps).any() or not math.isfinite(accuracy):
            continue
        collapsed = run.values(method, task_key(task, "collapsed"))
        points.append(
            TradeOffPoint(
                method=split_method_name(method)[0],
                accuracy=accuracy,
                gap=float(np.nanmean(gaps)),
                collapsed=bool(np.nanmean(np.nan_to_num(collapsed)) > 0.5),
                label=method,
            )
        )
    return points


def plot_trade_offs(run: RunResults, plots_dir: str | os.PathLike) -> list[Path]:
    """One trade-off plot per task and attribute that has EO figures; the paths in task order."""
    paths = []
    for task in run.info.tasks:
        for attr in run.info.attributes:
            points = trade_off_points(run, task, attr)
            if not points:
                continue
            name = f"trade_off_{task}_{attr}".replace("*", "x").replace("/", "_")
            title = f"{task}: held-out accuracy vs EO violation ({attr})"
            # EO violation = |ΔTPR| + |ΔFPR| lies in [0, 2]: DTO's fairness axis is 1 − gap / 2.
            paths.append(plot_trade_off(points, Path(plots_dir) / f"{name}.png", title, gap_range=2.0))
    return paths
