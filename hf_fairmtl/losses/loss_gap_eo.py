"""Loss-difference equalized odds (Shen et al. 2022, as in fairlib)."""

from __future__ import annotations

import torch

from .base import FairnessLoss, group_means, register_fairness_loss


@register_fairness_loss("loss_gap_eo")
class LossGapEOLoss(FairnessLoss):
    """`Σ_y Σ_g |L_{y,g} − L_y|`: each group's cross-entropy on class `y` against the class's mean.

    Shen, Han, Cohn, Baldwin & Frermann, "Optimising Equal Opportunity Fairness in Model Training"
    (NAACL 2022), the constrained objective fairlib trains with. `L_{y,g}` is the mean cross-entropy of
    group `g`'s rows labelled `y` and `L_y` the mean over all usable rows labelled `y`; cells without
    rows are skipped. Equal per-group losses within each class approximate equal TPRs for every class.

    Multi-class works natively (the sum runs over every class). `conditions`: `"both"` sums all classes;
    `"negative"` keeps class 0 only (the negative class) and `"positive"` the other classes (class 1 for a
    binary task). With fewer than two groups present the loss is 0.
    """

    supports_stacking = True
    title = "Loss-gap equalized odds"
    description = "per class, each group's loss distance from the class's mean loss"
    citation = """@inproceedings{shen2022optimising,
  title = {Optimising Equal Opportunity Fairness in Model Training},
  author = {Shen, Aili and Han, Xudong and Cohn, Trevor and Baldwin, Timothy and Frermann, Lea},
  booktitle = {Proceedings of NAACL},
  year = {2022}
}"""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        batch = self.prepare(logits, labels, groups)
        nll = -batch.log_probs.gather(-1, batch.labels.unsqueeze(-1))  # [B, 1]
        in_class, _ = batch.class_indicators(slice(None))  # [B, C]: row is labelled c (and usable)
        per_class_nll = torch.where(in_class, nll, torch.zeros_like(nll))
        sums, counts = batch.group_statistics(per_class_nll, in_class)  # [G, C]
        group_loss = group_means(sums, counts)
        class_loss = group_means(sums.sum(-2, keepdim=True), counts.sum(-2, keepdim=True))
        deviation = torch.where(counts > 0, (group_loss - class_loss).abs(), torch.zeros_like(group_loss))
        per_class = deviation.sum(-2)  # [C]
        loss = self.combine_sides(per_class[..., 1:].sum(-1), per_class[..., 0])
        return self.zero_unless_two_groups(loss, counts.sum(-1))
