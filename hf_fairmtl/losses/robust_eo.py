"""Robust log-loss for equalized odds (L2T-FMT, Roy & Ntoutsi 2022)."""

from __future__ import annotations

import torch

from .base import FairnessLoss, group_means, log_not_class, masked_max, register_fairness_loss


@register_fairness_loss("robust_eo")
class RobustEOLoss(FairnessLoss):
    """`F = max_g NLL(positives of g) + max_g NLL(negatives of g)`: the worst group's log-loss per side.

    This is the fairness loss of L2T-FMT and G-FMT (Roy & Ntoutsi, "Learning to Teach Fairness-aware Deep
    Multi-task Learning", 2022). Minimising the worst group's loss on positives and on negatives pulls the
    groups' true- and false-positive behaviour together (a distributionally robust surrogate of EO).

    `NLL(positives of g)` is the mean of `−log p_1` over group `g`'s rows labelled 1 and
    `NLL(negatives of g)` the mean of `−log p_0` over its rows labelled 0. Groups without rows on a side
    are left out of that side's max; a side without rows contributes 0.

    Multi-class: one-vs-rest per class `c` (positive side `−log p_c` on rows labelled `c`, negative side
    `−log(1 − p_c)` on the other rows), averaged over classes. For two classes this equals the binary form.

    `conditions="positive"` / `"negative"` keeps only that side. With fewer than two groups present the
    loss is 0 (nothing to be fair between).
    """

    supports_stacking = True
    title = "Robust log-loss"
    description = "the worst group's log-loss on positives plus the worst group's on negatives"
    citation = """@inproceedings{roy2022learning,
  title = {Learning to Teach Fairness-aware Deep Multi-task Learning},
  author = {Roy, Arjun and Ntoutsi, Eirini},
  booktitle = {Machine Learning and Knowledge Discovery in Databases (ECML PKDD)},
  year = {2022}
}"""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        batch = self.prepare(logits, labels, groups)
        classes = self.one_vs_rest_classes
        positive, negative = batch.class_indicators(classes)
        zero = torch.zeros((), dtype=batch.log_probs.dtype, device=batch.log_probs.device)
        # torch.where (not multiplication by the mask) so a huge NLL on a masked row cannot leak NaN.
        positive_nll = torch.where(positive, -batch.log_probs[..., classes], zero)
        negative_nll = torch.where(negative, -log_not_class(batch.log_probs)[..., classes], zero)
        sums, counts = batch.group_statistics(
            torch.cat([positive_nll, negative_nll], dim=-1), torch.cat([positive, negative], dim=-1)
        )
        worst = masked_max(group_means(sums, counts), counts > 0, dim=-2)  # [2K]
        width = positive.shape[-1]
        per_class = self.combine_sides(worst[..., :width], worst[..., width:])
        # Positive + negative counts of any one class = all usable rows of the group.
        return self.zero_unless_two_groups(per_class.mean(-1), counts[..., 0] + counts[..., width])
