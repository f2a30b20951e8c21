"""`teacher` (L2T-FMT): a DQN teacher picks, per task and teacher step, CE_t or F_t."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from .base import (
    BatchView,
    StackedObjective,
    StackedTaskTerms,
    Strategy,
    TaskObjective,
    TaskTerms,
    register_strategy,
)
from .greedy import L2T_FMT_CITATION, chosen_objective, chosen_objectives

ACCURACY_ACTION, FAIRNESS_ACTION = 0, 1


@register_strategy("teacher")
class TeacherStrategy(Strategy):
    """L2T-FMT: `Σ_t w_t · O_t / T` with `O_t = CE_t` or `F_t` as the teacher's last decision for task t says.

    The decisions come from a [`TeacherCallback`] (built from the `teacher_*` arguments, or the one passed in
    `callbacks`), which calls [`set_actions`] at each teacher step and reads [`latest_batch`] for its look-ahead.
    """

    title = "L2T-FMT"
    description = (
        "a learned teacher picks per step and per task whether to train for accuracy or fairness (Roy & Ntoutsi)"
    )
    citation = L2T_FMT_CITATION
    default_fairness_grad_to = "all"

    def __init__(self, args: Any, config, fairness_attributes: dict[str, list[str]]) -> None:
        super().__init__(args, config, fairness_attributes)
        self.actions = [ACCURACY_ACTION] * config.num_tasks
        self.latest_batch: dict[str, torch.Tensor | None] | None = None
        self.teacher_callback: TrainerCallback | None = None

    def set_actions(self, actions: Sequence[int]) -> None:
        """Per-task objective until the next decision: 0 = accuracy loss, 1 = fairness loss."""
        actions = [int(action) for action in actions]
        if len(actions) != self.config.num_tasks or any(a not in (ACCURACY_ACTION, FAIRNESS_ACTION) for a in actions):
            raise ValueError(f"Teacher actions must be {self.config.num_tasks} values of 0 or 1, got {actions}")
        self.actions = actions

    def combine(self, terms: TaskTerms, batch: BatchView) -> TaskObjective:
        return chosen_objective(terms, self.actions[terms.index] == FAIRNESS_ACTION)

    def combine_all(self, terms: StackedTaskTerms, batch: BatchView) -> StackedObjective:
        if FAIRNESS_ACTION not in self.actions:
            # Every task on its accuracy loss: leave F_t out of the graph (it is still logged), so neither the
            # backward nor GradNorm's gradient norms walk through the fairness losses for zero gradients.
            return StackedObjective.accuracy_only(terms)
        return chosen_objectives(terms, self._action_vector(terms.accuracy.device) == FAIRNESS_ACTION)

    def log_vectors(self, terms: StackedTaskTerms) -> dict[str, torch.Tensor]:
        return {"action": self._action_vector(terms.accuracy.device).float()}

    def _action_vector(self, device: torch.device) -> torch.Tensor:
        return torch.tensor(self.actions, device=device)

    def after_batch(self, batch: BatchView) -> None:
        if batch.training:
            self.latest_batch = {
                "shared": batch.shared.detach(),
                "labels": batch.labels.detach(),
                "group_labels": batch.group_labels.detach() if batch.group_labels is not None else None,
            }

    def callbacks(self, trainer: Any) -> list[TrainerCallback]:
        from ..teacher import TeacherCallback

        existing = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TeacherCallback)]
        if existing:
            self.teacher_callback = existing[0]
            self.teacher_callback.bind(trainer)
            return []
        self.teacher_callback = TeacherCallback.from_trainer(trainer)
        return [self.teacher_callback]

    def state_dict(self) -> dict[str, Any]:
        return {"task_actions": list(self.actions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_actions(state["task_actions"])
