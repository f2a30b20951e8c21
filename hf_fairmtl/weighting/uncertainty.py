"""`uncertainty`: homoscedastic-uncertainty task weights (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..losses.distributed import all_reduce_sum, world_size
from .base import TaskWeighting, as_vector, register_weighting


@register_weighting("uncertainty")
class UncertaintyWeighting(TaskWeighting):
    """Learned log-variances s_t: each task's share is `exp(−s_t) · L_t + s_t`, so `w_t = exp(−s_t)`.

    The minimum over s_t is at `s_t = log L_t`: a task with a large loss is down-weighted. This is the
    classification form of Kendall et al. with the factor 2 of their regression form absorbed into s_t (as
    LibMTL's `UW` does up to that constant); at s = 0 it equals `equal`, so a run starts from vanilla MTL.
    The s_t get their gradient from the main backward pass, are averaged over ranks, and take an Adam step of
    their own after each optimizer step. The `+ s_t` term of a micro-batch is divided by the micro-batches of
    the window, so gradient accumulation gives the gradient of the window's objective.

    Args:
        num_tasks: Number of tasks T.
        lr: Learning rate of the log-variances' Adam optimizer.

    References:
        Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and
        Semantics", CVPR 2018.
    """

    title = "Uncertainty weighting"
    description = "task weights exp(−s_t) from learned homoscedastic log-variances s_t (Kendall et al.)"
    citation = """@inproceedings{kendall2018multi,
  title = {Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics},
  author = {Kendall, Alex and Gal, Yarin and Cipolla, Roberto},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition},
  year = {2018}
}"""

    def __init__(self, num_tasks: int, lr: float = 0.025) -> None:
        super().__init__(num_tasks)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"weighting_kwargs 'lr' of uncertainty weighting must be > 0, got {lr!r}")
        self.log_variances = nn.Parameter(torch.zeros(num_tasks))
        self.optimizer = torch.optim.Adam([self.log_variances], lr=lr)

    @property
    def task_weights(self) -> torch.Tensor:
        return torch.exp(-self.log_variances.detach())

    def task_losses(
        self,
        weighted: torch.Tensor | Sequence[torch.Tensor],
        unweighted: torch.Tensor | Sequence[torch.Tensor],
        present: torch.Tensor,
        micro_batches: int = 1,
    ) -> torch.Tensor:
        s = self.log_variances
        weighted, unweighted = as_vector(weighted), as_vector(unweighted)
        regulariser = torch.where(present.to(s.device), s, torch.zeros_like(s)) / micro_batches
        return (torch.exp(-s) * weighted + regulariser) / self.num_tasks + unweighted

    def step(self) -> None:
        grad = self.log_variances.grad
        if grad is None:
            return
        # The log-variances are outside DDP's module: average their gradients over ranks here.
        grad.copy_(all_reduce_sum(grad.clone()) / world_size())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
