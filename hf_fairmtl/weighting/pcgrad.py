"""`pcgrad`: projecting conflicting gradients (Yu et al., NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..losses.distributed import all_reduce_sum, world_size
from .base import TaskWeighting, WeightingInputs, register_weighting


def project_conflicting(grads: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """PCGrad's update from per-task gradients `[T, P]`: each g_i projected off every g_j it conflicts with.

    For each task i, the other tasks are visited in the order `order` (a permutation of the tasks); where
    `g_i · g_j < 0`, `g_i ← g_i − (g_i · g_j / ‖g_j‖²) g_j`. Returns the sum of the projected gradients `[P]`.
    Tasks whose gradient is all zero (absent from the window) neither project nor get projected.
    """
    projected = grads.clone()
    squared_norms = grads.pow(2).sum(dim=1)
    for i in range(grads.shape[0]):
        for j in order.tolist():
            if j == i or squared_norms[j] == 0:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot / squared_norms[j] * grads[j]
    return projected.sum(dim=0)


def flat_gradient(loss: torch.Tensor, params: Sequence[nn.Parameter]) -> torch.Tensor:
    """`∂loss/∂params` flattened to `[P]`, zero for parameters the loss does not reach; the graph is kept."""
    grads = [None] * len(params)
    if loss.requires_grad:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    flat = [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]
    return torch.cat(flat).detach()


@register_weighting("pcgrad")
class PCGrad(TaskWeighting):
    """Gradient surgery on the shared parameters: conflicting task gradients are projected, then summed.

    For every training micro-batch the gradient of each task's share with respect to the shared parameters
    (every trainable parameter outside the task heads) is taken with `torch.autograd.grad` and summed over the
    accumulation window; before the trainer clips and steps, the shared gradients are replaced by the PCGrad
    update of the window's per-task gradients, averaged over ranks. That is the update one process would
    compute on the global batch, so it is exact under DDP and gradient accumulation. What the shared
    gradient holds beyond the task shares (a strategy's batch-level term, e.g. an adversary) is kept.
    Heads are task-specific and keep their ordinary gradients. Cost: one extra backward through the shared
    layers per task and a `[T, P]` buffer.

    Args:
        num_tasks: Number of tasks T.
        seed: Seeds the order in which conflicting tasks are projected (same on every rank).

    References:
        Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.
    """

    title = "PCGrad"
    description = "conflicting task gradients projected onto each other's normal plane on the shared layers (Yu et al.)"
    citation = """@inproceedings{yu2020gradient,
  title = {Gradient Surgery for Multi-Task Learning},
  author = {Yu, Tianhe and Kumar, Saurabh and Gupta, Abhishek and Levine, Sergey and Hausman, Karol and Finn, Chelsea},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2020}
}"""
    owns_backward = True

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.seed = int(seed)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._task_grads: torch.Tensor | None = None

    def accumulate(self, inputs: WeightingInputs) -> None:
        params = list(inputs.shared_parameters)
        if not params:
            raise ValueError("weighting='pcgrad' needs trainable shared parameters (every encoder weight is frozen)")
        stacked = torch.stack([flat_gradient(loss, params) for loss in inputs.task_losses])
        self._task_grads = stacked if self._task_grads is None else self._task_grads + stacked

    def rewrite_gradients(self, shared_parameters: Sequence[nn.Parameter]) -> None:
        if self._task_grads is None:
            return
        params = list(shared_parameters)
        task_grads, self._task_grads = self._task_grads, None
        # DDP averages the model's gradients over ranks; the per-task gradients are averaged the same way.
        task_grads = all_reduce_sum(task_grads) / world_size()
        generator = torch.Generator().manual_seed(self.seed + int(self.steps))
        order = torch.randperm(self.num_tasks, generator=generator)
        update = project_conflicting(task_grads, order)
        # Whatever the shared gradient holds beyond the task shares (a strategy's extra term) is kept.
        residual_total = task_grads.sum(dim=0)
        offset = 0
        for param in params:
            size = param.numel()
            new = update[offset : offset + size].view_as(param)
            if param.grad is None:
                param.grad = new.clone().to(param.dtype)
            else:
                residual = param.grad - residual_total[offset : offset + size].view_as(param).to(param.grad.dtype)
                param.grad.copy_(new.to(param.grad.dtype) + residual)
            offset += size
        self.steps += 1
