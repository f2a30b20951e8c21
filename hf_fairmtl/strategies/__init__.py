"""Strategies: how per-task accuracy and fairness losses combine into the training objective.

Registered: `vanilla`, `weighted` (fixed λ; the fairness-transfer objective), `mtaf` (MTA-F), `greedy`
(G-FMT), `teacher` (L2T-FMT), `adversarial` (gradient-reversal group adversaries), `balanced`
(group × label reweighting), `proxy_groups` (fairness losses on predicted soft groups), `constrained`
(fairness targets, multipliers by dual ascent). Add one with `@register_strategy("name")` on a [`Strategy`]
subclass; it is then a valid `FairMTLTrainingArguments.strategy` (see docs/extending.md).
"""

from .adversarial import AdversarialStrategy
from .balanced import BalancedStrategy
from .base import (
    FAIRNESS_GRAD_TARGETS,
    STRATEGIES,
    BatchView,
    StackedObjective,
    StackedTaskTerms,
    Strategy,
    TaskObjective,
    TaskTerms,
    register_strategy,
)
from .constrained import ConstrainedStrategy
from .greedy import GreedyStrategy
from .mtaf import MTAFStrategy
from .proxy import ProxyGroupsStrategy
from .teacher import ACCURACY_ACTION, FAIRNESS_ACTION, TeacherStrategy
from .vanilla import VanillaStrategy
from .weighted import WeightedStrategy

__all__ = [
    "ACCURACY_ACTION",
    "AdversarialStrategy",
    "BalancedStrategy",
    "FAIRNESS_ACTION",
    "FAIRNESS_GRAD_TARGETS",
    "STRATEGIES",
    "BatchView",
    "ConstrainedStrategy",
    "GreedyStrategy",
    "MTAFStrategy",
    "ProxyGroupsStrategy",
    "StackedObjective",
    "StackedTaskTerms",
    "Strategy",
    "TaskObjective",
    "TaskTerms",
    "TeacherStrategy",
    "VanillaStrategy",
    "WeightedStrategy",
    "register_strategy",
]
