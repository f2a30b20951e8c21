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


def stacked_head_logits(
    heads: Sequence[nn.Module], params: Sequence[Mapping[str, torch.Tensor]], features: torch.Tensor
) -> list[torch.Tensor]:
    """`head_logits(heads[k], params[k], features)` for every k, in one vectorised call where the heads allow it.

    Heads of one class whose parameters are all trainable and alike in name, shape and dtype, without buffers
    (the default `TaskHead`s of tasks with the same class count), run as one `torch.func.vmap` over the stacked
    parameters: one call instead of one per head, equal up to float rounding. Others run one by one.
    """
    if len(heads) < 2 or not _stackable(heads, params):
        return [head_logits(head, p, features) for head, p in zip(heads, params, strict=True)]
    template = heads[0]
    stacked = {name: torch.stack([p[name] for p in params]) for name in params[0]}
    inputs = features.to(next(iter(params[0].values())).dtype)

    def one(head_params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.func.functional_call(template, head_params, (inputs,), strict=False)

    with contextlib.ExitStack() as stack:
        if template.training:
            stack.enter_context(eval_mode(template))
        return list(torch.func.vmap(one)(stacked).unbind(0))


def _stackable(heads: Sequence[nn.Module], params: Sequence[Mapping[str, torch.Tensor]]) -> bool:
    """Whether [`stacked_head_logits`] may run every head as the first one with its own parameters."""
    first = heads[0]
    shapes = [(name, p.shape, p.dtype) for name, p in params[0].items()]
    for head, head_params in zip(heads, params, strict=True):
        if type(head) is not type(first) or any(True for _ in head.buffers()):
            return False
        if [(n, p.shape, p.dtype) for n, p in head_params.items()] != shapes:
            return False
        if {name for name, _ in head.named_parameters()} != set(head_params):  # frozen weights differ per head
            return False
    return True


def lookahead_steps(
    heads: Sequence[nn.Module],
    params: Sequence[Mapping[str, torch.Tensor]],
    features: torch.Tensor,
    objectives: Callable[[list[torch.Tensor]], Sequence[Sequence[torch.Tensor]]],
    lr: float,
    reducers: Sequence[GradientReducer | None] | None = None,
) -> list[list[dict[str, torch.Tensor]]]:
    """Simulate one SGD step of every task head per objective, on functional copies (the real heads are untouched).

    Args:
        heads: The task heads (their module structure is used; their parameters are replaced by `params`).
        params: Per head, its current trainable parameters.
        features: Cached shared features `[B, H]` of a training batch (detached).
        objectives: Maps the heads' logits (one `[B, C]` per head) to, per action, one scalar loss per head
            (e.g. `([CE_t]_t, [F_t]_t)`). Head t's losses must depend on head t's logits only: the gradient of
            each action's sum over heads then gives every head its own gradient, in one backward per action.
        lr: Learning rate of the simulated step.
        reducers: Optional per-head hooks applied to that head's per-action gradient lists (the callback
            all-reduces them across ranks here). A parameter that an objective does not reach gets a zero gradient.

    Returns:
        Per head, one parameter dict per action: `θ − lr · ∇θ objective`.
    """
    leaves = [
        {name: p.detach().clone().requires_grad_(True) for name, p in head_params.items()} for head_params in params
    ]
    flat = [leaf for head_leaves in leaves for leaf in head_leaves.values()]
    with torch.enable_grad():
        per_action = objectives(stacked_head_logits(heads, leaves, features.detach()))
        gradients = []
        for index, losses in enumerate(per_action):
            total = torch.stack(list(losses)).sum()
            grads = torch.autograd.grad(total, flat, retain_graph=index < len(per_action) - 1, allow_unused=True)
            gradients.append(
                [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(flat, grads, strict=True)]
            )
    results, start = [], 0
    for h, head_leaves in enumerate(leaves):
        stop = start + len(head_leaves)
        head_grads = [action_grads[start:stop] for action_grads in gradients]
        start = stop
        if reducers is not None and reducers[h] is not None:
            head_grads = reducers[h](head_grads)
        results.append(
            [
                {name: (p.detach() - lr * g).detach() for (name, p), g in zip(head_leaves.items(), grads, strict=True)}
                for grads in head_grads
            ]
        )
    return results


def lookahead_step(
    head: nn.Module,
    params: Mapping[str, torch.Tensor],
    features: torch.Tensor,
    objectives: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    lr: float,
    reduce_gradients: GradientReducer | None = None,
) -> list[dict[str, torch.Tensor]]:
    """[`lookahead_steps`] of one head: `objectives` maps its logits to one scalar loss per action.

    Returns:
        One parameter dict per objective: `θ − lr · ∇θ objective`.
    """

    def per_action(logits: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        return [[loss] for loss in objectives(logits[0])]

    return lookahead_steps([head], [params], features, per_action, lr, [reduce_gradients])[0]


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
