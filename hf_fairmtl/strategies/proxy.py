"""`proxy_groups`: soft demographics for rows without them, so a task without demographics gets its own fairness term.

Per protected attribute an *attribute head* (a small classifier on the detached shared representation) is
trained on the rows whose group is known, with its own Adam optimizer stepped once per optimizer step (its
gradients averaged over ranks, as the adversaries' are). For every row whose group is unknown it predicts
soft memberships `p(g | x)`; rows with a known group keep their one-hot membership. The fairness losses take
these `[B, G]` memberships (the registry's soft-membership contract, `hf_fairmtl.losses.base`), so with
`fairness_attributes={"target": ["gender"], "auxiliary": ["gender"]}` the target task — no demographic label
anywhere in its rows — is made fair over the predicted genders, next to the auxiliary task over the real ones.

The objective is `weighted`'s: `Σ_t w_t · CE_t / T + Σ_t λ_t · F_t` with F_t on soft memberships and the
fairness gradient routed by `fairness_grad_to` (default: the shared encoder). The attribute heads read the
representation detached, so they never shape the encoder, and the memberships are constants of the fairness
term. Their accuracy on the evaluation rows with a known group is logged as `eval_proxy_{attr}_accuracy`: on
held-out target rows whose demographics the test set keeps, that is the head's held-out accuracy on the very
population it labels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback

from ..losses.distributed import all_reduce_sum, world_size
from ..metrics.keys import overall_key
from ..utils import unwrap_model
from .adversarial import GroupAdversary, average_gradients_over_ranks, head_input_size
from .base import BatchView, TaskObjective, TaskTerms, register_strategy
from .weighted import WeightedStrategy


@register_strategy("proxy_groups")
class ProxyGroupsStrategy(WeightedStrategy):
    """`weighted` with fairness losses on soft group memberships predicted for rows without demographics.

    Settings: `fairness_attributes` (list the target task too: that is what the proxies are for),
    `fairness_weight`, `adversary_hidden_size` and `adversary_lr` (width and learning rate of the attribute
    heads, shared with `adversarial`).
    """

    title = "Proxy demographics"
    description = (
        "attribute heads trained on the rows with known groups predict soft group memberships for the rows "
        "without, and each task's fairness loss uses them, so a task without demographics gets its own fairness term"
    )
    citation = None
    uses_fairness = False  # F_t is computed here, on soft memberships (the trainer's would use ids only).

    def __init__(self, args: Any, config, fairness_attributes: dict[str, list[str]]) -> None:
        super().__init__(args, config, fairness_attributes)
        attrs = [attr for task in config.tasks for attr in fairness_attributes.get(task, [])]
        self.attributes: list[str] = list(dict.fromkeys(attrs))
        self.heads: nn.ModuleDict | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._trainer: Any = None
        self._memberships: dict[str, torch.Tensor] = {}
        self._last_fairness: dict[int, torch.Tensor] = {}

    def callbacks(self, trainer: Any) -> list[TrainerCallback]:
        self._trainer = trainer
        if self.attributes:
            size = head_input_size(unwrap_model(trainer.model))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.args.seed)
                self.heads = nn.ModuleDict(
                    {
                        _key(attr): GroupAdversary(size, self.config.num_groups(attr), self.args.adversary_hidden_size)
                        for attr in self.attributes
                    }
                ).to(trainer.args.device)
            self.optimizer = torch.optim.Adam(self.heads.parameters(), lr=self.args.adversary_lr)
        return [ProxyStep(self)]

    # ------------------------------------------------------------------ memberships and objective

    def memberships(self, attr: str, batch: BatchView) -> torch.Tensor:
        """`[B, G]`: one-hot for rows with a known group, the attribute head's probabilities for the others."""
        if attr not in self._memberships:
            groups = batch.group_ids(attr).long()
            known = groups >= 0
            with torch.no_grad():
                predicted = self.heads[_key(attr)](batch.shared.detach().float()).softmax(dim=1)
            one_hot = F.one_hot(groups.clamp(min=0), predicted.shape[1]).to(predicted.dtype)
            self._memberships[attr] = torch.where(known.unsqueeze(1), one_hot, predicted)
        return self._memberships[attr]

    def combine(self, terms: TaskTerms, batch: BatchView) -> TaskObjective:
        attrs = self.fairness_attributes.get(terms.task) or []
        if not attrs or self.heads is None:
            return self.accuracy_only(terms)
        logits = self.fairness_logits(terms.index, batch)
        labels = batch.labels[:, terms.index]
        losses = self._trainer.fairness_losses[terms.task]
        fairness = torch.stack([losses[_key(a)](logits, labels, self.memberships(a, batch)) for a in attrs]).mean()
        self._last_fairness[terms.index] = fairness.detach()
        return TaskObjective(
            weighted=terms.exact_accuracy,
            unweighted=terms.fairness_weight * fairness / terms.micro_batches,
            objective=terms.accuracy,
        )

    def log_values(self, terms: TaskTerms) -> dict[str, torch.Tensor]:
        # `{task}_fairness_loss`, the key the trainer logs F_t under for the other strategies.
        value = self._last_fairness.get(terms.index)
        return {} if value is None else {"fairness_loss": value}

    def extra_loss(self, batch: BatchView) -> torch.Tensor | None:
        """CE of the attribute heads on the known-group rows (detached input: trains the heads only)."""
        if self.heads is None:
            return None
        total = batch.shared.new_zeros((), dtype=torch.float32)
        for attr in self.attributes:
            groups = batch.group_ids(attr).long()
            known = groups >= 0
            logits = self.heads[_key(attr)](batch.shared.detach().float())
            losses = F.cross_entropy(logits, groups.clamp(min=0), reduction="none") * known
            stats = all_reduce_sum(torch.stack([known.sum(), ((logits.argmax(1) == groups) & known).sum()]).float())
            count = stats[0].clamp(min=1)
            total = total + losses.sum() * world_size() / count
            mode = "train" if batch.training else "eval"
            self._trainer.record_metric(overall_key(f"proxy_{attr}_accuracy"), stats[1] / count, mode=mode)
        micro_batches = max(int(getattr(self._trainer, "current_gradient_accumulation_steps", 1) or 1), 1)
        return total / micro_batches if batch.training else None

    def after_batch(self, batch: BatchView) -> None:
        self._memberships = {}
        self._last_fairness = {}

    # ------------------------------------------------------------------ head step and state

    def step(self) -> None:
        """One optimizer step of the attribute heads (gradients averaged over ranks)."""
        if self.optimizer is None:
            return
        average_gradients_over_ranks(list(self.heads.parameters()))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        if self.heads is None:
            return {}
        return {"heads": self.heads.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.heads is None:
            return
        if "heads" not in state:
            raise ValueError("the checkpoint has no proxy attribute-head state (written by another strategy)")
        self.heads.load_state_dict(state["heads"])
        self.optimizer.load_state_dict(state["optimizer"])


class ProxyStep(TrainerCallback):
    """Steps the attribute heads after each optimizer step."""

    def __init__(self, strategy: ProxyGroupsStrategy) -> None:
        self.strategy = strategy

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        self.strategy.step()


def _key(attr: str) -> str:
    # The trainer's (and nn.ModuleDict's) key of an attribute: "." is not allowed in module names.
    return attr.replace(".", "_")
