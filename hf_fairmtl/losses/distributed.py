"""Exact group statistics under data parallelism: a differentiable SUM all-reduce.

Fairness losses compare groups, so they need each group's statistics over the *global* batch, not one
rank's shard. Every loss in this package therefore reduces its per-group sums and counts through
[`all_reduce_sum`] and computes its value from the global figures, identically on every rank.

Why the gradient is exact: let `S = Σ_r s_r` be the all-reduced sums (rank `r` holds `s_r`) and every
rank compute the same loss `f(S)`. The backward of the differentiable all-reduce is again a SUM
all-reduce, so rank `r` receives `Σ_k ∂f/∂S = W · f'(S)` for its `s_r` (`W` = world size), then back-
propagates it through its own rows: `W · f'(S) · ∂s_r/∂θ`. DDP averages parameter gradients over the
ranks: `(1/W) Σ_r W · f'(S) · ∂s_r/∂θ = f'(S) · ∂S/∂θ`, which is the single-process gradient on the
concatenated batch. Counts carry no gradient, so they are reduced without one.

`accelerate`'s `gather`/`reduce` would not do: they carry no gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """`True` when `torch.distributed` is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    """SUM all-reduce whose backward is a SUM all-reduce of the incoming gradient.

    Written here rather than taken from `torch.distributed.nn.functional.all_reduce`, which warns on
    every call in recent torch versions (deprecated), while this works unchanged on any torch 2.x.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        reduced = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=group)
        return reduced

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad_output.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def world_size() -> int:
    """Number of processes in the default group (1 outside torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(tensor: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Sum `tensor` over all processes; differentiable when `tensor` requires grad.

    Outside a multi-process run this returns `tensor` itself, so single-process code pays nothing.

    Every rank must call this the same number of times in the same order (it is a collective), and the
    tensors must agree across ranks in shape and in whether they require grad: a rank whose tensor needs
    no grad would skip the backward all-reduce the others wait for.

    Args:
        tensor: Per-rank partial sums (e.g. `[num_groups, K]`).
        group: Process group; the default (world) group when `None`.

    Returns:
        The global sums, identical on every rank.
    """
    if not is_distributed():
        return tensor
    if tensor.requires_grad and torch.is_grad_enabled():
        return _AllReduceSum.apply(tensor, group)
    reduced = tensor.detach().clone(memory_format=torch.contiguous_format)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=group)
    return reduced
