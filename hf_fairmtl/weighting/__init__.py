"""Task weightings: how the per-task shares of the objective are weighted (or their gradients combined).

Registered: `equal`, `gradnorm` (Chen et al. 2018), `uncertainty` (Kendall et al. 2018), `dwa` (Liu et al.
2019), `pcgrad` (Yu et al. 2020; owns the shared parameters' backward). Add one with
`@register_weighting("name")` on a [`TaskWeighting`] subclass (see docs/extending.md).
"""

from .base import WEIGHTINGS, TaskWeighting, WeightingInputs, register_weighting
from .dwa import DynamicWeightAverage
from .equal import EqualWeighting
from .gradnorm import GradNorm
from .pcgrad import PCGrad, project_conflicting
from .uncertainty import UncertaintyWeighting

__all__ = [
    "WEIGHTINGS",
    "DynamicWeightAverage",
    "EqualWeighting",
    "GradNorm",
    "PCGrad",
    "TaskWeighting",
    "UncertaintyWeighting",
    "WeightingInputs",
    "project_conflicting",
    "register_weighting",
]
