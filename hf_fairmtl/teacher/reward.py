"""The L2T-FMT reward of a candidate head against the task's running bests."""

from __future__ import annotations

import math

from .settings import DEFAULT_MIN_DENOMINATOR


def teacher_reward(
    accuracy: float,
    eo_violation: float,
    best_accuracy: float,
    best_eo_violation: float,
    min_denominator: float = DEFAULT_MIN_DENOMINATOR,
) -> float:
    """L2T-FMT reward: the smaller of the relative accuracy gain and the relative fairness gain.

    `R = min((Acc − Acc_best) / Acc_best, (EO_best − EO) / (1 − EO_best))`. The second term is the relative
    gain of the fairness score `1 − EO`, mirroring the first. Positive only when the candidate beats the
    best accuracy *and* the best EO violation seen so far; its scale is a relative change (0.1 = 10 %).

    Guards (both are documented choices, not in the paper):
    - Both denominators are clamped to at least `min_denominator`: `Acc_best = 0` would divide by zero, and
      our EO violation is `|ΔTPR| + |ΔFPR|` in [0, 2], so `1 − EO_best` reaches 0 or turns negative for a
      very unfair model, which would blow up or flip the sign of the fairness term. With the clamp, an
      improvement of EO always gives a positive term and a worsening a negative one.
    - A NaN EO violation (no group to compare, e.g. a task without demographic labels on the held-out
      batch) leaves only the accuracy term.

    Args:
        accuracy: Accuracy of the candidate head on the held-out batch.
        eo_violation: Its EO violation (mean over the task's fairness attributes).
        best_accuracy: Best accuracy of the task so far.
        best_eo_violation: Best (lowest) EO violation of the task so far.
        min_denominator: Lower bound of both denominators.

    Returns:
        The reward, a Python float.
    """
    accuracy_term = (accuracy - best_accuracy) / max(best_accuracy, min_denominator)
    if math.isnan(eo_violation) or math.isnan(best_eo_violation):
        return float(accuracy_term)
    fairness_term = (best_eo_violation - eo_violation) / max(1.0 - best_eo_violation, min_denominator)
    return float(min(accuracy_term, fairness_term))
