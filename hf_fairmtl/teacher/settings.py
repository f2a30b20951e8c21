"""The teacher's settings and action ids: the one place where the teacher's defaults are written.

`FairMTLTrainingArguments` takes the defaults of its `teacher_*` fields from [`TeacherSettings`], and a
[`TeacherCallback`] resolves its settings with [`TeacherSettings.from_training_args`]: constructor value, else
the training argument, else the default here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ACCURACY_ACTION, FAIRNESS_ACTION = 0, 1
NUM_ACTIONS = 2
NUM_STATISTICS = 2  # held-out accuracy and EO violation of the head, appended to the projected weights
DEFAULT_MIN_DENOMINATOR = 0.05
REWARD_ACCURACY_METRICS = ("accuracy", "balanced_accuracy")

# Setting -> `FairMTLTrainingArguments` field it is read from (the settings without a field are constructor-only).
ARGUMENT_FIELDS: dict[str, str] = {
    "interval": "teacher_interval",
    "lr": "teacher_lr",
    "gamma": "teacher_gamma",
    "epsilon": "teacher_epsilon",
    "hidden_size": "teacher_hidden_size",
    "state_size": "teacher_state_size",
    "heldout_size": "teacher_heldout_size",
    "heldout_refresh": "teacher_heldout_refresh",
    "lookahead_lr": "teacher_lookahead_lr",
    "seed": "teacher_seed",
    "gradnorm_alpha": "teacher_gradnorm_alpha",
    "gradnorm_lr": "teacher_gradnorm_lr",
}


@dataclass(frozen=True)
class TeacherSettings:
    """Every setting of the L2T-FMT teacher, with its default.

    Attributes:
        interval: Teacher step (look-ahead, Q update, decision) every `interval` optimizer steps. The paper decides
            at every step (`interval=1`); 10 is a cost choice: with `heldout_refresh` = 5, teacher + GradNorm is
            predicted at ×1.10 of a plain Trainer on MiniLM, T = 5 (benchmarks/results/teacher_overhead.md).
        lr: Adam learning rate of the DQN.
        gamma: Discount γ of the Q target (the paper's 0.9).
        epsilon: ε-greedy exploration probability per task and decision.
        hidden_size: Width of the DQN trunk.
        state_size: Width the flattened head weights are projected to.
        heldout_size: Rows of the held-out batch (a seeded sample when the data set is larger).
        heldout_refresh: Re-encode the held-out rows with the current encoder every `heldout_refresh` teacher
            steps; in between, the cached shared features are reused (only the task heads run). 1 = every step.
            One encoding of 256 rows costs about 5 MiniLM training steps (3.2 s CPU), 97 % of a teacher step: at
            5 the features are at most 4 teacher steps old (benchmarks/results/teacher_decisions.md measures the
            effect on the decisions).
        lookahead_lr: Learning rate of the simulated head step.
        seed: Seeds the projection, the DQN's initial weights, the exploration and the held-out sample.
        gradnorm: Balance the teacher's per-task TD losses with GradNorm.
        gradnorm_alpha: GradNorm α of the teacher (its own; not the student's `gradnorm_alpha`).
        gradnorm_lr: Learning rate of the teacher's GradNorm weights.
        num_statistics: 2 to append held-out accuracy and EO to the DQN state, 0 for weights only.
        min_denominator: Clamp of the reward's denominators (see `teacher_reward`).
        initial_action: Action of every task before the first teacher step; `None` = the DQN's greedy choice on
            the initial heads (no update).
        reward_accuracy: The accuracy the reward and the state use: `"accuracy"` (the paper) or
            `"balanced_accuracy"` (mean recall over classes; on an imbalanced task plain accuracy is maximised by
            predicting the majority class, so the paper's reward then keeps the teacher on CE_t).
        collapse_threshold: When set (e.g. 0.95), a head predicting one class on at least this share of a task's
            held-out rows has no EO violation (NaN): its EO of ≈ 0 is not fairness, so it never becomes the running
            best EO and earns no fairness gain; the reward keeps only its accuracy term. `None` = off (the paper).
    """

    interval: int = 10
    lr: float = 1e-3
    gamma: float = 0.9
    epsilon: float = 0.1
    hidden_size: int = 64
    state_size: int = 128
    heldout_size: int = 256
    heldout_refresh: int = 5
    lookahead_lr: float = 0.1
    seed: int = 0
    gradnorm: bool = True
    gradnorm_alpha: float = 1.5
    gradnorm_lr: float = 0.025
    num_statistics: int = NUM_STATISTICS
    min_denominator: float = DEFAULT_MIN_DENOMINATOR
    initial_action: int | None = ACCURACY_ACTION
    reward_accuracy: str = "accuracy"
    collapse_threshold: float | None = None

    def __post_init__(self) -> None:
        if int(self.interval) < 1:
            raise ValueError(f"The teacher `interval` (teacher_interval) must be at least 1, got {self.interval}")
        if int(self.heldout_refresh) < 1:
            raise ValueError(
                f"`heldout_refresh` (teacher_heldout_refresh) must be at least 1, got {self.heldout_refresh}"
            )
        if int(self.heldout_size) < 1:
            raise ValueError(
                f"The teacher `heldout_size` (teacher_heldout_size) must be at least 1, got {self.heldout_size}"
            )
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"`epsilon` (teacher_epsilon) must be in [0, 1], got {self.epsilon}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"`gamma` (teacher_gamma) must be in [0, 1), got {self.gamma}")
        if self.reward_accuracy not in REWARD_ACCURACY_METRICS:
            raise ValueError(
                f"`reward_accuracy` must be one of {list(REWARD_ACCURACY_METRICS)}, got {self.reward_accuracy!r}"
            )
        if self.collapse_threshold is not None and not 0.5 <= self.collapse_threshold <= 1.0:
            raise ValueError(f"`collapse_threshold` must be in [0.5, 1] or None, got {self.collapse_threshold}")
        if self.initial_action not in (None, ACCURACY_ACTION, FAIRNESS_ACTION):
            raise ValueError(
                f"`initial_action` must be 0 (accuracy), 1 (fairness) or None, got {self.initial_action!r}"
            )

    @classmethod
    def from_training_args(cls, args: Any = None, **overrides: Any) -> TeacherSettings:
        """Settings from `FairMTLTrainingArguments` (`teacher_*` fields), with `overrides` taking precedence.

        Args:
            args: `FairMTLTrainingArguments`, or `None` for the defaults.
            **overrides: Setting name -> value; a `None` value means "not given".

        Raises:
            TypeError: On an unknown setting name.
            AttributeError: When `args` lacks one of the `teacher_*` fields (it is not `FairMTLTrainingArguments`).
        """
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"Unknown teacher setting(s) {unknown}; settings are {sorted(names)}")
        values: dict[str, Any] = {}
        if args is not None:
            for name, field_name in ARGUMENT_FIELDS.items():
                if not hasattr(args, field_name):
                    raise AttributeError(
                        f"{type(args).__name__} has no field `{field_name}` (teacher setting `{name}`): pass "
                        "FairMTLTrainingArguments"
                    )
                values[name] = getattr(args, field_name)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (stored next to the teacher's state in checkpoints)."""
        return dataclasses.asdict(self)
