"""`vanilla`: the task losses only."""

from __future__ import annotations

from .base import BatchView, StackedObjective, StackedTaskTerms, Strategy, TaskObjective, TaskTerms, register_strategy


@register_strategy("vanilla")
class VanillaStrategy(Strategy):
    """Vanilla MTL: `Σ_t w_t · CE_t / T`, no fairness term (with GradNorm weights: L2T-FMT's baseline)."""

    title = "Vanilla MTL"
    description = "the task losses only, no fairness term"
    uses_fairness = False

    def combine(self, terms: TaskTerms, batch: BatchView) -> TaskObjective:
        return self.accuracy_only(terms)

    def combine_all(self, terms: StackedTaskTerms, batch: BatchView) -> StackedObjective:
        return StackedObjective.accuracy_only(terms)
