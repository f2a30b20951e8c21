"""`weighted`: task losses plus fixed-weight fairness losses; the fairness-transfer objective."""

from __future__ import annotations

import torch

from .base import BatchView, StackedObjective, StackedTaskTerms, Strategy, TaskObjective, TaskTerms, register_strategy


@register_strategy("weighted")
class WeightedStrategy(Strategy):
    """`Σ_t w_t · CE_t / T + Σ_t λ_t · F_t` (L2T-FMT's fixed-λ baseline, Eq. 5).

    With a fairness loss on an auxiliary task only and the fairness gradient routed to the shared encoder
    (the default), this is the fairness-transfer objective of Aguirre & Dredze: the target task, which has no
    demographic labels, inherits the encoder the auxiliary task's fairness term shaped.
    """

    title = "Weighted fairness"
    description = (
        "each task's loss plus a fixed weight times its fairness loss; with demographic labels on only some tasks "
        "this is fairness transfer through the shared encoder (Aguirre & Dredze)"
    )
    citation = """@inproceedings{aguirre2023transferring,
  title = {Transferring Fairness using Multi-Task Learning with Limited Demographic Information},
  author = {Aguirre, Carlos and Dredze, Mark},
  year = {2023},
  eprint = {2305.12671},
  archivePrefix = {arXiv}
}"""
    default_fairness_loss = "eps_deo"
    uses_fairness_weight = True

    def combine(self, terms: TaskTerms, batch: BatchView) -> TaskObjective:
        if terms.fairness is None:
            return self.accuracy_only(terms)
        return TaskObjective(
            weighted=terms.exact_accuracy,
            unweighted=terms.fairness_weight * terms.fairness / terms.micro_batches,
            objective=terms.accuracy,
        )

    def combine_all(self, terms: StackedTaskTerms, batch: BatchView) -> StackedObjective:
        if terms.fairness is None:
            return StackedObjective.accuracy_only(terms)
        # λ_t = 0 where a task has no fairness loss (its F_t is a 0 with a graph): the same values as `combine`.
        weights = torch.where(terms.has_fairness, terms.fairness_weight, 0.0).to(terms.fairness)
        return StackedObjective(terms.exact_accuracy, weights * terms.fairness / terms.micro_batches, terms.accuracy)
