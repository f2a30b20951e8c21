"""Deprecated: moved to `hf_fairmtl.experiments.run_folder` (run directories) and `hf_fairmtl.experiments.report`
(table, plots, `report.md`); this module only re-exports the public names and will be removed."""

import warnings

from .experiments.report import (  # noqa: F401
    PLOTS_DIR,
    REPORT_FILE,
    TABLE_METRICS,
    format_table,
    group_rates,
    plot_accuracy_eo,
    plot_gradnorm_weights,
    plot_group_rates,
    plot_task_weights,
    plot_teacher_actions,
    plot_training_losses,
    summarize_run,
    summary_rows,
    write_report,
)
from .experiments.run_folder import (  # noqa: F401
    LOG_HISTORY_FILE,
    METRICS_FILE,
    RUN_FILE,
    TEACHER_FILE,
    MethodResult,
    RunInfo,
    RunResults,
    load_run,
    method_dir,
    save_method_result,
    save_trainer_result,
    write_run_info,
)

warnings.warn(
    "hf_fairmtl.report moved to hf_fairmtl.experiments (run_folder, report)", DeprecationWarning, stacklevel=2
)
