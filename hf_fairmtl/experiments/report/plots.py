"""The report's plots (matplotlib, Agg backend through `Figure`, so no display and no pyplot state).

Per-task accuracy and EO-violation box plots per method over seeds (L2T-FMT paper, Figs. 3-5), the teacher's
action map task x step (Fig. 6), per-group TPR and FPR bars, GradNorm task weights and the per-task training
losses over steps. Every metric key is built with `hf_fairmtl.metrics.keys`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...metrics.keys import EVAL_PREFIX, attribute_key, group_key, loss_key, task_key, weight_key, without_prefix
from ..run_folder import MethodResult, RunResults, as_number

PLOTS_DIR = "plots"
ACTION_COLORS = ("#9ecae1", "#e6550d")  # accuracy loss, fairness loss


def _subplots(rows: int, cols: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, np.ndarray]:
    """A figure and its axes grid without pyplot: no global backend state, no display (drawn by Agg on save).

    Constrained layout is computed while saving, so each figure is drawn once (tight_layout draws twice).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs)


def _palette() -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"]


def _method_colors(methods: Sequence[str]) -> dict[str, Any]:
    palette = _palette()
    return {method: palette(i % 10) for i, method in enumerate(methods)}


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "x" if c == "*" else "_" for c in name)


def _draw_seeds(ax: Any, run: RunResults, methods: Sequence[str], colors: dict[str, Any], task: str, key: str) -> bool:
    """Box plot of `key` over seeds per method, every seed a dot; a seed whose task collapsed is a black ×.

    Returns whether anything was drawn.
    """
    rng = np.random.default_rng(0)
    positions = np.arange(1, len(methods) + 1)
    data = [(run.values(method, key), run.values(method, task_key(task, "collapsed"))) for method in methods]
    shown = [i for i, (values, _) in enumerate(data) if (~np.isnan(values)).any()]
    if not shown:
        return False
    boxes = ax.boxplot(
        [data[i][0][~np.isnan(data[i][0])] for i in shown],
        positions=positions[shown],
        widths=0.55,
        patch_artist=True,
        medianprops={"color": "black"},
        showfliers=False,
    )
    for patch, i in zip(boxes["boxes"], shown, strict=True):
        patch.set_facecolor(colors[methods[i]])
        patch.set_alpha(0.45)
    for i in shown:
        values, collapsed = data[i]
        keep = ~np.isnan(values)
        jitter = rng.uniform(-0.12, 0.12, keep.sum()) if keep.sum() > 1 else np.zeros(keep.sum())
        x, y, flat = positions[i] + jitter, values[keep], collapsed[keep] == 1.0
        ax.scatter(x[~flat], y[~flat], color=colors[methods[i]], s=18, zorder=3)
        ax.scatter(x[flat], y[flat], color="black", marker="x", s=30, zorder=4)
    return True


def plot_accuracy_eo(run: RunResults, path: str | os.PathLike) -> Path:
    """Box plots per task: accuracy and EO violation (per attribute) per method, over seeds.

    One row per task; columns: accuracy, then one EO-violation panel per attribute. Every seed is also drawn
    as a dot, so a single-seed run still shows its value; a seed whose task collapsed to one class (its small EO
    violation is no evidence of fairness) is drawn as a black ×.
    """
    methods = run.methods
    colors = _method_colors(methods)
    tasks = run.info.tasks
    attributes = [
        a
        for a in run.info.attributes
        if any(run.has(m, attribute_key(t, a, "eo_violation")) for m in methods for t in tasks)
    ]
    panels = [("accuracy", None)] + [("eo_violation", attr) for attr in attributes]
    fig, axes = _subplots(len(tasks), len(panels), figsize=(3.2 * len(panels) + 0.6, 2.6 * len(tasks) + 0.6))
    for row, task in enumerate(tasks):
        for col, (metric, attr) in enumerate(panels):
            ax = axes[row][col]
            key = task_key(task, "accuracy") if attr is None else attribute_key(task, attr, metric)
            if not _draw_seeds(ax, run, methods, colors, task, key):
                ax.text(0.5, 0.5, "no labelled groups", ha="center", va="center", transform=ax.transAxes, color="gray")
            ax.set_xticks(np.arange(1, len(methods) + 1))
            ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
            title = "accuracy ↑" if attr is None else f"EO violation ({attr}) ↓"
            ax.set_title(f"{task}: {title}", fontsize=9)
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(axis="y", alpha=0.3)
    seeds = len(run.info.seeds)
    fig.suptitle(
        f"Held-out accuracy and EO violation per method ({seeds} seed{'s' if seeds != 1 else ''}; "
        "× = task collapsed to one class)",
        fontsize=11,
    )
    return _save(fig, path)


def plot_teacher_actions(run: RunResults, path: str | os.PathLike, max_panels: int = 4) -> Path | None:
    """The teacher's action map (L2T-FMT Fig. 6): task x decision step, accuracy vs fairness loss.

    One panel per teacher run (method x seed, at most `max_panels`). Returns `None` when no run has a teacher.
    """
    runs = [r for r in run.results if r.teacher and r.teacher.get("history")][:max_panels]
    if not runs:
        return None
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    height = 0.55 * sum(len(r.teacher["tasks"]) for r in runs) + 1.4 * len(runs)
    fig, axes = _subplots(len(runs), 1, figsize=(9, height))
    cmap = ListedColormap(ACTION_COLORS)
    for ax, result in zip(axes[:, 0], runs, strict=True):
        tasks = result.teacher["tasks"]
        history = result.teacher["history"]
        steps = [int(step) for step, _ in history]
        grid = np.array([[int(a) for a in actions] for _, actions in history], dtype=float).T  # [T, decisions]
        # Each decision holds until the next one, so cells span real optimizer steps; the last one holds until the end
        # of training (a decision taken at the last step is never used and gets no width).
        logged = [int(e["step"]) for e in result.log_history if "step" in e]
        end = max(logged) if logged else steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1)
        edges = np.array(steps + [max(end, steps[-1])], dtype=float)
        ax.pcolormesh(edges, np.arange(len(tasks) + 1) - 0.5, grid, cmap=cmap, vmin=0, vmax=1)
        ax.set_ylim(len(tasks) - 0.5, -0.5)
        ax.set_yticks(range(len(tasks)))
        summary = result.teacher.get("summary") or {}
        ax.set_yticklabels([f"{t} ({percent(summary.get(t))} fair)" for t in tasks], fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.set_title(f"{result.method}, seed {result.seed}", fontsize=9)
    fig.legend(
        handles=[
            Patch(color=ACTION_COLORS[0], label="accuracy loss"),
            Patch(color=ACTION_COLORS[1], label="fairness loss"),
        ],
        loc="outside upper right",
        fontsize=8,
        ncol=2,
    )
    fig.suptitle("Teacher actions per task", fontsize=11)
    return _save(fig, path)


def percent(value: Any) -> str:
    value = as_number(value)
    return "–" if math.isnan(value) else f"{100 * value:.0f}%"


def group_rates(run: RunResults, method: str, task: str, attr: str) -> dict[str, np.ndarray]:
    """Per-group TPR and FPR of one method, task and attribute, over seeds: `{"tpr": [S, G], "fpr": [S, G]}`.

    Multi-class tasks: the mean over classes of the one-vs-rest rates (classes where a group has no
    positives, or no negatives, are skipped), i.e. the group's macro recall and macro false-positive rate.
    """
    groups = run.info.group_names[attr]
    classes = run.info.num_labels[task]
    out = {}
    for rate in ("tpr", "fpr"):
        per_seed = []
        for result in run.of(method):
            row = []
            for group in groups:
                class_ids = [None] if classes == 2 else list(range(classes))
                keys = [group_key(task, attr, rate, group, c, prefix=EVAL_PREFIX) for c in class_ids]
                values = np.array([as_number(result.metrics.get(k)) for k in keys])
                row.append(np.nanmean(values) if (~np.isnan(values)).any() else math.nan)
            per_seed.append(row)
        out[rate] = np.array(per_seed, dtype=float).reshape(len(per_seed), len(groups))
    return out


def plot_group_rates(run: RunResults, task: str, path: str | os.PathLike) -> Path | None:
    """Bars of per-group TPR and FPR per method (mean over seeds, std as error bar), one row per attribute."""
    attributes = [
        a for a in run.info.attributes if any(run.has(m, attribute_key(task, a, "eo_violation")) for m in run.methods)
    ]
    if not attributes:
        return None
    colors = _method_colors(run.methods)
    widest = max(len(run.info.group_names[a]) for a in attributes)
    width_inches = min(max(7.0, 1.0 + 0.25 * widest * len(run.methods) * 2), 14.0)
    fig, axes = _subplots(len(attributes), 2, figsize=(width_inches, 2.9 * len(attributes) + 0.7))
    multi = run.info.num_labels[task] > 2
    for row, attr in enumerate(attributes):
        methods = [m for m in run.methods if run.has(m, attribute_key(task, attr, "eo_violation"))]
        groups = run.info.group_names[attr]
        width = 0.8 / len(methods)
        for ax, rate in zip(axes[row], ("tpr", "fpr"), strict=True):
            x = np.arange(len(groups))
            for i, method in enumerate(methods):
                values = group_rates(run, method, task, attr)[rate]
                mean = np.array([np.nanmean(c) if (~np.isnan(c)).any() else np.nan for c in values.T])
                std = np.array([np.nanstd(c, ddof=1) if (~np.isnan(c)).sum() > 1 else 0.0 for c in values.T])
                ax.bar(
                    x + (i - (len(methods) - 1) / 2) * width,
                    np.nan_to_num(mean),
                    width,
                    yerr=std,
                    label=method if row == 0 else None,
                    color=colors[method],
                    capsize=2,
                    error_kw={"ecolor": "#555555", "elinewidth": 0.8},
                )
            ax.set_xticks(x)
            tilt = len(groups) > 3
            ax.set_xticklabels(groups, rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
            name = rate.upper() + (" (macro over classes)" if multi else "")
            ax.set_title(f"{name} per {attr} group", fontsize=9)
            ax.set_ylim(0, 1.05)
            ax.grid(axis="y", alpha=0.3)
            ax.tick_params(axis="y", labelsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=min(len(handles), 5), frameon=False)
    fig.suptitle(f"{task}: per-group rates on held-out rows", fontsize=10)
    return _save(fig, path)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(entry["step"], as_number(entry[key])) for entry in history if key in entry and "step" in entry]
    if not points:
        return np.empty(0), np.empty(0)
    steps, values = zip(*points, strict=True)
    return np.array(steps, dtype=float), np.array(values, dtype=float)


def _training_entries(result: MethodResult) -> list[dict[str, Any]]:
    # Training logs only: evaluation entries carry the same names with an `eval_` prefix.
    return [e for e in result.log_history if not any(without_prefix(k, EVAL_PREFIX) is not None for k in e)]


def _logged_weighting(result: MethodResult, tasks: Sequence[str]) -> str | None:
    """The registered task weighting whose weights a run logged (`{task}_{weighting}_weight`), if any."""
    from ...weighting import WEIGHTINGS  # the registry imports torch modules; only needed when plotting

    entries = _training_entries(result)
    for name in WEIGHTINGS:
        if any(_series(entries, weight_key(task, name))[0].size for task in tasks):
            return name
    return None


def plot_task_weights(run: RunResults, path: str | os.PathLike) -> Path | None:
    """Task weights over training steps (GradNorm, uncertainty, DWA, ... whichever the method logged), one panel
    per method that logged any (all seeds drawn); `None` when no method did."""
    tasks = run.info.tasks
    panels = [(m, name) for m in run.methods if (name := _logged_weighting(run.of(m)[0], tasks)) is not None]
    if not panels:
        return None
    palette = _palette()
    fig, axes = _subplots(1, len(panels), figsize=(4.6 * len(panels), 3.2), sharey=True)
    for ax, (method, weighting) in zip(axes[0], panels, strict=True):
        for t, task in enumerate(tasks):
            for k, result in enumerate(run.of(method)):
                steps, weights = _series(_training_entries(result), weight_key(task, weighting))
                ax.plot(
                    steps,
                    weights,
                    color=palette(t % 10),
                    alpha=0.9 if k == 0 else 0.4,
                    label=task if k == 0 else None,
                    marker="." if steps.size < 30 else None,
                )
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_title(f"{method} ({weighting})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("task weight", fontsize=8)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Task weights", fontsize=10)
    return _save(fig, path)


plot_gradnorm_weights = plot_task_weights
"""Former name of [`plot_task_weights`] (it plots any logged task weighting now)."""


def plot_training_losses(run: RunResults, path: str | os.PathLike) -> Path | None:
    """Per-task accuracy (solid) and fairness (dashed) training losses over steps, one panel per method."""
    tasks = run.info.tasks
    methods = [m for m in run.methods if any(_training_entries(r) for r in run.of(m))]
    if not methods:
        return None
    palette = _palette()
    fig, axes = _subplots(1, len(methods), figsize=(4.6 * len(methods), 3.2))
    drawn = False
    for ax, method in zip(axes[0], methods, strict=True):
        result = run.of(method)[0]  # the first seed: several seeds on one panel are unreadable
        for t, task in enumerate(tasks):
            for kind, style in (("accuracy", "-"), ("fairness", "--")):
                steps, values = _series(_training_entries(result), loss_key(task, kind))
                if steps.size:
                    drawn = True
                    ax.plot(
                        steps,
                        values,
                        style,
                        color=palette(t % 10),
                        label=f"{task} {kind}",
                        marker="." if steps.size < 30 else None,
                    )
        ax.set_title(f"{method} (seed {result.seed})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    if not drawn:
        return None
    fig.suptitle("Training losses per task (solid: accuracy, dashed: fairness)", fontsize=10)
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Figure.savefig draws with the Agg canvas for PNG.
    fig.savefig(path, dpi=110)
    return path
