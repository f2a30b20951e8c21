"""`TeacherCallback`: runs the L2T-FMT teacher inside a `FairMTLTrainer` with `strategy="teacher"`."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from ..losses.distributed import is_distributed
from .diagnostics import diagnostic_record, logged_diagnostic_keys
from .dqn import TaskTeacher, Transition
from .heldout import HeldoutSet
from .interface import TeacherStudent
from .lookahead import (
    eval_mode,
    flatten_parameters,
    global_gradient_reducer,
    lookahead_steps,
    trainable_head_parameters,
)
from .settings import ACCURACY_ACTION, TeacherSettings

logger = logging.getLogger(__name__)


class TeacherCallback(TrainerCallback):
    """Drives the L2T-FMT teacher inside a [`FairMTLTrainer`] with `strategy="teacher"`.

    Before training (`on_train_begin`) every task starts on `initial_action` (accuracy by default). Then,
    at every `interval`-th optimizer step (`on_step_end`), one [`teacher_step`] updates the DQN from a
    look-ahead and hands the new per-task actions to the trainer (`set_task_actions`; 0 = accuracy loss CE_t,
    1 = fairness loss F_t), which `compute_loss` uses until the next teacher step.

    The trainer builds one from its arguments (`teacher_*` fields) when none is passed; pass your own in
    `callbacks=[...]` to change the held-out data or any setting. A setting left `None` is read from the
    trainer's `FairMTLTrainingArguments` when the callback is bound (see [`TeacherSettings`] for every setting,
    its default and its field).

    Logged through `trainer.record_metric` at each teacher step (averaged over the logging window):
    `teacher_td_loss` and, per task, the look-ahead reward of each action (`teacher_{task}_reward_accuracy`,
    `teacher_{task}_reward_fairness`), the Q-values of the decision (`teacher_{task}_q_accuracy`,
    `teacher_{task}_q_fairness`, `teacher_{task}_q_gap` = fairness − accuracy) and the running bests
    (`teacher_{task}_best_accuracy`, `teacher_{task}_best_eo`). Every step's full record (with the candidates'
    held-out scores) is kept in [`diagnostics`]. The trainer itself logs `{task}_action` (the fraction of steps
    on the fairness loss in the window).

    Args:
        trainer: A trainer implementing [`TeacherStudent`] (`FairMTLTrainer`); may be left `None` and bound
            later with [`bind`] (the trainer binds a callback passed in `callbacks`).
        heldout_dataset: Rows the look-ahead is scored on (same format as the training rows). Default: the
            trainer's `eval_dataset` (the first one of a dict), else a seeded sample of the training set
            (a warning says so: that is not held out).
        initial_action: Action of every task before the first teacher step; `None` = the DQN's greedy choice
            on the initial heads (no update).
        **settings: Any [`TeacherSettings`] field (`interval`, `lr`, `gamma`, `epsilon`, `hidden_size`,
            `state_size`, `heldout_size`, `heldout_refresh`, `lookahead_lr`, `seed`, `gradnorm`,
            `gradnorm_alpha`, `gradnorm_lr`, `num_statistics`, `min_denominator`, `reward_accuracy`,
            `collapse_threshold`); `None` = from the arguments (or the default, for settings without a field).
    """

    def __init__(
        self,
        trainer: TeacherStudent | None = None,
        heldout_dataset: Any = None,
        *,
        initial_action: int | None = TeacherSettings.initial_action,
        **settings: Any,
    ) -> None:
        self.heldout_dataset = heldout_dataset
        # Validated now (a typo fails at construction, not at bind); resolved against the arguments at bind.
        TeacherSettings.from_training_args(None, **settings, initial_action=initial_action)
        self._overrides = dict(settings)
        self._initial_action = initial_action
        self.settings = TeacherSettings.from_training_args(None, **settings)
        self.trainer: TeacherStudent | None = None
        self.teacher: TaskTeacher | None = None
        self.heldout: HeldoutSet | None = None
        self._pending_state: Mapping[str, Any] | None = None
        # One record per teacher step (see `hf_fairmtl.teacher.diagnostics`), aligned with `action_history[1:]`.
        self.diagnostics: list[dict[str, float]] = []
        if trainer is not None:
            self.bind(trainer)

    @classmethod
    def from_trainer(cls, trainer: TeacherStudent, heldout_dataset: Any = None, **overrides: Any) -> TeacherCallback:
        """A callback bound to `trainer`, with its settings from `trainer.args` unless overridden."""
        return cls(trainer, heldout_dataset, **overrides)

    # -------------------------------------------------------------------------------- setup

    def bind(self, trainer: TeacherStudent) -> None:
        """Attach to a trainer: resolve settings, build the teacher for its heads, collate the held-out rows."""
        if not isinstance(trainer, TeacherStudent):
            raise TypeError(
                f"TeacherCallback needs a trainer implementing hf_fairmtl.teacher.TeacherStudent (FairMTLTrainer), "
                f"got {type(trainer).__name__}"
            )
        self.trainer = trainer
        settings = TeacherSettings.from_training_args(trainer.args, **self._overrides)
        self.settings = dataclasses.replace(settings, initial_action=self._initial_action)
        model = trainer.student_model()
        self.config = trainer.fairmtl_config
        self.tasks = list(self.config.tasks)
        self.fairness_attributes = {task: list(trainer.fairness_attributes.get(task, [])) for task in self.tasks}
        param_counts = [
            sum(p.numel() for p in trainable_head_parameters(model.heads[task]).values()) for task in self.tasks
        ]
        self.device = torch.device(trainer.args.device)
        s = self.settings
        self.teacher = TaskTeacher(
            param_counts,
            lr=s.lr,
            gamma=s.gamma,
            epsilon=s.epsilon,
            hidden_size=s.hidden_size,
            state_size=s.state_size,
            num_statistics=s.num_statistics,
            gradnorm=s.gradnorm,
            gradnorm_alpha=s.gradnorm_alpha,
            gradnorm_lr=s.gradnorm_lr,
            min_denominator=s.min_denominator,
            seed=s.seed,
            device=self.device,
        )
        self.heldout = HeldoutSet.from_dataset(
            self._heldout_rows(trainer),
            trainer.data_collator,
            self.config,
            self.fairness_attributes,
            s.heldout_size,
            s.seed,
            refresh=s.heldout_refresh,
            accuracy_metric=s.reward_accuracy,
            collapse_threshold=s.collapse_threshold,
        )
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)

    def _heldout_rows(self, trainer: TeacherStudent) -> Any:
        """The held-out data set: the constructor's, else the trainer's eval set, else (warned) its train set."""
        dataset = self.heldout_dataset
        if dataset is None:
            dataset = trainer.eval_dataset
            if isinstance(dataset, Mapping):
                dataset = next(iter(dataset.values()), None)
        if dataset is None:
            dataset = trainer.train_dataset
            if dataset is None:
                raise ValueError(
                    "The teacher needs held-out rows: pass `heldout_dataset` or give the trainer an eval_dataset"
                )
            logger.warning(
                "TeacherCallback: no held-out dataset and no eval_dataset; scoring the look-ahead on a sample of the "
                "training set, which rewards fitting the training data. Pass `heldout_dataset` or `eval_dataset`."
            )
        return dataset

    def _require_bound(self) -> TaskTeacher:
        if self.teacher is None:
            raise RuntimeError(
                "TeacherCallback is not bound to a trainer: FairMTLTrainer binds the callback it is given; "
                "otherwise call `callback.bind(trainer)`"
            )
        return self.teacher

    # -------------------------------------------------------------------------------- held-out scoring

    def heldout_features(self) -> torch.Tensor:
        """Shared features of the held-out rows for this teacher step (re-encoded on the `heldout_refresh` cadence)."""
        self._require_bound()
        return self.heldout.features(self.trainer.student_model(), self.device)

    # -------------------------------------------------------------------------------- teacher step

    def teacher_step(self, step: int) -> list[int]:
        """One look-ahead, Q update and decision for every task; hands the actions to the trainer.

        The held-out features come from the cache (see [`HeldoutSet`]); the look-ahead only runs task heads.
        What the decision was made from is logged and kept in [`diagnostics`].
        """
        teacher = self._require_bound()
        model = self.trainer.student_model()
        batch = self.trainer.latest_train_batch()
        features = self.heldout_features()
        with eval_mode(model.heads):  # once for all heads: no train/eval switch per simulated head
            states, transitions, scores = self._look_ahead(teacher, model, batch, features)
        result = teacher.update(transitions)
        actions, q = teacher.select_actions(torch.stack(states))
        actions = self._apply(step, actions)
        self._diagnose(step, result, transitions, scores, q, actions)
        return actions

    def _look_ahead(
        self, teacher: TaskTeacher, model: torch.nn.Module, batch: Mapping[str, Any] | None, features: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[Transition | None], list[dict[str, Any]]]:
        """Observe every task's current head, build its state, simulate both actions (see [`_transitions`])."""
        heads, params, current, states = self._current_heads(teacher, model, features)
        for t, (accuracy, eo_violation) in enumerate(current):
            teacher.observe(t, accuracy, eo_violation)
        transitions: list[Transition | None] = [None] * len(heads)
        candidates: list[list[tuple[float, float]]] = [[] for _ in heads]
        if batch is not None:
            transitions, candidates = self._transitions(heads, params, states, batch, features, current)
        scores = [
            {"accuracy": accuracy, "eo": eo_violation, "candidates": task_candidates}
            for (accuracy, eo_violation), task_candidates in zip(current, candidates, strict=True)
        ]
        return states, transitions, scores

    def _transitions(
        self,
        heads: Sequence[torch.nn.Module],
        params: Sequence[Mapping[str, torch.Tensor]],
        states: Sequence[torch.Tensor],
        batch: Mapping[str, torch.Tensor | None],
        features: torch.Tensor,
        current: Sequence[tuple[float, float]],
    ) -> tuple[list[Transition | None], list[list[tuple[float, float]]]]:
        """Look-ahead of every task: both simulated head steps, their held-out scores, rewards and next states.

        Returns:
            Per task, the transition (`None` when the task is unscored) and each candidate's `(accuracy, EO)`.
        """
        teacher = self._require_bound()
        labels = batch["labels"]

        def objectives(logits: list[torch.Tensor]) -> Sequence[Sequence[torch.Tensor]]:
            return self.trainer.objective_terms(logits, labels, batch.get("group_labels"))

        # Runs on every rank even for unscored tasks: the fairness losses hold collectives.
        reducers = [global_gradient_reducer(labels[:, t]) for t in range(len(heads))]
        candidates = lookahead_steps(heads, params, batch["shared"], objectives, self.settings.lookahead_lr, reducers)
        scored = [t for t, (accuracy, _) in enumerate(current) if not math.isnan(accuracy)]
        pairs = [(t, candidate) for t in scored for candidate in candidates[t]]
        results = iter(
            self.heldout.score_many(
                [t for t, _ in pairs], [heads[t] for t, _ in pairs], [c for _, c in pairs], features
            )
        )
        transitions: list[Transition | None] = [None] * len(heads)
        candidate_scores: list[list[tuple[float, float]]] = [[] for _ in heads]
        for t in scored:
            next_states, rewards = [], []
            for candidate in candidates[t]:
                accuracy, eo_violation = next(results)
                candidate_scores[t].append((accuracy, eo_violation))
                rewards.append(teacher.reward(t, accuracy, eo_violation))
                next_states.append(teacher.dqn.make_state(t, flatten_parameters(candidate), (accuracy, eo_violation)))
            transitions[t] = Transition(states[t], torch.stack(next_states), torch.tensor(rewards))
        return transitions, candidate_scores

    def _diagnose(
        self,
        step: int,
        result: Mapping[str, Any],
        transitions: Sequence[Transition | None],
        scores: Sequence[Mapping[str, Any]],
        q: torch.Tensor,
        actions: Sequence[int],
    ) -> None:
        """Log what one decision was made from and append it to [`diagnostics`] (see [`diagnostic_record`])."""
        teacher = self._require_bound()
        record = diagnostic_record(
            step,
            self.tasks,
            result["loss"],
            [tr.rewards.tolist() if tr is not None else None for tr in transitions],
            q.tolist(),
            teacher.best_accuracy,
            teacher.best_eo_violation,
            scores,
            actions,
        )
        self.diagnostics.append(record)
        for name in logged_diagnostic_keys(self.tasks):
            value = record.get(name, math.nan)
            if not math.isnan(value):
                self.trainer.record_metric(name, value)

    def _initial_actions(self) -> list[int]:
        teacher = self._require_bound()
        if self.settings.initial_action is not None:
            return [self.settings.initial_action] * teacher.num_tasks
        states = self._current_heads(teacher, self.trainer.student_model(), self.heldout_features())[3]
        return teacher.select_actions(torch.stack(states))[0]

    def _current_heads(
        self, teacher: TaskTeacher, model: torch.nn.Module, features: torch.Tensor
    ) -> tuple[list[torch.nn.Module], list[dict[str, torch.Tensor]], list[tuple[float, float]], list[torch.Tensor]]:
        """Every task's head, its trainable parameters, its held-out `(accuracy, EO)` and its DQN state."""
        heads = [model.heads[task] for task in self.tasks]
        params = [trainable_head_parameters(head) for head in heads]
        current = self.heldout.score_many(range(len(heads)), heads, params, features)
        states = [
            teacher.dqn.make_state(t, flatten_parameters(p), score)
            for t, (p, score) in enumerate(zip(params, current, strict=True))
        ]
        return heads, params, current, states

    def _apply(self, step: int, actions: Sequence[int]) -> list[int]:
        """Make the actions identical on every rank (rank 0's), record them and hand them to the trainer."""
        # A task without fairness attributes has no fairness loss to switch to (the trainer trains its accuracy loss
        # whatever the action), so an explored fairness action would only misreport what was trained.
        actions = [
            int(a) if self.fairness_attributes[task] else ACCURACY_ACTION
            for task, a in zip(self.tasks, actions, strict=True)
        ]
        if is_distributed():
            decided = torch.tensor(actions, dtype=torch.long, device=self.device)
            dist.broadcast(decided, src=0)
            actions = decided.tolist()
        self._require_bound().record(step, actions)
        self.trainer.set_task_actions(actions)
        return actions

    # -------------------------------------------------------------------------------- TrainerCallback hooks

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        teacher = self._require_bound()
        if state.global_step > 0 and teacher.history:
            # Resumed: the checkpoint's teacher state (actions included) was loaded before training began.
            self.trainer.set_task_actions(teacher.actions)
            return
        self._apply(state.global_step, self._initial_actions())

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step % self.settings.interval == 0:
            self.teacher_step(state.global_step)

    # -------------------------------------------------------------------------------- reports and state

    @property
    def action_history(self) -> list[tuple[int, list[int]]]:
        """Every decision as `(global_step, [action per task])`; the actions hold until the next entry."""
        return list(self._require_bound().history)

    def summary(self) -> dict[str, float]:
        """Fraction of teacher decisions that chose the fairness loss, per task name."""
        return dict(zip(self.tasks, self._require_bound().fairness_fraction(), strict=True))

    def state_dict(self) -> dict[str, Any]:
        """The teacher's full state (see [`TaskTeacher.state_dict`]), the held-out cache and the settings."""
        return {
            "teacher": self._require_bound().state_dict(),
            "heldout": self.heldout.state_dict(),
            "diagnostics": [dict(record) for record in self.diagnostics],
            "settings": self.settings.as_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict` (before binding, it is kept and applied by [`bind`])."""
        if self.teacher is None:
            self._pending_state = state
            return
        self.teacher.load_state_dict(state["teacher"])
        self.heldout.load_state_dict(state.get("heldout"), self.device)
        self.diagnostics = [dict(record) for record in state.get("diagnostics", [])]
        if self.trainer is not None:
            self.trainer.set_task_actions(self.teacher.actions)
