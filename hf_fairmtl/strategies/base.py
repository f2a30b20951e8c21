"""The `Strategy` base: how one task's accuracy and fairness terms become its share of the objective.

`FairMTLTrainer.compute_loss` runs one forward pass, computes per task the accuracy loss CE_t and (for tasks
with fairness attributes) the fairness loss F_t on the logits the strategy asks for, hands both to
[`Strategy.combine`], and passes the resulting [`TaskObjective`]s to the task weighting. A strategy never
sees the trainer: what it may use of the batch is in [`BatchView`].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from transformers import TrainerCallback

from ..configuration_fairmtl import FairMTLConfig
from ..registry import Registry

FAIRNESS_GRAD_TARGETS = ("shared", "heads", "all")


@dataclass
class TaskTerms:
    """One task's loss terms on the current micro-batch.

    Attributes:
        index: Position of the task in `config.tasks`.
        task: Task name.
        accuracy: Mean cross-entropy over the task's labelled rows (0 with a graph when none).
        exact_accuracy: The same, rescaled so that summing it over the micro-batches of an accumulation window
            and averaging over ranks gives the window's mean (what one large batch would give).
        fairness: F_t, the fairness loss averaged over the task's attributes; `None` when the task has none.
        present: Whether the task has a labelled row in this micro-batch (bool tensor).
        micro_batches: Micro-batches in the accumulation window (divides batch-level terms such as F_t).
        fairness_weight: λ_t from `fairness_weight`.
    """

    index: int
    task: str
    accuracy: torch.Tensor
    exact_accuracy: torch.Tensor
    fairness: torch.Tensor | None
    present: torch.Tensor
    micro_batches: int
    fairness_weight: float


@dataclass
class TaskObjective:
    """A task's share of the objective: `w_t · weighted / T + unweighted`, with w_t from the task weighting.

    Attributes:
        weighted: The part the task weight multiplies (window-normalised).
        unweighted: The part added as is (e.g. λ_t · F_t of `weighted`).
        objective: The task's unnormalised loss that GradNorm balances and the logs show.
    """

    weighted: torch.Tensor
    unweighted: torch.Tensor
    objective: torch.Tensor


@dataclass
class StackedTaskTerms:
    """Every task's loss terms on the current micro-batch, as `[T]` tensors in `config.tasks` order.

    What [`Strategy.combine_all`] receives: a strategy that combines them in a few vector operations avoids T
    small operations per step, which at many tasks cost more than the arithmetic.

    Attributes:
        tasks: Task names.
        accuracy: `[T]` [`TaskTerms.accuracy`] of every task.
        exact_accuracy: `[T]` [`TaskTerms.exact_accuracy`].
        fairness: `[T]` F_t, 0 (with a graph) for a task without fairness attributes; `None` when no task has one
            (or the strategy computes none).
        has_fairness: `[T]` bool, the tasks that have a fairness loss.
        present: `[T]` bool, tasks with a labelled row in this micro-batch.
        micro_batches: Micro-batches in the accumulation window.
        fairness_weight: `[T]` λ_t.
    """

    tasks: Sequence[str]
    accuracy: torch.Tensor
    exact_accuracy: torch.Tensor
    fairness: torch.Tensor | None
    has_fairness: torch.Tensor
    present: torch.Tensor
    micro_batches: int
    fairness_weight: torch.Tensor

    def split(self) -> list[TaskTerms]:
        """Every task's [`TaskTerms`] (one host read of the flags and weights, not one per task)."""
        flags, weights = self.has_fairness.tolist(), self.fairness_weight.tolist()
        accuracy, exact, present = self.accuracy.unbind(), self.exact_accuracy.unbind(), self.present.unbind()
        fairness = self.fairness.unbind() if self.fairness is not None else [None] * len(self.tasks)
        return [
            TaskTerms(
                t,
                task,
                accuracy[t],
                exact[t],
                fairness[t] if flags[t] else None,
                present[t],
                self.micro_batches,
                weights[t],
            )
            for t, task in enumerate(self.tasks)
        ]


@dataclass
class StackedObjective:
    """Every task's [`TaskObjective`] as `[T]` tensors (`weighted`, `unweighted`, `objective`)."""

    weighted: torch.Tensor
    unweighted: torch.Tensor
    objective: torch.Tensor

    @classmethod
    def stack(cls, objectives: Sequence[TaskObjective]) -> StackedObjective:
        """Stack per-task objectives (what the default [`Strategy.combine_all`] does)."""
        fields = ("weighted", "unweighted", "objective")
        return cls(*(torch.stack([getattr(objective, name) for objective in objectives]) for name in fields))

    @staticmethod
    def accuracy_only(terms: StackedTaskTerms) -> StackedObjective:
        """CE_t as every task's whole share (vector form of [`Strategy.accuracy_only`])."""
        return StackedObjective(terms.exact_accuracy, torch.zeros_like(terms.exact_accuracy), terms.accuracy)


@dataclass
class BatchView:
    """What a strategy may read of the current micro-batch (all tensors on the model's device).

    Attributes:
        config: The model's `FairMTLConfig`.
        shared: `[B, H]` shared representation the heads read.
        logits: Per-task logits, `config.tasks` order.
        labels: `[B, T]` labels (-100 = missing).
        group_labels: `[B, A]` group ids (-1 = unknown) or `None`.
        training: Whether the model is in training mode.
        routed_logits: `(task_index, route) -> logits` whose gradient reaches only the parameters `route`
            names ("shared", "heads" or "all").
        fairness_loss: `(task_index, logits) -> F_t` with the task's registered fairness losses.
        group_ids: `(attr) -> [B]` group ids of one (possibly intersectional) attribute, -1 = unknown.
        attribute_fairness_loss: `(task_index, attr, logits) -> F_{t,a}`, the task's registered fairness loss of one
            attribute (stateful losses update their estimates in training mode, as for `fairness_loss`).
    """

    config: FairMTLConfig
    shared: torch.Tensor
    logits: Sequence[torch.Tensor]
    labels: torch.Tensor
    group_labels: torch.Tensor | None
    training: bool
    routed_logits: Callable[[int, str], torch.Tensor]
    fairness_loss: Callable[[int, torch.Tensor], torch.Tensor]
    group_ids: Callable[[str], torch.Tensor]
    attribute_fairness_loss: Callable[[int, str, torch.Tensor], torch.Tensor]


class Strategy:
    """Base class of the strategies; subclass, set the metadata, implement `combine`, register by name.

    Args:
        args: The `FairMTLTrainingArguments` (read-only).
        config: The model's `FairMTLConfig`.
        fairness_attributes: Task → attributes it is made fair for (resolved by the trainer).

    Class attributes (read by the model card and the report):
        name: Registered name (set by the decorator).
        title: Display name.
        description: One sentence of what it optimises, for cards and reports.
        citation: BibTeX of the method, or `None`.
        default_fairness_loss: Fairness loss used when `fairness_loss` is unset.
        default_fairness_grad_to: Default gradient route of the fairness term (see `FAIRNESS_GRAD_TARGETS`).
        conditions: Side of equalized odds its fairness losses use: "both", "positive" or "negative".
        default_fairness_weight: λ used when `fairness_weight` is unset; `None` = the fairness loss's default
            (10 for eps_deo, 1 otherwise). 0 makes F_t a logged monitor that trains nothing (`adversarial`,
            `balanced`: their own term debiases; a user composes a fairness loss by setting λ).
        uses_fairness: Whether the trainer computes fairness losses for it (`False` for `vanilla`).
        uses_fairness_weight: Whether `fairness_weight` (λ) enters its objective (reports then name λ).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    citation: ClassVar[str | None] = None
    default_fairness_loss: ClassVar[str] = "robust_eo"
    default_fairness_grad_to: ClassVar[str] = "shared"
    conditions: ClassVar[str] = "both"
    default_fairness_weight: ClassVar[float | None] = None
    uses_fairness: ClassVar[bool] = True
    uses_fairness_weight: ClassVar[bool] = False

    def __init__(self, args: Any, config: FairMTLConfig, fairness_attributes: dict[str, list[str]]) -> None:
        self.args = args
        self.config = config
        self.fairness_attributes = fairness_attributes

    def fairness_logits(self, task_index: int, batch: BatchView) -> torch.Tensor:
        """Logits the task's fairness loss is computed on; the default routes by `fairness_grad_to`."""
        return batch.routed_logits(task_index, self.args.fairness_grad_to)

    def combine(self, terms: TaskTerms, batch: BatchView) -> TaskObjective:
        """One task's [`TaskObjective`] from its terms."""
        raise NotImplementedError

    def combine_all(self, terms: StackedTaskTerms, batch: BatchView) -> StackedObjective:
        """Every task's objective at once. The default calls [`combine`] per task and stacks the results; a
        strategy whose rule is the same for every task may override it with vector operations (equal values)."""
        return StackedObjective.stack([self.combine(task_terms, batch) for task_terms in terms.split()])

    def objectives(self, terms: StackedTaskTerms, batch: BatchView) -> StackedObjective:
        """What the trainer calls: [`combine_all`], unless a subclass overrides [`combine`] below the class that
        vectorised `combine_all` (e.g. `proxy_groups` under `weighted`): then its `combine` runs per task."""
        owners = type(self).__mro__
        combine_owner = next(cls for cls in owners if "combine" in cls.__dict__)
        combine_all_owner = next(cls for cls in owners if "combine_all" in cls.__dict__)
        if issubclass(combine_all_owner, combine_owner):
            return self.combine_all(terms, batch)
        return Strategy.combine_all(self, terms, batch)

    def extra_loss(self, batch: BatchView) -> torch.Tensor | None:
        """A batch-level term added to the objective outside the task weighting (e.g. an adversary)."""
        return None

    def log_values(self, terms: TaskTerms) -> dict[str, torch.Tensor]:
        """Extra per-task values to log (averaged over the logging window), keyed by metric name."""
        return {}

    def log_vectors(self, terms: StackedTaskTerms) -> dict[str, torch.Tensor]:
        """Extra values of every task to log, as `[T]` vectors keyed by metric name (the vector form of
        [`log_values`], logged under the same per-task keys; both may be used)."""
        return {}

    def after_batch(self, batch: BatchView) -> None:
        """Called once per micro-batch after the objective is built."""

    def callbacks(self, trainer: Any) -> list[TrainerCallback]:
        """Callbacks the strategy needs in the trainer (e.g. the L2T-FMT teacher)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Strategy state saved in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore [`state_dict`]."""

    @staticmethod
    def accuracy_only(terms: TaskTerms) -> TaskObjective:
        """CE_t as the task's whole share (a task without fairness attributes, or `vanilla`)."""
        return TaskObjective(
            weighted=terms.exact_accuracy, unweighted=terms.exact_accuracy.new_zeros(()), objective=terms.accuracy
        )


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", Strategy, setting="strategy")
"""Registered strategies by name; add one with [`register_strategy`]."""


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator registering a [`Strategy`] subclass as `name` (duplicates refused).

    Example:
        ```python
        @register_strategy("my_strategy")
        class MyStrategy(Strategy):
            title = "Mine"
            def combine(self, terms, batch):
                return self.accuracy_only(terms)
        ```
    """
    return STRATEGIES.register(name)
