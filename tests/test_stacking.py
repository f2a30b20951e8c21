"""The vectorised training step equals the per-task one it replaces.

At many tasks the trainer computes every task's terms as `[T]` vectors: the task losses in one call per loss class
and class count (`stacked_task_losses`), the routed fairness logits as one batched head forward
(`TaskHead.forward_many`), the strategies' `combine_all` and the weightings' `task_losses` on vectors. Each is
checked here against the per-task computation: values, gradients and random draws.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from hf_fairmtl.losses.task_losses import (
    BalancedCrossEntropyLoss,
    CrossEntropyTaskLoss,
    TaskLoss,
    stacked_task_losses,
)
from hf_fairmtl.modeling_fairmtl import TaskHead, masked_cross_entropy
from hf_fairmtl.strategies import STRATEGIES, StackedTaskTerms, Strategy, TaskObjective
from hf_fairmtl.strategies.weighted import WeightedStrategy
from hf_fairmtl.weighting import WEIGHTINGS

from .synthetic import tabular_config

# ----------------------------------------------------------------------------------------------- heads


@pytest.mark.parametrize("hidden", [None, 8])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("detach_weights", [True, False])
def test_forward_many_equals_one_call_per_head(hidden, training, detach_weights) -> None:
    torch.manual_seed(0)
    heads = [TaskHead(16, 3, hidden, dropout=0.3).train(training) for _ in range(5)]
    shared = torch.randn(12, 16, requires_grad=True)

    def run(stacked: bool):
        for head in heads:
            head.zero_grad()
        shared.grad = None
        torch.manual_seed(7)  # the same dropout draws in both runs if and only if the draw order is the same
        if stacked:
            logits = TaskHead.forward_many(heads, shared, detach_weights=detach_weights)
        else:
            logits = torch.stack([head(shared) for head in heads])
        (logits * torch.linspace(-1, 1, logits.numel()).reshape(logits.shape)).sum().backward()
        grads = [p.grad.clone() if p.grad is not None else None for head in heads for p in head.parameters()]
        return logits.detach(), shared.grad.clone(), grads

    stacked_logits, stacked_shared_grad, stacked_grads = run(True)
    logits, shared_grad, grads = run(False)
    assert stacked_logits.shape == (5, 12, 3)
    torch.testing.assert_close(stacked_logits, logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(stacked_shared_grad, shared_grad, rtol=0, atol=1e-6)
    for stacked_grad, grad in zip(stacked_grads, grads, strict=True):
        if detach_weights:
            assert stacked_grad is None  # the heads' weights entered as constants
        else:
            torch.testing.assert_close(stacked_grad, grad, rtol=0, atol=1e-6)


def test_stackable_refuses_heads_it_cannot_batch() -> None:
    heads = [TaskHead(16, 2, None, 0.1) for _ in range(3)]
    assert TaskHead.stackable(heads)
    assert not TaskHead.stackable([*heads, TaskHead(16, 3, None, 0.1)])  # another class count
    assert not TaskHead.stackable([*heads, TaskHead(16, 2, 8, 0.1)])  # a hidden layer
    assert not TaskHead.stackable([*heads, TaskHead(16, 2, None, 0.5)])  # another dropout
    assert not TaskHead.stackable([*heads, copy.deepcopy(heads[0]).eval()])  # another mode
    assert not TaskHead.stackable([nn.Sequential(heads[0]), heads[1]])  # a wrapper (e.g. PEFT's modules_to_save)


# ----------------------------------------------------------------------------------------------- task losses


class _PlainLoss(TaskLoss):
    """A user loss without `supports_stacking`: the stacked call must fall back to it, per task."""

    def forward(self, logits, labels):
        return masked_cross_entropy(logits * 0.5, labels)


def _task_losses_case():
    torch.manual_seed(0)
    widths = [2, 2, 3, 2, 3, 2]
    losses = [
        CrossEntropyTaskLoss(2),
        BalancedCrossEntropyLoss(2, [30, 10]),
        CrossEntropyTaskLoss(3),
        _PlainLoss(2),
        BalancedCrossEntropyLoss(3, [5, 0, 20]),
        BalancedCrossEntropyLoss(2, [1, 9]),
    ]
    logits = [torch.randn(10, c, requires_grad=True) for c in widths]
    labels = torch.stack([torch.randint(0, c, (10,)) for c in widths], dim=1)
    labels[:3, 0] = -100
    labels[:, 5] = -100  # a task without a labelled row
    return losses, logits, labels


def test_stacked_task_losses_equal_one_call_per_task() -> None:
    losses, logits, labels = _task_losses_case()
    values, counts = stacked_task_losses(losses, logits, labels)
    expected = [loss(logits[t], labels[:, t]) for t, loss in enumerate(losses)]
    torch.testing.assert_close(values, torch.stack([v for v, _ in expected]), rtol=0, atol=1e-6)
    assert counts.tolist() == [int(c) for _, c in expected] and counts[5] == 0 and values[5] == 0
    grads = torch.autograd.grad(values.sum(), logits)
    expected_grads = torch.autograd.grad(sum(v for v, _ in expected), logits)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)


def test_stacked_task_losses_of_one_class_take_the_single_call_path() -> None:
    torch.manual_seed(0)
    losses = [CrossEntropyTaskLoss(2) for _ in range(4)]
    logits = [torch.randn(6, 2) for _ in range(4)]
    labels = torch.randint(0, 2, (6, 4))
    values, counts = stacked_task_losses(losses, logits, labels)
    expected = torch.stack([masked_cross_entropy(logits[t], labels[:, t])[0] for t in range(4)])
    torch.testing.assert_close(values, expected, rtol=0, atol=1e-6)
    assert counts.tolist() == [6] * 4


# ----------------------------------------------------------------------------------------------- strategies


def _terms(num_tasks: int = 5, micro_batches: int = 2) -> tuple[StackedTaskTerms, list[torch.Tensor]]:
    torch.manual_seed(0)
    leaves = [torch.rand(num_tasks, requires_grad=True) for _ in range(3)]
    accuracy, exact, fairness = leaves
    has_fairness = torch.tensor([True, False, True, True, False][:num_tasks])
    terms = StackedTaskTerms(
        tasks=[f"task{t}" for t in range(num_tasks)],
        accuracy=accuracy * 2,
        exact_accuracy=exact * 2,
        fairness=torch.where(has_fairness, fairness * 3, fairness * 0),
        has_fairness=has_fairness,
        present=torch.tensor([True, True, False, True, True][:num_tasks]),
        micro_batches=micro_batches,
        fairness_weight=torch.tensor([0.1, 2.0, 3.0, 0.0, 1.0][:num_tasks], dtype=torch.float64),
    )
    return terms, leaves


def _strategy(name: str) -> Strategy:
    from hf_fairmtl import FairMTLTrainingArguments

    args = FairMTLTrainingArguments(output_dir="unused", strategy=name, report_to=[], use_cpu=True)
    config = tabular_config(tuple(f"task{t}" for t in range(5)))
    strategy = STRATEGIES.get_class(name)(args, config, {task: ["group"] for task in config.tasks})
    if hasattr(strategy, "set_actions"):
        strategy.set_actions([1, 1, 0, 1, 0])
    return strategy


VECTORISED = [name for name in sorted(STRATEGIES) if "combine_all" in STRATEGIES.get_class(name).__dict__]


def test_the_common_strategies_are_vectorised() -> None:
    assert {"vanilla", "weighted", "greedy", "teacher"} <= set(VECTORISED)


@pytest.mark.parametrize("name", VECTORISED)
def test_combine_all_equals_combine_per_task(name) -> None:
    """A strategy's vector `combine_all` gives the values and gradients of its per-task `combine`."""
    strategy = _strategy(name)
    outputs = {}
    for path in ("vector", "per_task"):
        terms, leaves = _terms()
        if path == "vector":
            objective = strategy.combine_all(terms, batch=None)
        else:
            objective = Strategy.combine_all(strategy, terms, batch=None)
        values = [objective.weighted, objective.unweighted, objective.objective]
        weights = torch.arange(1.0, 16.0).reshape(3, 5)
        total = sum((v * w).sum() for v, w in zip(values, weights, strict=True))
        grads = torch.autograd.grad(total, leaves, allow_unused=True)
        outputs[path] = ([v.detach() for v in values], [g if g is not None else torch.zeros(5) for g in grads])
    for got, expected in zip(sum(outputs["vector"], []), sum(outputs["per_task"], []), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)


def test_a_subclass_combine_wins_over_an_inherited_combine_all() -> None:
    """`proxy_groups` overrides `combine` under `weighted`, whose `combine_all` would skip it."""

    class Halved(WeightedStrategy):
        def combine(self, terms, batch):
            return TaskObjective(terms.exact_accuracy / 2, terms.exact_accuracy.new_zeros(()), terms.accuracy)

    strategy = Halved(_strategy("weighted").args, tabular_config(tuple(f"task{t}" for t in range(5))), {})
    terms, _ = _terms()
    torch.testing.assert_close(strategy.objectives(terms, None).weighted, terms.exact_accuracy / 2)
    plain = _strategy("weighted")
    torch.testing.assert_close(plain.objectives(terms, None).weighted, terms.exact_accuracy)


# ----------------------------------------------------------------------------------------------- weightings


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_weighting_task_losses_take_vectors_or_sequences(name) -> None:
    weighting = WEIGHTINGS.get_class(name)(4)
    weighted, unweighted = torch.rand(4), torch.rand(4)
    present = torch.tensor([True, False, True, True])
    from_vectors = weighting.task_losses(weighted, unweighted, present, 2)
    from_lists = weighting.task_losses(list(weighted.unbind()), list(unweighted.unbind()), present, 2)
    torch.testing.assert_close(torch.stack(list(from_vectors)), torch.stack(list(from_lists)))
    assert len(from_vectors) == 4


@pytest.mark.parametrize("fairness_loss", ["robust_eo", "eps_deo"])
def test_gradnorm_batched_gradient_norms_equal_one_backward_per_task(fairness_loss) -> None:
    """GradNorm's per-task gradient norms at the representation from one batched backward of the stacked `[T]`
    objective (CE and a stacked fairness loss through the heads) equal one backward per task."""
    from hf_fairmtl.losses import build_fairness_loss, stacked_fairness_loss
    from hf_fairmtl.weighting.gradnorm import squared_gradient_norms

    torch.manual_seed(0)
    heads = [TaskHead(16, 2, 8, 0.0) for _ in range(4)]
    shared = torch.randn(24, 16, requires_grad=True)
    labels = torch.randint(0, 2, (24, 4))
    groups = torch.randint(0, 2, (24,))
    logits = TaskHead.forward_many(heads, shared)
    accuracy, _ = stacked_task_losses([CrossEntropyTaskLoss(2)] * 4, list(logits), labels)
    losses = [build_fairness_loss(fairness_loss, num_groups=2).eval() for _ in range(4)]
    objective = accuracy + stacked_fairness_loss(losses, logits, labels.T, groups)
    active = [0, 2, 3]
    batched = squared_gradient_norms(objective, active, shared, torch.zeros(()))
    one_by_one = squared_gradient_norms(list(objective.unbind()), active, shared, torch.zeros(()))
    assert batched.shape == (3,) and (batched > 0).all()
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-8)


def test_teacher_dqn_q_values_and_targets_of_all_tasks_equal_one_call_per_task() -> None:
    """The teacher's DQN computes every task's Q values and TD targets in one trunk call and one batched product
    of the Q heads; equal to one call per task (trained heads, so the values are not the initial zeros)."""
    from hf_fairmtl.teacher.dqn import TaskTeacher, Transition

    torch.manual_seed(0)
    teacher = TaskTeacher([10, 12, 10], state_size=8, hidden_size=16, gradnorm=False)
    for head in teacher.dqn.q_heads:
        nn.init.normal_(head.weight)
        nn.init.normal_(head.bias)
    width = teacher.dqn.input_size
    states = torch.randn(3, width)
    hidden = teacher.dqn.trunk(states)
    per_task = torch.stack([teacher.dqn.q_from_hidden(hidden[t], t) for t in range(3)])
    torch.testing.assert_close(teacher.q_values(states), per_task.detach(), rtol=0, atol=1e-6)
    transitions = [Transition(states[t], torch.randn(2, width), torch.randn(2)) for t in range(3)]
    transitions[1] = None
    targets = teacher.td_targets(transitions)
    for t in (0, 2):
        with torch.no_grad():
            next_q = teacher.dqn(transitions[t].next_states, t)  # one task's heads, one call
        expected = transitions[t].rewards + teacher.gamma * next_q.max(dim=-1).values
        torch.testing.assert_close(targets[t], expected, rtol=0, atol=1e-6)
    assert not targets[1].any()
    result = teacher.update(transitions)
    assert math.isnan(result["td_losses"][1]) and result["targets"][1] is None
    assert all(math.isfinite(result["td_losses"][t]) for t in (0, 2))


def test_teacher_with_every_task_on_accuracy_leaves_the_fairness_losses_out_of_the_graph() -> None:
    strategy = _strategy("teacher")
    strategy.set_actions([0] * 5)
    terms, (accuracy, exact, fairness) = _terms()
    objective = strategy.combine_all(terms, batch=None)
    expected = Strategy.combine_all(strategy, terms, batch=None)
    for name in ("weighted", "unweighted", "objective"):
        torch.testing.assert_close(getattr(objective, name), getattr(expected, name), rtol=0, atol=0)
    total = objective.weighted.sum() + objective.objective.sum()
    assert torch.autograd.grad(total, [fairness], allow_unused=True) == (None,)
