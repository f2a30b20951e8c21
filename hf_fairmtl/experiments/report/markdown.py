"""`report.md` of a run directory (`hf-fairmtl report RUN_DIR`): settings, the summary table, collapsed tasks,
and the plots of [`plots`]."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...teacher.plots import plot_teacher_diagnostics
from ..run_folder import RunResults, load_run
from .plots import (
    PLOTS_DIR,
    percent,
    plot_accuracy_eo,
    plot_group_rates,
    plot_task_weights,
    plot_teacher_actions,
    plot_training_losses,
    safe_name,
)
from .table import anchor_rows, collapsed_cell, format_table, summary_rows
from .trade_off import TradeOffPlot, plot_trade_offs

REPORT_FILE = "report.md"


def write_report(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Render `report.md` and its plots for a run directory.

    Args:
        run_dir: A directory written by `hf-fairmtl train` or an example.
        output: Report path (default `RUN_DIR/report.md`); plots go to `plots/` next to it.

    Returns:
        The report path.
    """
    run = load_run(run_dir)
    report_path = Path(output) if output is not None else Path(run_dir) / REPORT_FILE
    plots = report_path.parent / PLOTS_DIR
    info = run.info
    lines = [f"# hf-fairmtl report: `{Path(run_dir).resolve().name}`", ""]
    if info.settings:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {key} | {_setting_text(value)} |" for key, value in info.settings.items()]
        lines.append("")
    trade_offs = plot_trade_offs(run, plots)
    if trade_offs:
        lines += [
            "## Accuracy vs fairness",
            "",
            "Every method (each sweep point too) on held-out rows, mean over seeds; the line joins each method's "
            "Pareto front, the red circle is the point closest to the utopia point (DTO), hollow points collapsed to "
            "one class (never counted fair)."
            + (
                " Black marks: fairlearn anchors on the same features (references: on no front, never the DTO pick)."
                if run.anchors
                else ""
            ),
            "",
            *[f"![{plot.path.stem}]({PLOTS_DIR}/{plot.path.name})" for plot in trade_offs],
            "",
            *_pick_lines(trade_offs),
        ]
    lines += [
        "## Held-out results",
        "",
        f"Methods: {', '.join(run.methods)}; seeds: {', '.join(str(s) for s in info.seeds)}. "
        "Mean over seeds (± standard deviation when there are several).",
        "",
        format_table(summary_rows(run), markdown=True),
        "",
        "*EO violation* = TPR gap + FPR gap, each the max − min over groups of the rate on held-out rows whose group "
        "is known (Roy & Ntoutsi 2022, Eq. 1); lower is fairer. Multi-class tasks: one-vs-rest gaps averaged over "
        "classes. *Balanced accuracy* is the mean recall over classes (0.5 for a constant binary predictor).",
        "",
        *_collapse_lines(run),
        *_anchor_lines(run),
    ]
    if info.task_notes:
        lines += [f"* `{task}`: {note}" for task, note in info.task_notes.items()] + [""]
    lines += [
        "## Accuracy and EO violation per method",
        "",
        f"![accuracy and EO violation]({PLOTS_DIR}/{plot_accuracy_eo(run, plots / 'accuracy_eo.png').name})",
        "",
    ]
    teacher_plot = plot_teacher_actions(run, plots / "teacher_actions.png")
    lines += ["## Teacher actions", ""]
    if teacher_plot is not None:
        lines += [
            "Which loss the L2T-FMT teacher chose for each task between decisions (the choice holds until the next "
            "decision); the percentage is the share of decisions for the fairness loss.",
            "",
            f"![teacher actions]({PLOTS_DIR}/{teacher_plot.name})",
            "",
        ]
        for result in run.results:
            if result.teacher and result.teacher.get("summary"):
                shares = ", ".join(f"{t}: {percent(v)}" for t, v in result.teacher["summary"].items())
                lines.append(f"* {result.method}, seed {result.seed}: fairness-loss decisions {shares}")
        lines.append("")
        first = next(r for r in run.results if r.teacher and r.teacher.get("history"))
        diagnostics = plot_teacher_diagnostics(
            first.log_history,
            plots / "teacher_diagnostics.png",
            history=first.teacher["history"],
            tasks=first.teacher["tasks"],
            history_tasks=first.teacher["tasks"],
            title=f"Teacher diagnostics: {first.method}, seed {first.seed}",
        )
        if diagnostics is not None:
            lines += [
                "Why the teacher decided as it did (first teacher run): the look-ahead reward of each action and both "
                "Q-values over training (means over each logging window), above the decisions.",
                "",
                f"![teacher diagnostics]({PLOTS_DIR}/{diagnostics.name})",
                "",
            ]
    else:
        lines += ["No method of this run used the teacher.", ""]
    lines += ["## Per-group TPR and FPR", ""]
    for task in info.tasks:
        plot = plot_group_rates(run, task, plots / f"group_rates_{safe_name(task)}.png")
        if plot is not None:
            lines += [f"![{task}]({PLOTS_DIR}/{plot.name})", ""]
    weights_plot = plot_task_weights(run, plots / "task_weights.png")
    lines += ["## Task weights", ""]
    if weights_plot is not None:
        lines += [f"![task weights]({PLOTS_DIR}/{weights_plot.name})", ""]
    else:
        lines += ["No method of this run logged adaptive task weights (GradNorm, uncertainty, DWA).", ""]
    loss_plot = plot_training_losses(run, plots / "training_losses.png")
    if loss_plot is not None:
        lines += ["## Training losses", "", f"![training losses]({PLOTS_DIR}/{loss_plot.name})", ""]
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text("\n".join(lines))
    return report_path


def _collapse_lines(run: RunResults) -> list[str]:
    """A warning paragraph naming every method and task that collapsed to one class on some seed."""
    # One entry per method and task (the summary has a row per attribute).
    cases = dict.fromkeys(
        f"`{row['method']}` on `{row['task']}` ({collapsed_cell(row)} seeds)"
        for row in summary_rows(run)
        if row["collapsed_seeds"]
    )
    if not cases:
        return []
    return [
        "**Collapsed tasks** (one class predicted for at least 95 % of the held-out rows; their small gaps are not "
        "evidence of fairness): " + "; ".join(cases) + ".",
        "",
    ]


def _pick_lines(plots: list[TradeOffPlot]) -> list[str]:
    """One line per trade-off plot naming its DTO pick (a method of the run, never an anchor)."""
    lines = []
    for plot in plots:
        pick = plot.pick
        text = (
            f"`{pick.label or pick.method}` (held-out accuracy {pick.accuracy:.3f}, EO violation {pick.gap:.3f})"
            if pick is not None
            else "none (every method collapsed)"
        )
        basis = (
            "chosen on the validation rows"
            if plot.picked_on == "validation"
            else "chosen on the held-out rows themselves (no validation figures in this run: optimistic)"
        )
        lines.append(f"* DTO pick, `{plot.task}` / `{plot.attribute}` ({basis}): {text}")
    return lines + ([""] if lines else [])


def _anchor_lines(run: RunResults) -> list[str]:
    """The table of the run's fairlearn anchors (a section of its own) and the notes on what was left out."""
    if not run.anchors and not run.anchor_notes:
        return []
    lines = ["### fairlearn anchors on the same features", ""]
    if run.anchors:
        from ..anchors import ANCHOR_TITLES  # scikit-learn loads with the anchors module

        lines += [
            "Reference baselines a user would try first, on the same tabular features, train rows and held-out rows "
            "(ThresholdOptimizer fits its thresholds on the validation rows); not methods of this run: never on a "
            "Pareto front, never the DTO pick. Mean over the run's seeds (the randomised predictions differ).",
            "",
            format_table(anchor_rows(run, ANCHOR_TITLES), markdown=True, first_column="anchor"),
            "",
        ]
    lines += [f"* {note}" for note in run.anchor_notes]
    return lines + ([""] if run.anchor_notes else [])


def _setting_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, default=str) + "`"
    return str(value).replace("|", "\\|")


def summarize_run(run_dir: str | os.PathLike, report: bool = True) -> str:
    """The summary table of a run directory (and, with `report`, the path of the freshly written report).

    Call it on the main process only (e.g. `if PartialState().is_main_process: print(summarize_run(dir))`).
    """
    run = load_run(run_dir)
    text = format_table(summary_rows(run))
    if run.anchors:
        from ..anchors import ANCHOR_LABELS  # scikit-learn loads with the anchors module

        rows = anchor_rows(run, ANCHOR_LABELS)
        text += "\n\nfairlearn anchors on the same features (references):\n" + format_table(rows, first_column="anchor")
    if report:
        text += f"\nreport: {write_report(run_dir)}"
    return text
