"""What the L2T-FMT teacher decides on census, and why: decision shares, diagnostics, ARA/AREO vs G-FMT.

Run from the repository root:

    python -m benchmarks.teacher_decisions                   # census quick setting, 3 seeds, every variant
    python -m benchmarks.teacher_decisions --variants default refresh5 --seeds 1

Same data, model and training settings as `python -m benchmarks.quality_tabular --quick` (KDD Census-Income,
four tasks, `sex`; 10% of the training rows held out for the teacher; STL = fair single-task models as the
reference of ARA/AREO). For every teacher variant (a set of `teacher_*` arguments) and seed: the per-task
fraction of fairness decisions, test accuracy / balanced accuracy / EO violation with the collapse flag, and a
summary of the teacher's diagnostics (mean look-ahead reward of each action, how often the fairness action had
the higher reward, which term of the reward's min bound, the mean Q gap). G-FMT and Vanilla MTL + GradNorm are
run beside them, and fairlearn's anchors on the same features and split (`hf_fairmtl.experiments.anchors`:
ThresholdOptimizer(EO) over logistic regression, its thresholds fitted on the teacher's held-out rows, with the
accuracy and the balanced-accuracy objective, and ExponentiatedGradient(EO); they see `sex` at prediction time,
as the fair STL models' fairness losses do at training time). Writes `benchmarks/results/teacher_decisions.{json,md}`
and one diagnostics plot per variant (seed 0) `teacher_decisions_{variant}.png`.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from benchmarks.common import (
    RESULTS_DIR,
    command_string,
    fairmtl_arguments,
    finish_metadata,
    format_mean_std,
    markdown_table,
    mean_std,
    metadata_markdown,
    prediction_scores,
    quiet,
    start_metadata,
    task_figures,
    write_results,
)
from benchmarks.quality_tabular import ATTRIBUTE, MODES, STL_SETTINGS, method_overrides, prepare, single_task_splits
from hf_fairmtl import FairMTLModel, FairMTLTrainer
from hf_fairmtl.data import load_census_sources
from hf_fairmtl.experiments.anchors import ANCHOR_LABELS, experiment_anchors
from hf_fairmtl.metrics import relative_scores
from hf_fairmtl.teacher import TeacherCallback, diagnostic_key, plot_teacher_diagnostics

STEM = "teacher_decisions"
STL = "STL (fair, per task)"
ANCHORS = ("threshold_optimizer", "threshold_optimizer_balanced_accuracy", "exponentiated_gradient")
BASELINES = {"G-FMT": "G-FMT", "Vanilla MTL + GradNorm": "Vanilla MTL + GradNorm"}
# Variant -> `TeacherCallback` settings of the L2T-FMT run ("strategy": "teacher" + GradNorm as in quality_tabular);
# `{}` = the defaults from the training arguments.
BALANCED = {"reward_accuracy": "balanced_accuracy", "collapse_threshold": 0.95}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "refresh1": {"heldout_refresh": 1},
    "refresh5": {"heldout_refresh": 5},
    "lookahead1": {"lookahead_lr": 1.0},
    "balanced": BALANCED,
    "balanced_lookahead1": {**BALANCED, "lookahead_lr": 1.0},
    "interval1": {"interval": 1},
    "balanced_interval1": {**BALANCED, "interval": 1},
    "balanced_lookahead1_interval1": {**BALANCED, "lookahead_lr": 1.0, "interval": 1},
    "balanced_lookahead1_interval1_refresh1": {**BALANCED, "lookahead_lr": 1.0, "interval": 1, "heldout_refresh": 1},
}


def train_run(
    config,
    seed: int,
    train,
    test,
    heldout,
    overrides: Mapping[str, Any],
    common: Mapping[str, Any],
    teacher: Mapping[str, Any] | None = None,
):
    """Train one model; return test figures per task, teacher summary, history and diagnostics.

    `teacher`: `TeacherCallback` settings (the callback is passed in `callbacks`, the trainer binds it).
    """
    arguments = dict(**overrides, **common)
    result, callback = train_with_teacher(functools.partial(FairMTLModel, config), seed, train, test, heldout,
                                          arguments, teacher)  # fmt: skip
    tasks = list(config.tasks)
    figures = {}
    for t, task in enumerate(tasks):
        predicted = np.asarray(result["predictions"][t]).argmax(-1)
        share = float(np.bincount(predicted).max() / len(predicted))
        figures[task] = {
            **task_figures(result["metrics"], task, ATTRIBUTE),
            **prediction_scores(result, t),
            "majority_prediction_share": share,
        }
    run: dict[str, Any] = {"seed": seed, "tasks": figures, "train_seconds": round(result["train_seconds"], 1)}
    if callback is not None:
        run.update(teacher_record(callback, tasks))
    return run


def train_with_teacher(
    build_model: Callable[[], FairMTLModel],
    seed: int,
    train,
    test,
    heldout,
    arguments: Mapping[str, Any],
    teacher: Mapping[str, Any] | None = None,
    processing_class: Any = None,
) -> tuple[dict[str, Any], TeacherCallback | None]:
    """Train a fresh model (seeded before `build_model()`) and predict `test`.

    Args:
        build_model: Zero-argument builder of a new `FairMTLModel`.
        seed: Training seed.
        train: Training rows.
        test: Rows the metrics and predictions come from.
        heldout: The trainer's `eval_dataset`: the teacher scores its look-ahead on it (never the test rows).
        arguments: `FairMTLTrainingArguments` fields (strategy, steps, ...).
        teacher: `TeacherCallback` settings (the callback is passed in `callbacks`, the trainer binds it); `None` =
            the trainer's own teacher (from the `teacher_*` arguments) under `strategy="teacher"`.
        processing_class: Tokenizer of text models (pads batches).

    Returns:
        `metrics`, `predictions`, `label_ids`, `train_seconds` (as `benchmarks.common.train_and_predict`) and the
        trainer's teacher callback (`None` without a teacher).
    """
    transformers.set_seed(seed)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = FairMTLTrainer(
            model=build_model(),
            args=fairmtl_arguments(output_dir, seed, **arguments),
            train_dataset=train,
            eval_dataset=heldout,
            processing_class=processing_class,
            callbacks=[TeacherCallback(**teacher)] if teacher else None,
        )
        quiet(trainer)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        output = trainer.predict(test, metric_key_prefix="eval")
    result = {"metrics": dict(output.metrics), "predictions": output.predictions, "label_ids": output.label_ids}
    return result | {"train_seconds": seconds}, trainer.teacher_callback


def teacher_record(callback: TeacherCallback, tasks: Sequence[str]) -> dict[str, Any]:
    """A run's teacher: fairness share per task, decisions per teacher step, step diagnostics and their summary."""
    return {
        "fairness_share": callback.summary(),
        "history": [[step, list(actions)] for step, actions in callback.action_history],
        "diagnostics": [{k: round(v, 5) for k, v in record.items()} for record in callback.diagnostics],
        "diagnostic_summary": summarise_diagnostics(callback.diagnostics, tasks),
    }


def summarise_diagnostics(records: Sequence[Mapping[str, float]], tasks: Sequence[str]) -> dict[str, Any]:
    """Per task: mean rewards, share of steps where fairness had the higher reward, binding term, mean Q gap."""
    out = {}
    for task in tasks:
        key = functools.partial(diagnostic_key, task)
        rows = [r for r in records if math.isfinite(r.get(key("reward_accuracy"), math.nan))]
        if not rows:
            continue
        fairness_better = [r[key("reward_fairness")] > r[key("reward_accuracy")] for r in rows]
        binding = []
        for r in rows:
            for name in ("accuracy", "fairness"):
                acc, eo = r[key(f"lookahead_accuracy_{name}")], r[key(f"lookahead_eo_{name}")]
                acc_term = (acc - r[key("best_accuracy")]) / max(r[key("best_accuracy")], 0.05)
                if math.isnan(eo) or math.isnan(r[key("best_eo")]):
                    binding.append("accuracy")
                    continue
                eo_term = (r[key("best_eo")] - eo) / max(1 - r[key("best_eo")], 0.05)
                binding.append("accuracy" if acc_term <= eo_term else "fairness")
        out[task] = {
            "steps": len(rows),
            "mean_reward_accuracy": float(np.mean([r[key("reward_accuracy")] for r in rows])),
            "mean_reward_fairness": float(np.mean([r[key("reward_fairness")] for r in rows])),
            "fairness_reward_higher": float(np.mean(fairness_better)),
            "accuracy_term_binds": float(np.mean([b == "accuracy" for b in binding])),
            "mean_q_gap": float(np.mean([r[key("q_gap")] for r in rows])),
            "final_best_accuracy": float(rows[-1][key("best_accuracy")]),
            "final_best_eo": float(rows[-1][key("best_eo")]),
        }
    return out


def relative(run: Mapping[str, Any], stl: Mapping[str, Any]) -> dict[str, float]:
    """ARA/AREO (collapse-aware) and the balanced-accuracy ARA of one run against the same seed's STL."""
    scores = relative_scores(run["tasks"], stl["tasks"])
    balanced = {t: {"accuracy": f["balanced_accuracy"], "eo_violation": 1.0} for t, f in run["tasks"].items()}
    balanced_stl = {t: {"accuracy": f["balanced_accuracy"], "eo_violation": 1.0} for t, f in stl["tasks"].items()}
    scores["balanced_ARA"] = relative_scores(balanced, balanced_stl)["ARA"]
    return scores


def run_all(
    variants: Sequence[str], seeds: Sequence[int], mode: Mapping[str, Any], task_loss: str | None = None
) -> dict[str, Any]:
    """STL, the baselines and every teacher variant for every seed (`task_loss`: every run's accuracy loss)."""
    splits = load_census_sources(max_rows=mode["max_rows"], max_test_rows=mode["max_test_rows"], seed=0)
    tasks = list(splits.tasks)
    common = {
        "num_train_epochs": mode["epochs"],
        "per_device_train_batch_size": 256,
        "per_device_eval_batch_size": 2048,
        "learning_rate": 3e-3,
        **({"task_loss": task_loss} if task_loss else {}),
    }
    config, train, heldout, test = prepare(splits.config_kwargs(), splits.train_sources, splits.test_sources)
    stl_data = {task: prepare(*single_task_splits(splits, task)) for task in tasks}
    runs: dict[str, list[dict[str, Any]]] = {STL: [], **{b: [] for b in BASELINES}, **{v: [] for v in variants}}
    for seed in seeds:
        stl_tasks = {}
        for task in tasks:
            task_config, task_train, task_heldout, task_test = stl_data[task]
            settings = {**STL_SETTINGS, "fairness_attributes": {task: [ATTRIBUTE]}}
            stl_tasks[task] = train_run(task_config, seed, task_train, task_test, task_heldout, settings, common)[
                "tasks"
            ][task]
        runs[STL].append({"seed": seed, "tasks": stl_tasks})
        for name, method in BASELINES.items():
            runs[name].append(
                train_run(config, seed, train, test, heldout, method_overrides(method, tasks, ATTRIBUTE), common)
            )
        for variant in variants:
            overrides = method_overrides("L2T-FMT", tasks, ATTRIBUTE)
            runs[variant].append(train_run(config, seed, train, test, heldout, overrides, common, VARIANTS[variant]))
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    anchor_runs, notes = fairlearn_runs(train, heldout, test, config, seeds, tasks)
    runs.update(anchor_runs)
    return {"tasks": tasks, "runs": runs, "summary": summarise(runs, tasks), "anchor_notes": notes}


def fairlearn_runs(
    train: Any,
    heldout: Any,
    test: Any,
    config: Any,
    seeds: Sequence[int],
    tasks: Sequence[str],
    attribute: str = ATTRIBUTE,
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """fairlearn's anchors as runs of the same shape as ours (`{"seed", "tasks": {task: figures}}` per seed), each
    fitted once on the same rows (thresholds on the teacher's held-out rows) and predicted with every seed. An
    anchor missing a task (fairlearn refused a fit) is left out with its notes."""
    anchors = experiment_anchors(train, heldout, test, config, seeds, methods=ANCHORS)
    runs: dict[str, list[dict[str, Any]]] = {}
    for anchor in ANCHORS:
        name = f"fairlearn {ANCHOR_LABELS[anchor]}"
        records = [r for r in anchors.records if r["anchor"] == anchor and r["attribute"] == attribute]
        per_seed = [{"seed": seed, "tasks": {r["task"]: r["figures"] for r in records if r["seed"] == seed}}
                    for seed in seeds]  # fmt: skip
        if all(set(run["tasks"]) == set(tasks) for run in per_seed):
            runs[name] = per_seed
    return runs, [note for note in anchors.notes if f"/ `{attribute}`" in note or "/" not in note]


def summarise(runs: Mapping[str, list[dict[str, Any]]], tasks: Sequence[str]) -> dict[str, Any]:
    summary = {}
    for name, per_seed in runs.items():
        block: dict[str, Any] = {
            "tasks": {
                task: {
                    key: mean_std([run["tasks"][task][key] for run in per_seed])
                    for key in ("accuracy", "balanced_accuracy", "eo_violation", "majority_prediction_share")
                }
                for task in tasks
            }
        }
        if name != STL:
            scores = [relative(run, stl) for run, stl in zip(per_seed, runs[STL], strict=True)]
            for key in ("ARA", "AREO", "ARA_without_collapsed", "AREO_without_collapsed", "balanced_ARA"):
                block[key] = mean_std([s[key] for s in scores])
            block["collapsed_tasks"] = mean_std([s["num_collapsed_tasks"] for s in scores])
        if per_seed and "fairness_share" in per_seed[0]:
            block["fairness_share"] = {
                task: mean_std([run["fairness_share"][task] for run in per_seed]) for task in tasks
            }
            block["diagnostics"] = {
                task: {
                    key: mean_std([run["diagnostic_summary"][task][key] for run in per_seed])
                    for key in per_seed[0]["diagnostic_summary"].get(task, {})
                }
                for task in tasks
            }
        summary[name] = block
    return summary


def render_markdown(payload: Mapping[str, Any]) -> str:
    lines = metadata_markdown("L2T-FMT teacher on census: decisions, diagnostics, ARA/AREO", payload["meta"])
    tasks = payload["tasks"]
    summary = payload["summary"]
    lines += [
        f"Census quick setting (as `benchmarks.quality_tabular --quick`), seeds {payload['seeds']}, accuracy loss "
        f"`{payload.get('task_loss', 'cross_entropy')}` in every run (STL, baselines, teacher). Variants: "
        + "; ".join(f"`{name}` = {VARIANTS[name] or 'the defaults'}" for name in payload["variants"])
        + ". ARA/AREO against the fair STL models of the same seed; a task predicting one class on ≥ 95 % of test "
        "rows is collapsed (its EO ≈ 0 is not fairness); `w/o collapsed` leaves those tasks out.",
        "",
        "## ARA / AREO",
        "",
    ]
    rows = []
    for name, block in summary.items():
        if name == STL:
            continue
        rows.append(
            [name]
            + [format_mean_std(block[k]) for k in ("ARA", "AREO", "balanced_ARA", "ARA_without_collapsed")]
            + [format_mean_std(block["AREO_without_collapsed"]), format_mean_std(block["collapsed_tasks"], 1)]
        )
    header = ["method", "ARA ↑", "AREO ↓", "balanced ARA ↑", "ARA w/o collapsed", "AREO w/o collapsed", "collapsed"]
    lines += markdown_table(header, rows)
    notes = payload.get("anchor_notes") or []
    lines += [
        "",
        "fairlearn rows: the anchors on the same features, training rows and test rows (ThresholdOptimizer's "
        "thresholds fitted on the teacher's held-out rows); they use `sex` at prediction time.",
        *(f"- {note}" for note in notes),
        "",
        "## Per task: accuracy / balanced accuracy / EO violation (majority-prediction share)",
        "",
    ]
    rows = []
    for name, block in summary.items():
        cells = []
        for task in tasks:
            f = block["tasks"][task]
            cells.append(
                f"{f['accuracy']['mean']:.3f} / {f['balanced_accuracy']['mean']:.3f} / "
                f"{f['eo_violation']['mean']:.3f} ({f['majority_prediction_share']['mean']:.2f})"
            )
        rows.append([name, *cells])
    lines += markdown_table(["method", *tasks], rows)
    lines += ["", "## Teacher decisions and diagnostics (mean ± std over seeds)", ""]
    rows = []
    for name, block in summary.items():
        if "fairness_share" not in block:
            continue
        for task in tasks:
            d = block["diagnostics"].get(task, {})
            rows.append(
                [name, task, format_mean_std(block["fairness_share"][task], 2)]
                + [
                    format_mean_std(d[k], 4) if k in d else "–"
                    for k in ("mean_reward_accuracy", "mean_reward_fairness", "mean_q_gap")
                ]
                + [
                    format_mean_std(d[k], 2) if k in d else "–"
                    for k in ("fairness_reward_higher", "accuracy_term_binds")
                ]
            )
    header = [
        "variant",
        "task",
        "fairness share",
        "mean R(acc)",
        "mean R(fair)",
        "mean Q gap",
        "R(fair) > R(acc)",
        "acc term binds",
    ]
    lines += markdown_table(header, rows)
    lines.append("")
    return "\n".join(lines)


def slim(result: dict[str, Any]) -> dict[str, Any]:
    """Keep every teacher step's diagnostics and decisions for the first seed only (the one the plots show); the
    other seeds keep their summaries, so the JSON stays small at many seeds."""
    for per_seed in result["runs"].values():
        for run in per_seed[1:]:
            run.pop("diagnostics", None)
            run.pop("history", None)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--task_loss",
        default=None,
        help="accuracy loss of every run (STL, baselines, teacher), e.g. 'balanced' (class-balanced CE, the CLI's "
        "tabular default where a task's majority class exceeds 80 %%); default: cross-entropy, as quality_tabular",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default=STEM)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = start_metadata(command_string("benchmarks.teacher_decisions", argv), args.threads, "quick")
    seeds = list(range(args.seeds))
    result = slim(run_all(args.variants, seeds, MODES["quick"], task_loss=args.task_loss))
    payload = {
        "meta": finish_metadata(meta),
        "seeds": seeds,
        "variants": args.variants,
        "task_loss": args.task_loss or "cross_entropy",
        **result,
    }
    paths = write_results(args.stem, payload, render_markdown(payload), args.output_dir)
    for variant in args.variants:
        first = payload["runs"][variant][0]
        plot = plot_teacher_diagnostics(
            first["diagnostics"],
            Path(args.output_dir) / f"{args.stem}_{variant}.png",
            history=[(step, actions) for step, actions in first["history"]],
            history_tasks=payload["tasks"],
            title=f"L2T-FMT `{variant}` on census, seed {first['seed']}: rewards, Q-values, decisions",
        )
        paths.append(plot)
    print("wrote", ", ".join(str(p) for p in paths if p is not None))
    return payload


if __name__ == "__main__":
    main()
