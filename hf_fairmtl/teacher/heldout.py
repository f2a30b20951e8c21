"""The teacher's held-out rows: collated once, encoded on a cadence, and the scores of a head on them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..groups import UNKNOWN_GROUP, attribute_group_ids
from ..metrics import equalized_odds_violations, task_metrics
from ..modeling_fairmtl import IGNORE_INDEX
from .lookahead import eval_mode, stacked_head_logits

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "features")
ENCODE_CHUNK = 256


class HeldoutSet:
    """Held-out rows the look-ahead candidates are scored on, with their shared features cached.

    The encoder runs on these rows only when the cache is refreshed: every `refresh` calls of [`features`]
    (one call per teacher step). In between, a teacher step runs only the task heads. The cache (features and
    their age) is part of the teacher's checkpoint, so a resumed run scores on the same features.

    Args:
        inputs: Model inputs of the rows (`input_ids`/`attention_mask`/... or `features`), on the CPU.
        labels: `[N, T]` labels (`IGNORE_INDEX` = unlabelled).
        groups: Attribute -> `[N]` group ids (`UNKNOWN_GROUP` = unknown) for every fairness attribute used.
        num_labels: Per task, its class count (in task order).
        fairness_attributes: Per task (in task order), the attributes its EO violation is averaged over.
        refresh: Re-encode every `refresh` teacher steps (1 = every step).
        accuracy_metric: `"accuracy"` or `"balanced_accuracy"`: the accuracy [`score`] returns.
        collapse_threshold: A head predicting one class on at least this share of the labelled rows gets a NaN EO
            violation (its gaps do not measure fairness); `None` = never.
    """

    def __init__(
        self,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        groups: Mapping[str, torch.Tensor],
        num_labels: Sequence[int],
        fairness_attributes: Sequence[Sequence[str]],
        refresh: int = 1,
        accuracy_metric: str = "accuracy",
        collapse_threshold: float | None = None,
    ) -> None:
        if refresh < 1:
            raise ValueError(f"`refresh` (teacher_heldout_refresh) must be at least 1, got {refresh}")
        self.inputs = dict(inputs)
        self.labels = labels
        self.groups = dict(groups)
        self.num_labels = list(num_labels)
        self.fairness_attributes = [list(attrs) for attrs in fairness_attributes]
        self.refresh = refresh
        self.accuracy_metric = accuracy_metric
        self.collapse_threshold = collapse_threshold
        self.cached: torch.Tensor | None = None
        self.age = 0  # teacher steps the cached features have served
        self.num_encodings = 0
        self._rows: dict[int, tuple[torch.Tensor, Any, list[Any]] | None] = {}

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        collate: Callable[[list[Any]], Mapping[str, torch.Tensor]],
        config: Any,
        fairness_attributes: Mapping[str, Sequence[str]],
        size: int,
        seed: int,
        **options: Any,
    ) -> HeldoutSet:
        """Collate a seeded sample of at most `size` rows of `dataset` (all rows if it is smaller).

        `options` are the constructor's `refresh`, `accuracy_metric` and `collapse_threshold`.
        """
        indices = list(range(len(dataset)))
        if len(indices) > size:
            generator = torch.Generator().manual_seed(int(seed))
            indices = sorted(torch.randperm(len(indices), generator=generator)[:size].tolist())
        batch = collate([dataset[i] for i in indices])
        if "labels" not in batch:
            raise ValueError("The teacher's held-out rows need a `labels` column")
        labels = batch["labels"].long().reshape(len(indices), -1)
        group_labels = batch.get("group_labels")
        groups: dict[str, torch.Tensor] = {}
        for attr in {attr for task in config.tasks for attr in fairness_attributes[task]}:
            if group_labels is None:
                groups[attr] = torch.full((len(indices),), UNKNOWN_GROUP, dtype=torch.long)
            else:
                groups[attr] = attribute_group_ids(config, group_labels.long(), attr)
        return cls(
            {key: batch[key] for key in MODEL_INPUTS if key in batch},
            labels,
            groups,
            [config.task_num_labels[task] for task in config.tasks],
            [fairness_attributes[task] for task in config.tasks],
            **options,
        )

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])

    def encode(self, model: nn.Module, device: torch.device) -> torch.Tensor:
        """Shared features of the rows with the current encoder, in eval mode and without gradient."""
        chunks = []
        with eval_mode(model), torch.no_grad():
            for start in range(0, self.num_rows, ENCODE_CHUNK):
                inputs = {k: v[start : start + ENCODE_CHUNK].to(device) for k, v in self.inputs.items()}
                chunks.append(model.encode(**inputs))
        self.num_encodings += 1
        return torch.cat(chunks)

    def features(self, model: nn.Module, device: torch.device) -> torch.Tensor:
        """The features one teacher step scores on: re-encoded when the cache is `refresh` steps old."""
        if self.cached is None or self.age >= self.refresh:
            self.cached = self.encode(model, device)
            self.age = 0
        self.age += 1
        return self.cached

    def score(
        self, task_index: int, head: nn.Module, params: Mapping[str, torch.Tensor], features: torch.Tensor
    ) -> tuple[float, float]:
        """`(accuracy, EO violation)` of a head on the rows labelled for one task.

        The accuracy is `accuracy_metric` (plain or balanced). EO violation is `fairness_metrics(...)["eo_violation"]`
        averaged over the task's fairness attributes; NaN when the task has none, the rows show fewer than two
        groups (nothing to compare, so the reward keeps only its accuracy term), or the head is collapsed (see
        `collapse_threshold`). Both are NaN when no row is labelled for the task.
        """
        return self.score_many([task_index], [head], [params], features)[0]

    def score_many(
        self,
        task_indices: Sequence[int],
        heads: Sequence[nn.Module],
        params: Sequence[Mapping[str, torch.Tensor]],
        features: torch.Tensor,
    ) -> list[tuple[float, float]]:
        """[`score`] of several `(task, head, parameters)`: the heads run in one vectorised call where they allow it
        (`stacked_head_logits`) and the predictions of one task share one confusion count (a teacher step scores
        every task's current head, then both candidates of every task)."""
        with torch.no_grad():
            logits = stacked_head_logits(heads, params, features)
        by_task: dict[int, list[int]] = {}
        for k, t in enumerate(task_indices):
            by_task.setdefault(t, []).append(k)
        scores: list[tuple[float, float]] = [(math.nan, math.nan)] * len(task_indices)
        for t, positions in by_task.items():
            for k, score in zip(positions, self._scores(t, [logits[k] for k in positions]), strict=True):
                scores[k] = score
        return scores

    def _scores(self, task_index: int, logits: Sequence[torch.Tensor]) -> list[tuple[float, float]]:
        """[`score`] of one task from several heads' logits on every held-out row."""
        rows = self._task_rows(task_index)
        if rows is None:
            return [(math.nan, math.nan)] * len(logits)
        indices, y_true, attribute_groups = rows
        index = indices.to(logits[0].device)
        y_preds = np.stack([task_logits[index].argmax(-1).cpu().numpy() for task_logits in logits])
        if self.accuracy_metric == "accuracy" and self.collapse_threshold is None:  # the paper's: no extra figures
            accuracies = [float((y_true == y_pred).mean()) for y_pred in y_preds]
            collapsed = [False] * len(logits)
        else:
            figures = [task_metrics(y_true, y_pred, threshold=self.collapse_threshold or 1.0) for y_pred in y_preds]
            accuracies = [float(f[self.accuracy_metric]) for f in figures]
            collapsed = [self.collapse_threshold is not None and bool(f["collapsed"]) for f in figures]
        num_classes = self.num_labels[task_index]
        violations = [equalized_odds_violations(y_true, y_preds, groups, num_classes) for groups in attribute_groups]
        eo = np.mean(violations, axis=0) if violations else np.full(len(logits), math.nan)
        return [
            (accuracy, math.nan if gone else float(value))
            for accuracy, gone, value in zip(accuracies, collapsed, eo, strict=True)
        ]

    def _task_rows(self, task_index: int) -> tuple[torch.Tensor, Any, list[Any]] | None:
        """Rows labelled for a task: their indices, labels (NumPy) and the group ids (NumPy) of each fairness
        attribute whose rows show at least two groups; `None` without labelled rows. Computed once per task (the
        rows never change), since a teacher step scores every task three times."""
        if task_index not in self._rows:
            labels = self.labels[:, task_index]
            labelled = labels != IGNORE_INDEX
            entry = None
            if bool(labelled.any()):
                groups = [self.groups[attr][labelled] for attr in self.fairness_attributes[task_index]]
                comparable = [g.numpy() for g in groups if torch.unique(g[g >= 0]).numel() >= 2]
                entry = (labelled.nonzero().squeeze(1), labels[labelled].numpy(), comparable)
            self._rows[task_index] = entry
        return self._rows[task_index]

    def state_dict(self) -> dict[str, Any]:
        """The feature cache and its age (so a resumed run scores on the same features)."""
        return {"features": None if self.cached is None else self.cached.detach().cpu(), "age": self.age}

    def load_state_dict(self, state: Mapping[str, Any] | None, device: torch.device) -> None:
        """Restore [`state_dict`]; `None` (a checkpoint from before the cache existed) empties the cache."""
        if state is None or state.get("features") is None:
            self.cached, self.age = None, 0
            return
        self.cached = state["features"].to(device)
        self.age = int(state["age"])
