"""`greedy` (G-FMT): each task trains on the larger of its accuracy and fairness losses."""

from __future__ import annotations

import torch

from ..losses.robust_eo import RobustEOLoss
from .base import (
    BatchView,
    StackedObjective,
    StackedTaskTerms,
    Strategy,
    TaskObjective,
    TaskTerms,
    register_strategy,
)

L2T_FMT_CITATION = RobustEOLoss.citation  # the paper that defines both the loss and G-FMT


def chosen_objective(terms: TaskTerms, use_fairness: bool) -> TaskObjective:
    """CE_t or F_t as the task's whole share (F_t is a batch-level term: divided by the micro-batches)."""
    if not use_fairness or terms.fairness is None:
        return Strategy.accuracy_only(terms)
    return TaskObjective(
        weighted=terms.fairness / terms.micro_batches,
        unweighted=terms.fairness.new_zeros(()),
        objective=terms.fairness,
    )


def chosen_objectives(terms: StackedTaskTerms, use_fairness: torch.Tensor) -> StackedObjective:
    """[`chosen_objective`] of every task at once: `use_fairness` `[T]` bool (ignored for tasks without F_t)."""
    if terms.fairness is None:
        return StackedObjective.accuracy_only(terms)
    chosen = use_fairness.to(terms.has_fairness.device) & terms.has_fairness
    return StackedObjective(
        weighted=torch.where(chosen, terms.fairness / terms.micro_batches, terms.exact_accuracy),
        unweighted=torch.zeros_like(terms.exact_accuracy),
        objective=torch.where(chosen, terms.fairness, terms.accuracy),
    )


@register_strategy("greedy")
class GreedyStrategy(Strategy):
    """G-FMT (Roy & Ntoutsi 2022's greedy baseline): `Σ_t w_t · max(CE_t, F_t) / T`.

    The default fairness loss is L2T-FMT's robust log-loss, itself a log-loss, so it can replace CE_t; the
    fairness gradient reaches head and encoder (`fairness_grad_to="all"`).
    """

    title = "G-FMT"
    description = "each task trains on the larger of its accuracy and fairness losses"
    citation = L2T_FMT_CITATION
    default_fairness_grad_to = "all"

    def combine(self, terms: TaskTerms, batch: BatchView) -> TaskObjective:
        if terms.fairness is None:
            return self.accuracy_only(terms)
        return chosen_objective(terms, bool(terms.fairness.detach() > terms.accuracy.detach()))

    def combine_all(self, terms: StackedTaskTerms, batch: BatchView) -> StackedObjective:
        if terms.fairness is None:
            return StackedObjective.accuracy_only(terms)
        return chosen_objectives(terms, terms.fairness.detach() > terms.accuracy.detach())
