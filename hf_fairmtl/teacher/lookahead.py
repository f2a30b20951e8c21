"""One-step look-ahead on a functional copy of a task head (the real head is never touched)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..losses.distributed import all_reduce_sum, is_distributed
from ..modeling_fairmtl import IGNORE_INDEX

GradientReducer = Callable[[list[list[torch.Tensor]]], list[list[torch.Tensor]]]


def trainable_head_parameters(head: nn.Module) -> dict[str, torch.Tensor]:
    """The head's trainable parameters by name, detached (frozen ones, e.g. a PEFT original copy, are left out)."""
    return {name: param.detach() for name, param in head.named_parameters() if param.requires_grad}


def flatten_parameters(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """All tensors of `params`, flattened and concatenated in their order (a `[P]` float vector)."""
    return torch.cat([p.detach().reshape(-1).float() for p in params.values()])


def unflatten_parameters(flat: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    """Split a flat vector back into tensors of `shapes` (the inverse of concatenating their flattenings)."""
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode inside the block, its previous mode (and its submodules') restored after."""
    modes = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for sub, mode in modes:
            sub.training = mode


def head_logits(head: nn.Module, params: Mapping[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """Logits of `head` with `params` in place of its trainable parameters, in eval mode (no dropout).

    Eval mode keeps the look-ahead deterministic and away from the global RNG, so the student's own
    dropout draws are the same with or without a teacher. A head already in eval mode (a teacher step puts
    every head there once, see [`eval_mode`]) is not switched back and forth.
    """
    first = next(iter(params.values()))
    if not head.training:
        return torch.func.functional_call(head, dict(params), (features.to(first.dtype),), strict=False)
    with eval_mode(head):
        return torch.func.functional_call(head, dict(params), (features.to(first.dtype),), strict=False)


def lookahead_step(
    head: nn.Module,
    params: Mapping[str, torch.Tensor],
    features: torch.Tensor,
    objectives: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    lr: float,
    reduce_gradients: GradientReducer | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Simulate one SGD step of a head per objective, on a functional copy (the real head is untouched).

    Args:
        head: The task head (its module structure is used; its parameters are replaced by `params`).
        params: Current trainable parameters of the head.
        features: Cached shared features `[B, H]` of a training batch (detached).
        objectives: Maps the head's logits to one scalar loss per action (e.g. `(CE_t, F_t)`).
        lr: Learning rate of the simulated step.
        reduce_gradients: Optional hook applied to the per-action gradient lists (the callback all-reduces
            them across ranks here). A parameter that an objective does not reach gets a zero gradient.

    Returns:
        One parameter dict per objective: `θ − lr · ∇θ objective`.
    """
    leaves = {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}
    with torch.enable_grad():
        losses = objectives(head_logits(head, leaves, features.detach()))
        gradients = []
        for index, loss in enumerate(losses):
            last = index == len(losses) - 1
            grads = torch.autograd.grad(loss, list(leaves.values()), retain_graph=not last, allow_unused=True)
            gradients.append(
                [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(leaves.values(), grads, strict=True)]
            )
    if reduce_gradients is not None:
        gradients = reduce_gradients(gradients)
    return [
        {name: (p.detach() - lr * g).detach() for (name, p), g in zip(leaves.items(), grads, strict=True)}
        for grads in gradients
    ]


def global_gradient_reducer(labels: torch.Tensor) -> GradientReducer:
    """All-reduce the simulated `(CE_t, F_t)` head gradients so every rank simulates the global batch's step.

    CE_t is a mean over the rank's labelled rows: its gradients are summed weighted by the label count and
    divided by the global count. F_t's gradient already carries the global group statistics, scaled by the
    world size by its differentiable all-reduce (see `losses/distributed.py`): averaging over ranks gives the
    single-process gradient, exactly as DDP does for the student. Outside distributed runs: the identity.

    Args:
        labels: The rank's labels of the task `[B]` (`IGNORE_INDEX` = unlabelled).
    """
    count = (labels != IGNORE_INDEX).sum().float()

    def reduce(gradients: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
        if not is_distributed():
            return gradients
        accuracy_grads, fairness_grads = gradients
        shapes = [g.shape for g in accuracy_grads]
        flat_accuracy = torch.cat([g.reshape(-1) for g in accuracy_grads])
        flat_fairness = torch.cat([g.reshape(-1) for g in fairness_grads])
        size = flat_accuracy.numel()
        packed = torch.cat([flat_accuracy * count.to(flat_accuracy), flat_fairness, count.reshape(1).to(flat_accuracy)])
        packed = all_reduce_sum(packed)
        flat_accuracy = packed[:size] / packed[-1].clamp(min=1)
        flat_fairness = packed[size : 2 * size] / dist.get_world_size()
        return [unflatten_parameters(flat_accuracy, shapes), unflatten_parameters(flat_fairness, shapes)]

    return reduce
