"""Task (accuracy) losses: a registry of per-task classification losses, selectable per task.

Registered:

* `cross_entropy`: the masked mean cross-entropy of the model (`modeling_fairmtl.masked_cross_entropy`).
* `balanced`: class-balanced cross-entropy, weight `w_c = N / (C · n_c)` from the training label counts of the
  task (`n_c` rows of class `c`, `N = Σ_c n_c`, `C` classes seen in training), so every class carries the
  same total weight and a majority-class predictor no longer minimises the loss (King & Zeng 2001; the
  `class_weight="balanced"` of scikit-learn).

Every task loss returns `(loss, count)` like `masked_cross_entropy`: `loss = Σ_i w_{y_i} CE_i / count` over the
labelled rows of the batch (label != -100) and `count` the number of those rows. Normalising by the row count
(not by `Σ_i w_{y_i}`) keeps the loss an exact sum/count: `loss · count` summed over micro-batches and ranks and
divided by the window's label count (what `FairMTLTrainer.compute_loss` does with `num_items_in_batch`) is the
loss of the whole window. With the balanced weights the expected weight of a training row is 1, so the scale
matches plain cross-entropy.

```python
from hf_fairmtl.losses.task_losses import build_task_losses, class_counts

counts = class_counts(train_dataset, config)                      # {task: [n_0, n_1, ...]}
losses = build_task_losses(config, {"income": "balanced"}, counts)  # other tasks: cross_entropy
loss, count = losses["income"](logits[t], labels[:, t])
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..configuration_fairmtl import FairMTLConfig
from ..modeling_fairmtl import IGNORE_INDEX, masked_cross_entropy
from ..registry import Registry

DEFAULT_TASK_LOSS = "cross_entropy"
BALANCE_MAJORITY_THRESHOLD = 0.8
"""`default_task_losses` picks `balanced` for a task whose majority class exceeds this share of training rows."""


class TaskLoss(nn.Module):
    """Base class of the task losses: `forward(logits [B, C], labels [B]) -> (loss, count)`.

    Subclasses register with `@register_task_loss("name")` and set the ClassVars read by reports and cards.

    Args:
        num_classes: Classes of the task.
        counts: Training rows per class (`[C]`), for losses that need them (see `needs_class_counts`).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    needs_class_counts: ClassVar[bool] = False
    supports_stacking: ClassVar[bool] = False
    """Whether [`forward_stacked`] computes K tasks of this loss class in one call (see [`stacked_task_losses`])."""

    def __init__(self, num_classes: int, counts: Sequence[int] | None = None) -> None:
        super().__init__()
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(loss, count)`: the loss over the labelled rows (0 with a graph when none) and their number."""
        raise NotImplementedError

    @classmethod
    def forward_stacked(
        cls, losses: Sequence[TaskLoss], logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`([K] losses, [K] counts)` of K tasks (`[K, B, C]` logits, `[K, B]` labels; `losses[k]` task k's instance),
        equal to K `forward` calls. Only called where `supports_stacking`."""
        raise NotImplementedError


TASK_LOSSES: Registry[type[TaskLoss]] = Registry("task loss", TaskLoss, "task_loss")
"""Registered task losses by name; add one with [`register_task_loss`]."""
register_task_loss = TASK_LOSSES.register


@register_task_loss("cross_entropy")
class CrossEntropyTaskLoss(TaskLoss):
    """Mean cross-entropy over the labelled rows (the model's own loss)."""

    title: ClassVar[str] = "Cross-entropy"
    description: ClassVar[str] = "Mean cross-entropy over the labelled rows of the task."
    citation: ClassVar[str] = ""

    supports_stacking: ClassVar[bool] = True

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_cross_entropy(logits, labels)

    @classmethod
    def forward_stacked(
        cls, losses: Sequence[TaskLoss], logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _stacked_cross_entropy(logits, labels, None)


@register_task_loss("balanced")
class BalancedCrossEntropyLoss(TaskLoss):
    """Class-balanced cross-entropy `Σ_i w_{y_i} CE_i / count`, `w_c = N / (C · n_c)` from training counts.

    A class absent from training (`n_c = 0`) gets weight 0 and is left out of `C` (it has no training rows).

    Raises:
        ValueError: Without counts, with counts of the wrong length or negative, or with no counted row.
    """

    title: ClassVar[str] = "Class-balanced cross-entropy"
    description: ClassVar[str] = (
        "Cross-entropy with class weights N / (C · n_c) from the training label counts, so each class carries "
        "the same total weight and predicting the majority class no longer minimises the loss."
    )
    citation: ClassVar[str] = (
        "King, G. and Zeng, L. (2001). Logistic Regression in Rare Events Data. Political Analysis 9(2)."
    )
    needs_class_counts: ClassVar[bool] = True
    supports_stacking: ClassVar[bool] = True

    def __init__(self, num_classes: int, counts: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        self.register_buffer("class_weights", balanced_class_weights(counts, self.num_classes))

    @classmethod
    def forward_stacked(
        cls, losses: Sequence[TaskLoss], logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.stack([loss.class_weights for loss in losses]).to(device=logits.device, dtype=torch.float32)
        return _stacked_cross_entropy(logits, labels, weights)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = labels.long()
        count = (labels != IGNORE_INDEX).sum()
        weights = self.class_weights.to(device=logits.device, dtype=torch.float32)
        total = F.cross_entropy(logits.float(), labels, weight=weights, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / count.clamp(min=1), count

    def extra_repr(self) -> str:
        return f"class_weights={[round(float(w), 4) for w in self.class_weights]}"


def _stacked_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`([K] Σ_i w_{y_i} CE_i / count, [K] count)` of `[K, B, C]` logits and `[K, B]` labels (-100 = missing);
    `class_weights` `[K, C]` or `None` (all 1)."""
    tasks, rows, classes = logits.shape
    labels = labels.long()
    labelled = labels != IGNORE_INDEX
    count = labelled.sum(-1)
    per_row = F.cross_entropy(
        logits.float().reshape(tasks * rows, classes), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).reshape(tasks, rows)
    if class_weights is not None:
        per_row = per_row * class_weights.gather(1, labels.clamp(min=0))
    return per_row.sum(-1) / count.clamp(min=1), count


def stacked_task_losses(
    losses: Sequence[TaskLoss], logits: Sequence[torch.Tensor], labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every task's `(loss, count)` as `[T]` tensors; tasks of one stackable loss class and class count in one call.

    Args:
        losses: Task `t`'s loss at position `t`.
        logits: Task `t`'s `[B, C_t]` logits at position `t`.
        labels: `[B, T]` labels (-100 = missing).

    Returns:
        `([T] losses, [T] counts)`, equal (up to float rounding) to `losses[t](logits[t], labels[:, t])` per task,
        which is what runs for a loss class without `supports_stacking` or a task alone in its group.
    """
    num_tasks = len(losses)
    groups: dict[tuple[type, int], list[int]] = {}
    for t, loss in enumerate(losses):
        key = (type(loss), logits[t].shape[-1]) if loss.supports_stacking else (type(loss), -1 - t)
        groups.setdefault(key, []).append(t)
    if len(groups) == 1 and num_tasks > 1 and losses[0].supports_stacking:  # the usual case: no reordering
        return type(losses[0]).forward_stacked(losses, torch.stack(list(logits)), labels.T)
    values: list[torch.Tensor | None] = [None] * num_tasks
    counts: list[torch.Tensor | None] = [None] * num_tasks
    for (cls, _), members in groups.items():
        if len(members) > 1:
            value, count = cls.forward_stacked(
                [losses[t] for t in members], torch.stack([logits[t] for t in members]), labels[:, members].T
            )
            for i, t in enumerate(members):
                values[t], counts[t] = value[i], count[i]
        else:
            (t,) = members
            values[t], counts[t] = losses[t](logits[t], labels[:, t])
    return torch.stack(values), torch.stack(counts)


def balanced_class_weights(counts: Sequence[int] | None, num_classes: int) -> torch.Tensor:
    """`w_c = N / (C · n_c)` over the classes with training rows, 0 for the others (`[num_classes]`).

    Raises:
        ValueError: When `counts` is missing, has the wrong length, a negative entry, or sums to 0.
    """
    if counts is None:
        raise ValueError(
            "task_loss='balanced' needs the training label counts of the task: pass "
            "`class_counts(train_dataset, config)` (hf_fairmtl.losses.task_losses)"
        )
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)
    if counts.shape != (num_classes,) or (counts < 0).any():
        raise ValueError(f"Class counts must be {num_classes} non-negative numbers, got {counts.tolist()}")
    seen = counts > 0
    if not seen.any():
        raise ValueError("Class counts are all 0: the task has no labelled training row")
    weights = np.where(seen, counts.sum() / (seen.sum() * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def class_counts(dataset: Any, config: FairMTLConfig) -> dict[str, list[int]]:
    """Labelled training rows per class of every task, from the multi-task dataset's `labels` column.

    Args:
        dataset: A `datasets.Dataset` (or anything indexable by `"labels"`) in the `FairMTLModel` data contract:
            `labels` `[N, T]`, -100 = no label.
        config: Gives the task order and class counts.

    Returns:
        `{task: [n_0, ..., n_{C-1}]}`.

    Raises:
        ValueError: When the dataset has no `labels` column, the wrong number of label columns, or a label
            outside `[0, C)` other than -100.
    """
    names = getattr(dataset, "column_names", None)
    if names is not None and "labels" not in names:
        raise ValueError(f"class_counts needs a `labels` column; the dataset has {names}")
    labels = np.asarray(dataset.with_format("numpy")["labels"] if names is not None else dataset["labels"])
    labels = labels.reshape(len(labels), -1)
    if labels.shape[1] != config.num_tasks:
        raise ValueError(
            f"`labels` has {labels.shape[1]} column(s) but the config has {config.num_tasks} tasks {config.tasks}"
        )
    counts = {}
    for t, task in enumerate(config.tasks):
        column = labels[:, t]
        column = column[column != IGNORE_INDEX]
        num_classes = config.task_num_labels[task]
        if column.size and (column.min() < 0 or column.max() >= num_classes):
            raise ValueError(f"Task {task!r} has a label outside [0, {num_classes}) in `labels` (-100 = missing)")
        counts[task] = np.bincount(column.astype(np.int64), minlength=num_classes).tolist()
    return counts


def resolve_task_loss_names(task_loss: str | Mapping[str, str] | None, config: FairMTLConfig) -> dict[str, str]:
    """Loss name per task from the `task_loss` setting: one name for every task, or a dict task -> name.

    Tasks a dict leaves out get `cross_entropy`.

    Raises:
        ValueError: On an unknown task or loss name (the message lists the registered names).
    """
    if task_loss is None:
        task_loss = DEFAULT_TASK_LOSS
    if isinstance(task_loss, str):
        names = dict.fromkeys(config.tasks, task_loss)
    elif isinstance(task_loss, Mapping):
        unknown = [task for task in task_loss if task not in config.tasks]
        if unknown:
            raise ValueError(f"task_loss names unknown task(s) {unknown}; tasks are {config.tasks}")
        names = {task: task_loss.get(task, DEFAULT_TASK_LOSS) for task in config.tasks}
    else:
        raise TypeError(f"task_loss must be a loss name or a dict task -> loss name, got {type(task_loss).__name__}")
    for name in names.values():
        TASK_LOSSES.get_class(name)
    return names


def build_task_losses(
    config: FairMTLConfig,
    task_loss: str | Mapping[str, str] | None = None,
    counts: Mapping[str, Sequence[int]] | None = None,
) -> nn.ModuleDict:
    """One task loss per task (`nn.ModuleDict` task -> [`TaskLoss`], in `config.tasks` order).

    Args:
        config: Tasks and class counts.
        task_loss: The `task_loss` setting (see [`resolve_task_loss_names`]).
        counts: `class_counts(train_dataset, config)`; needed when a chosen loss uses class counts (`balanced`).

    Raises:
        ValueError: On unknown names, or a loss that needs counts when `counts` lacks the task.
    """
    names = resolve_task_loss_names(task_loss, config)
    losses = nn.ModuleDict()
    for task, name in names.items():
        cls = TASK_LOSSES.get_class(name)
        task_counts = (counts or {}).get(task)
        if cls.needs_class_counts and task_counts is None:
            raise ValueError(
                f"task_loss {name!r} for task {task!r} needs training label counts: pass "
                "counts=class_counts(train_dataset, config)"
            )
        losses[task] = cls(config.task_num_labels[task], task_counts)
    return losses


def default_task_losses(
    counts: Mapping[str, Sequence[int]], threshold: float = BALANCE_MAJORITY_THRESHOLD
) -> dict[str, str]:
    """`balanced` for every task whose majority class exceeds `threshold` of its training rows, else
    `cross_entropy` (the tabular default of issue 14)."""
    names = {}
    for task, task_counts in counts.items():
        values = np.asarray(task_counts, dtype=np.float64)
        share = values.max() / values.sum() if values.sum() > 0 else 0.0
        names[task] = "balanced" if share > threshold else DEFAULT_TASK_LOSS
    return names
