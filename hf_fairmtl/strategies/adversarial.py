"""`adversarial`: group classifiers on the shared representation, trained through gradient reversal.

One adversary per protected attribute (every attribute some task is made fair for, `fairness_attributes`)
reads the shared representation through a gradient-reversal layer (Ganin & Lempitsky 2015) and predicts the
row's group; it is trained on the rows whose group is known and nothing else, so with demographics on an
auxiliary task only it debiases the shared encoder from the auxiliary rows alone (the fairness-transfer
setting). Minimising the adversary's cross-entropy trains the adversary; the reversed gradient makes the
encoder *remove* what the adversary reads (Elazar & Goldberg 2018; fairlib's `Adv`).

With `adversary_eo=True` the adversary also sees the labels of the tasks made fair for its attribute (one-hot,
zeros where a row has no label): it can then only profit from group information beyond what the label
explains, which is the equalized-odds condition (Zhang, Lemoine & Mitchell 2018; fairlib's gated adversary).

The adversaries live outside the model, with their own Adam optimizer, stepped once per optimizer step by a
callback. Under DDP they are not wrapped, so the callback averages their gradients over the ranks before the
step; their loss divides by the global count of known-group rows, so both the encoder's and the adversary's
gradients equal those of one process on the concatenated batch. Their parameters and optimizer state are in
`state_dict()`, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback

from ..losses.distributed import all_reduce_sum, is_distributed, world_size
from ..metrics.keys import overall_key
from ..modeling_fairmtl import IGNORE_INDEX
from ..utils import unwrap_model
from .base import BatchView, register_strategy
from .weighted import WeightedStrategy

ADVERSARY_CITATION = """@inproceedings{ganin2015unsupervised,
  title = {Unsupervised Domain Adaptation by Backpropagation},
  author = {Ganin, Yaroslav and Lempitsky, Victor},
  booktitle = {Proceedings of the 32nd International Conference on Machine Learning},
  year = {2015}
}
@inproceedings{elazar2018adversarial,
  title = {Adversarial Removal of Demographic Attributes from Text Data},
  author = {Elazar, Yanai and Goldberg, Yoav},
  booktitle = {Proceedings of EMNLP},
  year = {2018}
}
@inproceedings{zhang2018mitigating,
  title = {Mitigating Unwanted Biases with Adversarial Learning},
  author = {Zhang, Brian Hu and Lemoine, Blake and Mitchell, Margaret},
  booktitle = {Proceedings of the 2018 AAAI/ACM Conference on AI, Ethics, and Society},
  year = {2018}
}"""


class _GradientReversal(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by `-coefficient`."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad_output, None


def reverse_gradient(tensor: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Gradient-reversal layer (Ganin & Lempitsky 2015): `tensor` forward, `-coefficient ·` gradient backward."""
    return _GradientReversal.apply(tensor, float(coefficient))


def ganin_coefficient(progress: float) -> float:
    """Ganin & Lempitsky's ramp `2 / (1 + exp(-10 p)) - 1` from 0 (start) to ≈ 1 (end) of training."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


class GroupAdversary(nn.Module):
    """MLP group classifier `[B, input_size] → [B, num_groups]` (LeakyReLU hidden layer as fairlib's; none if 0).

    Args:
        input_size: Width of its input (shared representation, plus one-hot labels for the EO variant).
        num_groups: Groups of the protected attribute.
        hidden_size: Hidden width; 0 makes it linear.
    """

    def __init__(self, input_size: int, num_groups: int, hidden_size: int) -> None:
        super().__init__()
        if hidden_size:
            self.net = nn.Sequential(
                nn.Linear(input_size, hidden_size), nn.LeakyReLU(), nn.Linear(hidden_size, num_groups)
            )
        else:
            self.net = nn.Linear(input_size, num_groups)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


def label_one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """`[B, C]` float one-hot of `labels` (`[B]`), all zeros where the label is missing (-100)."""
    known = labels != IGNORE_INDEX
    encoded = F.one_hot(torch.where(known, labels, torch.zeros_like(labels)).long(), num_classes).float()
    return encoded * known.unsqueeze(1)


@register_strategy("adversarial")
class AdversarialStrategy(WeightedStrategy):
    """Task losses plus, per protected attribute, a gradient-reversal group adversary on the shared encoder.

    The task objective is `weighted`'s with λ = 0 by default, so F_t is a logged monitor; setting
    `fairness_weight` adds a fairness loss on top (the two compose). The adversary's loss is a batch-level term
    outside the task weighting, so it works with every weighting. Settings: `adversary_weight` (λ_adv),
    `adversary_lr`, `adversary_hidden_size`, `adversary_eo`, `adversary_schedule`.
    """

    title = "Adversarial debiasing"
    description = (
        "a group classifier per protected attribute reads the shared representation through gradient reversal, "
        "trained only on rows whose group is known, so the encoder unlearns the demographics (Ganin & Lempitsky; "
        "Elazar & Goldberg; the equalized-odds variant also shows it the label, Zhang et al.)"
    )
    citation = ADVERSARY_CITATION
    default_fairness_weight = 0.0

    def __init__(self, args: Any, config, fairness_attributes: dict[str, list[str]]) -> None:
        super().__init__(args, config, fairness_attributes)
        attrs = [attr for task in config.tasks for attr in fairness_attributes.get(task, [])]
        self.attributes: list[str] = list(dict.fromkeys(attrs))
        # Tasks whose labels the EO adversary of an attribute sees: the tasks made fair for it.
        self.label_tasks = {
            attr: [t for t, task in enumerate(config.tasks) if attr in fairness_attributes.get(task, [])]
            for attr in self.attributes
        }
        self.adversaries: nn.ModuleDict | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.progress = 0.0
        self._trainer: Any = None

    # ------------------------------------------------------------------ building

    def build(self, input_size: int, device: torch.device) -> None:
        """Create the adversaries (seeded by `args.seed`, identical on every rank) and their optimizer."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.args.seed)
            self.adversaries = nn.ModuleDict(
                {
                    attr.replace(".", "_"): GroupAdversary(
                        input_size + self._label_width(attr),
                        self.config.num_groups(attr),
                        int(self.args.adversary_hidden_size),
                    )
                    for attr in self.attributes
                }
            ).to(device)
        self.optimizer = torch.optim.Adam(self.adversaries.parameters(), lr=self.args.adversary_lr)

    def _label_width(self, attr: str) -> int:
        if not self.args.adversary_eo:
            return 0
        return sum(self.config.task_num_labels[self.config.tasks[t]] for t in self.label_tasks[attr])

    def callbacks(self, trainer: Any) -> list[TrainerCallback]:
        self._trainer = trainer
        if self.attributes:
            self.build(head_input_size(unwrap_model(trainer.model)), trainer.args.device)
        return [AdversaryStep(self)]

    # ------------------------------------------------------------------ objective

    def coefficient(self) -> float:
        """λ_adv now: constant, or Ganin's ramp over the training progress."""
        scale = ganin_coefficient(self.progress) if self.args.adversary_schedule == "ganin" else 1.0
        return float(self.args.adversary_weight) * scale

    def adversary_inputs(self, attr: str, shared: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The adversary's input: the shared representation, plus the one-hot task labels for the EO variant."""
        parts = [shared.float()]
        if self.args.adversary_eo:
            for t in self.label_tasks[attr]:
                parts.append(label_one_hot(labels[:, t], self.config.task_num_labels[self.config.tasks[t]]))
        return torch.cat(parts, dim=1)

    def extra_loss(self, batch: BatchView) -> torch.Tensor | None:
        """Σ_attr mean CE of the adversary over known-group rows (global count), through gradient reversal.

        Outside training it returns `None` (the evaluation loss stays comparable across strategies) and logs the
        adversary's accuracy on the rows with a known group, a leakage measure of the representation.
        """
        if self.adversaries is None:
            return None
        if not batch.training:
            with torch.no_grad():
                self._adversary_terms(batch, batch.shared.detach(), "eval")
            return None
        micro_batches = max(int(getattr(self._trainer, "current_gradient_accumulation_steps", 1) or 1), 1)
        reversed_shared = reverse_gradient(batch.shared, self.coefficient())
        return self._adversary_terms(batch, reversed_shared, "train") / micro_batches

    def _adversary_terms(self, batch: BatchView, shared: torch.Tensor, mode: str) -> torch.Tensor:
        total = shared.new_zeros((), dtype=torch.float32)
        for attr in self.attributes:
            groups = batch.group_ids(attr).long()
            known = groups >= 0
            logits = self.adversaries[attr.replace(".", "_")](self.adversary_inputs(attr, shared, batch.labels))
            safe = torch.where(known, groups, torch.zeros_like(groups))
            losses = F.cross_entropy(logits, safe, reduction="none") * known
            correct = (logits.argmax(dim=1) == groups) & known
            stats = all_reduce_sum(torch.stack([known.sum(), correct.sum()]).float())
            count = stats[0].clamp(min=1)
            # × world size: DDP averages the encoder's gradients over ranks, the callback the adversary's.
            total = total + losses.sum() * world_size() / count
            self._record(f"adversary_{attr}_loss", losses.sum().detach() * world_size() / count, mode)
            self._record(f"adversary_{attr}_accuracy", stats[1] / count, mode)
        return total

    def _record(self, name: str, value: torch.Tensor, mode: str) -> None:
        if self._trainer is not None:
            self._trainer.record_metric(overall_key(name), value, mode=mode)

    # ------------------------------------------------------------------ adversary step and state

    def step(self) -> None:
        """One optimizer step of the adversaries on the gradients of the accumulation window (rank-averaged)."""
        if self.optimizer is None:
            return
        average_gradients_over_ranks(list(self.adversaries.parameters()))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        if self.adversaries is None:
            return {}
        return {"adversaries": self.adversaries.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.adversaries is None:
            if state:
                raise ValueError("the checkpoint has adversaries but this run has no fairness attribute")
            return
        if "adversaries" not in state:
            raise ValueError("the checkpoint has no adversary state (written by another strategy)")
        self.adversaries.load_state_dict(state["adversaries"])
        self.optimizer.load_state_dict(state["optimizer"])


class AdversaryStep(TrainerCallback):
    """Steps the adversaries after each optimizer step and tells them the training progress (for the schedule)."""

    def __init__(self, strategy: AdversarialStrategy) -> None:
        self.strategy = strategy

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self.strategy.progress = state.global_step / state.max_steps if state.max_steps else 0.0

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        self.strategy.step()


def average_gradients_over_ranks(params: list[nn.Parameter]) -> None:
    """Average `.grad` of parameters outside DDP over the ranks, in place (one all-reduce; no-op on one process).

    Every rank must hold gradients for the same parameters (true here: every rank runs the same loss terms).
    """
    params = [p for p in params if p.grad is not None]
    if not is_distributed() or not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def head_input_size(model: nn.Module) -> int:
    """Width of the shared representation: the in-features of the first task head's first linear layer."""
    head = next(iter(model.heads.values()))
    first = next(module for module in head.modules() if isinstance(module, nn.Linear))
    return first.in_features
