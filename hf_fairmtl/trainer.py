"""`FairMTLTrainer`: a `transformers.Trainer` whose loss is a fairness-aware multi-task objective.

One forward pass gives every task's logits and the shared representation; `compute_loss` builds per-task
accuracy losses (masked cross-entropy) and fairness losses (a registry entry, per protected attribute)
and combines them by strategy:

* `vanilla`  — Σ_t w_t·CE_t / T.
* `weighted` — Σ_t w_t·CE_t / T + Σ_t λ_t·F_t (L2T-FMT's fixed-λ baseline; with a fairness loss on an
  auxiliary task only, the Aguirre & Dredze fairness-transfer objective).
* `mtaf`     — like `weighted`, with MTA-F's routing (Wang et al., KDD 2021): fairness on negatives;
  the fairness of rows labelled only for task t reaches only head t, the rest only the shared encoder.
* `greedy`   — Σ_t w_t·max(CE_t, F_t) / T (G-FMT).
* `teacher`  — Σ_t w_t·O_t / T with O_t = CE_t or F_t as the L2T-FMT teacher picks (`TeacherCallback`).

w_t = 1, or GradNorm weights when `gradnorm=True`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .configuration_fairmtl import FairMTLConfig
from .gradnorm import GradNorm
from .groups import attribute_group_ids
from .hub import DEFAULT_TAGS
from .losses import FAIRNESS_LOSSES, build_fairness_loss
from .losses.distributed import all_reduce_sum
from .metrics import make_compute_metrics
from .modeling_fairmtl import IGNORE_INDEX, FairMTLModelOutput, masked_cross_entropy

STRATEGIES = ("vanilla", "weighted", "mtaf", "greedy", "teacher")
FAIRNESS_GRAD_TARGETS = ("shared", "heads", "all")
ACCURACY_ACTION, FAIRNESS_ACTION = 0, 1
STATE_FILE = "fairmtl_state.pt"
DEFAULT_FAIRNESS_WEIGHTS = {"eps_deo": 10.0}


@dataclass
class FairMTLTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the fairness-aware multi-task settings.

    Dict-valued fields accept a JSON string, so every field works from the command line through
    `HfArgumentParser` (e.g. `--fairness_weight '{"auxiliary": 3}'`).
    """

    strategy: str = field(
        default="vanilla",
        metadata={"help": "How task and fairness losses combine.", "choices": list(STRATEGIES)},
    )
    fairness_loss: str | None = field(
        default=None,
        metadata={
            "help": "Name of a fairness loss in hf_fairmtl.losses.FAIRNESS_LOSSES. Default: 'eps_deo' for `weighted` "
            "(the fairness-transfer objective), 'robust_eo' (L2T-FMT's robust log-loss, itself a log-loss that "
            "the teacher and G-FMT can train on alone) for the other strategies."
        },
    )
    fairness_loss_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments of the fairness loss, e.g. '{\"target_epsilon\": 0.1}' for eps_deo."},
    )
    fairness_weight: dict | str | float | None = field(
        default=None,
        metadata={
            "help": "λ of `weighted`/`mtaf`: one float for every task, or a JSON dict task -> λ (absent tasks get "
            "0). Default: 10 for eps_deo (it cut the target task's EO violation most at < 1 point of accuracy in "
            "the synthetic transfer test, λ ∈ {3, 5, 10, 20}; on MiniLM + BUG text it was too strong and λ = 3 "
            "was the best trade-off of λ ∈ {1, 3, 5, 10}, so tune it per data set), 1 for the other losses."
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
            "'heads', or 'all'. Default: 'shared' for `weighted`; 'all' for `greedy` and `teacher`, whose chosen "
            "fairness loss replaces the task loss and so must also train the head (as in L2T-FMT). Not used by "
            "`mtaf`, which routes by MTA-F's rule.",
            "choices": list(FAIRNESS_GRAD_TARGETS),
        },
    )
    gradnorm: bool = field(default=False, metadata={"help": "Balance task weights with GradNorm."})
    gradnorm_alpha: float = field(default=1.5, metadata={"help": "GradNorm asymmetry α."})
    gradnorm_lr: float = field(default=0.025, metadata={"help": "Learning rate of the GradNorm weights."})
    teacher_interval: int = field(default=10, metadata={"help": "Teacher step every N optimizer steps."})
    teacher_lr: float = field(default=1e-3, metadata={"help": "Learning rate of the teacher DQN."})
    teacher_gamma: float = field(default=0.9, metadata={"help": "Discount γ of the teacher's Q target."})
    teacher_epsilon: float = field(default=0.1, metadata={"help": "ε-greedy exploration of the teacher."})
    teacher_hidden_size: int = field(default=64, metadata={"help": "Hidden width of the teacher DQN."})
    teacher_state_size: int = field(
        default=128, metadata={"help": "Width the flattened head weights are projected to (teacher state)."}
    )
    teacher_heldout_size: int = field(
        default=256, metadata={"help": "Rows of the held-out batch the teacher scores look-ahead steps on."}
    )
    teacher_lookahead_lr: float = field(default=0.1, metadata={"help": "Learning rate of the simulated head step."})
    teacher_seed: int = field(default=0, metadata={"help": "Seed of the teacher's exploration and projection."})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("fairness_loss_kwargs", "fairness_weight", "fairness_attributes"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError as error:
                    raise ValueError(f"`{name}` is not valid JSON: {value!r} ({error})") from None
        if self.fairness_loss is None:
            self.fairness_loss = "eps_deo" if self.strategy == "weighted" else "robust_eo"
        if self.fairness_weight is None:
            self.fairness_weight = DEFAULT_FAIRNESS_WEIGHTS.get(self.fairness_loss, 1.0)
        if self.fairness_grad_to is None:
            self.fairness_grad_to = "all" if self.strategy in ("greedy", "teacher") else "shared"
        if self.fairness_loss_kwargs is None:
            self.fairness_loss_kwargs = {}
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}; choose one of {list(STRATEGIES)}")
        if self.fairness_grad_to not in FAIRNESS_GRAD_TARGETS:
            raise ValueError(
                f"Unknown fairness_grad_to {self.fairness_grad_to!r}; choose one of {list(FAIRNESS_GRAD_TARGETS)}"
            )
        if self.fairness_loss not in FAIRNESS_LOSSES:
            raise ValueError(
                f"Unknown fairness_loss {self.fairness_loss!r}; registered losses: {sorted(FAIRNESS_LOSSES)}"
            )
        if self.teacher_interval < 1:
            raise ValueError("`teacher_interval` must be at least 1")
        if self.label_names is None:
            # Both label columns reach compute_metrics (group metrics need the groups).
            self.label_names = ["labels", "group_labels"]


class _GradNormStep(TrainerCallback):
    """Applies the GradNorm update once per optimizer step, after the accumulated micro-batches."""

    def __init__(self, gradnorm: GradNorm) -> None:
        self.gradnorm = gradnorm

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        self.gradnorm.step()


class FairMTLTrainer(Trainer):
    """Trainer for [`FairMTLModel`] with fairness losses, strategies, GradNorm and the L2T-FMT teacher.

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
        conditions = "negative" if args.strategy == "mtaf" else "both"
        self.fairness_losses = nn.ModuleDict(
            {
                task: nn.ModuleDict(
                    {
                        _module_key(attr): build_fairness_loss(
                            args.fairness_loss,
                            num_groups=config.num_groups(attr),
                            num_classes=config.task_num_labels[task],
                            conditions=conditions,
                            **args.fairness_loss_kwargs,
                        )
                        for attr in attrs
                    }
                )
                for task, attrs in self.fairness_attributes.items()
                if attrs
            }
        ).to(args.device)
        self.gradnorm = None
        if args.gradnorm:
            self.gradnorm = GradNorm(config.num_tasks, alpha=args.gradnorm_alpha, lr=args.gradnorm_lr).to(args.device)
            self.add_callback(_GradNormStep(self.gradnorm))
        # GradNorm differentiates each task loss at the heads' input. Under DDP the model's outputs are copies made
        # by DDP's autograd sink, disconnected from that input, so the input is captured where the heads read it.
        self._head_input: torch.Tensor | None = None
        _base_model(self.model).heads[config.tasks[0]].register_forward_pre_hook(self._capture_head_input)
        self.task_actions = [ACCURACY_ACTION] * config.num_tasks
        self.last_train_batch: dict[str, torch.Tensor] | None = None
        self._logged_values: dict[str, dict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self.teacher_callback = None
        if args.strategy == "teacher":
            from .teacher import TeacherCallback

            existing = [cb for cb in self.callback_handler.callbacks if isinstance(cb, TeacherCallback)]
            if existing:
                self.teacher_callback = existing[0]
                if self.teacher_callback.trainer is not self:
                    self.teacher_callback.bind(self)
            else:
                self.teacher_callback = TeacherCallback.from_trainer(self)
                self.add_callback(self.teacher_callback)

    # ------------------------------------------------------------------ losses

    def _capture_head_input(self, module: nn.Module, args: tuple) -> None:
        if self._head_input is None:
            self._head_input = args[0]

    def _group_ids(self, group_labels: torch.Tensor | None, attr: str, batch_size: int, device) -> torch.Tensor:
        if group_labels is None:
            return torch.full((batch_size,), -1, dtype=torch.long, device=device)
        return attribute_group_ids(self.fairmtl_config, group_labels.long(), attr)

    def _fairness_loss(
        self,
        task_index: int,
        logits: torch.Tensor,
        labels: torch.Tensor,
        group_labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """F_t: the task's fairness loss averaged over its fairness attributes (0 with a graph if none)."""
        task = self.fairmtl_config.tasks[task_index]
        attrs = self.fairness_attributes.get(task) or []
        if not attrs:
            return logits.sum() * 0.0
        terms = []
        for attr in attrs:
            groups = self._group_ids(group_labels, attr, labels.shape[0], labels.device)
            terms.append(self.fairness_losses[task][_module_key(attr)](logits, labels, groups))
        return torch.stack(terms).mean()

    def _routed_logits(self, task_index: int, shared: torch.Tensor, logits: torch.Tensor, route: str) -> torch.Tensor:
        """Task logits whose gradient reaches only the parameters `route` names."""
        if route == "all":
            return logits
        head = _base_model(self.model).heads[self.fairmtl_config.tasks[task_index]]
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

    def task_objective_terms(
        self, task_index: int, logits: torch.Tensor, labels: torch.Tensor, group_labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(CE_t, F_t)` for task `task_index` on given logits, without touching running fairness state.

        Used by the teacher's look-ahead on copies of a head.
        """
        was_training = self.fairness_losses.training
        self.fairness_losses.eval()
        try:
            accuracy_loss, _ = masked_cross_entropy(logits, labels)
            return accuracy_loss, self._fairness_loss(task_index, logits, labels, group_labels)
        finally:
            self.fairness_losses.train(was_training)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ):
        if "labels" not in inputs:
            raise ValueError("FairMTLTrainer needs a `labels` column ([batch, num_tasks], -100 = missing)")
        labels = inputs["labels"]
        group_labels = inputs.get("group_labels")
        model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "group_labels")}
        self._head_input = None
        outputs = model(**model_inputs, return_shared_representation=True)
        head_input, self._head_input = self._head_input, None
        logits, shared = outputs.logits, outputs.shared_representation
        config = self.fairmtl_config
        labels = _base_model(model)._check_labels(labels)
        args = self.args
        training = model.training
        self.fairness_losses.train(training)
        mode = "train" if training else "eval"

        # Normalisers that make the accuracy part exact under gradient accumulation and DDP: divide label sums
        # by the label count of the whole window on all ranks; DDP then averages the ranks' gradients.
        windowed = training and torch.is_tensor(num_items_in_batch) and num_items_in_batch.numel() == config.num_tasks
        world_size = self.accelerator.num_processes if windowed else 1
        micro_batches = self.current_gradient_accumulation_steps if windowed else 1

        weights = self.gradnorm.task_weights if self.gradnorm is not None else torch.ones(config.num_tasks)
        weights = weights.to(shared.device)
        needs_fairness = args.strategy != "vanilla"
        total = shared.sum() * 0.0
        objectives: list[torch.Tensor] = []
        present = []
        for t, task in enumerate(config.tasks):
            task_labels = labels[:, t]
            accuracy_loss, count = masked_cross_entropy(logits[t], task_labels)
            present.append(count > 0)
            if windowed:
                exact_accuracy = accuracy_loss * count * world_size / num_items_in_batch[t].clamp(min=1)
            else:
                exact_accuracy = accuracy_loss
            fairness_loss = None
            if needs_fairness and task in self.fairness_losses:
                if args.strategy == "mtaf":
                    fairness_loss = self._mtaf_fairness(t, shared, logits[t], labels, group_labels)
                else:
                    routed = self._routed_logits(t, shared, logits[t], args.fairness_grad_to)
                    fairness_loss = self._fairness_loss(t, routed, task_labels, group_labels)
            lam = self.fairness_weights[task]
            if args.strategy in ("vanilla",) or fairness_loss is None:
                objective, scaled = accuracy_loss, weights[t] * exact_accuracy / config.num_tasks
            elif args.strategy in ("weighted", "mtaf"):
                objective = accuracy_loss
                scaled = weights[t] * exact_accuracy / config.num_tasks + lam * fairness_loss / micro_batches
            else:
                use_fairness = (
                    bool(fairness_loss.detach() > accuracy_loss.detach())
                    if args.strategy == "greedy"
                    else self.task_actions[t] == FAIRNESS_ACTION
                )
                objective = fairness_loss if use_fairness else accuracy_loss
                exact = fairness_loss / micro_batches if use_fairness else exact_accuracy
                scaled = weights[t] * exact / config.num_tasks
            total = total + scaled
            objectives.append(objective)
            self._record(mode, f"{task}_accuracy_loss", accuracy_loss)
            if fairness_loss is not None:
                self._record(mode, f"{task}_fairness_loss", fairness_loss)
            if self.gradnorm is not None:
                self._record(mode, f"{task}_gradnorm_weight", weights[t])
            if args.strategy == "teacher":
                self._record(mode, f"{task}_action", torch.tensor(float(self.task_actions[t]), device=shared.device))

        if training and self.gradnorm is not None:
            self.gradnorm.accumulate(objectives, head_input, torch.stack(present))
        if training and args.strategy == "teacher":
            self.last_train_batch = {
                "shared": shared.detach(),
                "labels": labels.detach(),
                "group_labels": group_labels.detach() if group_labels is not None else None,
            }
        if return_outputs:
            return total, FairMTLModelOutput(loss=total.detach(), logits=logits)
        return total

    def _mtaf_fairness(
        self,
        task_index: int,
        shared: torch.Tensor,
        logits: torch.Tensor,
        labels: torch.Tensor,
        group_labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """MTA-F routing: fairness of rows labelled only for this task → its head; other rows → shared layers.

        One fairness loss over the whole batch, on logits whose rows come from the head-only route (task-exclusive
        rows) or the shared-only route (the rest): each row's gradient goes where MTA-F sends it, the group
        statistics are those of the full batch, and a stateful loss (eps_deo) updates its estimates once per batch.
        """
        labelled = labels != IGNORE_INDEX
        exclusive = labelled[:, task_index] & (labelled.sum(dim=1) == 1)
        head_logits = self._routed_logits(task_index, shared, logits, "heads")
        shared_logits = self._routed_logits(task_index, shared, logits, "shared")
        routed = torch.where(exclusive.unsqueeze(-1), head_logits, shared_logits)
        return self._fairness_loss(task_index, routed, labels[:, task_index], group_labels)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """Per-task label counts over the accumulation window and all ranks (`[T]`)."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        counts = sum(
            (torch.as_tensor(batch["labels"]).reshape(-1, self.fairmtl_config.num_tasks) != IGNORE_INDEX).sum(0)
            for batch in batch_samples
        )
        return all_reduce_sum(counts.to(device))

    # ------------------------------------------------------------------ logging

    def _record(self, mode: str, name: str, value: torch.Tensor) -> None:
        # Kept on device and averaged at log time: no host sync per step.
        self._logged_values[mode][name].append(value.detach().float().reshape(()))

    def record_metric(self, name: str, value: float | torch.Tensor, mode: str = "train") -> None:
        """Add a value to be averaged over the logging window and merged into the next `log()` call."""
        self._record(mode, name, torch.as_tensor(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        values = self._logged_values[mode]
        if values:
            names = sorted(values)
            means = torch.stack([torch.stack(values[name]).mean() for name in names])
            # Average the per-rank window means so every rank logs the same, global numbers.
            means = all_reduce_sum(means.to(self.args.device)) / self.accelerator.num_processes
            prefix = "eval_" if mode == "eval" else ""
            logs = {**logs, **{prefix + name: round(float(m), 6) for name, m in zip(names, means, strict=True)}}
            values.clear()
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
        from .hub import last_eval_metrics, write_model_card

        write_model_card(
            self.args.output_dir,
            self.model,
            last_eval_metrics(self.state.log_history),
            training_args=self.args,
            teacher_summary=self.teacher_callback,
            **kwargs,
        )

    # ------------------------------------------------------------------ checkpoints

    def fairmtl_state_dict(self) -> dict[str, Any]:
        """Training state beyond the model and optimizer: GradNorm, fairness-loss buffers, teacher."""
        return {
            "gradnorm": self.gradnorm.state_dict() if self.gradnorm is not None else None,
            "fairness_losses": self.fairness_losses.state_dict(),
            "task_actions": list(self.task_actions),
            "teacher": self.teacher_callback.state_dict() if self.teacher_callback is not None else None,
        }

    def load_fairmtl_state_dict(self, state: dict[str, Any]) -> None:
        if self.gradnorm is not None and state.get("gradnorm") is not None:
            self.gradnorm.load_state_dict(state["gradnorm"])
        self.fairness_losses.load_state_dict(state["fairness_losses"])
        self.task_actions = list(state["task_actions"])
        if self.teacher_callback is not None and state.get("teacher") is not None:
            self.teacher_callback.load_state_dict(state["teacher"])

    def _save_checkpoint(self, model: nn.Module, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            torch.save(self.fairmtl_state_dict(), os.path.join(folder, STATE_FILE))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} is missing: this checkpoint was not written by FairMTLTrainer, so GradNorm, fairness-loss "
                "and teacher state cannot be restored"
            )
        self.load_fairmtl_state_dict(torch.load(path, map_location=self.args.device, weights_only=False))


def _module_key(attr: str) -> str:
    # nn.ModuleDict keys may not contain "."; "*" is fine but keep keys readable and safe.
    return attr.replace(".", "_")


def _base_model(model: nn.Module) -> nn.Module:
    """The `FairMTLModel` under DDP/accelerate and PEFT wrappers."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def _fairmtl_config(model: nn.Module) -> FairMTLConfig:
    config = getattr(_base_model(model), "config", None)
    if not isinstance(config, FairMTLConfig):
        raise TypeError(f"FairMTLTrainer needs a FairMTLModel, got {type(model).__name__}")
    return config


def _resolve_fairness_attributes(config: FairMTLConfig, requested: dict | None) -> dict[str, list[str]]:
    if requested is None:
        return {task: list(config.protected_attributes) for task in config.tasks}
    resolved = {task: [] for task in config.tasks}
    for task, attrs in requested.items():
        if task not in resolved:
            raise ValueError(f"fairness_attributes names unknown task {task!r}; tasks are {config.tasks}")
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
            raise ValueError(f"fairness_weight names unknown task {unknown[0]!r}; tasks are {config.tasks}")
        return {task: float(requested.get(task, 0.0)) for task in config.tasks}
    return dict.fromkeys(config.tasks, float(requested))
