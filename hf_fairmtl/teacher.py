"""The L2T-FMT teacher (Roy & Ntoutsi, "Learning to Teach Fairness-aware Deep Multi-task Learning", 2022).

Every task t of the student has two possible objectives: the accuracy loss CE_t (action 0) and the
fairness loss F_t (action 1). A multi-task DQN decides, per task, which one the student trains on next.

One teacher step, for each task t (see [`TeacherCallback.teacher_step`]):

1. State `s_t`: the task's head weights, flattened and multiplied by a fixed random projection to a
   fixed width (so any head size works), plus two statistics of the head on the held-out batch
   (accuracy and EO violation; see [`MultiTaskDQN`]).
2. One-step look-ahead: on a functional copy of the head, one SGD step with CE_t and one with F_t on the
   cached shared features of the last training micro-batch; both candidates are scored on a held-out
   batch whose shared features are computed once per teacher step (the encoder never runs inside the
   look-ahead).
3. Reward of action a: `R = min((Acc − Acc_best)/Acc_best, (EO_best − EO)/(1 − EO_best))` with the
   running bests of the student's task (see [`teacher_reward`]).
4. Q update toward `R + γ·max_a' Q(s′_a, a')` for both simulated actions, where `s′_a` is the head after
   action a; the per-task TD losses are balanced by the project's [`GradNorm`]. Each task's Q head is a
   dueling head (state value + action advantages) that starts at zero (see [`MultiTaskDQN.q_from_hidden`]).
5. Action: `argmax_a Q(s_t, a)`, with seeded ε-greedy exploration.

Under data parallelism every rank runs the same teacher step: the simulated head gradients are
all-reduced (so every rank simulates the global batch's step, as DDP does for the student), the held-out
batch is the same on every rank, and the teacher's state is identical everywhere. The actions are then
broadcast from rank 0 anyway, so a floating-point difference can never make ranks train different
objectives.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from transformers import TrainerCallback

from .gradnorm import GradNorm
from .groups import UNKNOWN_GROUP, attribute_group_ids
from .losses.distributed import all_reduce_sum, is_distributed
from .metrics import fairness_metrics
from .modeling_fairmtl import IGNORE_INDEX

logger = logging.getLogger(__name__)

ACCURACY_ACTION, FAIRNESS_ACTION = 0, 1
NUM_ACTIONS = 2
NUM_STATISTICS = 2  # held-out accuracy and EO violation of the head, appended to the projected weights
DEFAULT_MIN_DENOMINATOR = 0.05
STATE_DICT_VERSION = 1

# Built-in defaults, used when neither the constructor nor `FairMTLTrainingArguments` gives a value.
TEACHER_DEFAULTS: dict[str, Any] = {
    # Measured (benchmarks/bench_teacher.py, tiny BERT, batch 16): one teacher step costs ~2-3 student steps,
    # mostly encoding the 256 held-out rows; every 10 steps the step time is ≤ 1.3× `weighted` at T = 5 and 17.
    "interval": 10,
    "lr": 1e-3,
    "gamma": 0.9,
    "epsilon": 0.1,
    "hidden_size": 64,
    "state_size": 128,
    "heldout_size": 256,
    "lookahead_lr": 0.1,
    "seed": 0,
    "gradnorm_alpha": 1.5,
    "gradnorm_lr": 0.025,
}
# Constructor name -> FairMTLTrainingArguments field it defaults to.
_ARGUMENT_FIELDS = {
    "interval": "teacher_interval",
    "lr": "teacher_lr",
    "gamma": "teacher_gamma",
    "epsilon": "teacher_epsilon",
    "hidden_size": "teacher_hidden_size",
    "state_size": "teacher_state_size",
    "heldout_size": "teacher_heldout_size",
    "lookahead_lr": "teacher_lookahead_lr",
    "seed": "teacher_seed",
    "gradnorm_alpha": "gradnorm_alpha",
    "gradnorm_lr": "gradnorm_lr",
}


# ---------------------------------------------------------------------------------------------- pure parts


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


def random_projection(in_features: int, out_features: int, seed: int) -> torch.Tensor:
    """A fixed Gaussian projection `[in_features, out_features]` with entries N(0, 1/out_features).

    The 1/out_features variance (Johnson-Lindenstrauss scaling) keeps `‖x P‖ ≈ ‖x‖`, so the DQN input has the
    scale of the head weights whatever the head size. Drawn from its own generator: building it never moves
    the global RNG (the student's dropout stream stays the same with or without a teacher).
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(in_features, out_features, generator=generator) / math.sqrt(out_features)


def trainable_head_parameters(head: nn.Module) -> dict[str, torch.Tensor]:
    """The head's trainable parameters by name, detached (frozen ones, e.g. a PEFT original copy, are left out)."""
    return {name: param.detach() for name, param in head.named_parameters() if param.requires_grad}


def flatten_parameters(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """All tensors of `params`, flattened and concatenated in their order (a `[P]` float vector)."""
    return torch.cat([p.detach().reshape(-1).float() for p in params.values()])


def head_logits(head: nn.Module, params: Mapping[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """Logits of `head` with `params` in place of its trainable parameters, in eval mode (no dropout).

    Eval mode keeps the look-ahead deterministic and away from the global RNG, so the student's own
    dropout draws are the same with or without a teacher.
    """
    was_training = head.training
    head.eval()
    try:
        first = next(iter(params.values()))
        return torch.func.functional_call(head, dict(params), (features.to(first.dtype),), strict=False)
    finally:
        head.train(was_training)


def lookahead_step(
    head: nn.Module,
    params: Mapping[str, torch.Tensor],
    features: torch.Tensor,
    objectives: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    lr: float,
    reduce_gradients: Callable[[list[list[torch.Tensor]]], list[list[torch.Tensor]]] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Simulate one SGD step of a head per objective, on a functional copy (the real head is untouched).

    Args:
        head: The task head (its module structure is used; its parameters are replaced by `params`).
        params: Current trainable parameters of the head.
        features: Cached shared features `[B, H]` of a training batch (detached).
        objectives: Maps the head's logits to one scalar loss per action (e.g. `(CE_t, F_t)`).
        lr: Learning rate of the simulated step.
        reduce_gradients: Optional hook applied to the per-action gradient lists (the callback all-reduces
            them across ranks here). A parameter that an objective does not reach gets a zero gradient.

    Returns:
        One parameter dict per objective: `θ − lr · ∇θ objective`.
    """
    leaves = {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}
    with torch.enable_grad():
        losses = objectives(head_logits(head, leaves, features.detach()))
        gradients = []
        for index, loss in enumerate(losses):
            last = index == len(losses) - 1
            grads = torch.autograd.grad(loss, list(leaves.values()), retain_graph=not last, allow_unused=True)
            gradients.append(
                [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(leaves.values(), grads, strict=True)]
            )
    if reduce_gradients is not None:
        gradients = reduce_gradients(gradients)
    return [
        {name: (p.detach() - lr * g).detach() for (name, p), g in zip(leaves.items(), grads, strict=True)}
        for grads in gradients
    ]


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
        state_size: int = 128,
        hidden_size: int = 64,
        num_statistics: int = NUM_STATISTICS,
        num_actions: int = NUM_ACTIONS,
        seed: int = 0,
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
        projection = self.projection[:count]
        projected = flat_params.reshape(-1).to(projection) @ projection
        if self.num_statistics == 0:
            return projected
        stats = torch.as_tensor(statistics if statistics is not None else [0.0] * self.num_statistics)
        stats = torch.nan_to_num(stats.to(projected).reshape(-1), nan=0.0)
        if stats.numel() != self.num_statistics:
            raise ValueError(f"Expected {self.num_statistics} statistics, got {stats.numel()}")
        return torch.cat([projected, stats])

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
        lr: float = TEACHER_DEFAULTS["lr"],
        gamma: float = TEACHER_DEFAULTS["gamma"],
        epsilon: float = TEACHER_DEFAULTS["epsilon"],
        hidden_size: int = TEACHER_DEFAULTS["hidden_size"],
        state_size: int = TEACHER_DEFAULTS["state_size"],
        num_statistics: int = NUM_STATISTICS,
        gradnorm: bool = True,
        gradnorm_alpha: float = TEACHER_DEFAULTS["gradnorm_alpha"],
        gradnorm_lr: float = TEACHER_DEFAULTS["gradnorm_lr"],
        min_denominator: float = DEFAULT_MIN_DENOMINATOR,
        seed: int = TEACHER_DEFAULTS["seed"],
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
            return torch.stack([self.dqn.q_from_hidden(hidden[t], t) for t in range(self.num_tasks)])

    def td_targets(self, transition: Transition, task_index: int) -> torch.Tensor:
        """`y_a = R_a + γ · max_a' Q(s′_a, a')` `[num_actions]` (no gradient; the current network, no target copy)."""
        with torch.no_grad():
            next_q = self.dqn(transition.next_states.to(self.device), task_index)
        return transition.rewards.to(next_q) + self.gamma * next_q.max(dim=-1).values

    def update(self, transitions: Sequence[Transition | None]) -> dict[str, Any]:
        """One DQN step on the look-ahead transitions of all tasks (`None` = task without a transition).

        Per task t: `L_t = mean_a (Q(s_t, a) − y_a)²` over both simulated actions. The optimised loss is
        `Σ_t w_t · L_t / T` with GradNorm weights `w_t` (1 without GradNorm); GradNorm then balances the
        weights from the gradient norms of `w_t · L_t` at the trunk output (the DQN's shared representation).

        Returns:
            `{"td_losses": [T] floats (NaN where no transition), "targets": list of [num_actions] tensors or
            None, "loss": float}`.
        """
        if len(transitions) != self.num_tasks:
            raise ValueError(f"Expected {self.num_tasks} transitions, got {len(transitions)}")
        present = torch.tensor([tr is not None for tr in transitions])
        if not bool(present.any()):
            if self.gradnorm is not None:
                self.gradnorm.step()  # a collective under DDP: every rank must call it at every update
            return {"td_losses": [math.nan] * self.num_tasks, "targets": [None] * self.num_tasks, "loss": math.nan}
        targets = [self.td_targets(tr, t) if tr is not None else None for t, tr in enumerate(transitions)]
        zero_state = torch.zeros(self.dqn.input_size, device=self.device)
        states = torch.stack([tr.state.to(self.device) if tr is not None else zero_state for tr in transitions])
        hidden = self.dqn.trunk(states)
        td_losses = []
        for t, target in enumerate(targets):
            if target is None:
                td_losses.append(hidden[t].sum() * 0.0)
            else:
                td_losses.append(F.mse_loss(self.dqn.q_from_hidden(hidden[t], t), target))
        weights = self.gradnorm.task_weights if self.gradnorm is not None else torch.ones(self.num_tasks)
        weights = weights.to(self.device)
        total = sum(weights[t] * td_losses[t] for t in range(self.num_tasks) if bool(present[t])) / self.num_tasks
        if self.gradnorm is not None:
            # GradNorm takes the unweighted losses (it multiplies the gradient norms by w_t itself).
            self.gradnorm.accumulate(td_losses, hidden, present)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        if self.gradnorm is not None:
            self.gradnorm.step()
        self.num_updates += 1
        return {
            "td_losses": [float(loss.detach()) if bool(present[t]) else math.nan for t, loss in enumerate(td_losses)],
            "targets": targets,
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


# ---------------------------------------------------------------------------------------------- callback


class TeacherCallback(TrainerCallback):
    """Drives the L2T-FMT teacher inside a [`FairMTLTrainer`] with `strategy="teacher"`.

    Before training (`on_train_begin`) every task starts on `initial_action` (accuracy by default). Then,
    at every `interval`-th optimizer step (`on_step_end`), one [`teacher_step`] updates the DQN from a
    look-ahead and writes the new per-task actions to `trainer.task_actions` (0 = accuracy loss CE_t,
    1 = fairness loss F_t), which `compute_loss` uses until the next teacher step.

    The trainer builds one from its arguments (`teacher_*` fields) when none is passed; pass your own in
    `callbacks=[...]` to change the held-out data or any setting. A setting left `None` is read from
    `trainer.args` (`teacher_interval`, `teacher_lr`, `teacher_gamma`, `teacher_epsilon`,
    `teacher_hidden_size`, `teacher_state_size`, `teacher_heldout_size`, `teacher_lookahead_lr`,
    `teacher_seed`, `gradnorm_alpha`, `gradnorm_lr`) when the callback is bound to the trainer.

    Logged through `trainer.record_metric` at each teacher step (averaged over the logging window):
    `teacher_td_loss` and, per task, `teacher_{task}_q_gap` = Q(s, fairness) − Q(s, accuracy). The trainer
    itself logs `{task}_action` (the fraction of steps on the fairness loss in the window).

    Args:
        trainer: The `FairMTLTrainer`; may be left `None` and bound later with [`bind`] (the trainer binds
            a callback passed in `callbacks`).
        heldout_dataset: Rows the look-ahead is scored on (same format as the training rows). Default: the
            trainer's `eval_dataset` (the first one of a dict), else a seeded sample of the training set
            (a warning says so: that is not held out).
        interval: Teacher step every `interval` optimizer steps.
        lr: Adam learning rate of the DQN.
        gamma: Discount γ of the Q target.
        epsilon: ε-greedy exploration probability per task and decision.
        hidden_size: Width of the DQN trunk.
        state_size: Width of the random projection of the head weights.
        heldout_size: Rows of the held-out batch (a seeded sample when the dataset is larger).
        lookahead_lr: Learning rate of the simulated head step.
        seed: Seeds the projection, the DQN's initial weights, the exploration and the held-out sample.
        gradnorm: Balance the teacher's per-task TD losses with GradNorm.
        gradnorm_alpha: GradNorm α of the teacher.
        gradnorm_lr: Learning rate of the teacher's GradNorm weights.
        num_statistics: 2 to append held-out accuracy and EO to the DQN state, 0 for weights only.
        min_denominator: Clamp of the reward's denominators (see [`teacher_reward`]).
        initial_action: Action of every task before the first teacher step; `None` = the DQN's greedy
            choice on the initial heads (no update).
    """

    def __init__(
        self,
        trainer: Any = None,
        heldout_dataset: Any = None,
        *,
        interval: int | None = None,
        lr: float | None = None,
        gamma: float | None = None,
        epsilon: float | None = None,
        hidden_size: int | None = None,
        state_size: int | None = None,
        heldout_size: int | None = None,
        lookahead_lr: float | None = None,
        seed: int | None = None,
        gradnorm: bool = True,
        gradnorm_alpha: float | None = None,
        gradnorm_lr: float | None = None,
        num_statistics: int = NUM_STATISTICS,
        min_denominator: float = DEFAULT_MIN_DENOMINATOR,
        initial_action: int | None = ACCURACY_ACTION,
    ) -> None:
        if initial_action not in (None, ACCURACY_ACTION, FAIRNESS_ACTION):
            raise ValueError(f"`initial_action` must be 0 (accuracy), 1 (fairness) or None, got {initial_action!r}")
        self.heldout_dataset = heldout_dataset
        self._overrides = {
            name: value
            for name, value in {
                "interval": interval,
                "lr": lr,
                "gamma": gamma,
                "epsilon": epsilon,
                "hidden_size": hidden_size,
                "state_size": state_size,
                "heldout_size": heldout_size,
                "lookahead_lr": lookahead_lr,
                "seed": seed,
                "gradnorm_alpha": gradnorm_alpha,
                "gradnorm_lr": gradnorm_lr,
            }.items()
            if value is not None
        }
        self.use_gradnorm = gradnorm
        self.num_statistics = num_statistics
        self.min_denominator = min_denominator
        self.initial_action = initial_action
        self.settings: dict[str, Any] = {}
        self.trainer = None
        self.teacher: TaskTeacher | None = None
        self._pending_state: Mapping[str, Any] | None = None
        if trainer is not None:
            self.bind(trainer)

    @classmethod
    def from_trainer(cls, trainer: Any, heldout_dataset: Any = None, **overrides: Any) -> TeacherCallback:
        """A callback bound to `trainer`, with its settings from `trainer.args` unless overridden."""
        return cls(trainer, heldout_dataset, **overrides)

    # -------------------------------------------------------------------------------- setup

    def bind(self, trainer: Any) -> None:
        """Attach to a trainer: resolve settings, build the teacher for its heads, collate the held-out rows."""
        self.trainer = trainer
        args = getattr(trainer, "args", None)
        self.settings = {
            name: self._overrides.get(name, getattr(args, _ARGUMENT_FIELDS[name], default))
            for name, default in TEACHER_DEFAULTS.items()
        }
        if int(self.settings["interval"]) < 1:
            raise ValueError("The teacher `interval` must be at least 1")
        model = _student(trainer)
        self.config = model.config
        self.tasks = list(self.config.tasks)
        self.fairness_attributes = {
            task: list(getattr(trainer, "fairness_attributes", {}).get(task, self.config.protected_attributes))
            for task in self.tasks
        }
        param_counts = [
            sum(p.numel() for p in trainable_head_parameters(model.heads[task]).values()) for task in self.tasks
        ]
        self.device = torch.device(args.device) if args is not None else torch.device("cpu")
        self.teacher = TaskTeacher(
            param_counts,
            lr=self.settings["lr"],
            gamma=self.settings["gamma"],
            epsilon=self.settings["epsilon"],
            hidden_size=self.settings["hidden_size"],
            state_size=self.settings["state_size"],
            num_statistics=self.num_statistics,
            gradnorm=self.use_gradnorm,
            gradnorm_alpha=self.settings["gradnorm_alpha"],
            gradnorm_lr=self.settings["gradnorm_lr"],
            min_denominator=self.min_denominator,
            seed=self.settings["seed"],
            device=self.device,
        )
        self._prepare_heldout()
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)

    def _prepare_heldout(self) -> None:
        """Collate the held-out rows once (they are fixed); their shared features are recomputed per step."""
        trainer = self.trainer
        dataset = self.heldout_dataset
        if dataset is None:
            dataset = getattr(trainer, "eval_dataset", None)
            if isinstance(dataset, Mapping):
                dataset = next(iter(dataset.values()), None)
        if dataset is None:
            dataset = getattr(trainer, "train_dataset", None)
            if dataset is None:
                raise ValueError(
                    "The teacher needs held-out rows: pass `heldout_dataset` or give the trainer an eval_dataset"
                )
            logger.warning(
                "TeacherCallback: no held-out dataset and no eval_dataset; scoring the look-ahead on a sample of the "
                "training set, which rewards fitting the training data. Pass `heldout_dataset` or `eval_dataset`."
            )
        size = int(self.settings["heldout_size"])
        indices = list(range(len(dataset)))
        if len(indices) > size:
            generator = torch.Generator().manual_seed(int(self.settings["seed"]))
            indices = sorted(torch.randperm(len(indices), generator=generator)[:size].tolist())
        batch = trainer.data_collator([dataset[i] for i in indices])
        if "labels" not in batch:
            raise ValueError("The teacher's held-out rows need a `labels` column")
        self._heldout_inputs = {
            key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids", "features") if key in batch
        }
        labels = batch["labels"].long().reshape(len(indices), -1)
        self._heldout_labels = labels
        group_labels = batch.get("group_labels")
        self._heldout_groups: dict[str, torch.Tensor] = {}
        for task in self.tasks:
            for attr in self.fairness_attributes[task]:
                if attr in self._heldout_groups:
                    continue
                if group_labels is None:
                    ids = torch.full((len(indices),), UNKNOWN_GROUP, dtype=torch.long)
                else:
                    ids = attribute_group_ids(self.config, group_labels.long(), attr)
                self._heldout_groups[attr] = ids

    def _require_bound(self) -> TaskTeacher:
        if self.teacher is None:
            raise RuntimeError(
                "TeacherCallback is not bound to a trainer: FairMTLTrainer binds the callback it is given; "
                "otherwise call `callback.bind(trainer)`"
            )
        return self.teacher

    # -------------------------------------------------------------------------------- held-out scoring

    def heldout_features(self, model: nn.Module) -> torch.Tensor:
        """Shared features of the held-out rows with the current encoder, in eval mode and without gradient."""
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            chunks = []
            rows = self._heldout_labels.shape[0]
            with torch.no_grad():
                for start in range(0, rows, 256):
                    inputs = {k: v[start : start + 256].to(self.device) for k, v in self._heldout_inputs.items()}
                    chunks.append(model.encode(**inputs))
            return torch.cat(chunks)
        finally:
            for module, mode in modes:
                module.training = mode

    def score(
        self, task_index: int, head: nn.Module, params: Mapping[str, torch.Tensor], features: torch.Tensor
    ) -> tuple[float, float]:
        """`(accuracy, EO violation)` of a head on the held-out rows of one task.

        EO violation is `fairness_metrics(...)["eo_violation"]` averaged over the task's fairness attributes;
        NaN when the task has none or the held-out rows show fewer than two groups (nothing to compare, so
        the reward keeps only its accuracy term). Both are NaN when no held-out row is labelled for the task.
        """
        labels = self._heldout_labels[:, task_index]
        labelled = labels != IGNORE_INDEX
        if not bool(labelled.any()):
            return math.nan, math.nan
        with torch.no_grad():
            predictions = head_logits(head, params, features[labelled.to(features.device)]).argmax(-1).cpu()
        y_true = labels[labelled].numpy()
        y_pred = predictions.numpy()
        task = self.tasks[task_index]
        num_classes = self.config.task_num_labels[task]
        accuracy = math.nan
        violations = []
        for attr in self.fairness_attributes[task]:
            groups = self._heldout_groups[attr][labelled]
            metrics = fairness_metrics(y_true, y_pred, groups.numpy(), num_classes=num_classes)
            accuracy = metrics["accuracy"]
            if torch.unique(groups[groups >= 0]).numel() >= 2:
                violations.append(metrics["eo_violation"])
        if math.isnan(accuracy):
            no_groups = torch.full_like(labels[labelled], UNKNOWN_GROUP).numpy()
            accuracy = fairness_metrics(y_true, y_pred, no_groups, num_classes=num_classes)["accuracy"]
        return float(accuracy), (sum(violations) / len(violations)) if violations else math.nan

    # -------------------------------------------------------------------------------- teacher step

    def _gradient_reducer(self, labels: torch.Tensor) -> Callable[[list[list[torch.Tensor]]], list[list[torch.Tensor]]]:
        """All-reduce the simulated head gradients so every rank simulates the global batch's step.

        CE_t is a mean over the rank's labelled rows: its gradients are summed weighted by the label count and
        divided by the global count. F_t's gradient already carries the global group statistics, scaled by the
        world size by its differentiable all-reduce (see `losses/distributed.py`): averaging over ranks gives the
        single-process gradient, exactly as DDP does for the student.
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
            packed = torch.cat(
                [flat_accuracy * count.to(flat_accuracy), flat_fairness, count.reshape(1).to(flat_accuracy)]
            )
            packed = all_reduce_sum(packed)
            flat_accuracy = packed[:size] / packed[-1].clamp(min=1)
            flat_fairness = packed[size : 2 * size] / dist.get_world_size()
            return [_unflatten(flat_accuracy, shapes), _unflatten(flat_fairness, shapes)]

        return reduce

    def teacher_step(self, step: int) -> list[int]:
        """One look-ahead, Q update and decision for every task; writes `trainer.task_actions`.

        The held-out features are computed once here; the look-ahead only runs task heads on cached features.
        """
        teacher = self._require_bound()
        trainer = self.trainer
        model = _student(trainer)
        batch = trainer.last_train_batch
        heldout = self.heldout_features(model)
        lookahead_lr = float(self.settings["lookahead_lr"])
        states, transitions = [], []
        for t, task in enumerate(self.tasks):
            head = model.heads[task]
            params = trainable_head_parameters(head)
            accuracy, eo_violation = self.score(t, head, params, heldout)
            teacher.observe(t, accuracy, eo_violation)
            state = teacher.dqn.make_state(t, flatten_parameters(params), (accuracy, eo_violation))
            states.append(state)
            if batch is None:
                transitions.append(None)
                continue
            labels = batch["labels"][:, t]
            group_labels = batch.get("group_labels")

            def objectives(
                logits: torch.Tensor, t: int = t, labels: torch.Tensor = labels, group_labels=group_labels
            ) -> Sequence[torch.Tensor]:
                return trainer.task_objective_terms(t, logits, labels, group_labels)

            # Runs on every rank even when this task is unscored: the fairness loss holds collectives.
            candidates = lookahead_step(
                head, params, batch["shared"], objectives, lookahead_lr, self._gradient_reducer(labels)
            )
            if math.isnan(accuracy):
                transitions.append(None)
                continue
            next_states, rewards = [], []
            for candidate in candidates:
                candidate_accuracy, candidate_eo = self.score(t, head, candidate, heldout)
                rewards.append(teacher.reward(t, candidate_accuracy, candidate_eo))
                next_states.append(
                    teacher.dqn.make_state(t, flatten_parameters(candidate), (candidate_accuracy, candidate_eo))
                )
            transitions.append(Transition(state, torch.stack(next_states), torch.tensor(rewards)))
        result = teacher.update(transitions)
        actions, q = teacher.select_actions(torch.stack(states))
        actions = self._apply(step, actions)
        self._log(result, q)
        return actions

    def _initial_actions(self) -> list[int]:
        teacher = self._require_bound()
        if self.initial_action is not None:
            return [self.initial_action] * teacher.num_tasks
        model = _student(self.trainer)
        heldout = self.heldout_features(model)
        states = []
        for t, task in enumerate(self.tasks):
            params = trainable_head_parameters(model.heads[task])
            accuracy, eo_violation = self.score(t, model.heads[task], params, heldout)
            states.append(teacher.dqn.make_state(t, flatten_parameters(params), (accuracy, eo_violation)))
        return teacher.select_actions(torch.stack(states))[0]

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
        self.trainer.task_actions = list(actions)
        return actions

    def _log(self, result: Mapping[str, Any], q: torch.Tensor) -> None:
        record = getattr(self.trainer, "record_metric", None)
        if record is None:
            return
        if not math.isnan(result["loss"]):
            record("teacher_td_loss", result["loss"])
        gaps = (q[:, FAIRNESS_ACTION] - q[:, ACCURACY_ACTION]).tolist()
        for task, gap in zip(self.tasks, gaps, strict=True):
            record(f"teacher_{task}_q_gap", gap)

    # -------------------------------------------------------------------------------- TrainerCallback hooks

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        teacher = self._require_bound()
        if state.global_step > 0 and teacher.history:
            # Resumed: the checkpoint's teacher state (actions included) was loaded before training began.
            self.trainer.task_actions = list(teacher.actions)
            return
        self._apply(state.global_step, self._initial_actions())

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step % int(self.settings["interval"]) == 0:
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
        """The teacher's full state (see [`TaskTeacher.state_dict`]) plus the settings it ran with."""
        return {"teacher": self._require_bound().state_dict(), "settings": dict(self.settings)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict` (before binding, it is kept and applied by [`bind`])."""
        if self.teacher is None:
            self._pending_state = state
            return
        self.teacher.load_state_dict(state["teacher"])
        if self.trainer is not None:
            self.trainer.task_actions = list(self.teacher.actions)


def _student(trainer: Any) -> nn.Module:
    """The `FairMTLModel` a trainer trains, under DDP and PEFT wrappers."""
    # Imported here: the trainer imports this module when it builds its callback.
    from .trainer import _base_model

    return _base_model(trainer.model)


def _unflatten(flat: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out
