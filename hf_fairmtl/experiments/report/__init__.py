"""The report of a run directory: [`table`] (summary rows and the text/Markdown table), [`plots`] (matplotlib
figures) and [`markdown`] (`report.md`)."""

from .markdown import REPORT_FILE, summarize_run, write_report
from .plots import (
    PLOTS_DIR,
    group_rates,
    plot_accuracy_eo,
    plot_gradnorm_weights,
    plot_group_rates,
    plot_task_weights,
    plot_teacher_actions,
    plot_training_losses,
)
from .table import TABLE_METRICS, format_table, summary_rows

__all__ = [
    "PLOTS_DIR",
    "REPORT_FILE",
    "TABLE_METRICS",
    "format_table",
    "group_rates",
    "plot_accuracy_eo",
    "plot_gradnorm_weights",
    "plot_group_rates",
    "plot_task_weights",
    "plot_teacher_actions",
    "plot_training_losses",
    "summarize_run",
    "summary_rows",
    "write_report",
]
