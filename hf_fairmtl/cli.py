"""`hf-fairmtl`: train, evaluate and report fairness-aware multi-task models from the command line.

```
hf-fairmtl train [CONFIG.yaml|CONFIG.json] [--config FILE] [--flag value ...]
hf-fairmtl evaluate --model_name_or_path DIR [--flag value ...]
hf-fairmtl report RUN_DIR [--output PATH]
```

`train` and `evaluate` take every `TrainingArguments` / `FairMTLTrainingArguments` flag (`--strategy`,
`--fairness_loss`, `--fairness_weight`, `--gradnorm`, `--teacher_interval`, `--max_steps`, ...) plus the data,
model and experiment flags of `hf_fairmtl.experiments` (`--dataset`, `--train_files`, `--methods`, `--seeds`,
`--max_rows`, ...). A YAML/JSON config file holds the same names as flat keys; flags on the command line
override it. With no dataset given, `train` runs the default fairness-transfer experiment (see
`hf_fairmtl.experiments`). Under `accelerate launch` every process trains; only the main process prints tables
and writes files:

```
accelerate launch --multi_gpu --num_processes 2 -m hf_fairmtl.cli train --max_steps 50
```

Bad input (unknown task, column, strategy, method, fairness loss, flag, file) exits with status 1 and one
line `hf-fairmtl: error: ...` naming it; set `HF_FAIRMTL_DEBUG=1` for the traceback instead.

On a machine without an accelerator `--use_cpu` defaults to true, which is what makes `accelerate launch
--multi_gpu --num_processes N` run N gloo processes on CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from .experiments import (
    DEFAULT_DATASET,
    DEFAULT_METHODS,
    DataArguments,
    ExperimentArguments,
    ModelArguments,
    evaluate_checkpoint,
    resolve_training_kwargs,
    run_experiment,
    summarize_run,
    write_report,
)
from .experiments.sweeps import split_sweep_argv, sweep_methods
from .trainer import FairMTLTrainingArguments
from .utils import suggest_names

COMMANDS = ("train", "evaluate", "report", "predict")
USAGE = """usage: hf-fairmtl {train,evaluate,report,predict} ...

  hf-fairmtl train [CONFIG.yaml] [--flags]        train and compare methods (default: fairness transfer
                                                 on packaged BUG text with MiniLM), write RUN_DIR + report;
                                                 tabular data adds fairlearn anchors (--anchors false: none)
  hf-fairmtl evaluate --model_name_or_path DIR    evaluate a saved model on held-out rows
  hf-fairmtl report RUN_DIR                       write RUN_DIR/report.md with plots
  hf-fairmtl predict --model_name_or_path DIR --input rows.csv --output predictions.csv
                                                 per-task label and score of every row

`hf-fairmtl train --help` lists every flag (all TrainingArguments ones included)."""
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# Defaults that differ from TrainingArguments' for short comparison runs; flags and config files override them.
CLI_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "logging_steps": 10,
    "save_strategy": "no",
    "report_to": "none",
}
# Left unset (None) at parse time so the code can tell "not given" from "given the default value": the strategy
# (vs. --methods), the encoder-dependent learning rate and step count, and the output folder.
UNSET_AT_PARSE = ("strategy", "learning_rate", "max_steps", "num_train_epochs", "output_dir")
ARGUMENT_TYPES = (DataArguments, ModelArguments, ExperimentArguments, FairMTLTrainingArguments)


class CLIError(Exception):
    """Bad command-line input; reported as one line."""


class _ArgumentParser(HfArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message and exits 2; we want one line
        raise CLIError(message)


class _PlainParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise CLIError(message)


def build_parser(command: str) -> HfArgumentParser:
    """The `HfArgumentParser` of `train`/`evaluate`: data, model, experiment and training arguments."""
    parser = _ArgumentParser(
        ARGUMENT_TYPES,
        prog=f"hf-fairmtl {command}",
        description="Fairness-aware multi-task training (see `hf-fairmtl --help`). A positional CONFIG.yaml/.json "
        "or --config FILE sets any flag by name.",
    )
    parser.set_defaults(**CLI_DEFAULTS)
    parser.set_defaults(**dict.fromkeys(UNSET_AT_PARSE))
    # Without an accelerator, `use_cpu` is what lets `accelerate launch --multi_gpu` start gloo data parallelism;
    # a single process trains the same either way.
    parser.set_defaults(use_cpu=not _has_accelerator())
    return parser


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU, ...
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def _pop_config(argv: list[str]) -> tuple[list[str], str | None]:
    """Take the config file out of the arguments: a leading positional `*.yaml`/`*.json`, or `--config FILE`."""
    argv = list(argv)
    path = None
    if argv and not argv[0].startswith("-") and argv[0].lower().endswith(CONFIG_SUFFIXES):
        path = argv.pop(0)
    for i, arg in enumerate(argv):
        if arg == "--config":
            if i + 1 >= len(argv):
                raise CLIError("argument --config: expected a file")
            path = argv[i + 1]
            del argv[i : i + 2]
            break
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
            del argv[i]
            break
    return argv, path


def load_config_file(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read a flat YAML/JSON mapping of flag names to values, checked against the parser's flags."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Config file {path!r} does not exist")
    text = file.read_text()
    if file.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"Config file {path!r} is not valid JSON ({error.msg}, line {error.lineno})") from None
    else:
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"Config file {path!r} is not valid YAML ({' '.join(str(error).split())})") from None
    values = values or {}
    if not isinstance(values, dict):
        raise ValueError(f"Config file {path!r} must hold a mapping of flag names to values")
    actions = {action.dest: action for action in parser._actions}
    for key, value in list(values.items()):
        key = str(key).lstrip("-")
        if key not in actions or key == "help":
            raise ValueError(f"Unknown setting {key!r} in config file {path!r}{suggest_names(key, actions)}")
        if actions[key].nargs in ("+", "*") and not isinstance(value, list):
            value = [value]  # `seeds: 0` means one seed
        values[key] = value
    return values


def _pick(namespace: dict[str, Any], dataclass_type: type) -> dict[str, Any]:
    return {f.name: namespace[f.name] for f in dataclasses.fields(dataclass_type) if f.init and f.name in namespace}


def parse_arguments(
    command: str, argv: Sequence[str]
) -> tuple[DataArguments, ModelArguments, ExperimentArguments, dict[str, Any]]:
    """Parse `train`/`evaluate` arguments (config file first, then flags).

    Returns:
        The data, model and experiment arguments, and the training arguments as a dict of raw values (the
        `FairMTLTrainingArguments` are built per method, so each strategy's own defaults apply).
    """
    argv, config_path = _pop_config(list(argv))
    parser = build_parser(command)
    if config_path is not None:
        parser.set_defaults(**load_config_file(config_path, parser))
    namespace = vars(parser.parse_args(argv))
    data_args = DataArguments(**_pick(namespace, DataArguments))
    model_args = ModelArguments(**_pick(namespace, ModelArguments))
    experiment_args = ExperimentArguments(**_pick(namespace, ExperimentArguments))
    return data_args, model_args, experiment_args, _pick(namespace, FairMTLTrainingArguments)


def train(argv: Sequence[str]) -> int:
    """`hf-fairmtl train`: compare methods x seeds, write the run directory and the report."""
    # `--fairness_weight 0 1 3 10` / `--fairness_target 0.3 0.2 0.1` (2+ values) expand a method into a sweep.
    argv, sweeps = split_sweep_argv(argv)
    data_args, model_args, experiment_args, training = parse_arguments("train", argv)
    strategy = training.pop("strategy")
    if experiment_args.methods and strategy:
        raise CLIError("give --methods (several methods) or --strategy (one), not both")
    methods = experiment_args.methods or ([strategy] if strategy else list(DEFAULT_METHODS))
    if sweeps:
        methods = sweep_methods(methods, sweeps)
    seeds = experiment_args.seeds or [training["seed"]]
    if training["output_dir"] is None:
        training["output_dir"] = os.path.join(
            "runs", "default" if data_args.name == DEFAULT_DATASET else data_args.name
        )
    training = resolve_training_kwargs(training, data_args.modality)
    run_experiment(data_args, model_args, experiment_args, training, methods, seeds, printer=_print)
    return 0


def evaluate(argv: Sequence[str]) -> int:
    """`hf-fairmtl evaluate`: metrics of a saved model on held-out rows (default: the default experiment's)."""
    data_args, model_args, _, training = parse_arguments("evaluate", argv)
    training.pop("strategy")
    if training["output_dir"] is None:
        training["output_dir"] = model_args.model_name_or_path or "."
    training = resolve_training_kwargs(training, data_args.modality)
    evaluate_checkpoint(data_args, model_args, training, printer=_print)
    return 0


def report(argv: Sequence[str]) -> int:
    """`hf-fairmtl report RUN_DIR`: render report.md and the plots, print the table."""
    parser = _PlainParser(prog="hf-fairmtl report", description="Write RUN_DIR/report.md and RUN_DIR/plots/*.png.")
    parser.add_argument("run_dir", help="A directory written by `hf-fairmtl train` or an example.")
    parser.add_argument("--output", default=None, help="Report path (default RUN_DIR/report.md).")
    args = parser.parse_args(list(argv))
    path = write_report(args.run_dir, args.output)
    _print(summarize_run(args.run_dir, report=False))  # the methods' table, and the fairlearn anchors' if any
    _print(f"report: {path}")
    return 0


def predict(argv: Sequence[str]) -> int:
    """`hf-fairmtl predict`: a `{task}_label` and `{task}_score` column per task for every row of a CSV file."""
    parser = _PlainParser(prog="hf-fairmtl predict", description="Predict every task for the rows of a CSV file.")
    parser.add_argument("--model_name_or_path", required=True, help="A saved checkpoint folder or Hub id.")
    parser.add_argument("--input", required=True, help="CSV: a text column (text models) or raw feature columns.")
    parser.add_argument("--output", required=True, help="CSV to write, one row per input row.")
    parser.add_argument("--text_column", default="text", help="Text column of text models (default: text).")
    parser.add_argument(
        "--group_columns", nargs="*", default=[], metavar="ATTR[=COLUMN]", help="Group columns for group thresholds."
    )
    parser.add_argument("--tokenizer", default=None, help="Tokenizer (default: the one saved with the model).")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--seed", type=int, default=0, help="Seeds randomised group thresholds, so the output is reproducible."
    )
    parser.add_argument("--trust_remote_code", action="store_true", help="Run the code shipped with a Hub model.")
    args = parser.parse_args(list(argv))
    import pandas as pd
    from transformers import pipeline

    from .configuration_fairmtl import PIPELINE_TASK
    from .pipelines import predict_table

    if not Path(args.input).is_file():
        raise FileNotFoundError(f"--input file {args.input!r} does not exist")
    groups = dict(item.split("=", 1) if "=" in item else (item, item) for item in args.group_columns)
    frame = pd.read_csv(args.input, dtype={column: str for column in [args.text_column, *groups.values()]})
    pipe = pipeline(
        PIPELINE_TASK, model=args.model_name_or_path, tokenizer=args.tokenizer, trust_remote_code=args.trust_remote_code
    )
    predictions = predict_table(
        pipe, frame, args.text_column, groups, args.batch_size, source=args.input, seed=args.seed
    )
    predictions.to_csv(args.output, index=False)
    _print(f"predictions: {args.output} ({len(predictions)} rows, tasks {', '.join(pipe.model.config.tasks)})")
    return 0


def _print(text: str) -> None:
    # Tables and paths once, from the main process, under `accelerate launch` too.
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(text, flush=True)


def _one_line(error: BaseException) -> str:
    # KeyError's str() is the repr of its key; its argument is the message.
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(message.split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hf-fairmtl` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    handlers = {"train": train, "evaluate": evaluate, "report": report, "predict": predict}
    try:
        if command not in handlers:
            raise CLIError(
                f"unknown command {command!r}{suggest_names(command, COMMANDS)}; choose one of {', '.join(COMMANDS)}"
            )
        return handlers[command](rest)
    except (CLIError, ValueError, KeyError, OSError, ImportError) as error:
        if os.environ.get("HF_FAIRMTL_DEBUG"):
            raise
        sys.exit(f"hf-fairmtl: error: {_one_line(error)}")


if __name__ == "__main__":
    sys.exit(main())
