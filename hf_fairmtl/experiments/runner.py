"""Running an experiment (`hf-fairmtl train`): every method x seed on the same data, the run folder, the report;
and evaluating a saved model (`hf-fairmtl evaluate`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from transformers import set_seed

from ..cards import write_model_card
from ..configuration_fairmtl import FairMTLConfig
from ..data import SourceSplits, build_multitask_dataset
from ..losses.task_losses import class_counts, default_task_losses
from ..modeling_fairmtl import FairMTLModel
from ..trainer import FairMTLTrainer, FairMTLTrainingArguments
from .arguments import DataArguments, ExperimentArguments, ModelArguments
from .datasets import load_packaged
from .files import file_splits
from .methods import DEFAULT_METHODS, describe_method, method_arguments
from .models import PACKAGED_ENCODER_HUB_ID, model_factory, uses_packaged_encoder
from .report import format_table, summarize_run, summary_rows
from .run_folder import (
    MethodResult,
    RunInfo,
    RunResults,
    load_run,
    method_dir,
    save_method_result,
    save_trainer_result,
    write_anchors,
    write_json,
    write_run_info,
)
from .thresholds import THRESHOLDS_SUFFIX, thresholds_metrics

EVAL_RESULTS_FILE = "eval_results.json"


def load_splits(data_args: DataArguments, feature_encoding: Mapping[str, Any] | None = None) -> SourceSplits:
    """Train/test sources for the data arguments (a packaged dataset of `PACKAGED_DATASETS`, or files).

    Args:
        data_args: The data settings.
        feature_encoding: Tabular files only: encode with this fitted encoding (a saved model's) instead of
            fitting one on the training files.
    """
    if data_args.uses_files:
        return file_splits(data_args, feature_encoding)
    return load_packaged(data_args)


def task_notes(splits: SourceSplits) -> dict[str, str]:
    """Which demographic labels each task's training rows carry (the point of the transfer setting)."""
    notes = {}
    for task in splits.tasks:
        attributes = sorted({a for s in splits.train_sources if task in s.tasks for a in s.attributes})
        notes[task] = (
            f"trained with demographic labels: {', '.join(attributes)}"
            if attributes
            else "trained WITHOUT demographic labels (groups known only on held-out rows)"
        )
    return notes


def build_datasets(
    splits: SourceSplits, config: FairMTLConfig, tokenizer: Any, data_args: DataArguments
) -> tuple[datasets.Dataset, datasets.Dataset | None, datasets.Dataset]:
    """Tokenized (or tabular) train, validation and held-out test datasets in the model's data contract."""
    train = build_multitask_dataset(splits.train_sources, config, tokenizer, max_length=data_args.max_length)
    test = build_multitask_dataset(splits.test_sources, config, tokenizer, max_length=data_args.max_length)
    validation = None
    size = min(data_args.validation_rows, len(train) // 5)
    if size > 0:
        parts = train.train_test_split(test_size=size, seed=data_args.split_seed)
        train, validation = parts["train"], parts["test"]
    return train, validation, test


def _progress_bar(trainer: FairMTLTrainer, description: str) -> None:
    """Swap the Trainer's progress bar for one named after the method that shows the loss, not every log dict."""
    from transformers.trainer_callback import ProgressCallback

    if not any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks):
        return  # --disable_tqdm: the user asked for plain log lines

    class MethodProgress(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            if self.training_bar is not None:
                self.training_bar.set_description(description)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(MethodProgress())


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _train_method(
    run_dir: Path,
    method: str,
    args: FairMTLTrainingArguments,
    factory: Callable[[], FairMTLModel],
    data: tuple[Any, Any, Any, Any],
    data_args: DataArguments,
    model_args: ModelArguments,
    experiment_args: ExperimentArguments,
) -> MethodResult:
    """Train one method and seed, evaluate it on the held-out rows, save its results (and model, card)."""
    train, validation, test, tokenizer = data
    seed = args.seed
    set_seed(seed)  # the new heads (and the tabular encoder) start from the seed
    trainer = FairMTLTrainer(
        model=factory(), args=args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer
    )
    _progress_bar(trainer, f"{method} (seed {seed})")
    trainer.train()
    # Validation first, so the last evaluation in the log history is the held-out one the tables report.
    validation_metrics = trainer.evaluate(validation) if validation is not None else None
    metrics = trainer.evaluate(test)
    save_trainer_result(run_dir, method, seed, trainer, metrics, validation_metrics)
    if experiment_args.postprocess and validation is not None:
        post = thresholds_metrics(
            trainer, validation, test, experiment_args.postprocess, experiment_args.postprocess_objective, seed
        )
        if post is not None and trainer.is_world_process_zero():
            save_method_result(run_dir, thresholds_name(method), seed, post, trainer.state.log_history)
    if experiment_args.save_model:
        folder = method_dir(run_dir, method, seed) / "model"
        trainer.save_model(str(folder))
        if trainer.is_world_process_zero():
            # The held-out metrics go into the saved model's fairness model card (README.md).
            write_model_card(
                folder,
                trainer.model,
                metrics,
                training_args=args,
                teacher_summary=trainer.teacher_callback,
                eval_split=f"held-out rows of {data_args.name}",
                model_name=f"{data_args.name}-{method}-seed{seed}",
                base_model=PACKAGED_ENCODER_HUB_ID if uses_packaged_encoder(data_args, model_args) else None,
            )
    return MethodResult(method, seed, metrics, list(trainer.state.log_history))


def _run_settings(
    data_args: DataArguments,
    model_args: ModelArguments,
    training_kwargs: Mapping[str, Any],
    tokenizer: Any,
    data: tuple[Any, Any, Any],
) -> dict[str, Any]:
    """The settings table of the report (the ones that apply)."""
    train, validation, test = data
    settings = {
        "dataset": data_args.name,
        "model": model_args.model_name_or_path
        or ("all-MiniLM-L6-v2 (packaged)" if tokenizer is not None else "tabular MLP"),
        "train rows": len(train),
        "validation rows": len(validation) if validation is not None else 0,
        "held-out rows": len(test),
        "max_length": data_args.max_length if tokenizer is not None else None,
        "batch size": training_kwargs.get("per_device_train_batch_size"),
        "learning rate": training_kwargs.get("learning_rate"),
        "max steps": training_kwargs.get("max_steps"),
        "task loss": json.dumps(training_kwargs["task_loss"]) if training_kwargs.get("task_loss") else None,
    }
    return {key: value for key, value in settings.items() if value is not None}


def run_experiment(
    data_args: DataArguments,
    model_args: ModelArguments,
    experiment_args: ExperimentArguments,
    training_kwargs: Mapping[str, Any],
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] = (0,),
    printer: Callable[[str], None] = print,
) -> RunResults:
    """Train and evaluate every method x seed on the same data; write the run directory and the report.

    Args:
        data_args, model_args, experiment_args: The settings.
        training_kwargs: `FairMTLTrainingArguments` fields (without `strategy`/`seed`; `output_dir` is the run
            directory).
        methods: Method labels (see [`parse_method`]).
        seeds: Seeds; every method runs once per seed.
        printer: Where the table goes (called on the main process only).

    Returns:
        The results as read back from the run directory (on every process).
    """
    start = time.perf_counter()
    run_dir = Path(training_kwargs["output_dir"])
    # Fail on bad training settings (unknown loss, bad JSON) before minutes of data loading and training. This also
    # sets up the distributed state from the training arguments (use_cpu, ddp_backend), which must come first:
    # accelerate's state is a singleton that keeps the settings of whoever creates it.
    for method in methods:
        method_arguments(training_kwargs, method, seeds[0], str(run_dir))
    main_process = _is_main_process()
    splits = load_splits(data_args)
    factory, tokenizer, config = model_factory(model_args, splits)
    train, validation, test = build_datasets(splits, config, tokenizer, data_args)
    training_kwargs = _default_task_losses(training_kwargs, data_args, config, train)
    settings = _run_settings(data_args, model_args, training_kwargs, tokenizer, (train, validation, test))
    if experiment_args.postprocess and validation is None:
        raise ValueError("--postprocess fits thresholds on validation rows: the data has no validation split")
    reported = list(methods)
    if experiment_args.postprocess:
        reported += [thresholds_name(method) for method in methods]
    info = RunInfo.from_config(
        config,
        reported,
        seeds,
        settings=settings,
        task_notes=task_notes(splits),
    )
    if main_process:
        write_run_info(run_dir, info)
    live: list[MethodResult] = []
    for seed in seeds:
        for method in methods:
            args = method_arguments(training_kwargs, method, seed, str(method_dir(run_dir, method, seed)))
            info.settings[f"method {method}"] = describe_method(args)
            data = (train, validation, test, tokenizer)
            live.append(_train_method(run_dir, method, args, factory, data, data_args, model_args, experiment_args))
    info.settings["wall time (s)"] = round(time.perf_counter() - start, 1)
    if main_process:
        anchors_seconds = run_anchors(run_dir, data_args, experiment_args, config, (train, validation, test), seeds)
        if anchors_seconds is not None:
            info.settings["anchors"] = (
                f"fairlearn on the same features, ExponentiatedGradient max_iter={experiment_args.anchors_eg_max_iter}"
                f", {anchors_seconds:.0f} s"
            )
        write_run_info(run_dir, info)
        printer(summarize_run(run_dir, report=experiment_args.make_report))
        printer(f"run directory: {run_dir}  ({info.settings['wall time (s)']:.0f} s)")
        return load_run(run_dir)
    return RunResults(info=info, results=live, run_dir=run_dir)


def run_anchors(
    run_dir: Path,
    data_args: DataArguments,
    experiment_args: ExperimentArguments,
    config: FairMTLConfig,
    data: tuple[Any, Any, Any],
    seeds: Sequence[int],
) -> float | None:
    """Fit fairlearn's anchors on tabular data and write `anchors.json` (main process only).

    Nothing is written on text data or with `--anchors false`; without fairlearn or validation rows,
    `anchors.json` holds only a note saying so, which the report prints.

    Returns:
        Seconds spent fitting, or `None` when no anchors were fitted.
    """
    if not experiment_args.anchors or data_args.modality != "tabular":
        return None
    train, validation, test = data
    if validation is None:
        note = "fairlearn anchors left out: ThresholdOptimizer needs validation rows (--validation_rows)"
        write_anchors(run_dir, [], [note])
        return None
    from .anchors import experiment_anchors  # scikit-learn and fairlearn load only here

    start = time.perf_counter()
    eg_max_iter = experiment_args.anchors_eg_max_iter
    try:
        anchors = experiment_anchors(train, validation, test, config, seeds, eg_max_iter=eg_max_iter)
    except ImportError as error:
        write_anchors(run_dir, [], [f"fairlearn anchors left out: {error}"])
        return None
    write_anchors(run_dir, anchors.records, anchors.notes, {"eg_max_iter": eg_max_iter})
    return time.perf_counter() - start


def _default_task_losses(
    training_kwargs: Mapping[str, Any], data_args: DataArguments, config: FairMTLConfig, train: Any
) -> Mapping[str, Any]:
    """Tabular data without a `--task_loss`: `balanced` for every task whose majority class exceeds 80 %.

    On census, plain cross-entropy predicts the majority class of income, union and dividends (balanced accuracy
    0.5), and a constant predictor's gaps are 0 without being fair (benchmarks/results/postprocessing_census.md).
    """
    if data_args.modality != "tabular" or training_kwargs.get("task_loss") is not None:
        return training_kwargs
    return {**training_kwargs, "task_loss": default_task_losses(class_counts(train, config))}


def thresholds_name(method: str) -> str:
    """`weighted` → `weighted+thresholds`: the row of a method's post-processed predictions."""
    return f"{method}+{THRESHOLDS_SUFFIX}"


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate_checkpoint(
    data_args: DataArguments,
    model_args: ModelArguments,
    training_kwargs: Mapping[str, Any],
    printer: Callable[[str], None] = print,
) -> dict[str, float]:
    """Evaluate a saved FairMTL model on the held-out rows of the data arguments.

    Writes `eval_results.json` to `training_kwargs["output_dir"]` and prints the summary table.

    Raises:
        ValueError: No model path, a folder that is not a FairMTL model, or data whose tasks, vocabularies
            or features do not fit the model.
    """
    path = model_args.model_name_or_path
    if not path:
        raise ValueError("evaluate needs --model_name_or_path (a folder written by --save_model or save_pretrained)")
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path!r} has no config.json: not a saved model folder")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != FairMTLConfig.model_type:
        raise ValueError(f"{path!r} is a {model_type!r} model, not a FairMTL model ({FairMTLConfig.model_type!r})")
    model = FairMTLModel.from_pretrained(path)
    config = model.config
    splits = load_splits(data_args, feature_encoding=config.feature_encoding)
    if splits.feature_encoding is not None and splits.feature_encoding != config.feature_encoding:
        raise ValueError(
            "The data's feature encoding differs from the model's: evaluate with the --dataset, --max_rows and "
            "--split_seed the model was trained with"
        )
    tokenizer = None
    if config.encoder_type == "transformer":
        from transformers import AutoTokenizer

        has_tokenizer = any((Path(path) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
        tokenizer = AutoTokenizer.from_pretrained(path if has_tokenizer else config.encoder_name_or_path)
    test = build_multitask_dataset(splits.test_sources, config, tokenizer, max_length=data_args.max_length)
    args = FairMTLTrainingArguments(**{**training_kwargs, "strategy": "vanilla"})
    trainer = FairMTLTrainer(model=model, args=args, processing_class=tokenizer)
    metrics = trainer.evaluate(test)
    if trainer.is_world_process_zero():
        output = Path(args.output_dir) / EVAL_RESULTS_FILE
        write_json(output, metrics)  # strict JSON: an undefined rate is null
        label = str(path).rstrip("/") or str(path)
        info = RunInfo.from_config(config, [label], [args.seed])
        run = RunResults(info=info, results=[MethodResult(label, args.seed, metrics, [])])
        printer(format_table(summary_rows(run)))
        printer(f"metrics: {output}")
    return metrics
