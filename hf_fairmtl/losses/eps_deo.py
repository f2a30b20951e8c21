"""ε-differential equalized odds (Foulds & Islam; Aguirre & Dredze 2023) as a hinge loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import FairnessLoss, masked_spread, register_fairness_loss

DEFAULT_CONCENTRATION = 0.1
"""Dirichlet concentration α of the smoothed rates `(Σ soft positives + α/2) / (count + α)`."""

DEFAULT_RHO = 0.1
"""Step size ρ of the running (stochastic-approximation) estimates of the group counts."""


@register_fairness_loss("eps_deo")
class EpsDEOLoss(FairnessLoss):
    """Hinge on ε-differential equalized odds: `max(0, ε − target_epsilon)`.

    Per group `g` the smoothed soft rates are
    `TPR_g = (Σ_{y=1} p_1 + α/2) / (n_{g,y=1} + α)` and `FPR_g = (Σ_{y=0} p_1 + α/2) / (n_{g,y=0} + α)`,
    and `ε = max_{i,j} |log TPR_i − log TPR_j| + max_{i,j} |log FPR_i − log FPR_j|`
    (each max over pairs is `max_g log rate − min_g log rate`). This is the form of Aguirre & Dredze 2023;
    the full differential-fairness form would also bound the ratios of `1 − rate`.

    Running estimates: the soft sums and counts are exponential moving averages over batches with step
    `rho` (`m ← (1 − ρ) m + ρ · batch`), bias-corrected like Adam's moments so the first batches are not
    shrunk towards zero. The gradient flows through the current batch's contribution only (the past is
    a constant). They live in buffers (`running_soft_sums`, `running_counts`, `num_updates`), so they are
    in `state_dict` and restore on checkpoint resume, and move with `.to(device)`. Estimates update only
    in training mode; call `.eval()` to score without changing them. A batch without any usable row
    (globally) returns 0 and leaves them unchanged. Groups count as present once seen in any batch, so a
    batch with one group still yields a gradient pulling its rates towards the other groups' estimates;
    a fresh loss given one group returns 0.

    Multi-class: one-vs-rest per class (TPR/FPR of `p_c` among rows labelled `c` / not `c`), `ε` = max over
    classes (differential fairness is a worst-case bound). `conditions="positive"` / `"negative"` keep only
    the TPR / FPR term.

    Args:
        num_groups: Number of groups.
        num_classes: Number of classes.
        conditions: `"both"`, `"positive"` or `"negative"`.
        target_epsilon: ε below which the loss is 0 (the hinge point).
        alpha: Concentration α of the smoothing (> 0; keeps every log finite).
        rho: Step size of the running estimates in (0, 1]; 1 uses the current batch only.

    Attributes:
        epsilon: 0-dim buffer holding the last computed ε (detached), for logging: `loss.epsilon.item()`.
    """

    supports_stacking = True
    title = "ε-differential equalized odds"
    description = "the largest log-ratio of smoothed group TPRs and FPRs, penalised above a target ε"
    citation = """@inproceedings{foulds2020intersectional,
  title = {An Intersectional Definition of Fairness},
  author = {Foulds, James R. and Islam, Rashidul and Keya, Kamrun Naher and Pan, Shimei},
  booktitle = {IEEE International Conference on Data Engineering},
  year = {2020}
}"""

    def __init__(
        self,
        num_groups: int,
        num_classes: int = 2,
        conditions: str = "both",
        target_epsilon: float = 0.0,
        alpha: float = DEFAULT_CONCENTRATION,
        rho: float = DEFAULT_RHO,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_groups, num_classes, conditions, **kwargs)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (it keeps log rates finite), got {alpha!r}")
        if not 0 < rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {rho!r}")
        if target_epsilon < 0:
            raise ValueError(f"target_epsilon must be >= 0, got {target_epsilon!r}")
        self.target_epsilon = float(target_epsilon)
        self.alpha = float(alpha)
        self.rho = float(rho)
        width = 2 * len(range(num_classes)[self.one_vs_rest_classes])  # positive then negative side per class
        self.register_buffer("running_soft_sums", torch.zeros(num_groups, width))
        self.register_buffer("running_counts", torch.zeros(num_groups, width))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("epsilon", torch.zeros(()), persistent=False)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, target_epsilon={self.target_epsilon}, alpha={self.alpha}, rho={self.rho}"

    def reset_estimates(self) -> None:
        """Forget the running estimates (e.g. between independent training runs)."""
        self.running_soft_sums.zero_()
        self.running_counts.zero_()
        self.num_updates.zero_()
        self.epsilon.zero_()

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 3:
            raise ValueError(
                "EpsDEOLoss keeps running estimates per task: stack tasks with EpsDEOLoss.forward_stacked (one "
                "instance per task), not by passing [tasks, batch, classes] logits to one instance"
            )
        return self._step((self,), logits, labels, groups)

    @classmethod
    def forward_stacked(
        cls, losses: Sequence[FairnessLoss], logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor
    ) -> torch.Tensor:
        """`[T]` losses of T stacked tasks, each reading and updating its own instance's running estimates."""
        return losses[0]._step(tuple(losses), logits, labels, groups)

    def _step(
        self, owners: tuple[EpsDEOLoss, ...], logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor
    ) -> torch.Tensor:
        """The loss on one task's batch (`owners == (self,)`) or on stacked tasks (`owners[t]` = task t's state)."""
        for owner in owners:
            if owner.running_counts.device != logits.device:
                owner.to(logits.device)  # a trainer that forgot to move the loss should not crash on buffers
        batch = self.prepare(logits, labels, groups)
        classes = self.one_vs_rest_classes
        positive, negative = batch.class_indicators(classes)
        score = batch.log_probs[..., classes].exp()  # soft prediction p_c
        zero = torch.zeros((), dtype=score.dtype, device=score.device)
        soft = torch.cat([torch.where(positive, score, zero), torch.where(negative, score, zero)], dim=-1)
        sums, counts = batch.group_statistics(soft, torch.cat([positive, negative], dim=-1))
        past_sums, past_counts, updates, last_epsilon = _state(owners, stacked=logits.dim() == 3)

        # EMA step with Adam-style bias correction; the past enters as a constant.
        decay = 1.0 - self.rho
        correction = (1.0 - decay ** (updates.to(sums.dtype) + 1))[..., None, None]
        ema_sums = decay * past_sums.to(sums.dtype) + self.rho * sums
        ema_counts = decay * past_counts.to(sums.dtype) + self.rho * counts
        est_sums, est_counts = ema_sums / correction, ema_counts / correction

        log_rates = torch.log((est_sums + self.alpha / 2) / (est_counts + self.alpha))
        spread = masked_spread(log_rates, est_counts > 0, dim=-2)  # [2K]: max − min over present groups
        width = positive.shape[-1]
        epsilon = self.combine_sides(spread[..., :width], spread[..., width:]).amax(-1)

        has_rows = counts.sum((-2, -1)) > 0  # global, so every rank takes the same branch
        loss = torch.where(has_rows, torch.relu(epsilon - self.target_epsilon), torch.zeros_like(epsilon))
        with torch.no_grad():
            rows = has_rows[..., None, None]
            new_sums = torch.where(rows, ema_sums, past_sums) if self.training else past_sums
            new_counts = torch.where(rows, ema_counts, past_counts) if self.training else past_counts
            new_updates = updates + has_rows.long() if self.training else updates
            _store(owners, new_sums, new_counts, new_updates, torch.where(has_rows, epsilon.detach(), last_epsilon))
        return loss


def _state(owners: tuple[EpsDEOLoss, ...], stacked: bool) -> tuple[torch.Tensor, ...]:
    """`(soft sums, counts, updates, last ε)` of one instance, or stacked over the tasks' instances."""
    names = ("running_soft_sums", "running_counts", "num_updates", "epsilon")
    if not stacked:
        return tuple(getattr(owners[0], name) for name in names)
    return tuple(torch.stack([getattr(owner, name) for owner in owners]) for name in names)


def _store(owners: tuple[EpsDEOLoss, ...], *values: torch.Tensor) -> None:
    """Write [`_state`]'s tensors back (one instance's, or each task's slice of the stacked ones)."""
    names = ("running_soft_sums", "running_counts", "num_updates", "epsilon")
    stacked = len(owners) > 1 or values[0].dim() == 3
    for t, owner in enumerate(owners):
        for name, value in zip(names, values, strict=True):
            getattr(owner, name).copy_(value[t] if stacked else value)
