"""The data, model and experiment settings of `hf-fairmtl train` / `evaluate` (dataclasses for
`HfArgumentParser`; the training settings are `FairMTLTrainingArguments`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..utils import suggest_names
from .datasets import PACKAGED_DATASETS, dataset_help
from .methods import DEFAULT_METHODS, parse_method

DEFAULT_DATASET = "bug_transfer"


@dataclass
class DataArguments:
    """Which data to train and evaluate on."""

    dataset: str = field(
        default=DEFAULT_DATASET,
        metadata={
            "help": f"Packaged (offline) dataset: {dataset_help()}. Ignored when --train_files/--test_files are given."
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
    max_length: int = field(default=40, metadata={"help": "Tokenizer truncation length (at least 2 tokens)."})
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
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            # 0 and 1 used to disable truncation silently and -1 raised an OverflowError in the tokenizer.
            raise ValueError(
                f"--max_length must be an integer of at least 2 (room for [CLS] and [SEP]), got {self.max_length!r}"
            )
        if self.uses_files:
            if not self.task_columns:
                raise ValueError("--task_columns is required with --train_files/--test_files (JSON task -> column)")
        elif self.dataset not in PACKAGED_DATASETS:
            raise ValueError(
                f"Unknown dataset {self.dataset!r}{suggest_names(self.dataset, PACKAGED_DATASETS)}; packaged "
                f"datasets: {', '.join(PACKAGED_DATASETS)} (or give --train_files)"
            )

    @property
    def uses_files(self) -> bool:
        return bool(self.train_files or self.test_files)

    @property
    def modality(self) -> str:
        """`"text"` or `"tabular"`, known before any data is read (it picks training defaults)."""
        if self.uses_files:
            return "tabular" if (self.feature_columns or self.categorical_columns) else "text"
        return PACKAGED_DATASETS[self.dataset].modality

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
    postprocess: str | None = field(
        default=None,
        metadata={
            "help": "Also report `<method>+thresholds`: group-specific (randomised) thresholds for this constraint "
            "(Hardt et al. 2016), fitted on the validation rows of every binary task with known groups, applied "
            "on the held-out rows. A saved model (--save_model) keeps them in its config.",
            "choices": ["equalized_odds", "demographic_parity"],
        },
    )
    postprocess_objective: str = field(
        default="accuracy",
        metadata={
            "help": "What the thresholds maximise under the constraint: accuracy (fairlearn's default) or "
            "balanced_accuracy (keeps imbalanced tasks from being post-processed into one class).",
            "choices": ["accuracy", "balanced_accuracy"],
        },
    )

    anchors: bool = field(
        default=True,
        metadata={
            "help": "Tabular data: also fit fairlearn's baselines on the same features (logistic regression, "
            "ThresholdOptimizer(equalized_odds) with thresholds fitted on the validation rows, its balanced-accuracy "
            "variant, ExponentiatedGradient(EqualizedOdds)) for every binary task and single protected attribute; "
            "the report draws them as black marks next to the trade-off points (references: never on a Pareto "
            "front, never the DTO pick) and lists them in their own table. Needs the `anchors` extra (fairlearn); "
            "without it the report says so. Ignored on text data. --anchors false (or --no_anchors) skips them."
        },
    )
    anchors_eg_max_iter: int = field(
        default=20,
        metadata={
            "help": "max_iter of the ExponentiatedGradient anchor (fairlearn's default is 50; on census it stops "
            "earlier anyway). Each iteration is one logistic-regression fit: a few seconds per task in all."
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.methods, str):  # a single method from a config file
            self.methods = [self.methods]
        for method in self.methods or []:
            parse_method(method)
        eg_max_iter = self.anchors_eg_max_iter
        if isinstance(eg_max_iter, bool) or not isinstance(eg_max_iter, int) or eg_max_iter < 1:
            raise ValueError(f"--anchors_eg_max_iter must be a positive integer, got {self.anchors_eg_max_iter!r}")
        if self.postprocess not in (None, "equalized_odds", "demographic_parity"):
            raise ValueError(f"--postprocess must be equalized_odds or demographic_parity, got {self.postprocess!r}")
        if self.postprocess_objective not in ("accuracy", "balanced_accuracy"):
            raise ValueError(
                f"--postprocess_objective must be accuracy or balanced_accuracy, got {self.postprocess_objective!r}"
            )


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
