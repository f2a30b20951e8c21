"""Plot of the teacher's decision inputs: look-ahead rewards and Q-values over training beside the decisions.

Takes plain dicts (a trainer's `state.log_history`, or a `TeacherCallback.diagnostics` list: both carry `step` and
the `teacher_{task}_*` keys of `hf_fairmtl.teacher.diagnostics`); matplotlib is imported only when plotting.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .diagnostics import ACTION_NAMES, diagnostic_key
from .settings import FAIRNESS_ACTION

ACTION_COLORS = {"accuracy": "#4c72b0", "fairness": "#dd8452"}
_REWARD_SUFFIX = "_reward_accuracy"


def diagnostic_tasks(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Task names that have reward diagnostics in `records`, in order of first appearance."""
    tasks: list[str] = []
    for record in records:
        for key in record:
            if key.startswith("teacher_") and key.endswith(_REWARD_SUFFIX):
                task = key[len("teacher_") : -len(_REWARD_SUFFIX)]
                if task not in tasks:
                    tasks.append(task)
    return tasks


def diagnostic_series(records: Sequence[Mapping[str, Any]], task: str, name: str) -> tuple[list[int], list[float]]:
    """`(steps, values)` of one per-task diagnostic over the records that have a finite value for it."""
    key = diagnostic_key(task, name)
    points = [
        (int(record["step"]), float(record[key]))
        for record in records
        if "step" in record and isinstance(record.get(key), int | float) and math.isfinite(float(record[key]))
    ]
    return [step for step, _ in points], [value for _, value in points]


def _decision_strip(ax: Any, history: Sequence[tuple[int, Sequence[int]]], index: int, end: int) -> None:
    """Shade the optimizer steps trained on the fairness loss (each decision holds until the next one)."""
    steps = [int(step) for step, _ in history] + [end]
    for (step, actions), stop in zip(history, steps[1:], strict=True):
        color = ACTION_COLORS[ACTION_NAMES[int(actions[index])]]
        ax.axvspan(int(step), max(stop, int(step) + 1), color=color, linewidth=0)
    ax.set_yticks([])
    share = sum(int(actions[index]) == FAIRNESS_ACTION for _, actions in history) / max(len(history), 1)
    ax.set_ylabel(f"{100 * share:.0f}%\nfair", fontsize=7, rotation=0, labelpad=14, va="center")


def plot_teacher_diagnostics(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    history: Sequence[tuple[int, Sequence[int]]] | None = None,
    tasks: Sequence[str] | None = None,
    history_tasks: Sequence[str] | None = None,
    title: str = "Teacher: look-ahead rewards and Q-values",
    max_tasks: int = 6,
) -> Path | None:
    """Per task: the reward of each action, both Q-values and the decisions over training, saved to `path`.

    Args:
        records: Dicts with `step` and `teacher_{task}_reward_*` / `teacher_{task}_q_*` keys (log history entries
            or `TeacherCallback.diagnostics`).
        path: Image file to write (parent folders are created).
        history: The teacher's decisions `(step, [action per task])`, drawn as a strip under each task; `None`
            uses the records' `teacher_{task}_action` where present.
        tasks: Tasks to draw, in order (default: every task with reward diagnostics, at most `max_tasks`).
        history_tasks: The task order of `history`'s action lists (default: the tasks found in `records`).
        title: Figure title.
        max_tasks: Most tasks drawn.

    Returns:
        The path written, or `None` when the records hold no teacher diagnostics.
    """
    found = diagnostic_tasks(records)
    tasks = list(tasks if tasks is not None else found)[:max_tasks]
    if not tasks:
        return None
    history_tasks = list(history_tasks if history_tasks is not None else found)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    end = max([int(r["step"]) for r in records if "step" in r] + [int(s) for s, _ in history or []] + [1])
    fig, axes = plt.subplots(
        3 * len(tasks), 1, figsize=(9, 3.2 * len(tasks)), sharex=True, height_ratios=[3, 3, 0.6] * len(tasks)
    )
    for t, task in enumerate(tasks):
        reward_ax, q_ax, strip_ax = axes[3 * t : 3 * t + 3]
        for name, color in ACTION_COLORS.items():
            reward_ax.plot(*diagnostic_series(records, task, f"reward_{name}"), color=color, lw=1, label=name)
            q_ax.plot(*diagnostic_series(records, task, f"q_{name}"), color=color, lw=1, label=name)
        for ax, label in ((reward_ax, "reward"), (q_ax, "Q(s, a)")):
            ax.axhline(0.0, color="0.6", lw=0.5)
            ax.set_ylabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
        reward_ax.set_title(task, fontsize=9, loc="left")
        reward_ax.legend(fontsize=7, loc="upper right", ncol=2)
        if history is not None and task in history_tasks:
            _decision_strip(strip_ax, history, history_tasks.index(task), end)
        else:
            steps, actions = diagnostic_series(records, task, "action")
            if steps:
                _decision_strip(strip_ax, [(s, [int(a)]) for s, a in zip(steps, actions, strict=True)], 0, end)
    axes[-1].set_xlabel("optimizer step", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
