"""What the teacher needs from the trainer it drives: the typed interface [`TeacherStudent`].

`FairMTLTrainer` implements it; the teacher never imports the trainer module, never probes it with `getattr`
and never writes into its attributes: it reads through these members and hands decisions back with
`set_task_actions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class TeacherStudent(Protocol):
    """A trainer whose per-task objectives a [`TeacherCallback`] chooses.

    Attributes:
        fairmtl_config: The `FairMTLConfig` of the student (tasks, protected attributes, group vocabulary).
        fairness_attributes: Task name -> the protected attributes its fairness loss uses (empty: no fairness loss).
        args: The `FairMTLTrainingArguments` (the `teacher_*` fields and `device` are read).
        eval_dataset: Default held-out rows (a dataset or a dict of them; `None` if absent).
        train_dataset: Fallback rows when there is no held-out data (a warning says so).
        data_collator: Turns a list of rows into a batch (`labels`, `group_labels`, model inputs).
    """

    fairmtl_config: Any
    fairness_attributes: Mapping[str, Sequence[str]]
    args: Any
    eval_dataset: Any
    train_dataset: Any
    data_collator: Any

    def student_model(self) -> nn.Module:
        """The `FairMTLModel` being trained, unwrapped (no DDP/accelerate/PEFT wrapper)."""
        ...

    def latest_train_batch(self) -> dict[str, torch.Tensor | None] | None:
        """Detached `shared`, `labels` and `group_labels` of the last training micro-batch, or `None`."""
        ...

    def set_task_actions(self, actions: Sequence[int]) -> None:
        """Set each task's objective until the next decision: 0 = accuracy loss, 1 = fairness loss."""
        ...

    def objective_terms(
        self, logits: Sequence[torch.Tensor], labels: torch.Tensor, group_labels: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """`([CE_t], [F_t])` of every task on given per-task logits (`[B, T]` labels), without touching running
        fairness state."""
        ...

    def record_metric(self, name: str, value: float | torch.Tensor, mode: str = "train") -> None:
        """Add a value to be averaged over the logging window and merged into the next log."""
        ...
