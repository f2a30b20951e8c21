"""The `TaskWeighting` base: per-task weights w_t in `Σ_t w_t · L_t / T`, updated once per optimizer step.

Like LibMTL's `AbsWeighting`, there are two kinds:

* weightings that only set w_t (`equal`, `gradnorm`, `uncertainty`, `dwa`): the trainer builds the objective
  with [`TaskWeighting.task_losses`], calls [`TaskWeighting.accumulate`] for every training micro-batch and
  [`TaskWeighting.step`] after every optimizer step;
* weightings that own the backward pass of the shared parameters (`pcgrad`, `owns_backward = True`): they
  also get per-task gradients in `accumulate` and rewrite the shared parameters' gradients in
  [`TaskWeighting.rewrite_gradients`] before the trainer clips them and steps.

A weighting's own parameters are not the model's: it trains them with its own optimizer in `step()` and
keeps its statistics global under DDP (all-reduced), so every rank holds the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..registry import Registry


@dataclass
class WeightingInputs:
    """One training micro-batch, as a weighting sees it.

    Attributes:
        objectives: Per-task unnormalised losses (`TaskObjective.objective`), still with their graph.
        task_losses: Per-task shares of the objective (what [`TaskWeighting.task_losses`] returned).
        representation: `[B, H]` shared representation the heads read (GradNorm's gradient point).
        present: `[T]` bool, tasks with a labelled row in this micro-batch.
        shared_parameters: Trainable parameters outside the task heads (for gradient surgery).
    """

    objectives: Sequence[torch.Tensor]
    task_losses: Sequence[torch.Tensor]
    representation: torch.Tensor
    present: torch.Tensor
    shared_parameters: Sequence[nn.Parameter]


class TaskWeighting(nn.Module):
    """Base class of the task weightings; subclass, set the metadata, register by name.

    Args:
        num_tasks: Number of tasks T.

    Class attributes (read by the model card and the report): `name` (set by the registry), `title`,
    `description`, `citation` (BibTeX or `None`), and `owns_backward`.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    citation: ClassVar[str | None] = None
    owns_backward: ClassVar[bool] = False

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        if int(num_tasks) != num_tasks or num_tasks < 1:
            raise ValueError(f"A task weighting needs at least one task, got num_tasks={num_tasks!r}")
        self.num_tasks = int(num_tasks)

    @classmethod
    def from_training_args(cls, num_tasks: int, args: Any) -> TaskWeighting:
        """Build from `FairMTLTrainingArguments` (`weighting_kwargs` are the constructor's keyword arguments)."""
        kwargs = dict(getattr(args, "weighting_kwargs", None) or {})
        try:
            return cls(num_tasks, **kwargs)
        except TypeError as error:
            raise ValueError(f"`weighting_kwargs` {kwargs} do not fit weighting {cls.name!r}: {error}") from None

    @property
    def task_weights(self) -> torch.Tensor:
        """Current weights `[T]`, detached (ones by default)."""
        return torch.ones(self.num_tasks)

    def task_losses(
        self,
        weighted: torch.Tensor | Sequence[torch.Tensor],
        unweighted: torch.Tensor | Sequence[torch.Tensor],
        present: torch.Tensor,
        micro_batches: int = 1,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Per-task shares of the objective: `w_t · weighted / T + unweighted`.

        Args:
            weighted: `[T]` per-task parts the weight multiplies (window-normalised), or a sequence of T scalars.
            unweighted: `[T]` per-task parts added as they are, or a sequence of T scalars.
            present: `[T]` bool, tasks with a labelled row in the micro-batch.
            micro_batches: Micro-batches of the accumulation window (for batch-level terms of the weighting).

        Returns:
            `[T]` shares (a subclass may return a sequence of T scalars; the trainer stacks it).
        """
        weighted, unweighted = as_vector(weighted), as_vector(unweighted)
        return self.task_weights.to(weighted) * weighted / self.num_tasks + unweighted

    def accumulate(self, inputs: WeightingInputs) -> None:
        """Record one training micro-batch (nothing by default)."""

    def step(self) -> None:
        """Update the weights once per optimizer step, identically on every rank (nothing by default)."""

    def rewrite_gradients(self, shared_parameters: Sequence[nn.Parameter]) -> None:
        """Replace the shared parameters' gradients before clipping (weightings with `owns_backward`)."""

    # A weighting that trains parameters keeps its optimizer in `self.optimizer`; checkpoints carry its state.
    def state_dict(self, *args, **kwargs) -> dict:  # noqa: D102 - nn.Module semantics plus the optimizer
        state = super().state_dict(*args, **kwargs)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):  # noqa: D102
        state_dict = dict(state_dict)
        optimizer_state = state_dict.pop("optimizer", None)
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        optimizer = getattr(self, "optimizer", None)
        if optimizer_state is not None and optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
        return result


def as_vector(values: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """`[T]` tensor of per-task scalars given as a tensor or a sequence of 0-dim tensors."""
    return values if torch.is_tensor(values) else torch.stack(list(values))


WEIGHTINGS: Registry[type[TaskWeighting]] = Registry("task weighting", TaskWeighting, setting="weighting")
"""Registered task weightings by name; add one with [`register_weighting`]."""


def register_weighting(name: str) -> Callable[[type[TaskWeighting]], type[TaskWeighting]]:
    """Class decorator registering a [`TaskWeighting`] subclass as `name` (duplicates refused)."""
    return WEIGHTINGS.register(name)
