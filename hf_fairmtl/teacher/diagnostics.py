"""What each teacher decision was made from, as flat records (the keys the trainer logs and the plots read).

One record per teacher step: `step`, `teacher_td_loss` and, per task `{task}`:

- `teacher_{task}_accuracy`, `teacher_{task}_eo`: the current head's held-out accuracy and EO violation;
- `teacher_{task}_reward_accuracy`, `teacher_{task}_reward_fairness`: the look-ahead reward of each action;
- `teacher_{task}_lookahead_accuracy_{action}`, `teacher_{task}_lookahead_eo_{action}`: the simulated head's
  held-out scores after that action (which of the reward's two terms binds);
- `teacher_{task}_q_accuracy`, `teacher_{task}_q_fairness`, `teacher_{task}_q_gap` (fairness − accuracy): the
  Q-values the decision was taken on (after this step's update);
- `teacher_{task}_best_accuracy`, `teacher_{task}_best_eo`: the running bests the rewards are measured against;
- `teacher_{task}_action`: the decision (0 = accuracy, 1 = fairness).

Missing values (no look-ahead before the first training batch, a task without labelled held-out rows, no EO to
measure) are NaN in the record and not logged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .settings import ACCURACY_ACTION, FAIRNESS_ACTION

ACTION_NAMES = {ACCURACY_ACTION: "accuracy", FAIRNESS_ACTION: "fairness"}
# Per-task diagnostics merged into the trainer's logs (the others stay in the callback's records).
LOGGED_TASK_KEYS = (
    "reward_accuracy",
    "reward_fairness",
    "q_accuracy",
    "q_fairness",
    "q_gap",
    "best_accuracy",
    "best_eo",
)


def diagnostic_key(task: str, name: str) -> str:
    """`teacher_{task}_{name}`, the key of one per-task diagnostic."""
    return f"teacher_{task}_{name}"


def logged_diagnostic_keys(tasks: Sequence[str]) -> list[str]:
    """The keys a teacher step hands to `record_metric`: `teacher_td_loss` and the per-task rewards, Q, bests."""
    return ["teacher_td_loss", *(diagnostic_key(task, name) for task in tasks for name in LOGGED_TASK_KEYS)]


def diagnostic_record(
    step: int,
    tasks: Sequence[str],
    td_loss: float,
    rewards: Sequence[Sequence[float] | None],
    q_values: Sequence[Sequence[float]],
    best_accuracy: Sequence[float],
    best_eo: Sequence[float],
    scores: Sequence[Mapping[str, Any]],
    actions: Sequence[int] | None = None,
) -> dict[str, float]:
    """One teacher step's flat record (see the module docstring for the keys).

    Args:
        step: Global step of the decision.
        tasks: Task names, in order.
        td_loss: The DQN's (GradNorm-weighted) TD loss of this step (NaN without an update).
        rewards: Per task, the reward of each action, or `None` without a look-ahead.
        q_values: Per task, `[Q(s, accuracy), Q(s, fairness)]`.
        best_accuracy: Per task, the running best accuracy.
        best_eo: Per task, the running best (lowest) EO violation.
        scores: Per task, `{"accuracy", "eo", "candidates": [(accuracy, eo) per action]}`.
        actions: Per task, the decision (optional).
    """
    record: dict[str, float] = {"step": int(step), "teacher_td_loss": float(td_loss)}
    for t, task in enumerate(tasks):
        key = functools.partial(diagnostic_key, task)
        record[key("accuracy")] = float(scores[t]["accuracy"])
        record[key("eo")] = float(scores[t]["eo"])
        task_rewards = rewards[t] if rewards[t] is not None else [math.nan] * len(ACTION_NAMES)
        candidates = scores[t]["candidates"] or [(math.nan, math.nan)] * len(ACTION_NAMES)
        for action, name in ACTION_NAMES.items():
            record[key(f"reward_{name}")] = float(task_rewards[action])
            record[key(f"q_{name}")] = float(q_values[t][action])
            record[key(f"lookahead_accuracy_{name}")] = float(candidates[action][0])
            record[key(f"lookahead_eo_{name}")] = float(candidates[action][1])
        record[key("q_gap")] = record[key("q_fairness")] - record[key("q_accuracy")]
        record[key("best_accuracy")] = float(best_accuracy[t])
        record[key("best_eo")] = float(best_eo[t])
        if actions is not None:
            record[key("action")] = float(actions[t])
    return record
