"""`mtaf`: MTA-F (Wang et al., KDD 2021) — fixed λ, fairness on negatives, task-exclusive routing."""

from __future__ import annotations

import torch

from ..modeling_fairmtl import IGNORE_INDEX
from .base import BatchView, register_strategy
from .weighted import WeightedStrategy


def task_exclusive_rows(labels: torch.Tensor, task_index: int) -> torch.Tensor:
    """`[B]` rows exclusive to task t as MTA-F defines them (Wang et al. 2021, §4.2).

    A row is task-exclusive when it is positive for t and negative for every other task, or negative for t and
    positive for every other task. "Positive" is any class but 0 (class 1 of a binary task). With missing
    labels (-100) only the tasks the row is labelled for are compared — our choice, the paper's data are fully
    labelled: a row labelled for t alone has no other task to contradict it and counts as exclusive.
    """
    labelled = labels != IGNORE_INDEX
    positive = labelled & (labels > 0)
    negative = labelled & (labels == 0)
    others = torch.ones(labels.shape[1], dtype=torch.bool, device=labels.device)
    others[task_index] = False
    # Every other labelled task has the opposite sign: no other task is positive (resp. negative).
    others_negative = ~(positive[:, others].any(dim=1))
    others_positive = ~(negative[:, others].any(dim=1))
    return (positive[:, task_index] & others_negative) | (negative[:, task_index] & others_positive)


@register_strategy("mtaf")
class MTAFStrategy(WeightedStrategy):
    """MTA-F: `weighted` with fairness on the negatives (the FPR side) and MTA-F's routing.

    The fairness of task-exclusive rows (see [`task_exclusive_rows`]: positive for t and negative for every
    other task, or the reverse) reaches only task t's head; the fairness of the other rows only the shared
    layers. One fairness loss over the whole batch, on logits whose rows come from the head-only route
    or the shared-only route, so the group statistics are those of the full batch and a stateful loss
    (eps_deo) updates its estimates once per batch.
    """

    title = "MTA-F"
    description = (
        "fixed fairness weights, fairness on the negatives, task heads debiased on task-exclusive examples and the "
        "shared layers on the rest (Wang et al., KDD 2021)"
    )
    citation = """@inproceedings{wang2021understanding,
  title = {Understanding and Improving Fairness-Accuracy Trade-offs in Multi-Task Learning},
  author = {Wang, Yuyan and Wang, Xuezhi and Beutel, Alex and Prost, Flavien and Chen, Jilin and Chi, Ed H.},
  booktitle = {Proceedings of the 27th ACM SIGKDD Conference on Knowledge Discovery and Data Mining},
  year = {2021}
}"""
    default_fairness_loss = "robust_eo"
    conditions = "negative"

    def fairness_logits(self, task_index: int, batch: BatchView) -> torch.Tensor:
        exclusive = task_exclusive_rows(batch.labels, task_index)
        head_logits = batch.routed_logits(task_index, "heads")
        shared_logits = batch.routed_logits(task_index, "shared")
        return torch.where(exclusive.unsqueeze(-1), head_logits, shared_logits)
