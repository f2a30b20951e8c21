"""The teacher's multi-task DQN and its learning state (Q update, GradNorm over tasks, bests, exploration)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..weighting import GradNorm
from .reward import teacher_reward
from .settings import (
    ACCURACY_ACTION,
    DEFAULT_MIN_DENOMINATOR,
    FAIRNESS_ACTION,
    NUM_ACTIONS,
    NUM_STATISTICS,
    TeacherSettings,
)
from .state import random_projection, task_state

STATE_DICT_VERSION = 1


class MultiTaskDQN(nn.Module):
    """Multi-task deep Q-network: a shared trunk and one 2-action Q head per task.

    Input of task t (see `make_state`): its head's flattened trainable weights `θ_t ∈ R^{P_t}` times a fixed
    random projection `[P_max, state_size]` (its first `P_t` rows), concatenated with two training
    statistics of the head on the held-out batch: accuracy and EO violation. The statistics are our
    addition to the paper's weight-only state: they are exactly what the reward is computed from, so they
    let the Q function tell a good head from a bad one without having to decode it from random projections
    of its weights (set `num_statistics=0` for the weight-only state).

    The projection is a non-persistent buffer rebuilt from `seed`, so checkpoints stay small even for large
    heads; `state_dict` checks that the seed and sizes match on load (they are part of the teacher's state).

    Args:
        param_counts: Number of trainable parameters of each task's head (`P_t`).
        state_size: Width of the projected weights.
        hidden_size: Width of the shared trunk.
        num_statistics: Number of statistics appended to the projected weights.
        num_actions: Actions per task (2: accuracy or fairness).
        seed: Seed of the projection and of the initial weights.
    """

    def __init__(
        self,
        param_counts: Sequence[int],
        state_size: int = TeacherSettings.state_size,
        hidden_size: int = TeacherSettings.hidden_size,
        num_statistics: int = NUM_STATISTICS,
        num_actions: int = NUM_ACTIONS,
        seed: int = TeacherSettings.seed,
    ) -> None:
        super().__init__()
        if not param_counts or min(param_counts) < 1:
            raise ValueError(f"MultiTaskDQN needs one positive parameter count per task, got {list(param_counts)}")
        self.param_counts = [int(count) for count in param_counts]
        self.state_size = state_size
        self.num_statistics = num_statistics
        self.num_actions = num_actions
        self.seed = seed
        self.register_buffer(
            "projection", random_projection(max(self.param_counts), state_size, seed), persistent=False
        )
        # Seeded initial weights without touching the global RNG (the student's stream must not depend on
        # whether a teacher was built).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.trunk = nn.Sequential(
                nn.Linear(state_size + num_statistics, hidden_size),
                nn.ReLU(),
                nn.Linear(hidden_size, hidden_size),
                nn.ReLU(),
            )
            # Per task: one state value V and one advantage per action (dueling heads, Wang et al. 2016).
            self.q_heads = nn.ModuleList(nn.Linear(hidden_size, 1 + num_actions) for _ in self.param_counts)
        # Q heads start at exactly 0: a randomly initialised head would give each task an arbitrary initial
        # preference of the order of 0.1, larger than typical reward differences (~0.01), which a few hundred
        # small Adam steps need a long time to unlearn. With zeros, the first decisions are ties (→ accuracy)
        # and every preference comes from rewards.
        for head in self.q_heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @property
    def num_tasks(self) -> int:
        return len(self.param_counts)

    @property
    def input_size(self) -> int:
        return self.state_size + self.num_statistics

    def make_state(
        self, task_index: int, flat_params: torch.Tensor, statistics: Sequence[float] | torch.Tensor | None = None
    ) -> torch.Tensor:
        """State vector `[input_size]` of task `task_index` from its flattened head weights `[P_t]`.

        NaN statistics (e.g. no EO violation to measure) are written as 0.
        """
        count = self.param_counts[task_index]
        if flat_params.numel() != count:
            raise ValueError(f"Task {task_index} head has {count} trainable parameters, got {flat_params.numel()}")
        return task_state(flat_params, self.projection[:count], self.num_statistics, statistics)

    def q_from_hidden(self, hidden: torch.Tensor, task_index: int) -> torch.Tensor:
        """Q values `[..., num_actions]` of task `task_index` from trunk outputs `[..., hidden_size]`.

        Dueling form `Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a')`: the rewards' level moves a lot during
        training (it follows the student's best-so-far scores), while the decision only needs the gap between
        the actions, which is usually an order of magnitude smaller. With a separate value output, fitting the
        level does not drag the advantage (the gap) around; in our runs a plain Q head kept chasing the level
        and lagged the actions' reward gap by tens of teacher steps.
        """
        out = self.q_heads[task_index](hidden)
        value, advantages = out[..., :1], out[..., 1:]
        return value + advantages - advantages.mean(dim=-1, keepdim=True)

    def forward(self, states: torch.Tensor, task_index: int) -> torch.Tensor:
        """Q values `[N, num_actions]` of `N` states of one task."""
        return self.q_from_hidden(self.trunk(states), task_index)

    def q_all(self, hidden: torch.Tensor) -> torch.Tensor:
        """Q values `[T, N, num_actions]` of every task from trunk outputs `[T, N, hidden_size]` (row t read by task
        t's head): [`q_from_hidden`] of every task as one batched product instead of T calls."""
        weight = torch.stack([head.weight for head in self.q_heads])
        bias = torch.stack([head.bias for head in self.q_heads])
        out = torch.baddbmm(bias.unsqueeze(1), hidden, weight.mT)
        value, advantages = out[..., :1], out[..., 1:]
        return value + advantages - advantages.mean(dim=-1, keepdim=True)


@dataclass
class Transition:
    """The look-ahead of one task: state, the state after each simulated action, and each action's reward.

    Attributes:
        state: `s` `[D]`.
        next_states: `s′_a` `[num_actions, D]`, row a = state after action a.
        rewards: `R_a` `[num_actions]`.
    """

    state: torch.Tensor
    next_states: torch.Tensor
    rewards: torch.Tensor


class TaskTeacher:
    """The teacher's learning state: the DQN, its optimizer, GradNorm weights, running bests, exploration RNG.

    Args:
        param_counts: Trainable parameters of each task head (sizes the DQN's projection).
        lr: Adam learning rate of the DQN.
        gamma: Discount γ of the Q target.
        epsilon: Probability of a uniformly random action per task and decision (ε-greedy).
        hidden_size: Width of the DQN trunk.
        state_size: Width the head weights are projected to.
        num_statistics: Statistics appended to the state (2 = held-out accuracy and EO; 0 = weights only).
        gradnorm: Balance the per-task TD losses with GradNorm (the design); `False` = equal weights.
        gradnorm_alpha: GradNorm α.
        gradnorm_lr: Learning rate of the GradNorm weights.
        min_denominator: Clamp of the reward's denominators (see [`teacher_reward`]).
        seed: Seeds the projection, the DQN's initial weights and the exploration generator.
        device: Where the DQN lives (the trainer's device, so collectives use the backend's tensors).
    """

    def __init__(
        self,
        param_counts: Sequence[int],
        *,
        lr: float = TeacherSettings.lr,
        gamma: float = TeacherSettings.gamma,
        epsilon: float = TeacherSettings.epsilon,
        hidden_size: int = TeacherSettings.hidden_size,
        state_size: int = TeacherSettings.state_size,
        num_statistics: int = NUM_STATISTICS,
        gradnorm: bool = True,
        gradnorm_alpha: float = TeacherSettings.gradnorm_alpha,
        gradnorm_lr: float = TeacherSettings.gradnorm_lr,
        min_denominator: float = DEFAULT_MIN_DENOMINATOR,
        seed: int = TeacherSettings.seed,
        device: torch.device | str | None = None,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"`epsilon` must be in [0, 1], got {epsilon}")
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"`gamma` must be in [0, 1), got {gamma}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dqn = MultiTaskDQN(param_counts, state_size, hidden_size, num_statistics, NUM_ACTIONS, seed).to(
            self.device
        )
        self.optimizer = torch.optim.Adam(self.dqn.parameters(), lr=lr)
        self.gradnorm = (
            GradNorm(self.num_tasks, alpha=gradnorm_alpha, lr=gradnorm_lr).to(self.device) if gradnorm else None
        )
        self.gamma = gamma
        self.epsilon = epsilon
        self.min_denominator = min_denominator
        self.seed = seed
        # Exploration draws come from this generator only, never the global RNG: identical on every rank and
        # restored exactly on resume.
        self.generator = torch.Generator().manual_seed(seed)
        self.best_accuracy: list[float] = [math.nan] * self.num_tasks
        self.best_eo_violation: list[float] = [math.nan] * self.num_tasks
        self.actions: list[int] = [ACCURACY_ACTION] * self.num_tasks
        self.history: list[tuple[int, list[int]]] = []
        self.num_updates = 0

    @property
    def num_tasks(self) -> int:
        return self.dqn.num_tasks

    # -------------------------------------------------------------------------------- rewards and bests

    def reward(self, task_index: int, accuracy: float, eo_violation: float) -> float:
        """Reward of a candidate head of task `task_index` against the task's running bests."""
        best_accuracy = self.best_accuracy[task_index]
        if math.isnan(best_accuracy):
            raise RuntimeError("Call `observe` with the current head's scores before computing rewards")
        return teacher_reward(
            accuracy, eo_violation, best_accuracy, self.best_eo_violation[task_index], self.min_denominator
        )

    def observe(self, task_index: int, accuracy: float, eo_violation: float) -> None:
        """Fold the student's current held-out scores of a task into its running bests.

        The bests track the student's real trajectory (the current head at each teacher step), not the
        simulated candidates, so a reward measures whether an action would move the student beyond the best
        it has actually reached, including now.
        """
        if not math.isnan(accuracy):
            best = self.best_accuracy[task_index]
            self.best_accuracy[task_index] = accuracy if math.isnan(best) else max(best, accuracy)
        if not math.isnan(eo_violation):
            best = self.best_eo_violation[task_index]
            self.best_eo_violation[task_index] = eo_violation if math.isnan(best) else min(best, eo_violation)

    # -------------------------------------------------------------------------------- Q learning

    def q_values(self, states: torch.Tensor) -> torch.Tensor:
        """Q values `[T, num_actions]` of one state per task (`states` `[T, D]`), without gradient."""
        with torch.no_grad():
            hidden = self.dqn.trunk(states.to(self.device))
            return self.dqn.q_all(hidden.unsqueeze(1)).squeeze(1)

    def td_targets(self, transitions: Sequence[Transition | None]) -> torch.Tensor:
        """`y_a = R_a + γ · max_a' Q(s′_a, a')` of every task, `[T, num_actions]`, in one trunk call (no gradient;
        the current network, no target copy); zeros for a task without a transition (`None`)."""
        width, actions = self.dqn.input_size, self.dqn.num_actions
        blank_states = torch.zeros(actions, width, device=self.device)
        blank_rewards = torch.zeros(actions, device=self.device)
        next_states = torch.stack([tr.next_states.to(self.device) if tr else blank_states for tr in transitions])
        rewards = torch.stack([tr.rewards.to(self.device) if tr else blank_rewards for tr in transitions])
        with torch.no_grad():
            next_q = self.dqn.q_all(self.dqn.trunk(next_states))
        targets = rewards.to(next_q) + self.gamma * next_q.max(dim=-1).values
        present = torch.tensor([tr is not None for tr in transitions], device=self.device)
        return torch.where(present.unsqueeze(1), targets, torch.zeros_like(targets))

    def update(self, transitions: Sequence[Transition | None]) -> dict[str, Any]:
        """One DQN step on the look-ahead transitions of all tasks (`None` = task without a transition).

        Per task t: `L_t = mean_a (Q(s_t, a) − y_a)²` over both simulated actions. The optimised loss is
        `Σ_t w_t · L_t / T` with GradNorm weights `w_t` (1 without GradNorm); GradNorm then balances the
        weights from the gradient norms of `w_t · L_t` at the trunk output (the DQN's shared representation).
        Every task's targets, Q values and losses are computed as `[T, ...]` tensors (one trunk call each).

        Returns:
            `{"td_losses": [T] floats (NaN where no transition), "targets": list of [num_actions] tensors or
            None, "loss": float}`.
        """
        if len(transitions) != self.num_tasks:
            raise ValueError(f"Expected {self.num_tasks} transitions, got {len(transitions)}")
        flags = [tr is not None for tr in transitions]
        present = torch.tensor(flags)
        if not any(flags):
            if self.gradnorm is not None:
                self.gradnorm.step()  # a collective under DDP: every rank must call it at every update
            return {"td_losses": [math.nan] * self.num_tasks, "targets": [None] * self.num_tasks, "loss": math.nan}
        targets = self.td_targets(transitions)
        zero_state = torch.zeros(self.dqn.input_size, device=self.device)
        states = torch.stack([tr.state.to(self.device) if tr is not None else zero_state for tr in transitions])
        hidden = self.dqn.trunk(states)
        q = self.dqn.q_all(hidden.unsqueeze(1)).squeeze(1)
        mask = present.to(self.device)
        # A task without a transition: 0 with a graph (its zero state's Q against zero targets is left out).
        td_losses = torch.where(mask, (q - targets).pow(2).mean(dim=-1), hidden.sum(dim=-1) * 0.0)
        weights = self.gradnorm.task_weights if self.gradnorm is not None else torch.ones(self.num_tasks)
        weights = weights.to(self.device)
        total = torch.where(mask, weights * td_losses, torch.zeros_like(td_losses)).sum() / self.num_tasks
        if self.gradnorm is not None:
            # GradNorm takes the unweighted losses (it multiplies the gradient norms by w_t itself).
            self.gradnorm.accumulate_losses(td_losses, hidden, present)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        if self.gradnorm is not None:
            self.gradnorm.step()
        self.num_updates += 1
        losses = td_losses.detach().tolist()
        return {
            "td_losses": [loss if here else math.nan for loss, here in zip(losses, flags, strict=True)],
            "targets": [target if here else None for target, here in zip(targets.unbind(), flags, strict=True)],
            "loss": float(total.detach()),
        }

    def select_actions(self, states: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """Greedy actions `argmax_a Q(s_t, a)` (ties → accuracy), each replaced by a random one with prob. ε.

        The generator draws the same numbers at every call whatever the outcome (T uniforms, then T coin
        flips), so the stream, and therefore resumed runs, do not depend on which draws were used.

        Returns:
            `(actions, q_values [T, num_actions])`.
        """
        q = self.q_values(states)
        greedy = q.argmax(dim=-1).cpu()
        explore = torch.rand(self.num_tasks, generator=self.generator) < self.epsilon
        random_actions = torch.randint(0, NUM_ACTIONS, (self.num_tasks,), generator=self.generator)
        return torch.where(explore, random_actions, greedy).tolist(), q

    # -------------------------------------------------------------------------------- bookkeeping

    def record(self, step: int, actions: Sequence[int]) -> None:
        """Set the current actions and append them to the history."""
        self.actions = [int(a) for a in actions]
        self.history.append((int(step), list(self.actions)))

    def fairness_fraction(self) -> list[float]:
        """Per task, the fraction of decisions in the history that chose the fairness loss (NaN if none)."""
        if not self.history:
            return [math.nan] * self.num_tasks
        counts = [0] * self.num_tasks
        for _, actions in self.history:
            for t, action in enumerate(actions):
                counts[t] += int(action == FAIRNESS_ACTION)
        return [count / len(self.history) for count in counts]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically: DQN, optimizer, GradNorm, bests, RNG, actions, history."""
        return {
            "version": STATE_DICT_VERSION,
            "param_counts": list(self.dqn.param_counts),
            "state_size": self.dqn.state_size,
            "seed": self.seed,
            "dqn": self.dqn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "gradnorm": self.gradnorm.state_dict() if self.gradnorm is not None else None,
            "best_accuracy": list(self.best_accuracy),
            "best_eo_violation": list(self.best_eo_violation),
            "generator": self.generator.get_state(),
            "actions": list(self.actions),
            "history": [(step, list(actions)) for step, actions in self.history],
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict`; raises if it was made for other heads or another projection."""
        for key, mine in (
            ("param_counts", list(self.dqn.param_counts)),
            ("state_size", self.dqn.state_size),
            ("seed", self.seed),
        ):
            if state.get(key) != mine:
                raise ValueError(
                    f"Teacher state has {key}={state.get(key)!r} but this teacher has {mine!r}: it was saved for "
                    "another model or teacher configuration"
                )
        self.dqn.load_state_dict(state["dqn"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.gradnorm is not None and state.get("gradnorm") is not None:
            self.gradnorm.load_state_dict(state["gradnorm"])
        self.best_accuracy = [float(v) for v in state["best_accuracy"]]
        self.best_eo_violation = [float(v) for v in state["best_eo_violation"]]
        # map_location may have moved the generator state to an accelerator; generators want a CPU ByteTensor.
        self.generator.set_state(state["generator"].cpu())
        self.actions = [int(a) for a in state["actions"]]
        self.history = [(int(step), [int(a) for a in actions]) for step, actions in state["history"]]
        self.num_updates = int(state["num_updates"])
