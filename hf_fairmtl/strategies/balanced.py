"""`balanced`: per group × label reweighting of a task's cross-entropy (Han et al. 2021; fairlib's `BT`).

For a task made fair for attribute `a`, each training row with a label `y` and a known group `g` has its CE
weighted by `w(g, y)` from the counts `n(g, y)` of the task's labelled, known-group rows:

- `balanced_condition="both"` (equalized odds; fairlib's `stratified_y`): `w = n(y) / (G_y · n(g, y))`, so
  within every label each group carries the same total weight and the group tells nothing about the label;
- `"positive"` (equal opportunity): the same, for the rows of the positive class only (class 1 of a binary
  task; a multi-class task has every class as a one-vs-rest positive, so this equals `"both"`);
- `"joint"`: `w = n / (K · n(g, y))` with `K` the non-empty cells, so every group × label cell weighs the same.

Every variant has mean weight 1 over the counted rows, so the loss keeps its scale. Rows without a known group
(or without a label) keep weight 1: the target task of the transfer setting trains as usual, and only a task
with demographics is rebalanced. With several attributes a row's weight is the mean of its per-attribute
weights. Counts come from the training set (`balanced_counts="dataset"`) or are running counts of the
batches seen so far (`"running"`, summed over ranks and kept in the checkpoint).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..groups import attribute_group_ids
from ..losses.distributed import all_reduce_sum
from ..modeling_fairmtl import IGNORE_INDEX
from .base import BatchView, TaskObjective, TaskTerms, register_strategy
from .weighted import WeightedStrategy

BALANCED_CONDITIONS = ("both", "positive", "joint")


def balance_weights(counts: torch.Tensor, condition: str) -> torch.Tensor:
    """`[G, C]` weights `w(g, y)` from counts `n(g, y)` (see the module docstring); 0 on empty cells.

    Args:
        counts: `[G, C]` counts of labelled rows per group and class.
        condition: `"both"`, `"positive"` or `"joint"`.
    """
    if condition not in BALANCED_CONDITIONS:
        raise ValueError(f"balanced_condition must be one of {list(BALANCED_CONDITIONS)}, got {condition!r}")
    counts = counts.double()
    filled = counts > 0
    safe = counts.clamp(min=1)
    if condition == "joint":
        cells = filled.sum().clamp(min=1)
        weights = counts.sum() / (cells * safe)
    else:
        per_label = counts.sum(0, keepdim=True)
        groups_per_label = filled.sum(0, keepdim=True).clamp(min=1)
        weights = per_label / (groups_per_label * safe)
        if condition == "positive" and counts.shape[1] == 2:
            weights[:, 0] = 1.0
    return torch.where(filled, weights, torch.zeros_like(weights)).float()


def group_label_counts(labels: torch.Tensor, groups: torch.Tensor, num_groups: int, num_classes: int) -> torch.Tensor:
    """`[G, C]` counts of rows with a label (≠ -100) and a known group (≥ 0)."""
    valid = (labels != IGNORE_INDEX) & (groups >= 0)
    cells = torch.where(valid, groups.long() * num_classes + labels.long(), torch.full_like(labels.long(), -1))
    flat = torch.zeros(num_groups * num_classes + 1, dtype=torch.float64, device=labels.device)
    flat = flat.index_add(0, cells + 1, torch.ones_like(cells, dtype=torch.float64))
    return flat[1:].view(num_groups, num_classes)


@register_strategy("balanced")
class BalancedStrategy(WeightedStrategy):
    """Balanced training: each task's CE reweighted per group × label on its rows with known groups.

    λ = 0 by default (F_t logged as a monitor); a set `fairness_weight` adds the fairness loss on top, as in
    `weighted`. Settings: `balanced_condition`, `balanced_counts`.
    """

    title = "Balanced training"
    description = (
        "each task's cross-entropy reweighted per group and label on its rows with known groups, so every group "
        "weighs the same within each label (equalized odds), within the positive class (equal opportunity), or "
        "per group × label cell (Han et al. 2021)"
    )
    citation = """@inproceedings{han2022balancing,
  title = {Balancing out Bias: Achieving Fairness Through Balanced Training},
  author = {Han, Xudong and Baldwin, Timothy and Cohn, Trevor},
  booktitle = {Proceedings of EMNLP},
  year = {2022},
  eprint = {2109.08253},
  archivePrefix = {arXiv}
}"""
    default_fairness_weight = 0.0

    def __init__(self, args: Any, config, fairness_attributes: dict[str, list[str]]) -> None:
        super().__init__(args, config, fairness_attributes)
        self.condition = args.balanced_condition
        # (task, attr) -> [G, C] counts (float64).
        self.counts: dict[str, torch.Tensor] = {
            _key(task, attr): torch.zeros(config.num_groups(attr), config.task_num_labels[task], dtype=torch.float64)
            for task in config.tasks
            for attr in fairness_attributes.get(task, [])
        }

    def callbacks(self, trainer: Any) -> list:
        if self.args.balanced_counts == "dataset" and self.counts and trainer.train_dataset is not None:
            self.counts = dataset_counts(trainer.train_dataset, self.config, self.fairness_attributes)
        return []

    def row_weights(self, task_index: int, batch: BatchView) -> torch.Tensor:
        """`[B]` weights of the task's rows: mean over its attributes of `w(g, y)`, 1 where the group is unknown."""
        task = self.config.tasks[task_index]
        labels = batch.labels[:, task_index]
        weights = []
        for attr in self.fairness_attributes.get(task, []):
            groups = batch.group_ids(attr).long()
            key = _key(task, attr)
            if self.args.balanced_counts == "running" and batch.training:
                new = group_label_counts(labels, groups, *self.counts[key].shape)
                self.counts[key] = self.counts[key].to(new.device) + all_reduce_sum(new)
            table = balance_weights(self.counts[key], self.condition).to(batch.shared.device)
            valid = (labels != IGNORE_INDEX) & (groups >= 0)
            looked_up = table[groups.clamp(min=0), labels.clamp(min=0)]
            weights.append(torch.where(valid, looked_up, torch.ones_like(looked_up)))
        return torch.stack(weights).mean(0)

    def combine(self, terms: TaskTerms, batch: BatchView) -> TaskObjective:
        if not self.fairness_attributes.get(terms.task):
            return super().combine(terms, batch)
        labels = batch.labels[:, terms.index]
        per_row = F.cross_entropy(
            batch.logits[terms.index].float(), labels, ignore_index=IGNORE_INDEX, reduction="none"
        )
        count = (labels != IGNORE_INDEX).sum().clamp(min=1)
        balanced = (per_row * self.row_weights(terms.index, batch)).sum() / count
        # exact_accuracy = accuracy × (window normalisation); the same factor makes the balanced CE exact.
        plain = terms.accuracy.detach()
        factor = torch.where(plain > 0, terms.exact_accuracy.detach() / plain.clamp(min=1e-30), torch.ones_like(plain))
        unweighted = balanced.new_zeros(())
        if terms.fairness is not None:
            unweighted = terms.fairness_weight * terms.fairness / terms.micro_batches
        return TaskObjective(weighted=balanced * factor, unweighted=unweighted, objective=balanced)

    def state_dict(self) -> dict[str, Any]:
        return {"counts": {key: value.cpu() for key, value in self.counts.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        counts = state.get("counts")
        if counts is None or set(counts) != set(self.counts):
            raise ValueError(f"balanced counts for {sorted(counts or {})}, this run needs {sorted(self.counts)}")
        self.counts = {key: torch.as_tensor(value, dtype=torch.float64) for key, value in counts.items()}


def dataset_counts(dataset: Any, config, fairness_attributes: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """`(task, attr) → [G, C]` counts of a training set's `labels` and `group_labels` columns.

    Raises:
        ValueError: If the dataset has no such columns (streamed data: use `balanced_counts="running"`).
    """
    try:
        labels = np.asarray(dataset["labels"], dtype=np.int64).reshape(-1, config.num_tasks)
        group_labels = np.asarray(dataset["group_labels"], dtype=np.int64).reshape(-1, len(config.protected_attributes))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            "balanced_counts='dataset' reads the training set's `labels` and `group_labels` columns, which this "
            f"dataset does not provide ({error}); use balanced_counts='running'"
        ) from None
    counts = {}
    for t, task in enumerate(config.tasks):
        for attr in fairness_attributes.get(task, []):
            groups = torch.as_tensor(attribute_group_ids(config, group_labels, attr))
            counts[_key(task, attr)] = group_label_counts(
                torch.as_tensor(labels[:, t]), groups, config.num_groups(attr), config.task_num_labels[task]
            )
    return counts


def _key(task: str, attr: str) -> str:
    return f"{task}|{attr}"
