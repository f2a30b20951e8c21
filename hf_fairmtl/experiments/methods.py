"""Methods of an experiment: a method is `<strategy>[+<weighting>]`, both read from the registries
(`hf_fairmtl.strategies.STRATEGIES`, `hf_fairmtl.weighting.WEIGHTINGS`), e.g. `vanilla`, `weighted`,
`teacher+gradnorm`, `mtaf+uncertainty`. Also the encoder-dependent training defaults."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..strategies import STRATEGIES
from ..trainer import FairMTLTrainingArguments
from ..utils import suggest_names
from ..weighting import WEIGHTINGS
from .sweeps import split_method_name

DEFAULT_METHODS = ("vanilla", "weighted", "teacher+gradnorm")
METHOD_SEPARATOR = "+"
GRADNORM = "gradnorm"
# Training defaults that depend on the encoder: MiniLM fine-tunes at 1e-4 for 80 steps per method (three methods fit
# the 10-minute budget on 2 CPU cores); the small tabular MLP wants a larger rate and more (cheap) steps.
# λ = 3 for text, measured on BUG (benchmarks/results/quality_text_lambda_sweep.md, 3 seeds): the trainer's λ = 10
# for eps_deo (chosen on the synthetic transfer test) collapses the target to a few classes (accuracy 0.54 → 0.28),
# λ = 1 changes nothing beyond the seed spread, λ = 3 cuts the target's EO violation 0.216 → 0.162 for 3.6 points
# of accuracy — about what the target's own gender labels buy (0.139, −6 points). On this default run: 0.303 → 0.150.
MODALITY_DEFAULTS = {
    "text": {"learning_rate": 1e-4, "max_steps": 80, "fairness_weight": 3.0},
    "tabular": {"learning_rate": 1e-3, "max_steps": 300},
}


def parse_method(method: str) -> tuple[str, str | None]:
    """`"teacher+gradnorm"` → `("teacher", "gradnorm")`, `"vanilla"` → `("vanilla", None)`.

    Raises:
        ValueError: Naming the method, the registered strategies and weightings, and close matches.
    """
    plain, _ = split_method_name(method)  # a swept method, e.g. "weighted[λ=3]" (hf_fairmtl.experiments.sweeps)
    strategy, plus, weighting = plain.partition(METHOD_SEPARATOR)
    if strategy in STRATEGIES and (not plus or weighting in WEIGHTINGS):
        return strategy, weighting if plus else None
    kind, wrong, names = (
        ("weighting", weighting, WEIGHTINGS) if strategy in STRATEGIES else ("strategy", strategy, STRATEGIES)
    )
    raise ValueError(
        f"Unknown method {method!r}: unknown {kind} {wrong!r} (a method is a strategy of {', '.join(STRATEGIES)}, "
        f"optionally with '+<weighting>' of {', '.join(WEIGHTINGS)}){suggest_names(wrong, names)}"
    )


def method_arguments(
    training_kwargs: Mapping[str, Any], method: str, seed: int, output_dir: str
) -> FairMTLTrainingArguments:
    """`FairMTLTrainingArguments` of one method and seed (the strategy's own defaults apply where unset).

    The method's weighting sets `weighting` (`+gradnorm` as before: `weighting="gradnorm"`, which the training
    arguments treat as `gradnorm=True`); without one, the `weighting`/`gradnorm` of `training_kwargs` apply.
    """
    strategy, weighting = parse_method(method)
    settings = {**training_kwargs, **split_method_name(method)[1], "strategy": strategy, "seed": seed}
    settings["output_dir"] = output_dir
    if weighting is not None:
        settings["weighting"] = weighting
        settings["gradnorm"] = weighting == GRADNORM or bool(training_kwargs.get("gradnorm"))
    return FairMTLTrainingArguments(**settings)


def method_weighting(args: FairMTLTrainingArguments) -> str | None:
    """The task weighting of training arguments; `None` for equal weights."""
    return None if args.weighting == "equal" else str(args.weighting)


def describe_method(args: FairMTLTrainingArguments) -> str:
    """One line of what a method optimises, for the report, from the registered strategy and weighting."""
    strategy = STRATEGIES.get_class(args.strategy)
    weighting = method_weighting(args)
    text = f"{strategy.title or args.strategy} (`{args.strategy}`)"
    if weighting is not None:
        text += f" + {WEIGHTINGS.get_class(weighting).title or weighting}"
    if not strategy.uses_fairness:
        return text + "; accuracy losses only"
    text += f"; fairness loss {args.fairness_loss or strategy.default_fairness_loss}"
    if getattr(strategy, "uses_fairness_weight", False):
        text += f", λ {json.dumps(args.fairness_weight)}"
    if args.fairness_attributes:
        text += f", on {json.dumps(args.fairness_attributes)}"
    return text


def resolve_training_kwargs(training_kwargs: Mapping[str, Any], modality: str) -> dict[str, Any]:
    """Fill the settings left unset (`None`) with the encoder-dependent defaults of `MODALITY_DEFAULTS`.

    `max_steps` is only filled when neither it nor `num_train_epochs` was given, so an epoch count wins.
    """
    resolved = dict(training_kwargs)
    defaults = MODALITY_DEFAULTS[modality]
    if resolved.get("learning_rate") is None:
        resolved["learning_rate"] = defaults["learning_rate"]
    if resolved.get("max_steps") is None:
        resolved["max_steps"] = defaults["max_steps"] if resolved.get("num_train_epochs") is None else -1
    if resolved.get("num_train_epochs") is None:
        resolved["num_train_epochs"] = 3.0
    if resolved.get("fairness_weight") is None and "fairness_weight" in defaults:
        resolved["fairness_weight"] = defaults["fairness_weight"]
    return resolved
