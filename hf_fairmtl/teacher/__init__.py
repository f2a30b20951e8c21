"""The L2T-FMT teacher (Roy & Ntoutsi, "Learning to Teach Fairness-aware Deep Multi-task Learning", 2022).

Every task t of the student has two possible objectives: the accuracy loss CE_t (action 0) and the
fairness loss F_t (action 1). A multi-task DQN decides, per task, which one the student trains on next.

One teacher step, for each task t (see [`TeacherCallback.teacher_step`]):

1. State `s_t` (`state.py`): the task's head weights, flattened and multiplied by a fixed random projection to
   a fixed width (so any head size works), plus two statistics of the head on the held-out batch (accuracy
   and EO violation; see [`MultiTaskDQN`]).
2. One-step look-ahead (`lookahead.py`): on a functional copy of the head, one SGD step with CE_t and one with
   F_t on the cached shared features of the last training micro-batch; both candidates are scored on the
   held-out rows (`heldout.py`), whose shared features are cached and re-encoded every `heldout_refresh`
   teacher steps (the encoder never runs inside the look-ahead).
3. Reward of action a (`reward.py`): `R = min((Acc − Acc_best)/Acc_best, (EO_best − EO)/(1 − EO_best))` with
   the running bests of the student's task (see [`teacher_reward`]).
4. Q update (`dqn.py`) toward `R + γ·max_a' Q(s′_a, a')` for both simulated actions, where `s′_a` is the head
   after action a; the per-task TD losses are balanced by GradNorm with the teacher's own α and learning
   rate. Each task's Q head is a dueling head (state value + action advantages) that starts at zero.
5. Action: `argmax_a Q(s_t, a)`, with seeded ε-greedy exploration.

What each decision was made from is logged and kept per step (`diagnostics.py`) and plotted by
[`plot_teacher_diagnostics`] (`plots.py`). The callback (`callback.py`) reaches the trainer only through the
typed interface [`TeacherStudent`] (`interface.py`); every default lives in [`TeacherSettings`] (`settings.py`).

Under data parallelism every rank runs the same teacher step: the simulated head gradients are
all-reduced (so every rank simulates the global batch's step, as DDP does for the student), the held-out
batch is the same on every rank, and the teacher's state is identical everywhere. The actions are then
broadcast from rank 0 anyway, so a floating-point difference can never make ranks train different
objectives.
"""

from .callback import TeacherCallback
from .diagnostics import ACTION_NAMES, diagnostic_key, diagnostic_record, logged_diagnostic_keys
from .dqn import STATE_DICT_VERSION, MultiTaskDQN, TaskTeacher, Transition
from .heldout import HeldoutSet
from .interface import TeacherStudent
from .lookahead import (
    flatten_parameters,
    global_gradient_reducer,
    head_logits,
    lookahead_step,
    lookahead_steps,
    stacked_head_logits,
    trainable_head_parameters,
    unflatten_parameters,
)
from .plots import plot_teacher_diagnostics
from .reward import teacher_reward
from .settings import (
    ACCURACY_ACTION,
    ARGUMENT_FIELDS,
    DEFAULT_MIN_DENOMINATOR,
    FAIRNESS_ACTION,
    NUM_ACTIONS,
    NUM_STATISTICS,
    TeacherSettings,
)
from .state import random_projection, task_state

__all__ = [
    "ACCURACY_ACTION",
    "ACTION_NAMES",
    "ARGUMENT_FIELDS",
    "DEFAULT_MIN_DENOMINATOR",
    "FAIRNESS_ACTION",
    "NUM_ACTIONS",
    "NUM_STATISTICS",
    "STATE_DICT_VERSION",
    "HeldoutSet",
    "MultiTaskDQN",
    "TaskTeacher",
    "TeacherCallback",
    "TeacherSettings",
    "TeacherStudent",
    "Transition",
    "diagnostic_key",
    "diagnostic_record",
    "flatten_parameters",
    "global_gradient_reducer",
    "head_logits",
    "logged_diagnostic_keys",
    "lookahead_step",
    "lookahead_steps",
    "stacked_head_logits",
    "plot_teacher_diagnostics",
    "random_projection",
    "task_state",
    "teacher_reward",
    "trainable_head_parameters",
    "unflatten_parameters",
]
