"""Soft demographic-parity gap."""

from __future__ import annotations

import torch

from .base import FairnessLoss, group_means, masked_spread, register_fairness_loss


@register_fairness_loss("dp_gap")
class DPGapLoss(FairnessLoss):
    """`max_g E[p_1 | g] − min_g E[p_1 | g]`: spread of the groups' mean predicted positive probability.

    A differentiable stand-in for the demographic-parity difference (the gap in selection rates).
    Only rows with a label count, like every loss here: a row without a label for this task belongs to
    another task's data and says nothing about this task's population.

    Multi-class: the gap of the mean `p_c` per class, averaged over classes (the same macro average
    `fairness_metrics` reports for `dp_gap`). Demographic parity ignores the label, so `conditions` is
    accepted for a uniform interface and has no effect. With fewer than two groups present the loss is 0.
    """

    supports_stacking = True
    title = "Demographic-parity gap"
    description = "the spread of the groups' mean predicted positive probability"
    citation = None

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        batch = self.prepare(logits, labels, groups)
        score = batch.log_probs[..., self.one_vs_rest_classes].exp()  # [B, K]
        usable = batch.valid.unsqueeze(-1)
        sums, counts = batch.group_statistics(torch.where(usable, score, torch.zeros_like(score)), usable)
        present = counts > 0  # [G, 1], broadcast over classes
        gap = masked_spread(group_means(sums, counts.expand_as(sums)), present.expand_as(sums), dim=-2)  # [K]
        return self.zero_unless_two_groups(gap.mean(-1), counts[..., 0])
