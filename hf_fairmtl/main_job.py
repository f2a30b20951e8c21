"""Deprecated: moved to `hf_fairmtl.experiments` (arguments, datasets, methods, models, runner); this module only
re-exports the public names for code written against it and will be removed."""

import warnings

from .experiments import (  # noqa: F401
    DEFAULT_DATASET,
    DEFAULT_METHODS,
    EVAL_RESULTS_FILE,
    MODALITY_DEFAULTS,
    PACKAGED_ENCODER_HUB_ID,
    DataArguments,
    ExperimentArguments,
    ModelArguments,
    build_datasets,
    default_encoder_path,
    describe_method,
    evaluate_checkpoint,
    load_splits,
    method_arguments,
    model_factory,
    parse_method,
    read_table,
    resolve_training_kwargs,
    run_experiment,
    task_notes,
)

warnings.warn("hf_fairmtl.main_job moved to hf_fairmtl.experiments", DeprecationWarning, stacklevel=2)
