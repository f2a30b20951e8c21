"""`constrained`: the most accurate model whose measured fairness gap stays under a target (proxy-Lagrangian).

Per task t and fairness attribute a the user sets a bound `gap_{t,a} ≤ target_{t,a}` (`fairness_target`, in
`fairness_metric` units: EO violation by default). Training is a two-player game (Cotter, Jiang & Sridharan 2019;
TFCO's `AdditiveExternalRegretOptimizer` with proxy constraints, cooper's `strict_violation`):

- the parameters minimise `(1/T) Σ_t [w_t · CE_t + Σ_a λ_{t,a} · F_{t,a}]` (w_t from the task weighting), with
  `F_{t,a}` the differentiable surrogate of the loss registry (`fairness_loss`, any registered loss; default
  `eo_gap`, defined here: the EO violation of soft predictions) on the logits `fairness_grad_to` routes;
- the multipliers follow the *measured* constraint: once per optimizer step,
  `λ_{t,a} ← clip(λ_{t,a} + multiplier_lr · (gap_{t,a} − target_{t,a}), 0, multiplier_max)`, where `gap_{t,a}` is
  computed from hard predictions, on per-group confusion counts summed over the last `constraint_window` optimizer
  steps and over every rank (one SUM all-reduce per step), so every rank holds the same multipliers.

A multiplier rises while its constraint is violated and decays to 0 once it is met with room to spare, so a loose
target costs no accuracy. Constraining only an auxiliary task with the surrogate routed to the shared encoder
(`fairness_grad_to="shared"`, the default) is the fairness-transfer setting with a target instead of a λ.

Caveats (measured, benchmarks/results/quality_constrained.md): the final iterate of the game oscillates around the
bound, so a held-out gap can miss the target by the oscillation's amplitude (a smaller `multiplier_lr` narrows it);
a constraint the model cannot meet (a task it does not learn, whose gap is noise) drives its multiplier to
`multiplier_max`, and its surrogate then degrades the shared encoder for every task: leave such tasks unconstrained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback

from ..configuration_fairmtl import FairMTLConfig
from ..losses.base import FairnessLoss, masked_spread, register_fairness_loss
from ..losses.distributed import all_reduce_sum
from ..losses.eps_deo import DEFAULT_CONCENTRATION
from ..modeling_fairmtl import IGNORE_INDEX
from ..utils import suggest_names
from .base import BatchView, Strategy, TaskObjective, TaskTerms, register_strategy

DEFAULT_FAIRNESS_TARGET = 0.1
"""Bound used when `fairness_target` is unset (EO-violation units)."""
CONSTRAINT_METRICS = ("eo_violation", "tpr_gap", "dp_gap", "eps_deo")
"""Gaps a constraint can bound, as `hf_fairmtl.metrics.fairness_metrics` defines them on hard predictions."""

COTTER_2019_CITATION = """@inproceedings{cotter2019two,
  title = {Two-Player Games for Efficient Non-Convex Constrained Optimization},
  author = {Cotter, Andrew and Jiang, Heinrich and Sridharan, Karthik},
  booktitle = {Proceedings of the 30th International Conference on Algorithmic Learning Theory},
  series = {Proceedings of Machine Learning Research},
  volume = {98},
  pages = {300--332},
  year = {2019}
}"""


@dataclass(frozen=True)
class Constraint:
    """One bound `gap(task, attr) ≤ target`; `size` is the length of its flattened `[G, C, C]` confusion counts."""

    task_index: int
    task: str
    attr: str
    target: float
    num_groups: int
    num_classes: int

    @property
    def size(self) -> int:
        return self.num_groups * self.num_classes * self.num_classes


def resolve_constraints(
    config: FairMTLConfig, fairness_attributes: dict[str, list[str]], fairness_target: Any
) -> list[Constraint]:
    """The constraints `fairness_target` sets: `None` / a float for every (task, attribute) pair, or a dict.

    A dict maps a task to one bound for all its fairness attributes or to `{attr: bound}`; tasks it omits are
    unconstrained.

    Raises:
        ValueError: Naming `fairness_target` and the unknown task, or an attribute the task is not made fair for.
    """
    if not isinstance(fairness_target, dict):
        bound = DEFAULT_FAIRNESS_TARGET if fairness_target is None else float(fairness_target)
        fairness_target = {task: bound for task, attrs in fairness_attributes.items() if attrs}
    constraints = []
    for task, bounds in fairness_target.items():
        if task not in config.tasks:
            raise ValueError(
                f"fairness_target names unknown task {task!r}{suggest_names(task, config.tasks)}; tasks are "
                f"{config.tasks}"
            )
        attrs = fairness_attributes.get(task) or []
        bounds = bounds if isinstance(bounds, dict) else dict.fromkeys(attrs, bounds)
        for attr, bound in bounds.items():
            if attr not in attrs:
                raise ValueError(
                    f"fairness_target sets a bound for task {task!r} and attribute {attr!r}, but that task is made "
                    f"fair for {attrs} (see `fairness_attributes`)"
                )
            index = config.tasks.index(task)
            num_classes = config.task_num_labels[task]
            constraints.append(Constraint(index, task, attr, float(bound), config.num_groups(attr), num_classes))
    return constraints


def confusion_counts(
    predictions: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, num_groups: int, num_classes: int
) -> torch.Tensor:
    """`[G, C, C]` counts of (group, true class, predicted class) over rows with a label and a known group."""
    usable = (labels != IGNORE_INDEX) & (groups >= 0)
    cell = (groups.clamp(min=0) * num_classes + labels.clamp(min=0)) * num_classes + predictions
    # Unusable rows go to a spill bin past the end (static shapes, no host sync).
    cell = torch.where(usable, cell, torch.full_like(cell, num_groups * num_classes * num_classes))
    counts = torch.bincount(cell.long(), minlength=num_groups * num_classes * num_classes + 1)
    return counts[:-1].to(torch.float64).reshape(num_groups, num_classes, num_classes)


def measured_gap(confusion: torch.Tensor, metric: str, alpha: float = DEFAULT_CONCENTRATION) -> torch.Tensor:
    """The gap `metric` of hard predictions from `[G, C, C]` counts, as `fairness_metrics` computes it.

    Binary tasks use class 1; multi-class tasks average the one-vs-rest gaps over the classes where at least two
    groups have the rate defined (`eps_deo`: max over classes). Fewer than two groups with the rate: 0.
    """
    num_classes = confusion.shape[1]
    classes = slice(1, 2) if num_classes == 2 else slice(0, num_classes)
    positives = confusion.sum(2)[:, classes]
    predicted = confusion.sum(1)[:, classes]
    hits = torch.diagonal(confusion, dim1=1, dim2=2)[:, classes]
    rows = confusion.sum((1, 2)).unsqueeze(1).expand_as(predicted)
    negatives, false_hits = rows - positives, predicted - hits
    if metric == "eps_deo":

        def log_spread(count: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
            return masked_spread(torch.log((count + alpha / 2) / (total + alpha)), total > 0)

        return (log_spread(hits, positives) + log_spread(false_hits, negatives)).max()

    def rate_gap(count: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        defined = total > 0
        spread = masked_spread(count / total.clamp(min=1), defined)  # [K]
        measurable = defined.sum(0) >= 2
        return (spread * measurable).sum() / measurable.sum().clamp(min=1)

    if metric == "tpr_gap":
        return rate_gap(hits, positives)
    if metric == "eo_violation":
        return rate_gap(hits, positives) + rate_gap(false_hits, negatives)
    if metric == "dp_gap":
        return rate_gap(predicted, rows)
    raise ValueError(f"Unknown fairness_metric {metric!r}; choose one of {list(CONSTRAINT_METRICS)}")


@register_fairness_loss("eo_gap")
class EOGapLoss(FairnessLoss):
    """Soft equalized-odds gap: `(max − min)_g E[p_1 | y=1, g] + (max − min)_g E[p_1 | y=0, g]`.

    The differentiable stand-in for `eo_violation` in its own units (soft rates instead of hard ones), the default
    surrogate of `constrained`: its gradient stays bounded where ε-DEO's log rates blow up on rare classes. Group
    means are over the global batch (exact under DDP). Multi-class: one-vs-rest per class, averaged over classes
    (the macro average of `fairness_metrics`). `conditions="positive"` / `"negative"` keep the TPR / FPR side.
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        batch = self.prepare(logits, labels, groups)
        classes = self.one_vs_rest_classes
        positive, negative = batch.class_indicators(classes)
        score = batch.log_probs[:, classes].exp()
        zero = torch.zeros((), dtype=score.dtype, device=score.device)
        soft = torch.cat([torch.where(positive, score, zero), torch.where(negative, score, zero)], dim=1)
        sums, counts = batch.group_statistics(soft, torch.cat([positive, negative], dim=1))
        spread = masked_spread(sums / counts.clamp(min=1), counts > 0)  # [2K]: max − min over groups with rows
        width = positive.shape[1]
        return self.zero_unless_two_groups(self.combine_sides(spread[:width], spread[width:]).mean(), counts.sum(1))


class MultiplierStep(TrainerCallback):
    """Runs the dual-ascent step of a [`ConstrainedStrategy`] after every optimizer step (on every rank)."""

    def __init__(self, strategy: ConstrainedStrategy) -> None:
        self.strategy = strategy

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        self.strategy.update_multipliers()


@register_strategy("constrained")
class ConstrainedStrategy(Strategy):
    """Task losses under fairness constraints `gap_{t,a} ≤ target_{t,a}`, multipliers by dual ascent (see module).

    Attributes:
        constraints: The (task, attribute, target) bounds, in multiplier order.
        multipliers: `[K]` Lagrange multipliers λ ≥ 0 (float64), identical on every rank.
        measured: `[K]` gaps measured over the last window (what the multipliers followed).
    """

    title = "Constrained (proxy-Lagrangian)"
    description = (
        "the task losses minimised subject to a bound on each task's measured fairness gap; Lagrange multipliers "
        "follow the measured gap of hard predictions, the parameters a differentiable surrogate (Cotter et al. 2019)"
    )
    citation = COTTER_2019_CITATION
    default_fairness_loss = "eo_gap"
    uses_fairness_target = True  # swept over `fairness_target` (hf_fairmtl.experiments.sweeps)

    def __init__(self, args: Any, config: FairMTLConfig, fairness_attributes: dict[str, list[str]]) -> None:
        super().__init__(args, config, fairness_attributes)
        # The trainer's F_t averages the attributes; the multipliers need F_{t,a} one by one, computed here once per
        # batch (so stateful losses such as eps_deo update their estimates once), not also by the trainer.
        self.uses_fairness = False
        self.metric = args.fairness_metric
        self.constraints = resolve_constraints(config, fairness_attributes, args.fairness_target)
        self.window = int(args.constraint_window)
        width = sum(c.size for c in self.constraints)
        self.multipliers = torch.zeros(len(self.constraints), dtype=torch.float64)
        self.measured = torch.zeros(len(self.constraints), dtype=torch.float64)
        self.window_counts = torch.zeros(self.window, width, dtype=torch.float64)
        self.steps = 0  # optimizer steps seen: the next window row is steps % window
        self._pending = torch.zeros(width, dtype=torch.float64)  # this rank's counts since the last step
        self._latest_fairness: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------ primal side

    def combine(self, terms: TaskTerms, batch: BatchView) -> TaskObjective:
        indices = [k for k, c in enumerate(self.constraints) if c.task_index == terms.index]
        if not indices:
            return self.accuracy_only(terms)
        logits = self.fairness_logits(terms.index, batch)
        losses = torch.stack(
            [batch.attribute_fairness_loss(terms.index, self.constraints[k].attr, logits) for k in indices]
        )
        self._latest_fairness[terms.index] = losses.detach().mean()
        weights = self._on(losses.device).multipliers[indices].to(losses.dtype)
        return TaskObjective(
            weighted=terms.exact_accuracy,
            # The weighting adds `w_t · CE_t / T`: dividing by T too keeps the share `(w_t · CE_t + Σ_a λ_a F_a) / T`,
            # so λ is in units of the task's own loss whatever the number of tasks.
            unweighted=(weights * losses).sum() / (terms.micro_batches * self.config.num_tasks),
            objective=terms.accuracy,
        )

    def after_batch(self, batch: BatchView) -> None:
        if not batch.training or not self.constraints:
            return
        counts = [
            confusion_counts(
                batch.logits[c.task_index].detach().argmax(-1),
                batch.labels[:, c.task_index],
                batch.group_ids(c.attr),
                c.num_groups,
                c.num_classes,
            ).flatten()
            for c in self.constraints
        ]
        self._on(batch.labels.device)._pending += torch.cat(counts)

    # ------------------------------------------------------------------ dual side

    def update_multipliers(self) -> None:
        """One dual-ascent step from the counts of the last `constraint_window` optimizer steps (all ranks)."""
        if not self.constraints:
            return
        step_counts = all_reduce_sum(self._pending.clone())
        self._pending.zero_()
        self.window_counts[self.steps % self.window] = step_counts
        self.steps += 1
        totals = self.window_counts.sum(0)
        start = 0
        for k, constraint in enumerate(self.constraints):
            confusion = totals[start : start + constraint.size].reshape(
                constraint.num_groups, constraint.num_classes, constraint.num_classes
            )
            start += constraint.size
            if int((confusion.sum((1, 2)) > 0).sum()) < 2:
                continue  # no evidence about this constraint in the window: keep λ
            self.measured[k] = measured_gap(confusion, self.metric)
            step = self.args.multiplier_lr * (self.measured[k] - constraint.target)
            self.multipliers[k] = (self.multipliers[k] + step).clamp(0.0, self.args.multiplier_max)

    def callbacks(self, trainer: Any) -> list[TrainerCallback]:
        return [MultiplierStep(self)]

    def _on(self, device: torch.device) -> ConstrainedStrategy:
        """Move the state tensors to `device` (once: the model's device) and return `self`."""
        if self._pending.device != device:
            for name in ("multipliers", "measured", "window_counts", "_pending"):
                setattr(self, name, getattr(self, name).to(device))
        return self

    # ------------------------------------------------------------------ logging and checkpoints

    def log_values(self, terms: TaskTerms) -> dict[str, torch.Tensor]:
        values = {}
        if terms.index in self._latest_fairness:
            values["fairness_loss"] = self._latest_fairness[terms.index]
        for k, constraint in enumerate(self.constraints):
            if constraint.task_index == terms.index:
                values[f"multiplier_{constraint.attr}"] = self.multipliers[k]
                values[f"constraint_{constraint.attr}"] = self.measured[k]
        return values

    def state_dict(self) -> dict[str, Any]:
        return {
            "constraints": [(c.task, c.attr, c.target) for c in self.constraints],
            "multipliers": self.multipliers.cpu().clone(),
            "measured": self.measured.cpu().clone(),
            "window_counts": self.window_counts.cpu().clone(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = [(c.task, c.attr, c.target) for c in self.constraints]
        saved = [tuple(entry) for entry in state["constraints"]]
        if saved != mine:
            raise ValueError(f"the checkpoint's constraints {saved} differ from this run's {mine} (fairness_target)")
        if tuple(state["window_counts"].shape) != tuple(self.window_counts.shape):
            raise ValueError(
                f"the checkpoint's constraint_window is {state['window_counts'].shape[0]}, this run's {self.window}"
            )
        device = self._pending.device
        self.multipliers = state["multipliers"].to(device, torch.float64).clone()
        self.measured = state["measured"].to(device, torch.float64).clone()
        self.window_counts = state["window_counts"].to(device, torch.float64).clone()
        self.steps = int(state["steps"])
        self._pending.zero_()
