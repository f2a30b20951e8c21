"""`dwa`: Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

import math

import torch

from ..losses.distributed import all_reduce_sum
from .base import TaskWeighting, WeightingInputs, register_weighting


@register_weighting("dwa")
class DynamicWeightAverage(TaskWeighting):
    """`w_t = T · softmax_t(r_t / τ)` with `r_t = L̄_t(k−1) / L̄_t(k−2)`, the task's recent rate of descent.

    Liu et al. average the losses over epochs; fine-tuning runs are often shorter than two epochs, so here a
    "DWA epoch" is `window` optimizer steps (their mean loss over all ranks and micro-batches). The weights
    are 1 for the first two windows, as in the paper, and a task absent from a window keeps rate 1.

    Args:
        num_tasks: Number of tasks T.
        temperature: τ (the paper uses 2); larger is closer to equal weights.
        window: Optimizer steps per averaging window.

    References:
        Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.
    """

    title = "Dynamic Weight Average"
    description = "task weights from each task's recent rate of loss descent (Liu et al.)"
    citation = """@inproceedings{liu2019end,
  title = {End-to-End Multi-Task Learning with Attention},
  author = {Liu, Shikun and Johns, Edward and Davison, Andrew J.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition},
  year = {2019}
}"""

    def __init__(self, num_tasks: int, temperature: float = 2.0, window: int = 20) -> None:
        super().__init__(num_tasks)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"weighting_kwargs 'temperature' of dwa must be > 0, got {temperature!r}")
        if int(window) != window or window < 1:
            raise ValueError(f"weighting_kwargs 'window' of dwa must be a positive integer, got {window!r}")
        self.temperature = float(temperature)
        self.window = int(window)
        self.register_buffer("weights", torch.ones(num_tasks))
        self.register_buffer("previous_means", torch.zeros(2, num_tasks))  # windows k-2, k-1
        self.register_buffer("completed_windows", torch.zeros((), dtype=torch.long))
        self.register_buffer("window_sums", torch.zeros(2, num_tasks))  # loss sums, counts
        self.register_buffer("window_steps", torch.zeros((), dtype=torch.long))

    @property
    def task_weights(self) -> torch.Tensor:
        return self.weights.detach()

    def accumulate(self, inputs: WeightingInputs) -> None:
        losses = torch.stack([loss.detach().float() for loss in inputs.objectives]).to(self.window_sums.device)
        present = inputs.present.to(self.window_sums.device).float()
        self.window_sums += torch.stack([losses * present, present])

    def step(self) -> None:
        self.window_steps += 1
        if int(self.window_steps) < self.window:
            return
        sums, counts = all_reduce_sum(self.window_sums.clone())
        means = torch.where(counts > 0, sums / counts.clamp(min=1), self.previous_means[1])
        self.previous_means.copy_(torch.stack([self.previous_means[1], means]))
        self.completed_windows += 1
        self.window_sums.zero_()
        self.window_steps.zero_()
        if int(self.completed_windows) >= 2:
            older, newer = self.previous_means
            rates = torch.where(older > 0, newer / older.clamp(min=1e-12), torch.ones_like(newer))
            self.weights.copy_(self.num_tasks * torch.softmax(rates / self.temperature, dim=0))
