"""GradNorm task weighting (Chen et al., ICML 2018).

Task weights `w_t` get their own optimizer. At each update the gradient norm of every weighted task
loss with respect to the shared representation, `G_t = ‖∇_z w_t L_t‖`, is pulled toward
`mean(G) · r_t^α`, where `r_t` is task t's inverse training rate `(L_t / L_t(0)) / mean(L / L(0))`.
After the step the weights are made positive again and renormalised to sum to T.

Gradients are taken with respect to the shared representation `z` (the output of the last shared
layer) rather than that layer's weights: `∂L_t/∂z` only back-propagates through task t's head, so the
cost is T head-only backward passes and never a pass through the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..losses.distributed import all_reduce_sum
from .base import TaskWeighting, WeightingInputs, register_weighting

MIN_WEIGHT = 1e-3


@register_weighting("gradnorm")
class GradNorm(TaskWeighting):
    """Task weights balanced by GradNorm.

    Args:
        num_tasks: Number of task losses T.
        alpha: Strength of the pull toward equal training rates (the paper's α; 0 = equal gradient norms).
        lr: Learning rate of the weights' own Adam optimizer.

    Usage per optimisation step: weight the task losses with `task_weights` (detached), call
    `accumulate_losses(task_losses, shared, present)` for every micro-batch, then `step()` once. In the trainer
    (`weighting="gradnorm"`), α and the rate are `gradnorm_alpha` and `gradnorm_lr`.
    """

    title = "GradNorm"
    description = "task weights that equalise the tasks' gradient norms at the shared representation (Chen et al.)"
    citation = """@inproceedings{chen2018gradnorm,
  title = {GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks},
  author = {Chen, Zhao and Badrinarayanan, Vijay and Lee, Chen-Yu and Rabinovich, Andrew},
  booktitle = {International Conference on Machine Learning},
  year = {2018}
}"""

    def __init__(self, num_tasks: int, alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__(num_tasks)
        if not (math.isfinite(alpha) and math.isfinite(lr) and alpha >= 0 and lr > 0):
            raise ValueError(f"GradNorm needs a finite alpha >= 0 and lr > 0, got alpha={alpha!r}, lr={lr!r}")
        self.alpha = alpha
        self.weights = nn.Parameter(torch.ones(num_tasks))
        self.register_buffer("initial_losses", torch.zeros(num_tasks))
        self.register_buffer("has_initial_loss", torch.zeros(num_tasks, dtype=torch.bool))
        self.optimizer = torch.optim.Adam([self.weights], lr=lr)
        self._reset_window()

    def _reset_window(self) -> None:
        # On the weights' device: the statistics are all-reduced, and NCCL reduces only GPU tensors.
        device = self.weights.device
        self._squared_grad_norms = torch.zeros(self.num_tasks, device=device)
        self._loss_sums = torch.zeros(self.num_tasks, device=device)
        self._loss_counts = torch.zeros(self.num_tasks, device=device)
        self._zero = torch.zeros((), device=device)

    def _apply(self, fn, recurse: bool = True):
        # `.to(device)` moves parameters and buffers; the window's plain tensors follow, so they stay on one device.
        module = super()._apply(fn, recurse)
        self._reset_window()
        return module

    @classmethod
    def from_training_args(cls, num_tasks: int, args) -> GradNorm:
        return cls(num_tasks, alpha=args.gradnorm_alpha, lr=args.gradnorm_lr)

    @property
    def task_weights(self) -> torch.Tensor:
        """Current weights, detached (they multiply the task losses in the model's objective)."""
        return self.weights.detach()

    def accumulate(self, inputs: WeightingInputs) -> None:
        self.accumulate_losses(inputs.objectives, inputs.representation, inputs.present)

    def accumulate_losses(
        self, task_losses: Sequence[torch.Tensor], shared: torch.Tensor, present: torch.Tensor
    ) -> None:
        """Record one micro-batch: per-task gradient norms at the shared representation and loss values.

        Args:
            task_losses: T scalar losses that still have their graph to `shared`.
            shared: The shared representation `[B, H]` the task heads read.
            present: `[T]` bool, tasks with at least one labelled row in this micro-batch; the others
                have no gradient and are left out of this update.
        """
        # One host read of `present`, one write per statistic: at many tasks the per-task small ops are the cost.
        active = [t for t, here in enumerate(present.tolist()) if here and task_losses[t].requires_grad]
        if not active:
            return
        index = torch.tensor(active, device=self._loss_sums.device)
        self._squared_grad_norms.index_add_(0, index, squared_gradient_norms(task_losses, active, shared, self._zero))
        self._loss_sums.index_add_(0, index, torch.stack([task_losses[t].detach().float() for t in active]))
        self._loss_counts.index_add_(0, index, torch.ones(len(active), device=index.device))

    def step(self) -> None:
        """Update the weights from the accumulated window, identically on every rank."""
        # Sum over ranks so each rank sees the statistics of the global batch and takes the same step.
        stats = all_reduce_sum(torch.stack([self._squared_grad_norms, self._loss_sums, self._loss_counts]))
        squared_norms, loss_sums, counts = stats
        self._reset_window()
        present = counts > 0
        if not present.any():
            return
        losses = loss_sums / counts.clamp(min=1)
        new_initial = present & ~self.has_initial_loss
        self.initial_losses[new_initial] = losses[new_initial]
        self.has_initial_loss |= new_initial
        # A task whose first loss was 0 has no training rate to measure; it is balanced on norms only.
        usable = present & self.has_initial_loss & (self.initial_losses > 0)
        if usable.sum() == 0:
            return
        # Each contribution (micro-batch × rank) is a mean over its rows, so the norm of the gradient of the
        # mean over the whole window is sqrt(Σ norm²) / number of contributions, for equal-sized contributions.
        grad_norms = squared_norms.sqrt() / counts.clamp(min=1)
        weighted_norms = self.weights * grad_norms  # G_t, differentiable in w_t only
        loss_ratios = torch.where(usable, losses / self.initial_losses.clamp(min=1e-12), torch.zeros_like(losses))
        inverse_rates = loss_ratios / loss_ratios[usable].mean()
        target = (weighted_norms[usable].mean() * inverse_rates.pow(self.alpha)).detach()
        gradnorm_loss = (weighted_norms - target).abs()[usable].sum()
        self.optimizer.zero_grad(set_to_none=True)
        gradnorm_loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            positive = self.weights.clamp(min=MIN_WEIGHT)
            self.weights.copy_(positive * self.num_tasks / positive.sum())


def squared_gradient_norms(
    losses: torch.Tensor | Sequence[torch.Tensor], active: list[int], point: torch.Tensor, zero: torch.Tensor
) -> torch.Tensor:
    """`[K]` squared norms of `∇_point losses[t]` for the K tasks in `active` (`zero` where `point` is unreached).

    With the losses as one `[T]` tensor (the trainer's stacked objective) every task's gradient comes from one
    batched backward (`is_grads_batched`): one backward per task would walk the whole stacked graph T times. A graph
    with an operation vmap cannot batch falls back to one backward per task.
    """
    if torch.is_tensor(losses) and losses.dim() == 1:
        selectors = torch.eye(losses.shape[0], dtype=losses.dtype, device=losses.device)[active]
        try:
            (grads,) = torch.autograd.grad(
                losses, point, grad_outputs=selectors, retain_graph=True, allow_unused=True, is_grads_batched=True
            )
        except RuntimeError:  # an operation without a batching rule: one backward per task below
            pass
        else:
            if grads is None:
                return zero.expand(len(active)).clone()
            return grads.detach().float().pow(2).flatten(1).sum(1)
    squared = []
    for t in active:
        (grad,) = torch.autograd.grad(losses[t], point, retain_graph=True, allow_unused=True)
        squared.append(zero if grad is None else grad.detach().float().pow(2).sum())
    return torch.stack(squared)
