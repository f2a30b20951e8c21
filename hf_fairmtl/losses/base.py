"""Fairness-loss base class, shared group statistics, and the name → loss registry.

Conventions every registered loss follows:

- Inputs are one task's `logits` `[B, C]`, `labels` `[B]` (-100 = no label) and `groups`: either `[B]` group
  ids of one protected attribute (negative = unknown) or `[B, G]` **soft memberships** (non-negative weights of
  each row in each group, e.g. an attribute classifier's probabilities for rows without demographics; a row of
  zeros = unknown). Only rows with both a label and a known (or weighted) group count. A row's statistics enter
  group `g` with weight `m[i, g]`, so one-hot memberships give exactly the loss of the ids, and a membership of
  `k` equals the row repeated `k` times. Soft counts are fractional; every loss divides by them as they are.
- Group statistics are sums and counts over the **global** batch (see `distributed.py`), so a loss is
  exact under DDP.
- Multi-class tasks (`num_classes > 2`) are handled one-vs-rest: for class `c`, "positives" are rows
  labelled `c` and "negatives" all other labelled rows, with `p_c` as the score. A binary task uses class 1
  as the positive class (its class-0 one-vs-rest problem mirrors class 1). Each loss documents how it
  combines the classes.
- `conditions` picks the side of equalized odds: `"both"` (TPR and FPR sides), `"positive"` (rows whose
  label is the positive class: equal opportunity) or `"negative"` (the others: the FPR side, MTA-F).
- Degenerate batches never give NaN or raise: with fewer than two groups present (this covers no
  labelled rows and no known groups) the loss is a zero that still has a graph, and a side with no rows
  (e.g. no positives) contributes zero. The decision uses global counts only, so all ranks agree.
  `eps_deo` counts a group as present once its running estimates have seen it (see its docstring).
- Everything is tensor arithmetic without host synchronisation except one validation check per call.
- **Stacking**: a loss that sets `supports_stacking = True` also accepts `[T, B, C]` logits and `[T, B]` labels of
  T tasks sharing one `groups` tensor and returns `[T]` values, equal to T separate calls; [`stacked_fairness_loss`]
  uses this to compute every task's loss of an attribute in one call (the small per-task tensor operations, not
  the arithmetic, dominate the cost at many tasks). The built-in losses write their reductions over negative
  dimensions so the same code serves both shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from ..groups import UNKNOWN_GROUP
from ..modeling_fairmtl import IGNORE_INDEX
from .distributed import all_reduce_sum

CONDITIONS = ("both", "positive", "negative")

FAIRNESS_LOSSES: dict[str, type[FairnessLoss]] = {}
"""Registered fairness losses by name; add one with [`register_fairness_loss`]."""

_LossT = TypeVar("_LossT", bound="type[FairnessLoss]")


@dataclass
class GroupedBatch:
    """One task's batch, validated and laid out for per-group sums.

    Shapes below are one task's; stacked tasks (see the module docstring) add a leading `T` dimension to all but
    `num_groups`.

    Attributes:
        log_probs: `[B, C]` log-softmax of the logits (float32, or float64 for float64 logits).
        labels: `[B]` labels with unusable rows set to 0 (so they can index safely; `valid` masks them).
        valid: `[B]` rows with a label and a known group.
        bins: `[B]` group id, or `num_groups` (a spill bin dropped after summing) for unusable rows. Using a
            spill bin instead of boolean indexing keeps shapes static and avoids a host sync.
        num_groups: Number of groups.
        memberships: `[B, G]` soft memberships (zero on unusable rows) when the groups were given soft; then
            `bins` is unused and the per-group sums are `memberships.T @ values`.
    """

    log_probs: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    bins: torch.Tensor
    num_groups: int
    memberships: torch.Tensor | None = None

    def group_statistics(self, values: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global per-group sums of `values` and of `counts`.

        Args:
            values: `[B, K]` per-row quantities (differentiable); rows outside `valid` must be zero.
            counts: `[B, K']` per-row indicators; rows outside `valid` must be zero.

        Returns:
            `(sums [G, K], counts [G, K'])` summed over the global batch; `counts` carries no gradient (stacked:
            `[T, G, K]` and `[T, G, K']`).
        """
        width = values.shape[-1]
        # One collective for both: the counts ride along detached, so only the sums carry a gradient.
        rows = torch.cat([values, counts.detach().to(values.dtype)], dim=-1)
        if self.memberships is not None:
            per_group = self.memberships.to(rows.dtype).transpose(-1, -2) @ rows
        else:
            per_group = _bin_sums(rows, self.bins, self.num_groups + 1)[..., : self.num_groups, :]
        per_group = all_reduce_sum(per_group)
        return per_group[..., :width], per_group[..., width:].detach()

    def class_indicators(self, classes: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """One-vs-rest positives and negatives `[B, K]` (bool) for the classes in `classes`."""
        class_ids = torch.arange(self.log_probs.shape[-1], device=self.labels.device)[classes]
        positive = (self.labels.unsqueeze(-1) == class_ids) & self.valid.unsqueeze(-1)
        negative = ~positive & self.valid.unsqueeze(-1)
        return positive, negative


def _bin_sums(rows: torch.Tensor, bins: torch.Tensor, num_bins: int) -> torch.Tensor:
    """`[..., num_bins, W]` sums of `rows` `[..., B, W]` per bin id `bins` `[..., B]` (one `index_add`)."""
    if rows.dim() == 2:
        return rows.new_zeros((num_bins, rows.shape[1])).index_add(0, bins, rows)
    leading = rows.shape[:-2]
    # Stacked tasks: task i's bins are shifted by i · num_bins, so one index_add fills every task's bins.
    offsets = torch.arange(bins[..., 0].numel(), device=bins.device).reshape(*leading, 1) * num_bins
    flat = (bins + offsets).reshape(-1)
    sums = rows.new_zeros((flat.numel() // bins.shape[-1] * num_bins, rows.shape[-1]))
    return sums.index_add(0, flat, rows.reshape(-1, rows.shape[-1])).reshape(*leading, num_bins, rows.shape[-1])


def group_means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """`sums / counts` where `counts > 0`, else 0 (counts may be fractional: soft group memberships)."""
    return torch.where(
        counts > 0, sums / torch.where(counts > 0, counts, torch.ones_like(counts)), torch.zeros_like(sums)
    )


def masked_max(values: torch.Tensor, present: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Max of `values` over `dim` among `present` entries; 0 where none is present (never ±inf)."""
    best = values.masked_fill(~present, float("-inf")).amax(dim)
    return torch.where(present.any(dim), best, torch.zeros_like(best))


def masked_min(values: torch.Tensor, present: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Min of `values` over `dim` among `present` entries; 0 where none is present (never ±inf)."""
    return -masked_max(-values, present, dim)


def masked_spread(values: torch.Tensor, present: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Max − min of `values` over `dim` among `present` entries; 0 with fewer than two present."""
    spread = masked_max(values, present, dim) - masked_min(values, present, dim)
    return torch.where(present.sum(dim) >= 2, spread, torch.zeros_like(spread))


def log_not_class(log_probs: torch.Tensor) -> torch.Tensor:
    """`log(1 − p_c)` for every class `c`, `[B, C]`, computed as `log Σ_{k≠c} p_k` to stay finite near p_c = 1."""
    num_classes = log_probs.shape[-1]
    others = ~torch.eye(num_classes, dtype=torch.bool, device=log_probs.device)
    # [..., B, C, C]: row c holds log p_k for k != c and -inf at k == c.
    stacked = log_probs.unsqueeze(-2).masked_fill(~others, float("-inf"))
    return torch.logsumexp(stacked, dim=-1)


class FairnessLoss(nn.Module):
    """Base class of the fairness losses: validation, group statistics, degenerate-batch handling.

    Subclasses implement [`FairnessLoss.forward`] from [`FairnessLoss.prepare`] and
    [`GroupedBatch.group_statistics`], and register with `@register_fairness_loss("name")`.

    Args:
        num_groups: Number of groups of the protected attribute (ids `0 … num_groups − 1`).
        num_classes: Number of classes of the task (2 for binary).
        conditions: `"both"`, `"positive"` or `"negative"` (see the module docstring).
        **kwargs: Subclass options; anything left unconsumed raises `TypeError` so typos surface.

    Raises:
        ValueError: On `num_groups < 1`, `num_classes < 2` or an unknown `conditions`.
        TypeError: On unknown keyword arguments.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    citation: ClassVar[str | None] = None
    supports_stacking: ClassVar[bool] = False
    """Whether `forward` accepts stacked tasks (`[T, B, C]` logits, `[T, B]` labels) and returns `[T]`."""

    def __init__(self, num_groups: int, num_classes: int = 2, conditions: str = "both", **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) {sorted(kwargs)}")
        super().__init__()
        if int(num_groups) != num_groups or num_groups < 1:
            raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}")
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if conditions not in CONDITIONS:
            raise ValueError(f"conditions must be one of {CONDITIONS}, got {conditions!r}")
        self.num_groups = int(num_groups)
        self.num_classes = int(num_classes)
        self.conditions = conditions

    @property
    def one_vs_rest_classes(self) -> slice:
        """Classes scored one-vs-rest: class 1 for a binary task, every class otherwise."""
        return slice(1, 2) if self.num_classes == 2 else slice(0, self.num_classes)

    def extra_repr(self) -> str:
        return f"num_groups={self.num_groups}, num_classes={self.num_classes}, conditions={self.conditions!r}"

    def prepare(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> GroupedBatch:
        """Validate inputs and lay them out for per-group sums.

        Raises:
            ValueError: On wrong shapes, a label outside `[0, num_classes)` other than -100, a group id
                `>= num_groups`, or soft memberships that are negative or not finite.
        """
        stacked = self.supports_stacking and logits.dim() == 3
        if logits.dim() != (3 if stacked else 2) or logits.shape[-1] != self.num_classes:
            expected = f"[batch, {self.num_classes}]" + (
                f" (or [tasks, batch, {self.num_classes}] stacked)" if self.supports_stacking else ""
            )
            raise ValueError(f"{type(self).__name__} expects logits of shape {expected}, got {list(logits.shape)}")
        batch_size = logits.shape[-2]
        soft = groups.dim() == 2
        group_shape = (batch_size, self.num_groups) if soft else (batch_size,)
        label_shape = (*logits.shape[:-2], batch_size)
        if labels.shape != label_shape or groups.shape != group_shape:
            raise ValueError(
                f"labels must have shape {list(label_shape)} and groups [{batch_size}] (ids) or "
                f"[{batch_size}, {self.num_groups}] (soft memberships), "
                f"got {list(labels.shape)} and {list(groups.shape)}"
            )
        labels = labels.to(device=logits.device, dtype=torch.long)
        if soft:
            return self._prepare_soft(logits, labels, groups)
        groups = groups.to(device=logits.device, dtype=torch.long)
        bad_label = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.num_classes))
        bad_group = groups >= self.num_groups
        if bool((bad_label | bad_group).any()):  # the one host sync: errors must be clear, not silent
            if bad_group.any():
                raise ValueError(
                    f"Group id {int(groups[bad_group][0])} is out of range: this {type(self).__name__} was built "
                    f"for num_groups={self.num_groups} (ids 0..{self.num_groups - 1}, {UNKNOWN_GROUP} = unknown)"
                )
            raise ValueError(
                f"Label {int(labels[bad_label][0])} is outside [0, {self.num_classes}) "
                f"(use {IGNORE_INDEX} for a missing label)"
            )
        valid = (labels != IGNORE_INDEX) & (groups >= 0)
        return GroupedBatch(
            log_probs=_log_probs(logits),
            labels=torch.where(valid, labels, torch.zeros_like(labels)),
            valid=valid,
            bins=torch.where(valid, groups, torch.full_like(groups, self.num_groups)),
            num_groups=self.num_groups,
        )

    def _prepare_soft(self, logits: torch.Tensor, labels: torch.Tensor, memberships: torch.Tensor) -> GroupedBatch:
        """[`prepare`] for `[B, G]` soft memberships (detached: they weigh rows, they are not trained here)."""
        memberships = memberships.detach().to(device=logits.device, dtype=torch.float64)
        bad_label = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.num_classes))
        bad_weight = ~torch.isfinite(memberships) | (memberships < 0)
        if bool(bad_label.any() | bad_weight.any()):  # the one host sync
            if bad_weight.any():
                raise ValueError("Soft group memberships must be finite and >= 0 (a row of zeros = unknown group)")
            raise ValueError(
                f"Label {int(labels[bad_label][0])} is outside [0, {self.num_classes}) "
                f"(use {IGNORE_INDEX} for a missing label)"
            )
        valid = (labels != IGNORE_INDEX) & (memberships.sum(-1) > 0)
        return GroupedBatch(
            log_probs=_log_probs(logits),
            labels=torch.where(valid, labels, torch.zeros_like(labels)),
            valid=valid,
            bins=torch.full_like(labels, self.num_groups),
            num_groups=self.num_groups,
            memberships=memberships * valid.unsqueeze(-1),
        )

    def combine_sides(self, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """The positive-side term, the negative-side term, or their sum, as `conditions` asks."""
        if self.conditions == "positive":
            return positive
        if self.conditions == "negative":
            return negative
        return positive + negative

    @staticmethod
    def zero_unless_two_groups(loss: torch.Tensor, group_counts: torch.Tensor) -> torch.Tensor:
        """`loss` when at least two groups have rows (`group_counts` `[G]`, stacked `[T, G]`), else a zero with a
        graph."""
        return torch.where((group_counts > 0).sum(-1) >= 2, loss, torch.zeros_like(loss))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Fairness loss of one task's batch.

        Args:
            logits: `[B, C]` task logits.
            labels: `[B]` labels, -100 = missing.
            groups: `[B]` group ids (negative = unknown) or `[B, G]` soft memberships (zeros = unknown).

        Returns:
            A scalar tensor (0-dim); `[T]` for stacked tasks where `supports_stacking`.
        """
        raise NotImplementedError

    def stacking_key(self) -> tuple[Any, ...]:
        """Instances with equal keys compute the same function and may be stacked (type and settings)."""
        return type(self), self.extra_repr()

    @classmethod
    def forward_stacked(
        cls, losses: Sequence[FairnessLoss], logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor
    ) -> torch.Tensor:
        """`[T]` losses of T stacked tasks, `losses[t]` being task `t`'s instance (equal `stacking_key`s).

        The default suits stateless losses: the first instance's stacked `forward`. A loss with running state
        overrides it to read and update every task's own state.
        """
        return losses[0](logits, labels, groups)


def stacked_fairness_loss(
    losses: Sequence[FairnessLoss], logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Fairness losses of T tasks sharing one attribute's groups: one stacked call where the losses allow it.

    Args:
        losses: Task `t`'s loss instance at position `t`.
        logits: `[T, B, C]` stacked task logits.
        labels: `[T, B]` stacked labels (-100 = missing).
        groups: `[B]` group ids or `[B, G]` soft memberships, shared by the tasks.

    Returns:
        `[T]`: equal to `torch.stack([losses[t](logits[t], labels[t], groups) for t ...])`, which is what runs
        when the losses do not support stacking or differ in type or settings.
    """
    first = losses[0]
    key = first.stacking_key()
    if len(losses) > 1 and first.supports_stacking and all(loss.stacking_key() == key for loss in losses):
        return type(first).forward_stacked(losses, logits, labels, groups)
    return torch.stack([loss(logits[t], labels[t], groups) for t, loss in enumerate(losses)])


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    # Half-precision logits (AMP) are upcast: group means of log-probabilities need the range.
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return torch.log_softmax(logits, dim=-1)


def register_fairness_loss(name: str) -> Callable[[_LossT], _LossT]:
    """Class decorator adding a [`FairnessLoss`] subclass to `FAIRNESS_LOSSES` under `name`.

    Example:
        ```python
        @register_fairness_loss("my_gap")
        class MyGap(FairnessLoss):
            def forward(self, logits, labels, groups): ...
        ```

    Raises:
        ValueError: If `name` is empty or already taken by another class.
        TypeError: If the decorated object is not a `FairnessLoss` subclass.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A fairness loss name must be a non-empty string, got {name!r}")

    def decorator(cls: _LossT) -> _LossT:
        if not (isinstance(cls, type) and issubclass(cls, FairnessLoss)):
            raise TypeError(f"@register_fairness_loss({name!r}) decorates FairnessLoss subclasses, got {cls!r}")
        existing = FAIRNESS_LOSSES.get(name)
        # Re-registering the same class (a module reload) is harmless; a different class is a clash.
        if existing is not None and _qualified_name(existing) != _qualified_name(cls):
            raise ValueError(
                f"A fairness loss named {name!r} is already registered ({_qualified_name(existing)}); "
                "choose another name"
            )
        cls.name = name
        FAIRNESS_LOSSES[name] = cls
        return cls

    return decorator


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def build_fairness_loss(name: str, num_groups: int, num_classes: int = 2, **kwargs: Any) -> FairnessLoss:
    """Instantiate the registered fairness loss `name`.

    Args:
        name: A key of `FAIRNESS_LOSSES` (`"robust_eo"`, `"eps_deo"`, `"loss_gap_eo"`, `"dp_gap"`, or one
            a user registered).
        num_groups: Number of groups of the protected attribute.
        num_classes: Number of classes of the task.
        **kwargs: Passed to the loss (`conditions`, and loss-specific options such as `target_epsilon`).

    Raises:
        ValueError: If `name` is not registered (the message lists the registered names).
    """
    if name not in FAIRNESS_LOSSES:
        raise ValueError(f"Unknown fairness loss {name!r}; registered: {sorted(FAIRNESS_LOSSES)}")
    return FAIRNESS_LOSSES[name](num_groups=num_groups, num_classes=num_classes, **kwargs)
