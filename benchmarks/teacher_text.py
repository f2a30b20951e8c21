"""The L2T-FMT teacher on BUG text (issue 16): decision shares per task, diagnostics, target EO vs G-FMT.

Run from the repository root:

    nice -n 5 python -m benchmarks.teacher_text                  # MiniLM, 60 steps, 3 seeds, every method
    python -m benchmarks.teacher_text --variants default --seeds 1
    python -m benchmarks.teacher_text --smoke                    # tiny encoder, few rows and steps (seconds)
    python -m benchmarks.teacher_text --first_seed 3 --stem teacher_text_seeds3-5   # seeds 3-5
    python -m benchmarks.teacher_text --combine teacher_text teacher_text_seeds3-5 --stem teacher_text_6seeds
    python -m benchmarks.teacher_text --text_task_loss balanced --stem teacher_text_balanced_ce   # class-balanced CE

Data and model: the BUG fairness-transfer setting of `benchmarks/quality_debiasing.py` (`text_part`): the target
task `occupation` (10 classes) has **no** gender in training, the auxiliary task `stereotype` (binary) has the
pronoun's `gender`; all-MiniLM-L6-v2 fine-tuned whole, 60 steps of batch 16, 32 tokens, lr 3e-4. 10 % of the
*training* rows (a fixed permutation, seed 0) are carved out as the teacher's held-out rows, and **every** method
trains on the same remaining 90 %, so the comparison is fair; the teacher scores its look-ahead on those rows
(the trainer's `eval_dataset`), never on the test rows. The test rows are both tasks' held-out rows, with gender,
as in quality_debiasing.

Methods (fairness on the auxiliary task only, `fairness_attributes={"stereotype": ["gender"]}`; the strategy
settings of `benchmarks.quality_tabular.METHODS`): Vanilla MTL + GradNorm, G-FMT (`greedy` + GradNorm), and
L2T-FMT (`teacher` + GradNorm) with the teacher settings of `benchmarks.teacher_decisions.VARIANTS` (`default` =
the trainer's defaults). The target task has no fairness loss in training, so the teacher decides only for the
auxiliary task (the target always trains on its accuracy loss). `--teacher_interval` (default 5: 12 teacher steps
in 60 optimizer steps instead of 6 at the trainer's default of 10) applies to every variant that does not set its
own interval.

Figures per method and seed: the target's accuracy, balanced accuracy, macro-F1, EO violation over gender
(|ΔTPR| + |ΔFPR|, macro over one-vs-rest classes), ε-DEO and collapse flag (≥ 95 % of held-out rows in one class),
the auxiliary task's accuracy / balanced accuracy / EO; for teacher runs the share of fairness decisions per task
and `benchmarks.teacher_decisions.summarise_diagnostics` (mean reward of each action, how often the fairness
action had the higher reward, which term of the reward's min binds, mean Q gap). Writes
`benchmarks/results/{stem}.{json,md}` and one diagnostics plot per teacher variant (seed 0) `{stem}_{variant}.png`;
partial results go to `{stem}.partial.json` after every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from benchmarks.common import (
    RESULTS_DIR,
    command_string,
    finish_metadata,
    format_mean_std,
    markdown_table,
    mean_std,
    metadata_markdown,
    seed_stats,
    start_metadata,
    write_results,
)
from benchmarks.quality_debiasing import AUXILIARY, GENDER, TARGET, Setting, run_figures, text_part
from benchmarks.quality_tabular import METHODS as TABULAR_METHODS
from benchmarks.teacher_decisions import VARIANTS, teacher_record, train_with_teacher
from hf_fairmtl.teacher import plot_teacher_diagnostics

STEM = "teacher_text"
TASKS = (TARGET, AUXILIARY)
BASELINES = ("Vanilla MTL + GradNorm", "G-FMT")
DEFAULT_VARIANTS = ("default", "balanced_lookahead1", "interval1")
TARGET_FIGURES = ("accuracy", "balanced_accuracy", "macro_f1", "eo_violation", "eps_deo")
AUXILIARY_FIGURES = ("auxiliary_accuracy", "auxiliary_balanced_accuracy", "auxiliary_eo_violation")
DIAGNOSTICS = ("mean_reward_accuracy", "mean_reward_fairness", "mean_q_gap", "fairness_reward_higher",
               "accuracy_term_binds", "steps")  # fmt: skip


def variant_name(variant: str) -> str:
    """Table name of the L2T-FMT run with the teacher settings `VARIANTS[variant]`."""
    return f"L2T-FMT `{variant}`"


def methods(variants: Sequence[str], interval: int) -> dict[str, tuple[dict[str, Any], dict[str, Any] | None]]:
    """Method name -> (`FairMTLTrainingArguments` overrides, `TeacherCallback` settings or `None`).

    Fairness on the auxiliary task only; the teacher runs get `teacher_interval=interval` (a variant's own
    `interval` takes precedence); a variant with no settings (`default`) uses the trainer's own teacher.
    """
    on_auxiliary = {"fairness_attributes": {AUXILIARY: [GENDER]}}
    out: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
        name: ({**TABULAR_METHODS[name], **on_auxiliary}, None) for name in BASELINES
    }
    for variant in variants:
        overrides = {**TABULAR_METHODS["L2T-FMT"], **on_auxiliary, "teacher_interval": interval}
        out[variant_name(variant)] = (overrides, dict(VARIANTS[variant]))
    return out


def teacher_split(train: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """`(kept, held)`: `fraction` of the training rows (fixed permutation) held out for the teacher, the rest.

    Raises:
        ValueError: When `fraction` leaves no held-out or no training row.
    """
    order = np.random.default_rng(seed).permutation(len(train))
    cut = int(round(len(order) * fraction))
    if not 0 < cut < len(order):
        raise ValueError(f"--heldout_fraction {fraction} of {len(train)} training rows leaves an empty split")
    return train.select(np.sort(order[cut:])), train.select(np.sort(order[:cut]))


def run_all(setting: Setting, heldout_fraction: float, plan: Mapping[str, tuple], seeds: Sequence[int], save) -> dict:
    """Every method for every seed (seeds outer, so a partial file holds every method of the finished seeds)."""
    train, heldout = teacher_split(setting.data[False][0], heldout_fraction)
    test = setting.data[False][1]
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in plan}
    for seed in seeds:
        for name, (overrides, teacher) in plan.items():
            arguments = {**setting.training, **overrides}
            result, callback = train_with_teacher(setting.build, seed, train, test, heldout, arguments, teacher,
                                                  setting.processing_class)  # fmt: skip
            run: dict[str, Any] = {"seed": seed, "figures": run_figures(result, setting)}
            if callback is not None:
                run.update(teacher_record(callback, list(TASKS)))
            per_seed[name].append(run)
            shares = run.get("fairness_share", {})
            print(f"seed {seed} {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in run["figures"].items())
                  + (f"; fairness share {shares}" if shares else ""), flush=True)  # fmt: skip
            save(per_seed)
    sizes = {"train_rows": len(train), "heldout_rows": len(heldout), "test_rows": len(test)}
    return {"per_seed": per_seed, "summary": summarise(per_seed), "sizes": sizes}


def summarise(per_seed: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per method: mean ± std of every figure; for teacher runs, of the fairness shares and diagnostics per task."""
    summary = {}
    for name, runs in per_seed.items():
        block: dict[str, Any] = {"figures": seed_stats([run["figures"] for run in runs])}
        if runs and "fairness_share" in runs[0]:
            block["fairness_share"] = {task: mean_std([run["fairness_share"][task] for run in runs]) for task in TASKS}
            block["diagnostics"] = {
                task: {
                    key: mean_std([run["diagnostic_summary"].get(task, {}).get(key, float("nan")) for run in runs])
                    for key in runs[0]["diagnostic_summary"].get(task, {})
                }
                for task in TASKS
            }
        summary[name] = block
    return summary


def versus_greedy(per_seed: Mapping[str, list[dict[str, Any]]]) -> list[list[str]]:
    """Per teacher method and seed: its target EO and accuracy minus G-FMT's of the same seed."""
    greedy = {run["seed"]: run["figures"] for run in per_seed.get("G-FMT", [])}
    rows = []
    for name, runs in per_seed.items():
        if not runs or "fairness_share" not in runs[0]:
            continue
        cells, wins = [], 0
        for run in runs:
            ref = greedy.get(run["seed"])
            if ref is None:
                continue
            d_eo = run["figures"]["eo_violation"] - ref["eo_violation"]
            d_acc = run["figures"]["accuracy"] - ref["accuracy"]
            wins += int(d_eo < 0 and d_acc >= -0.01)
            cells.append(f"{d_eo:+.3f} / {100 * d_acc:+.1f}")
        rows.append([name, *cells, f"{wins}/{len(cells)}"])
    return rows


def stats_cells(stats: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    return [format_mean_std(stats[k]) if k in stats else "n/a" for k in keys]


def collapsed(stats: Mapping[str, Any], key: str) -> str:
    values = stats.get(key, {"values": []})["values"]
    return f"{int(sum(values))}/{len(values)}" if values else "n/a"


def decision_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """Per teacher method and task: fairness share and the diagnostics summary (mean ± std over seeds)."""
    rows = []
    for name, block in summary.items():
        if "fairness_share" not in block:
            continue
        for task in TASKS:
            d = block["diagnostics"].get(task, {})
            label = task if task == AUXILIARY else f"{task} (no fairness loss: always CE)"
            rows.append(
                [name, label, format_mean_std(block["fairness_share"][task], 2)]
                + [format_mean_std(d[k], 4) if k in d else "–" for k in DIAGNOSTICS[:3]]
                + [format_mean_std(d[k], 2) if k in d else "–" for k in DIAGNOSTICS[3:5]]
                + [format_mean_std(d["steps"], 1) if "steps" in d else "–"]
            )
    return rows


def render_markdown(payload: Mapping[str, Any]) -> str:
    lines = metadata_markdown(
        "L2T-FMT teacher on BUG text (transfer): decisions, diagnostics, target EO", payload["meta"]
    )
    summary, seeds = payload["summary"], payload["seeds"]
    sizes = payload["sizes"]
    lines += [
        f"- {payload['description']}",
        f"- {sizes['train_rows']} training rows for every method, {sizes['heldout_rows']} of the training rows held "
        f"out for the teacher's look-ahead (a fixed 10 % permutation; no method trains on them), {sizes['test_rows']} "
        f"test rows (both tasks' held-out rows, with gender). Seeds {seeds}; teacher interval "
        f"{payload['teacher_interval']} unless the variant sets its own. Variants: "
        + "; ".join(f"`{v}` = {VARIANTS[v] or 'the trainer defaults'}" for v in payload["variants"])
        + ". Fairness on the auxiliary task only; the target task has no fairness loss, so its teacher decision is "
        "always the accuracy loss. Collapsed = one class on ≥ 95 % of the held-out rows (its gaps are not fairness).",
        "",
        f"## Target task `{TARGET}` (no gender in training), held-out rows, mean ± std",
        "",
    ]
    header = ["method", "accuracy ↑", "balanced acc. ↑", "macro-F1 ↑", "EO violation ↓", "ε-DEO ↓", "collapsed",
              "train s"]  # fmt: skip
    rows = [
        [name, *stats_cells(b["figures"], TARGET_FIGURES), collapsed(b["figures"], "collapsed"),
         format_mean_std(b["figures"]["train_seconds"], 0)]
        for name, b in summary.items()
    ]  # fmt: skip
    lines += markdown_table(header, rows)
    lines += [f"## Auxiliary task `{AUXILIARY}` (trained with gender), held-out rows", ""]
    header = ["method", "aux. accuracy ↑", "aux. balanced acc. ↑", "aux. EO violation ↓", "aux. collapsed"]
    rows = [
        [name, *stats_cells(b["figures"], AUXILIARY_FIGURES), collapsed(b["figures"], "auxiliary_collapsed")]
        for name, b in summary.items()
    ]
    lines += markdown_table(header, rows)
    lines += ["## Teacher decisions and diagnostics (mean ± std over seeds)", ""]
    header = ["method", "task", "fairness share", "mean R(acc)", "mean R(fair)", "mean Q gap", "R(fair) > R(acc)",
              "acc term binds", "teacher steps"]  # fmt: skip
    lines += markdown_table(header, decision_rows(summary))
    lines += [
        "## L2T-FMT minus G-FMT on the target, per seed (EO violation / accuracy points)",
        "",
        "A win = lower target EO at no more than 1 point of accuracy lost.",
        "",
    ]
    lines += markdown_table(["method", *(f"seed {s}" for s in seeds), "wins"], versus_greedy(payload["per_seed"]))
    if payload.get("plots"):
        lines.append("Diagnostics plots (first seed): " + ", ".join(f"`{name}`" for name in payload["plots"]))
    return "\n".join(lines)


def nan_from_null(value: Any) -> Any:
    """Undo `write_results`' NaN → null in a JSON value (`null` → NaN, recursively)."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: nan_from_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_from_null(v) for v in value]
    return value


def combine(stems: Sequence[str], output_dir: Path, command: str) -> dict[str, Any]:
    """Pool the seeds of `{stem}.json` files made with the same methods and settings; the summary is recomputed.

    Raises:
        ValueError: When the files differ in methods, variants, teacher interval or data sizes, or share a seed.
    """
    parts = [json.loads((output_dir / f"{stem}.json").read_text()) for stem in stems]
    first = parts[0]
    for stem, part in zip(stems, parts, strict=True):
        for key in ("methods", "variants", "teacher_interval", "sizes"):
            if part[key] != first[key]:
                raise ValueError(f"--combine: {stem}.json differs from {stems[0]}.json in `{key}`")
    seeds = [seed for part in parts for seed in part["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--combine: the files share seeds ({seeds})")
    per_seed = {
        name: [nan_from_null(run) for part in parts for run in part["per_seed"][name]] for name in first["per_seed"]
    }
    meta = dict(first["meta"]) | {"load_after": parts[-1]["meta"]["load_after"]}
    meta["command"] = command + "\n# pooling: " + "; ".join(part["meta"]["command"] for part in parts)
    meta["duration_s"] = sum(part["meta"]["duration_s"] for part in parts)
    meta["cpu_s"] = sum(part["meta"]["cpu_s"] for part in parts)
    return first | {"meta": meta, "seeds": seeds, "per_seed": per_seed, "summary": summarise(per_seed),
                    "combined_from": list(stems), "plots": first.get("plots", [])}  # fmt: skip


def plot_variants(payload: Mapping[str, Any], output_dir: Path, stem: str) -> list[Path]:
    """One diagnostics plot per teacher variant, of its first seed: `{stem}_{variant}.png`."""
    paths = []
    for variant in payload["variants"]:
        first = payload["per_seed"][variant_name(variant)][0]
        path = plot_teacher_diagnostics(
            first["diagnostics"],
            output_dir / f"{stem}_{variant}.png",
            history=[(step, actions) for step, actions in first["history"]],
            history_tasks=list(TASKS),
            title=f"L2T-FMT `{variant}` on BUG text (MiniLM), seed {first['seed']}: rewards, Q-values, decisions",
        )
        if path is not None:
            paths.append(path)
    return paths


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds")
    parser.add_argument("--first_seed", type=int, default=0, help="seeds first_seed, first_seed + 1, ...")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--teacher_interval", type=int, default=5, help="optimizer steps between teacher steps")
    parser.add_argument("--heldout_fraction", type=float, default=0.1, help="training rows held out for the teacher")
    parser.add_argument("--max_rows", type=int, default=1500, help="text rows per source before the 80/20 split")
    parser.add_argument("--max_steps", type=int, default=60)
    parser.add_argument("--max_length", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument(
        "--text_task_loss",
        default=None,
        help="accuracy loss of both tasks in every method, e.g. 'balanced' (class-balanced CE: the census remedy "
        "that makes the teacher act, docs/teacher.md); default cross-entropy",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny encoder, few rows and steps (seconds)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default=None)
    parser.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="STEM",
        help="pool the seeds of these result files (same methods and settings) into {stem}.{json,md}; trains nothing",
    )
    parser.add_argument("--render_only", action="store_true", help="rewrite the .md and plots from {stem}.json")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.max_rows, args.max_steps, args.teacher_interval = 1, 60, 4, 2
    args.validation = False  # text_part: score on the test rows (the teacher's rows are carved from training)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every method and seed; write `{stem}.{json,md}` and the diagnostics plots."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    stem = args.stem or (f"{STEM}_smoke" if args.smoke else STEM)
    output_dir = Path(args.output_dir)
    if args.combine:
        payload = combine(args.combine, output_dir, command_string("benchmarks.teacher_text", argv))
        print("wrote", ", ".join(str(p) for p in write_results(stem, payload, render_markdown(payload), output_dir)))
        return payload
    if args.render_only:
        payload = json.loads((output_dir / f"{stem}.json").read_text())
        plots = plot_variants(payload, output_dir, stem)
        payload["plots"] = [path.name for path in plots]
        paths = write_results(stem, payload, render_markdown(payload), output_dir) + plots
        print("wrote", ", ".join(str(p) for p in paths))
        return payload
    torch.set_num_threads(args.threads)
    meta = start_metadata(
        command_string("benchmarks.teacher_text", argv), args.threads, "smoke" if args.smoke else "full"
    )
    setting = text_part(args)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    partial = output_dir / f"{stem}.partial.json"

    def save(per_seed: dict[str, list]) -> None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"command": meta["command"], "per_seed": per_seed}, default=float))

    plan = methods(args.variants, args.teacher_interval)
    result = run_all(setting, args.heldout_fraction, plan, seeds, save)
    payload = {
        "meta": finish_metadata(meta),
        "description": setting.description,
        "seeds": seeds,
        "variants": args.variants,
        "teacher_interval": args.teacher_interval,
        "methods": {name: {"arguments": o, "teacher": t} for name, (o, t) in plan.items()},
        **result,
    }
    plots = plot_variants(payload, output_dir, stem)
    payload["plots"] = [path.name for path in plots]
    paths = write_results(stem, payload, render_markdown(payload), output_dir) + plots
    partial.unlink(missing_ok=True)
    print("wrote", ", ".join(str(p) for p in paths))
    return payload


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
