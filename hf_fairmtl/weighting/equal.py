"""`equal`: every task weighs 1."""

from __future__ import annotations

from .base import TaskWeighting, register_weighting


@register_weighting("equal")
class EqualWeighting(TaskWeighting):
    """`w_t = 1`: the objective is the plain mean of the task shares."""

    title = "Equal weights"
    description = "every task weighs the same"
