"""The summary table of a run: per method × task × attribute, accuracy, balanced accuracy, the gaps and the
collapse flag, mean ± std over seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...metrics import GAP_METRIC_TITLES
from ...metrics.keys import attribute_key, task_key
from ..run_folder import RunResults

# Columns of the summary table: (metric key, title).
TASK_COLUMNS = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."))
TABLE_METRICS = tuple((key, GAP_METRIC_TITLES[key]) for key in ("eo_violation", "tpr_gap", "fpr_gap"))
COLLAPSED_COLUMN = "collapsed"
COLLAPSE_NOTE = (
    "collapsed: one class predicted for at least 95 % of the held-out rows (seeds that did / seeds); "
    "its small gaps are not evidence of fairness"
)
MISSING = "–"


def summary_rows(run: RunResults) -> list[dict[str, Any]]:
    """One row per method x task x attribute: accuracy, balanced accuracy and the gaps, mean and std over seeds.

    Each row has `method`, `task`, `attribute`, `seeds` (count), `collapsed_seeds` (seeds whose predictions for
    the task collapsed to one class; `None` when the runs do not record it) and, for every metric of
    `TASK_COLUMNS` and `TABLE_METRICS`, `{metric}` (mean) and `{metric}_std` (NaN with one seed).
    """
    rows = []
    for method in run.methods:
        for task in run.info.tasks:
            task_values = {key: run.values(method, task_key(task, key)) for key, _ in TASK_COLUMNS}
            collapsed = run.values(method, task_key(task, "collapsed"))
            recorded = collapsed[~np.isnan(collapsed)]
            attributes = [a for a in run.info.attributes if run.has(method, attribute_key(task, a, "eo_violation"))]
            for attr in attributes or [None]:
                row: dict[str, Any] = {"method": method, "task": task, "attribute": attr or MISSING}
                row["seeds"] = len(task_values["accuracy"])
                row["collapsed_seeds"] = int(recorded.sum()) if recorded.size else None
                for key, values in task_values.items():
                    row[key], row[f"{key}_std"] = _mean_std(values)
                for key, _ in TABLE_METRICS:
                    values = run.values(method, attribute_key(task, attr, key)) if attr else np.array([math.nan])
                    row[key], row[f"{key}_std"] = _mean_std(values)
                rows.append(row)
    return rows


def anchor_rows(run: RunResults, titles: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The rows of the run's reference baselines (`anchors.json`) in the shape of [`summary_rows`].

    One row per task x attribute x anchor that has results; `method` is the anchor's title from `titles` (its name
    when absent); `collapsed_seeds` counts the seeds whose predictions collapsed to one class.
    """
    rows = []
    for task in run.info.tasks:
        for attr in run.info.attributes:
            for anchor in run.anchor_names:
                accuracy = run.anchor_values(anchor, task, attr, "accuracy")
                if not accuracy.size:
                    continue
                collapsed = run.anchor_values(anchor, task, attr, "collapsed")
                row: dict[str, Any] = {"method": (titles or {}).get(anchor, anchor), "task": task, "attribute": attr}
                row["seeds"] = int(accuracy.size)
                row["collapsed_seeds"] = int(np.nansum(collapsed)) if np.isfinite(collapsed).any() else None
                for key, _ in (*TASK_COLUMNS, *TABLE_METRICS):
                    row[key], row[f"{key}_std"] = _mean_std(run.anchor_values(anchor, task, attr, key))
                rows.append(row)
    return rows


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not values.size:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return MISSING
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def collapsed_cell(row: Mapping[str, Any]) -> str:
    """`no`, `yes` (every seed), `k/n` (some seeds) or `–` (not recorded)."""
    count = row.get("collapsed_seeds")
    if count is None:
        return MISSING
    if count == 0:
        return "no"
    return "yes" if count == row["seeds"] else f"{count}/{row['seeds']}"


def format_table(rows: Sequence[Mapping[str, Any]], markdown: bool = False, first_column: str = "method") -> str:
    """The summary rows as an aligned text table (or a Markdown table).

    Mean over seeds, `± std` when there are several; a note under the table when a task collapsed. `first_column`
    titles the `method` column (e.g. `"anchor"` for [`anchor_rows`]).
    """
    columns = (*TASK_COLUMNS, *TABLE_METRICS)
    header = [first_column, "task", "attribute"] + [title for _, title in columns] + [COLLAPSED_COLUMN]
    body = [
        [str(row["method"]), str(row["task"]), str(row["attribute"])]
        + [_cell(row[key], row[f"{key}_std"]) for key, _ in columns]
        + [collapsed_cell(row)]
        for row in rows
    ]
    note = [COLLAPSE_NOTE] if any(row.get("collapsed_seeds") for row in rows) else []
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines + ([""] + [f"*{text}*" for text in note] if note else []))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        # Text columns left-aligned, numbers right-aligned.
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(cells) for cells in body), *note])
