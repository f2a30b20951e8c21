"""`FairMTLTrainer`: a `transformers.Trainer` whose loss is a fairness-aware multi-task objective.

One forward pass gives every task's logits and the shared representation. Per task, `compute_loss` builds the
accuracy loss CE_t (masked cross-entropy) and, for tasks with fairness attributes, the fairness loss F_t (a
registered loss per protected attribute) on the logits the strategy routes; the strategy
(`hf_fairmtl.strategies`, `args.strategy`) turns both into the task's share of the objective, and the task
weighting (`hf_fairmtl.weighting`, `args.weighting`) weighs the shares — or, for gradient surgery, rewrites the
shared gradients before the optimizer step. Neither is named here: both are looked up in their registries.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import OPTIMIZER_NAME, OPTIMIZER_NAME_BIN
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .cards import DEFAULT_TAGS
from .configuration_fairmtl import FairMTLConfig
from .groups import attribute_group_ids
from .losses import FAIRNESS_LOSSES, build_fairness_loss, stacked_fairness_loss
from .losses.distributed import all_reduce_sum
from .losses.task_losses import (
    TASK_LOSSES,
    build_task_losses,
    class_counts,
    resolve_task_loss_names,
    stacked_task_losses,
)
from .metrics import make_compute_metrics
from .metrics.keys import EVAL_PREFIX, loss_key, task_key, weight_key, with_prefix, without_prefix
from .modeling_fairmtl import IGNORE_INDEX, FairMTLModelOutput, TaskHead
from .strategies import FAIRNESS_GRAD_TARGETS, STRATEGIES, BatchView, StackedTaskTerms, Strategy
from .teacher.settings import TeacherSettings
from .utils import suggest_names, unwrap_model
from .weighting import WEIGHTINGS, TaskWeighting, WeightingInputs
from .weighting.base import as_vector

STATE_FILE = "fairmtl_state.pt"
STATE_VERSION = 2
DEFAULT_FAIRNESS_WEIGHTS = {"eps_deo": 10.0}
JSON_FIELDS = ("fairness_loss_kwargs", "fairness_weight", "fairness_attributes", "weighting_kwargs", "fairness_target")


@dataclass
class FairMTLTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the fairness-aware multi-task settings.

    Dict-valued fields accept a JSON string, so every field works from the command line through
    `HfArgumentParser` (e.g. `--fairness_weight '{"auxiliary": 3}'`).
    """

    strategy: str = field(
        default="vanilla",
        metadata={"help": "How task and fairness losses combine: a name registered in hf_fairmtl.strategies."},
    )
    fairness_loss: str | None = field(
        default=None,
        metadata={
            "help": "Name of a fairness loss in hf_fairmtl.losses.FAIRNESS_LOSSES. Default: the strategy's own "
            "(`default_fairness_loss`: 'eps_deo' for `weighted`, the fairness-transfer objective; 'robust_eo', "
            "L2T-FMT's robust log-loss, for the others)."
        },
    )
    fairness_loss_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments of the fairness loss, e.g. '{\"target_epsilon\": 0.1}' for eps_deo."},
    )
    fairness_weight: dict | str | float | None = field(
        default=None,
        metadata={
            "help": "λ of the strategies with a fixed fairness weight (`weighted`, `mtaf`): one float ≥ 0 for every "
            "task, or a JSON dict task -> λ (absent tasks get 0). Default: 10 for eps_deo, 1 for the other losses. "
            "The best λ depends on the data set (see benchmarks/README.md)."
        },
    )
    fairness_attributes: dict | str | None = field(
        default=None,
        metadata={
            "help": "JSON dict task -> list of protected attributes (single or intersectional like 'gender*race') "
            "the task is made fair for. Default: every task, every protected attribute."
        },
    )
    fairness_grad_to: str | None = field(
        default=None,
        metadata={
            "help": "Which parameters the fairness gradient reaches: 'shared' (the encoder only; the head is held "
            "fixed inside the fairness term, which is what transfers fairness to tasks without demographics), "
            "'heads', or 'all'. Default: the strategy's (`shared` for `weighted`; `all` for `greedy` and "
            "`teacher`, whose chosen fairness loss replaces the task loss and so must train the head too).",
            "choices": list(FAIRNESS_GRAD_TARGETS),
        },
    )
    task_loss: dict | str | None = field(
        default=None,
        metadata={
            "help": "Accuracy loss of every task (a name in hf_fairmtl.losses.task_losses.TASK_LOSSES: cross_entropy, "
            "balanced) or a JSON dict task -> name (absent tasks: cross_entropy). `balanced` weighs classes by their "
            "inverse training frequency, so predicting the majority class stops being a minimum. Default: "
            "cross_entropy."
        },
    )
    weighting: str = field(
        default="equal",
        metadata={"help": "Task weighting: a name registered in hf_fairmtl.weighting (equal, gradnorm, ...)."},
    )
    weighting_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments of the task weighting, e.g. '{\"temperature\": 2}' for dwa."},
    )
    gradnorm: bool = field(default=False, metadata={"help": "Alias of `weighting='gradnorm'`."})
    gradnorm_alpha: float = field(default=1.5, metadata={"help": "GradNorm asymmetry α."})
    gradnorm_lr: float = field(default=0.025, metadata={"help": "Learning rate of the GradNorm weights."})
    # --- constrained strategy (hf_fairmtl/strategies/constrained.py) ---------------------------------------------
    fairness_target: dict | str | float | None = field(
        default=None,
        metadata={
            "help": "Upper bound of the measured fairness gap for `strategy='constrained'`, in `fairness_metric` "
            "units: one float for every task with fairness attributes, or a JSON dict task -> bound or "
            "task -> {attr: bound} (absent tasks are unconstrained). Default: 0.1."
        },
    )
    fairness_metric: str = field(
        default="eo_violation",
        metadata={
            "help": "Gap the `constrained` targets bound, measured on hard predictions as "
            "hf_fairmtl.metrics.fairness_metrics defines it.",
            "choices": ["eo_violation", "tpr_gap", "dp_gap", "eps_deo"],
        },
    )
    multiplier_lr: float = field(
        default=1.0,
        metadata={
            "help": "Dual-ascent step of the `constrained` Lagrange multipliers: λ ← max(0, λ + lr·(gap − target))."
        },
    )
    constraint_window: int = field(
        default=20,
        metadata={"help": "Optimizer steps whose per-group confusion counts give the measured gap of `constrained`."},
    )
    multiplier_max: float = field(
        default=100.0,
        metadata={"help": "Upper bound of each `constrained` multiplier (TFCO's maximum multiplier radius)."},
    )
    # --- end constrained strategy ----------------------------------------------------------------------------------
    # ---- debiasing strategies (`adversarial`, `balanced`): hf_fairmtl/strategies/{adversarial,balanced}.py ----
    adversary_weight: float = field(
        default=1.0,
        metadata={"help": "`adversarial`: gradient-reversal strength λ_adv the encoder receives from the adversary."},
    )
    adversary_lr: float = field(
        default=1e-3,
        metadata={"help": "`adversarial`, `proxy_groups`: learning rate of the adversaries' / attribute heads' Adam."},
    )
    adversary_hidden_size: int = field(
        default=64,
        metadata={"help": "`adversarial`, `proxy_groups`: hidden width of each group classifier (0 = linear)."},
    )
    adversary_eo: bool = field(
        default=False,
        metadata={
            "help": "`adversarial`: equalized-odds adversary (Zhang et al. 2018) that also sees the labels of the "
            "tasks made fair for its attribute, so it removes group information beyond what the label explains."
        },
    )
    adversary_schedule: str = field(
        default="constant",
        metadata={
            "help": "`adversarial`: 'constant' λ_adv, or 'ganin' (λ_adv · (2 / (1 + exp(-10 p)) - 1), p = training "
            "progress; Ganin & Lempitsky 2015).",
            "choices": ["constant", "ganin"],
        },
    )
    balanced_condition: str = field(
        default="both",
        metadata={
            "help": "`balanced`: 'both' (equalized odds: groups weigh the same within each label), 'positive' "
            "(equal opportunity: only the positive class is rebalanced), or 'joint' (every group × label cell "
            "weighs the same).",
            "choices": ["both", "positive", "joint"],
        },
    )
    balanced_counts: str = field(
        default="dataset",
        metadata={
            "help": "`balanced`: group × label counts from the training set ('dataset') or running counts of the "
            "batches seen so far ('running', for streamed data).",
            "choices": ["dataset", "running"],
        },
    )
    # ---- end of debiasing-strategy fields ----
    # Defaults of the teacher_* fields: hf_fairmtl.teacher.TeacherSettings (the one place they are written).
    teacher_interval: int = field(
        default=TeacherSettings.interval, metadata={"help": "Teacher step every N optimizer steps."}
    )
    teacher_lr: float = field(default=TeacherSettings.lr, metadata={"help": "Learning rate of the teacher DQN."})
    teacher_gamma: float = field(
        default=TeacherSettings.gamma, metadata={"help": "Discount γ of the teacher's Q target."}
    )
    teacher_epsilon: float = field(
        default=TeacherSettings.epsilon, metadata={"help": "ε-greedy exploration of the teacher."}
    )
    teacher_hidden_size: int = field(
        default=TeacherSettings.hidden_size, metadata={"help": "Hidden width of the teacher DQN."}
    )
    teacher_state_size: int = field(
        default=TeacherSettings.state_size,
        metadata={"help": "Width the flattened head weights are projected to (teacher state)."},
    )
    teacher_heldout_size: int = field(
        default=TeacherSettings.heldout_size,
        metadata={"help": "Rows of the held-out batch the teacher scores look-ahead steps on."},
    )
    teacher_heldout_refresh: int = field(
        default=TeacherSettings.heldout_refresh,
        metadata={"help": "Re-encode the teacher's held-out rows every N teacher steps (cached in between)."},
    )
    teacher_lookahead_lr: float = field(
        default=TeacherSettings.lookahead_lr, metadata={"help": "Learning rate of the simulated head step."}
    )
    teacher_seed: int = field(
        default=TeacherSettings.seed, metadata={"help": "Seed of the teacher's exploration and projection."}
    )
    teacher_gradnorm_alpha: float = field(
        default=TeacherSettings.gradnorm_alpha,
        metadata={"help": "GradNorm α of the teacher's own task balancing (not the student's gradnorm_alpha)."},
    )
    teacher_gradnorm_lr: float = field(
        default=TeacherSettings.gradnorm_lr,
        metadata={"help": "Learning rate of the teacher's own GradNorm weights (not the student's gradnorm_lr)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in JSON_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError as error:
                    raise ValueError(f"`{name}` is not valid JSON: {value!r} ({error})") from None
        strategy = STRATEGIES.get_class(self.strategy)
        self._resolve_weighting()
        if self.fairness_loss is None:
            self.fairness_loss = strategy.default_fairness_loss
        if self.fairness_weight is None and strategy.default_fairness_weight is not None:
            self.fairness_weight = strategy.default_fairness_weight
        if self.fairness_weight is None:
            self.fairness_weight = DEFAULT_FAIRNESS_WEIGHTS.get(self.fairness_loss, 1.0)
        if self.fairness_grad_to is None:
            self.fairness_grad_to = strategy.default_fairness_grad_to
        if self.fairness_loss_kwargs is None:
            self.fairness_loss_kwargs = {}
        if self.weighting_kwargs is None:
            self.weighting_kwargs = {}
        if self.fairness_grad_to not in FAIRNESS_GRAD_TARGETS:
            raise ValueError(
                f"Unknown fairness_grad_to {self.fairness_grad_to!r}; choose one of {list(FAIRNESS_GRAD_TARGETS)}"
            )
        if self.fairness_loss not in FAIRNESS_LOSSES:
            raise ValueError(
                f"Unknown fairness_loss {self.fairness_loss!r}{suggest_names(self.fairness_loss, FAIRNESS_LOSSES)}; "
                f"registered losses: {sorted(FAIRNESS_LOSSES)}"
            )
        validate_fairness_weight(self.fairness_weight)
        for name in [self.task_loss] if isinstance(self.task_loss, str) else dict(self.task_loss or {}).values():
            TASK_LOSSES.get_class(name)
        validate_constraint_settings(self)  # constrained strategy
        self._validate_numbers()
        if self.label_names is None:
            # Both label columns reach compute_metrics (group metrics need the groups).
            self.label_names = ["labels", "group_labels"]

    def _resolve_weighting(self) -> None:
        """`gradnorm=True` is an alias of `weighting="gradnorm"`; afterwards both say the same."""
        WEIGHTINGS.get_class(self.weighting)
        if self.gradnorm and self.weighting not in ("equal", "gradnorm"):
            raise ValueError(f"`gradnorm=True` contradicts `weighting={self.weighting!r}`: set only one of them")
        if self.gradnorm:
            self.weighting = "gradnorm"
        self.gradnorm = self.weighting == "gradnorm"

    def _validate_numbers(self) -> None:
        checks = {
            "gradnorm_alpha": (self.gradnorm_alpha, 0.0, math.inf, "a finite number >= 0"),
            "gradnorm_lr": (self.gradnorm_lr, 1e-12, math.inf, "a finite number > 0"),
            "teacher_lr": (self.teacher_lr, 1e-12, 1.0, "in (0, 1] (a larger Adam rate makes the DQN diverge)"),
            "teacher_epsilon": (self.teacher_epsilon, 0.0, 1.0, "a probability in [0, 1]"),
            "teacher_gamma": (self.teacher_gamma, 0.0, 1.0, "a discount in [0, 1]"),
            "teacher_interval": (self.teacher_interval, 1, math.inf, "an integer >= 1"),
            "teacher_heldout_size": (self.teacher_heldout_size, 1, math.inf, "an integer >= 1"),
            "teacher_lookahead_lr": (self.teacher_lookahead_lr, 1e-12, math.inf, "a finite number > 0"),
            "adversary_weight": (self.adversary_weight, 0.0, math.inf, "a finite number >= 0"),
            "adversary_lr": (self.adversary_lr, 1e-12, math.inf, "a finite number > 0"),
            "adversary_hidden_size": (self.adversary_hidden_size, 0, math.inf, "an integer >= 0"),
        }
        choices = {
            "adversary_schedule": ("constant", "ganin"),
            "balanced_condition": ("both", "positive", "joint"),
            "balanced_counts": ("dataset", "running"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name, (value, low, high, text) in checks.items():
            if not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
                raise ValueError(f"`{name}` must be {text}, got {value!r}")


def validate_fairness_weight(value: Any) -> None:
    """λ must be finite and ≥ 0 (a negative λ maximises unfairness; NaN turns every parameter into NaN)."""
    values = value.items() if isinstance(value, dict) else [("", value)]
    for task, weight in values:
        where = f" for task {task!r}" if task else ""
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"`fairness_weight`{where} must be a finite number >= 0, got {weight!r}")


def validate_constraint_settings(args: Any) -> None:
    """The `constrained` settings: finite targets >= 0 (float or dict task -> float / {attr: float}), known metric."""
    metrics = ("eo_violation", "tpr_gap", "dp_gap", "eps_deo")
    if args.fairness_metric not in metrics:
        raise ValueError(f"`fairness_metric` must be one of {list(metrics)}, got {args.fairness_metric!r}")
    target = args.fairness_target
    entries = [("", target)] if not isinstance(target, dict) else list(target.items())
    for task, value in entries:
        values = value.items() if isinstance(value, dict) else [("", value)]
        for attr, bound in values:
            if bound is None and not task:
                continue
            where = "".join(f"[{name!r}]" for name in (task, attr) if name)
            if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound) or bound < 0:
                raise ValueError(f"`fairness_target`{where} must be a finite number >= 0, got {bound!r}")
    checks = {
        "multiplier_lr": (args.multiplier_lr, 1e-12, "a finite number > 0"),
        "multiplier_max": (args.multiplier_max, 1e-12, "a finite number > 0"),
        "constraint_window": (args.constraint_window, 1, "an integer >= 1"),
    }
    for name, (value, low, text) in checks.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low:
            raise ValueError(f"`{name}` must be {text}, got {value!r}")
    if int(args.constraint_window) != args.constraint_window:
        raise ValueError(f"`constraint_window` must be an integer >= 1, got {args.constraint_window!r}")


class _WeightingStep(TrainerCallback):
    """Updates the task weighting once per optimizer step, after the accumulated micro-batches."""

    def __init__(self, weighting: TaskWeighting) -> None:
        self.weighting = weighting

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        self.weighting.step()


class FairMTLTrainer(Trainer):
    """Trainer for [`FairMTLModel`] with fairness losses, strategies, task weightings and the L2T-FMT teacher.

    Args:
        model: A `FairMTLModel` (or a PEFT model wrapping one).
        args: `FairMTLTrainingArguments`.
        peft_config: Optional PEFT config; the encoder gets adapters and the task heads stay trainable.
        compute_metrics: Defaults to `hf_fairmtl.metrics.make_compute_metrics(model.config)`.
        data_collator: Defaults to `DataCollatorForFairMTL(processing_class)`.
        Other arguments are `transformers.Trainer`'s.
    """

    _tag_names = list(DEFAULT_TAGS)

    def __init__(
        self,
        model: nn.Module,
        args: FairMTLTrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        compute_metrics=None,
        callbacks: list[TrainerCallback] | None = None,
        peft_config=None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = FairMTLTrainingArguments(output_dir="fairmtl-output")
        if not isinstance(args, FairMTLTrainingArguments):
            raise TypeError("FairMTLTrainer needs FairMTLTrainingArguments (it carries the strategy settings)")
        if peft_config is not None:
            from .peft_utils import prepare_peft_model

            model = prepare_peft_model(model, peft_config)
        config = _fairmtl_config(model)
        if compute_metrics is None:
            compute_metrics = make_compute_metrics(config)
        if data_collator is None:
            from .data import DataCollatorForFairMTL

            data_collator = DataCollatorForFairMTL(tokenizer=processing_class)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            **kwargs,
        )
        # Our loss is a full objective, not a per-token mean the Trainer should rescale: without this the
        # Trainer multiplies it by the world size under DDP.
        self.model_accepts_loss_kwargs = False
        # compute_loss normalises the accuracy part over the whole accumulation window itself.
        self.loss_is_scaled_for_ga = True
        self.fairmtl_config = config
        self.fairness_attributes = _resolve_fairness_attributes(config, args.fairness_attributes)
        self.fairness_weights = _resolve_fairness_weights(config, args.fairness_weight)
        self.strategy: Strategy = STRATEGIES.get_class(args.strategy)(args, config, self.fairness_attributes)
        self.fairness_losses = self._build_fairness_losses().to(args.device)
        self.task_losses = self._build_task_losses(train_dataset).to(args.device)
        self.weighting: TaskWeighting = (
            WEIGHTINGS.get_class(args.weighting).from_training_args(config.num_tasks, args).to(args.device)
        )
        self.add_callback(_WeightingStep(self.weighting))
        # GradNorm differentiates each task loss at the heads' input. Under DDP the model's outputs are copies made
        # by DDP's autograd sink, disconnected from that input, so the input is captured where the heads read it.
        self._head_input: torch.Tensor | None = None
        unwrap_model(self.model).heads[config.tasks[0]].register_forward_pre_hook(self._capture_head_input)
        # mode -> metric names -> recorded (values, weights) of those names, averaged at log time (see `_record`).
        self._logged_values: dict[str, dict[tuple[str, ...], list[tuple[torch.Tensor, torch.Tensor | None]]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self._task_vectors: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        for callback in self.strategy.callbacks(self):
            self.add_callback(callback)

    def _build_fairness_losses(self) -> nn.ModuleDict:
        args, config = self.args, self.fairmtl_config
        return nn.ModuleDict(
            {
                task: nn.ModuleDict(
                    {
                        _module_key(attr): build_fairness_loss(
                            args.fairness_loss,
                            num_groups=config.num_groups(attr),
                            num_classes=config.task_num_labels[task],
                            conditions=self.strategy.conditions,
                            **args.fairness_loss_kwargs,
                        )
                        for attr in attrs
                    }
                )
                for task, attrs in self.fairness_attributes.items()
                if attrs
            }
        )

    def _build_task_losses(self, train_dataset) -> nn.ModuleDict:
        """The accuracy loss per task; class-count losses (`balanced`) count the training labels once."""
        config = self.fairmtl_config
        names = resolve_task_loss_names(self.args.task_loss, config)
        counts = None
        if any(TASK_LOSSES.get_class(name).needs_class_counts for name in names.values()):
            if train_dataset is None:
                raise ValueError("task_loss='balanced' needs the training labels: pass `train_dataset` to the trainer")
            counts = class_counts(train_dataset, config)
        return build_task_losses(config, names, counts)

    # ------------------------------------------------------------------ losses

    def _capture_head_input(self, module: nn.Module, args: tuple) -> None:
        if self._head_input is None:
            self._head_input = args[0]

    def _group_ids(self, group_labels: torch.Tensor | None, attr: str, batch_size: int, device) -> torch.Tensor:
        if group_labels is None:
            return torch.full((batch_size,), -1, dtype=torch.long, device=device)
        return attribute_group_ids(self.fairmtl_config, group_labels.long(), attr)

    def _fairness_loss(
        self, task_index: int, logits: torch.Tensor, labels: torch.Tensor, group_ids: Callable[[str], torch.Tensor]
    ) -> torch.Tensor:
        """F_t of one task on given logits ([`_stacked_fairness`] of that task alone; `labels` `[B, T]`): its fairness
        loss averaged over its fairness attributes, 0 with a graph if it has none."""
        if self.fairmtl_config.tasks[task_index] not in self.fairness_losses:
            return logits.sum() * 0.0
        return self._stacked_fairness(lambda same: logits.unsqueeze(0), [task_index], labels, group_ids)[task_index]

    def _group_id_lookup(self, group_labels: torch.Tensor | None, batch_size: int, device):
        """`attr -> [B]` group ids, computed once per attribute for the batch (every task reuses them)."""
        cache: dict[str, torch.Tensor] = {}

        def group_ids(attr: str) -> torch.Tensor:
            if attr not in cache:
                cache[attr] = self._group_ids(group_labels, attr, batch_size, device)
            return cache[attr]

        return group_ids

    def _routed_logits(self, task_index: int, shared: torch.Tensor, logits: torch.Tensor, route: str) -> torch.Tensor:
        """Task logits whose gradient reaches only the parameters `route` names."""
        if route == "all":
            return logits
        head = unwrap_model(self.model).heads[self.fairmtl_config.tasks[task_index]]
        if route == "heads":
            return head(shared.detach())
        # The head's weights enter this graph as constants: cheaper than torch.func.functional_call, and the flags
        # are restored before any backward, so the main graph (recorded with them on) is untouched.
        trainable = [param for param in head.parameters() if param.requires_grad]
        for param in trainable:
            param.requires_grad_(False)
        try:
            return head(shared)
        finally:
            for param in trainable:
                param.requires_grad_(True)

    def objective_terms(
        self, logits: Sequence[torch.Tensor], labels: torch.Tensor, group_labels: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """`([CE_t], [F_t])` of every task on given logits (`config.tasks` order), without touching running fairness
        state; F_t is 0 (with a graph) for a task without fairness attributes.

        Used by the teacher's look-ahead on copies of the heads; the tasks of an attribute share one stacked call.
        """
        was_training = self.fairness_losses.training
        self.fairness_losses.eval()
        try:
            tasks = self.fairmtl_config.tasks
            accuracy = [self.task_losses[task](logits[t], labels[:, t])[0] for t, task in enumerate(tasks)]
            group_ids = self._group_id_lookup(group_labels, labels.shape[0], labels.device)
            chosen = [t for t, task in enumerate(tasks) if task in self.fairness_losses]
            fairness = self._stacked_fairness(
                lambda same: torch.stack([logits[t] for t in same]), chosen, labels, group_ids
            )
            # A task without fairness attributes: 0 with a graph, as `_fairness_loss` gives.
            return accuracy, [
                fairness[t] if task in self.fairness_losses else logits[t].sum() * 0.0 for t, task in enumerate(tasks)
            ]
        finally:
            self.fairness_losses.train(was_training)

    def batch_view(self, shared, logits, labels, group_labels, training: bool) -> BatchView:
        """What a strategy sees of a micro-batch (see [`BatchView`])."""
        group_ids = self._group_id_lookup(group_labels, labels.shape[0], labels.device)
        tasks = self.fairmtl_config.tasks

        def attribute_fairness_loss(t: int, attr: str, task_logits: torch.Tensor) -> torch.Tensor:
            return self.fairness_losses[tasks[t]][_module_key(attr)](task_logits, labels[:, t], group_ids(attr))

        return BatchView(
            config=self.fairmtl_config,
            shared=shared,
            logits=logits,
            labels=labels,
            group_labels=group_labels,
            training=training,
            routed_logits=lambda t, route: self._routed_logits(t, shared, logits[t], route),
            fairness_loss=lambda t, task_logits: self._fairness_loss(t, task_logits, labels, group_ids),
            group_ids=group_ids,
            attribute_fairness_loss=attribute_fairness_loss,
        )

    def _fairness_terms(self, batch: BatchView) -> torch.Tensor | None:
        """`[T]` F_t of every task (0 without fairness attributes) on the logits the strategy asks for; `None` when
        the strategy computes none.

        Equal to `batch.fairness_loss(t, strategy.fairness_logits(t, batch))` per task, computed by
        [`_stacked_fairness`].
        """
        tasks = self.fairmtl_config.tasks
        chosen = [t for t, task in enumerate(tasks) if task in self.fairness_losses]
        if not self.strategy.uses_fairness or not chosen:
            return None
        return self._stacked_fairness(self._fairness_logits(batch, chosen), chosen, batch.labels, batch.group_ids)

    def _fairness_logits(self, batch: BatchView, chosen: list[int]) -> Callable[[list[int]], torch.Tensor]:
        """`same -> [K, B, C]` stacked fairness logits of the tasks `same` (a subset of `chosen` of one class count).

        With the default routing the heads of one class count run as one batched forward ([`TaskHead.forward_many`];
        same values and dropout draws as one call per head); a strategy with its own `fairness_logits`, or heads
        that cannot be stacked (PEFT wrappers, other shapes or dropout), get one call per task.
        """
        if type(self.strategy).fairness_logits is not Strategy.fairness_logits:
            per_task = {t: self.strategy.fairness_logits(t, batch) for t in chosen}
            return lambda same: torch.stack([per_task[t] for t in same])
        route = self.args.fairness_grad_to
        if route == "all":
            return lambda same: torch.stack([batch.logits[t] for t in same])
        heads, tasks = unwrap_model(self.model).heads, self.fairmtl_config.tasks
        width = self.fairmtl_config.task_num_labels
        cache: dict[int, tuple[list[int], torch.Tensor]] = {}

        def logits_of(same: list[int]) -> torch.Tensor:
            classes = width[tasks[same[0]]]
            if classes not in cache:
                group = [t for t in chosen if width[tasks[t]] == classes]
                members = [heads[tasks[t]] for t in group]
                if TaskHead.stackable(members):
                    shared = batch.shared.detach() if route == "heads" else batch.shared
                    cache[classes] = group, TaskHead.forward_many(members, shared, detach_weights=route == "shared")
                else:
                    logits = [self._routed_logits(t, batch.shared, batch.logits[t], route) for t in group]
                    cache[classes] = group, torch.stack(logits)
            group, stacked = cache[classes]
            return stacked if same == group else stacked[[group.index(t) for t in same]]

        return logits_of

    def _stacked_fairness(
        self,
        logits_of: Callable[[list[int]], torch.Tensor],
        chosen: list[int],
        labels: torch.Tensor,
        group_ids: Callable[[str], torch.Tensor],
    ) -> torch.Tensor:
        """`[T]` F_t (mean over the task's attributes) of the tasks in `chosen`, 0 for the others.

        `logits_of(same)` gives the `[K, B, C]` logits of tasks `same`. The tasks of an attribute (and class count)
        share one stacked loss call: at many tasks the per-task small tensor operations, not the arithmetic, are
        the cost.
        """
        tasks, width = self.fairmtl_config.tasks, self.fairmtl_config.task_num_labels
        total = labels.new_zeros(len(tasks), dtype=torch.float32)
        attributes = [len(self.fairness_attributes[tasks[t]]) if t in chosen else 1 for t in range(len(tasks))]
        for attr in dict.fromkeys(a for t in chosen for a in self.fairness_attributes[tasks[t]]):
            users = [t for t in chosen if attr in self.fairness_attributes[tasks[t]]]
            for classes in dict.fromkeys(width[tasks[t]] for t in users):
                same = [t for t in users if width[tasks[t]] == classes]
                losses = [self.fairness_losses[tasks[t]][_module_key(attr)] for t in same]
                stacked_labels = labels.T if len(same) == len(tasks) else labels[:, same].T
                values = stacked_fairness_loss(losses, logits_of(same), stacked_labels, group_ids(attr))
                total = total.to(values.dtype)
                if len(same) == len(tasks):
                    total = total + values
                else:
                    total = total.index_add(0, torch.tensor(same, device=values.device), values)
        return total / torch.tensor(attributes, dtype=total.dtype, device=total.device)

    def _stacked_terms(
        self, batch: BatchView, window: tuple[torch.Tensor | None, int, int], fairness: torch.Tensor | None
    ) -> StackedTaskTerms:
        """CE_t (plain and window-normalised) of every task on the micro-batch, beside F_t, as `[T]` vectors."""
        num_items, world_size, micro_batches = window
        accuracy, count = stacked_task_losses(list(self.task_losses.values()), batch.logits, batch.labels)
        exact = accuracy if num_items is None else accuracy * count * world_size / num_items.clamp(min=1)
        has_fairness, fairness_weight = self._task_vector_constants(accuracy.device)
        return StackedTaskTerms(
            tasks=self.fairmtl_config.tasks,
            accuracy=accuracy,
            exact_accuracy=exact,
            fairness=fairness,
            has_fairness=has_fairness,
            present=count > 0,
            micro_batches=micro_batches,
            fairness_weight=fairness_weight,
        )

    def _task_vector_constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """`([T] bool has-fairness, [T] float64 λ_t)` on `device` (built once per device)."""
        if device not in self._task_vectors:
            tasks = self.fairmtl_config.tasks
            has = torch.tensor([task in self.fairness_losses for task in tasks], device=device)
            weights = torch.tensor([self.fairness_weights[task] for task in tasks], dtype=torch.float64, device=device)
            self._task_vectors[device] = has, weights
        return self._task_vectors[device]

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ):
        batch, head_input = self._forward(model, inputs)
        self.fairness_losses.train(batch.training)
        window = self._accumulation_window(batch.training, num_items_in_batch)
        terms = self._stacked_terms(batch, window, self._fairness_terms(batch))
        shares = self.strategy.objectives(terms, batch)
        shares_of_tasks = self.weighting.task_losses(shares.weighted, shares.unweighted, terms.present, window[2])
        task_losses = as_vector(shares_of_tasks)
        # `shared · 0` keeps a graph to the encoder when no task has a labelled row.
        total = batch.shared.sum() * 0.0 + task_losses.sum()
        extra = self.strategy.extra_loss(batch)
        if extra is not None:
            total = total + extra
        self._log_terms("train" if batch.training else "eval", terms)
        if batch.training:
            self.weighting.accumulate(
                WeightingInputs(shares.objective, task_losses, head_input, terms.present, self._shared_parameters())
            )
        self.strategy.after_batch(batch)
        if return_outputs:
            return total, FairMTLModelOutput(loss=total.detach(), logits=batch.logits)
        return total

    def _forward(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[BatchView, torch.Tensor]:
        if "labels" not in inputs:
            raise ValueError("FairMTLTrainer needs a `labels` column ([batch, num_tasks], -100 = missing)")
        model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "group_labels")}
        self._head_input = None
        outputs = model(**model_inputs, return_shared_representation=True)
        head_input, self._head_input = self._head_input, None
        labels = unwrap_model(model).validate_labels(inputs["labels"])
        batch = self.batch_view(
            outputs.shared_representation, outputs.logits, labels, inputs.get("group_labels"), model.training
        )
        return batch, head_input

    def _accumulation_window(
        self, training: bool, num_items_in_batch: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, int, int]:
        """`(per-task label counts of the window, world size, micro-batches)` that make CE exact under GA and DDP.

        Label sums are divided by the label count of the whole window on all ranks; DDP then averages the ranks'
        gradients. Outside training (or without counts) CE is the micro-batch mean.
        """
        windowed = (
            training
            and torch.is_tensor(num_items_in_batch)
            and num_items_in_batch.numel() == self.fairmtl_config.num_tasks
        )
        if not windowed:
            return None, 1, 1
        return num_items_in_batch, self.accelerator.num_processes, self.current_gradient_accumulation_steps

    def _shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters outside the task heads (what gradient-surgery weightings rewrite)."""
        if not self.weighting.owns_backward:
            return []
        heads = {id(param) for param in unwrap_model(self.model).heads.parameters()}
        return [param for param in self.model.parameters() if param.requires_grad and id(param) not in heads]

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """Per-task label counts over the accumulation window and all ranks (`[T]`)."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        counts = sum(
            (torch.as_tensor(batch["labels"]).reshape(-1, self.fairmtl_config.num_tasks) != IGNORE_INDEX).sum(0)
            for batch in batch_samples
        )
        return all_reduce_sum(counts.to(device))

    def _clip_grad_norm(self, model: nn.Module):
        # Gradient surgery rewrites the shared gradients before they are clipped.
        self._rewrite_gradients()
        return super()._clip_grad_norm(model)

    def _get_grad_norm(self, model: nn.Module, grad_norm=None):
        if grad_norm is None:  # no clipping this run: rewrite here, still before the optimizer step
            self._rewrite_gradients()
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    def _rewrite_gradients(self) -> None:
        if self.weighting.owns_backward:
            self.weighting.rewrite_gradients(self._shared_parameters())

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        # `predict()` logs nothing, so the loss terms it buffered would otherwise land in the next `evaluate()`'s
        # log: every evaluation loop starts from an empty buffer.
        self._logged_values["eval"].clear()
        return super().evaluation_loop(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Without a `group_labels` column the Trainer would find a label column missing and skip the loss and
        # compute_metrics; rows without demographics are "unknown group" (-1), which is what they are.
        attrs = self.fairmtl_config.protected_attributes
        if "group_labels" in self.label_names and inputs.get("group_labels") is None and "labels" in inputs:
            rows = inputs["labels"].shape[0]
            inputs = {**inputs, "group_labels": inputs["labels"].new_full((rows, len(attrs)), -1)}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    # ------------------------------------------------------------------ teacher interface

    def student_model(self) -> nn.Module:
        """The `FairMTLModel` being trained, without DDP/accelerate/PEFT wrappers."""
        return unwrap_model(self.model)

    def latest_train_batch(self) -> dict[str, torch.Tensor] | None:
        """Detached `shared`, `labels` and `group_labels` of the last training micro-batch (teacher strategy)."""
        return getattr(self.strategy, "latest_batch", None)

    def set_task_actions(self, actions) -> None:
        """Per-task objective of the teacher strategy: 0 = accuracy loss, 1 = fairness loss."""
        set_actions = getattr(self.strategy, "set_actions", None)
        if set_actions is None:
            raise TypeError(f"strategy {self.args.strategy!r} takes no teacher actions (use strategy='teacher')")
        set_actions(actions)

    @property
    def teacher_callback(self) -> TrainerCallback | None:
        """The L2T-FMT teacher driving this run (`strategy="teacher"`), else `None`."""
        return getattr(self.strategy, "teacher_callback", None)

    @property
    def task_actions(self) -> list[int]:
        """The teacher strategy's current per-task actions (accuracy = 0 for strategies without a teacher)."""
        return list(getattr(self.strategy, "actions", [0] * self.fairmtl_config.num_tasks))

    # ------------------------------------------------------------------ logging

    def _log_terms(self, mode: str, terms: StackedTaskTerms) -> None:
        tasks = terms.tasks
        # A task without a labelled row in this micro-batch has no loss to report: weight 0 in the mean.
        self._record(mode, self._task_keys("accuracy", loss_key), terms.accuracy, terms.present)
        if terms.fairness is not None:  # tasks without a fairness loss get weight 0, so they log no value
            with_fairness = terms.present & terms.has_fairness
            self._record(mode, self._task_keys("fairness", loss_key), terms.fairness, with_fairness)
        if self.weighting.name != "equal":
            self._record(mode, self._task_keys(self.weighting.name, weight_key), self.weighting.task_weights)
        for name, values in self.strategy.log_vectors(terms).items():
            self._record(mode, self._task_keys(name, task_key), values)
        if type(self.strategy).log_values is not Strategy.log_values:
            for task_terms in terms.split():
                for name, value in self.strategy.log_values(task_terms).items():
                    self._record(mode, (task_key(tasks[task_terms.index], name),), value)

    def _task_keys(self, name: str, key: Callable[[str, str], str]) -> tuple[str, ...]:
        """`(key(task, name) for every task)`, the metric names of one per-task vector."""
        return tuple(key(task, name) for task in self.fairmtl_config.tasks)

    def _record(
        self, mode: str, names: tuple[str, ...], values: torch.Tensor, weights: torch.Tensor | None = None
    ) -> None:
        # Kept on device and averaged at log time: no host sync and no arithmetic per step. A vector of K values
        # (e.g. one per task) is one entry, not K.
        entry = (values.detach(), None if weights is None else weights.detach())
        self._logged_values[mode][names].append(entry)

    def record_metric(self, name: str, value: float | torch.Tensor, mode: str = "train") -> None:
        """Add a value to be averaged over the logging window and merged into the next `log()` call."""
        self._record(mode, (name,), torch.as_tensor(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        prefix = _evaluation_prefix(logs)
        entries = self._logged_values["train" if prefix is None else "eval"]
        if entries:
            keys = sorted(entries)  # the same order on every rank
            sums = torch.cat([_weighted_sums(entries[key], len(key)).to(self.args.device) for key in keys])
            # Sum over ranks, then divide: every rank logs the same, global numbers.
            sums = all_reduce_sum(sums)
            totals: dict[str, list[float]] = {}
            names = [name for key in keys for name in key]
            for name, (total, weight) in zip(names, sums.tolist(), strict=True):
                running = totals.setdefault(name, [0.0, 0.0])
                running[0], running[1] = running[0] + total, running[1] + weight
            for name, (total, weight) in sorted(totals.items()):
                if weight > 0:
                    # In place: `evaluate()` returns this very dict, so it carries the same keys as the log.
                    logs[with_prefix(name, prefix or "")] = round(total / weight, 6)
            entries.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ saving

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        from .peft_utils import FAIRMTL_CONFIG_NAME, is_peft_model

        if is_peft_model(self.model):
            # An adapter folder needs the FairMTL config too: its base may be a plain pretrained encoder.
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            self.fairmtl_config.to_json_file(os.path.join(output_dir, FAIRMTL_CONFIG_NAME))

    # ------------------------------------------------------------------ model card

    def create_model_card(self, **kwargs: Any) -> None:
        """Write the fairness model card (`README.md`) that `push_to_hub` uploads with the model."""
        if not self.is_world_process_zero():
            return
        from .cards import last_eval_metrics, write_model_card

        write_model_card(
            self.args.output_dir,
            self.model,
            last_eval_metrics(self.state.log_history),
            training_args=self.args,
            teacher_summary=self.teacher_callback,
            **kwargs,
        )

    # ------------------------------------------------------------------ checkpoints

    def _state_owners(self) -> dict[str, Any]:
        """Everything with training state beyond the model and optimizer, by checkpoint key."""
        owners: dict[str, Any] = {
            "strategy": self.strategy,
            "weighting": self.weighting,
            "fairness_losses": self.fairness_losses,
        }
        for callback in self.callback_handler.callbacks:
            if hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict"):
                owners[f"callback:{type(callback).__name__}"] = callback
        return owners

    def fairmtl_state_dict(self) -> dict[str, Any]:
        """Training state beyond the model and optimizer: strategy, weighting, fairness-loss buffers, callbacks."""
        state = {key: owner.state_dict() for key, owner in self._state_owners().items()}
        state["version"] = STATE_VERSION
        state["settings"] = self._state_settings()
        return state

    def _state_settings(self) -> dict[str, str]:
        return {
            "strategy": self.args.strategy,
            "weighting": self.args.weighting,
            "fairness_loss": self.args.fairness_loss,
        }

    def load_fairmtl_state_dict(self, state: dict[str, Any], source: str = "the checkpoint") -> None:
        """Restore [`fairmtl_state_dict`]; a checkpoint of other settings is refused, naming the setting."""
        saved = state.get("settings", {}) if isinstance(state, dict) else {}
        for name, value in self._state_settings().items():
            if name in saved and saved[name] != value:
                raise ValueError(
                    f"{source} was written with {name}={saved[name]!r}, but this run uses {name}={value!r}: "
                    f"resume with the same {name}, or start a new run without resume_from_checkpoint"
                )
        for key, owner in self._state_owners().items():
            if key not in state:
                raise ValueError(f"{source} has no {key!r} state (written by another hf_fairmtl version or setup)")
            try:
                owner.load_state_dict(state[key])
            except (RuntimeError, KeyError, ValueError) as error:
                raise ValueError(f"{source}: the {key!r} state does not fit this run's settings ({error})") from None

    def _save_checkpoint(self, model: nn.Module, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            torch.save(self.fairmtl_state_dict(), os.path.join(folder, STATE_FILE))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and not any(
            os.path.isfile(os.path.join(checkpoint, name)) for name in (OPTIMIZER_NAME, OPTIMIZER_NAME_BIN)
        ):
            raise FileNotFoundError(
                f"{os.path.join(checkpoint, OPTIMIZER_NAME)} is missing: resuming would restart the optimizer from "
                "scratch and not continue the run exactly; restore the file or start without resume_from_checkpoint"
            )
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} is missing: this checkpoint was not written by FairMTLTrainer, so the strategy, weighting, "
                "fairness-loss and teacher state cannot be restored"
            )
        try:
            state = torch.load(path, map_location=self.args.device, weights_only=False)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means the same thing to the user
            raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error}); the file is corrupt") from None
        self.load_fairmtl_state_dict(state, source=path)


def _weighted_sums(pairs: list[tuple[torch.Tensor, torch.Tensor | None]], width: int) -> torch.Tensor:
    """`[width, 2]`: per name `[Σ w·v, Σ w]` of recorded `(values, weights)` pairs of `width` values each (weights
    `None` = 1), in float32 on the values' device."""
    values = torch.stack([value.float().reshape(width) for value, _ in pairs])
    ones = torch.ones(width, device=values.device)
    weights = torch.stack([ones if w is None else w.float().reshape(width).to(values.device) for _, w in pairs])
    return torch.stack([(values * weights).sum(0), weights.sum(0)], dim=-1)


def _evaluation_prefix(logs: dict[str, Any]) -> str | None:
    """The metric prefix of an evaluation's logs (`"eval"`, or `"test"` from `predict`); `None` for training logs."""
    for key in logs:
        if key.endswith("_runtime") and not key.startswith("train_"):
            return key[: -len("_runtime")]
    return EVAL_PREFIX if any(without_prefix(key, EVAL_PREFIX) is not None for key in logs) else None


def _module_key(attr: str) -> str:
    # nn.ModuleDict keys may not contain "."; "*" is fine but keep keys readable and safe.
    return attr.replace(".", "_")


def _fairmtl_config(model: nn.Module) -> FairMTLConfig:
    config = getattr(unwrap_model(model), "config", None)
    if not isinstance(config, FairMTLConfig):
        raise TypeError(f"FairMTLTrainer needs a FairMTLModel, got {type(model).__name__}")
    return config


def _resolve_fairness_attributes(config: FairMTLConfig, requested: dict | None) -> dict[str, list[str]]:
    if requested is None:
        return {task: list(config.protected_attributes) for task in config.tasks}
    resolved = {task: [] for task in config.tasks}
    for task, attrs in requested.items():
        if task not in resolved:
            raise ValueError(
                f"fairness_attributes names unknown task {task!r}{suggest_names(task, config.tasks)}; "
                f"tasks are {config.tasks}"
            )
        if isinstance(attrs, str):
            attrs = [attrs]
        for attr in attrs:
            config.attribute_components(attr)  # raises on an unknown attribute, naming it
        resolved[task] = list(attrs)
    return resolved


def _resolve_fairness_weights(config: FairMTLConfig, requested: float | dict) -> dict[str, float]:
    if isinstance(requested, dict):
        unknown = [task for task in requested if task not in config.tasks]
        if unknown:
            raise ValueError(
                f"fairness_weight names unknown task {unknown[0]!r}{suggest_names(unknown[0], config.tasks)}; "
                f"tasks are {config.tasks}"
            )
        return {task: float(requested.get(task, 0.0)) for task in config.tasks}
    return dict.fromkeys(config.tasks, float(requested))
