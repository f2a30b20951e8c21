"""Fairness losses: registry, hand-computed values, degenerate batches, optimisation, state."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hf_fairmtl.losses import (
    FAIRNESS_LOSSES,
    FairnessLoss,
    all_reduce_sum,
    build_fairness_loss,
    register_fairness_loss,
)

LOSS_NAMES = ["robust_eo", "eps_deo", "loss_gap_eo", "dp_gap"]
CONDITIONS = ["both", "positive", "negative"]


def binary_logits(probabilities: list[float]) -> torch.Tensor:
    """Logits `[B, 2]` whose softmax gives `p_1 = probabilities[i]`."""
    p = torch.tensor(probabilities, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)


# A tiny binary batch: group 0 and group 1, plus a row without label and a row without group (both ignored).
P1 = [0.8, 0.6, 0.3, 0.5, 0.2, 0.4, 0.9, 0.7]
LABELS = [1, 1, 0, 1, 0, 0, -100, 1]
GROUPS = [0, 0, 0, 1, 1, 1, 0, -1]


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return binary_logits(P1).requires_grad_(), torch.tensor(LABELS), torch.tensor(GROUPS)


def nll(p: float) -> float:
    return -math.log(p)


# ---------------------------------------------------------------------------------------------- registry


def test_registry_has_the_four_losses():
    assert set(LOSS_NAMES) <= set(FAIRNESS_LOSSES)
    for name in LOSS_NAMES:
        loss = build_fairness_loss(name, num_groups=3, num_classes=2)
        assert isinstance(loss, FairnessLoss) and loss.name == name


def test_unknown_name_lists_registered_losses():
    with pytest.raises(ValueError, match="robust_eo"):
        build_fairness_loss("no_such_loss", num_groups=2)


def test_register_custom_loss_and_duplicate_name():
    @register_fairness_loss("test_custom_gap")
    class CustomGap(FairnessLoss):
        def forward(self, logits, labels, groups):
            return logits.sum() * 0

    try:
        assert isinstance(build_fairness_loss("test_custom_gap", num_groups=2), CustomGap)
        with pytest.raises(ValueError, match="already registered"):

            @register_fairness_loss("test_custom_gap")
            class Other(FairnessLoss):
                pass

        with pytest.raises(ValueError, match="already registered"):
            register_fairness_loss("robust_eo")(CustomGap)
    finally:
        FAIRNESS_LOSSES.pop("test_custom_gap")
    with pytest.raises(TypeError):
        register_fairness_loss("not_a_loss")(dict)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_constructor_validation(name):
    with pytest.raises(ValueError, match="conditions"):
        build_fairness_loss(name, num_groups=2, conditions="sideways")
    with pytest.raises(ValueError, match="num_classes"):
        build_fairness_loss(name, num_groups=2, num_classes=1)
    with pytest.raises(ValueError, match="num_groups"):
        build_fairness_loss(name, num_groups=0)
    with pytest.raises(TypeError, match="unexpected"):
        build_fairness_loss(name, num_groups=2, not_an_option=1)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_input_validation(name):
    loss = build_fairness_loss(name, num_groups=2)
    logits = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="Group id 2 is out of range"):
        loss(logits, torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="outside"):
        loss(logits, torch.tensor([0, 5, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="shape"):
        loss(torch.zeros(3, 3), torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="shape"):
        loss(logits, torch.tensor([[0, 1, 1]]), torch.tensor([0, 1, 1]))


def test_all_reduce_sum_is_identity_without_distributed():
    t = torch.ones(3, requires_grad=True)
    assert all_reduce_sum(t) is t


# ----------------------------------------------------------------------------------- hand-computed values


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        # positives: g0 mean(-ln .8, -ln .6), g1 -ln .5; negatives: g0 -ln .7, g1 mean(-ln .8, -ln .6)
        ("both", max((nll(0.8) + nll(0.6)) / 2, nll(0.5)) + max(nll(0.7), (nll(0.8) + nll(0.6)) / 2)),
        ("positive", max((nll(0.8) + nll(0.6)) / 2, nll(0.5))),
        ("negative", max(nll(0.7), (nll(0.8) + nll(0.6)) / 2)),
    ],
)
def test_robust_eo_by_hand(conditions, expected):
    loss = build_fairness_loss("robust_eo", num_groups=2, conditions=conditions)
    assert loss(*tiny_batch()).item() == pytest.approx(expected, rel=1e-9)


def test_robust_eo_multiclass_by_hand():
    # 3 classes, 2 groups; one-vs-rest per class, averaged over classes.
    probs = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]]
    labels, groups = [0, 1, 2, 0], [0, 0, 1, 1]
    loss = build_fairness_loss("robust_eo", num_groups=2, num_classes=3)
    value = loss(torch.tensor(probs, dtype=torch.float64).log(), torch.tensor(labels), torch.tensor(groups))
    # class 0: positives g0 -ln .7, g1 -ln .5 -> max -ln .5; negatives g0 -ln(1-.1), g1 -ln(1-.2) -> -ln .8
    # class 1: positives only g0 -ln .6; negatives g0 -ln(1-.2), g1 mean(-ln .8, -ln .7) -> max of those
    # class 2: positives only g1 -ln .6; negatives g0 mean(-ln .9, -ln .7), g1 -ln .8
    class0 = nll(0.5) + nll(0.8)
    class1 = nll(0.6) + max(nll(0.8), (nll(0.8) + nll(0.7)) / 2)
    class2 = nll(0.6) + max((nll(0.9) + nll(0.7)) / 2, nll(0.8))
    assert value.item() == pytest.approx((class0 + class1 + class2) / 3, rel=1e-9)


def test_eps_deo_by_hand_first_batch():
    alpha = 0.1
    tpr0, tpr1 = (0.8 + 0.6 + alpha / 2) / (2 + alpha), (0.5 + alpha / 2) / (1 + alpha)
    fpr0, fpr1 = (0.3 + alpha / 2) / (1 + alpha), (0.2 + 0.4 + alpha / 2) / (2 + alpha)
    epsilon = abs(math.log(tpr0 / tpr1)) + abs(math.log(fpr0 / fpr1))
    loss = build_fairness_loss("eps_deo", num_groups=2, target_epsilon=0.5).double()
    value = loss(*tiny_batch())
    # First batch: the bias-corrected running estimate is the batch itself.
    assert value.item() == pytest.approx(max(0.0, epsilon - 0.5), rel=1e-9)
    assert loss.epsilon.item() == pytest.approx(epsilon, rel=1e-9)
    high = build_fairness_loss("eps_deo", num_groups=2, target_epsilon=10.0)
    assert high(*tiny_batch()).item() == 0.0  # below the hinge point
    positive = build_fairness_loss("eps_deo", num_groups=2, conditions="positive").double()
    assert positive(*tiny_batch()).item() == pytest.approx(abs(math.log(tpr0 / tpr1)), rel=1e-9)


def test_eps_deo_by_hand_running_estimate():
    """Second batch: EMA (ρ = 0.25) with bias correction; the first batch enters as a constant."""
    alpha, rho = 0.1, 0.25
    loss = build_fairness_loss("eps_deo", num_groups=2, rho=rho).double()
    loss(*tiny_batch())
    # Batch 2: group 0 one positive (p=.9) and one negative (p=.5); group 1 one positive (p=.3), one negative (p=.1).
    logits2 = binary_logits([0.9, 0.5, 0.3, 0.1]).requires_grad_()
    value = loss(logits2, torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1]))
    correction = 1 - (1 - rho) ** 2

    def estimate(first: float, second: float) -> float:  # m_2 = (1-ρ)·ρ·x_1 + ρ·x_2, bias-corrected
        return ((1 - rho) * rho * first + rho * second) / correction

    def rate(soft1, count1, soft2, count2):
        return (estimate(soft1, soft2) + alpha / 2) / (estimate(count1, count2) + alpha)

    tpr0, tpr1 = rate(1.4, 2, 0.9, 1), rate(0.5, 1, 0.3, 1)
    fpr0, fpr1 = rate(0.3, 1, 0.5, 1), rate(0.6, 2, 0.1, 1)
    assert value.item() == pytest.approx(abs(math.log(tpr0 / tpr1)) + abs(math.log(fpr0 / fpr1)), rel=1e-9)
    assert loss.num_updates.item() == 2
    value.backward()
    assert logits2.grad is not None and logits2.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ("both", None),
        ("positive", "class1"),
        ("negative", "class0"),
    ],
)
def test_loss_gap_eo_by_hand(conditions, expected):
    class1_g0, class1_g1 = (nll(0.8) + nll(0.6)) / 2, nll(0.5)
    class1 = (nll(0.8) + nll(0.6) + nll(0.5)) / 3
    class0_g0, class0_g1 = nll(0.7), (nll(0.8) + nll(0.6)) / 2
    class0 = (nll(0.7) + nll(0.8) + nll(0.6)) / 3
    terms = {
        "class1": abs(class1_g0 - class1) + abs(class1_g1 - class1),
        "class0": abs(class0_g0 - class0) + abs(class0_g1 - class0),
    }
    want = terms["class1"] + terms["class0"] if expected is None else terms[expected]
    loss = build_fairness_loss("loss_gap_eo", num_groups=2, conditions=conditions)
    assert loss(*tiny_batch()).item() == pytest.approx(want, rel=1e-9)


def test_dp_gap_by_hand_binary_and_multiclass():
    loss = build_fairness_loss("dp_gap", num_groups=2)
    # Only labelled rows with a group: g0 (.8, .6, .3), g1 (.5, .2, .4).
    assert loss(*tiny_batch()).item() == pytest.approx((0.8 + 0.6 + 0.3) / 3 - (0.5 + 0.2 + 0.4) / 3, rel=1e-9)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]], dtype=torch.float64)
    multi = build_fairness_loss("dp_gap", num_groups=2, num_classes=3)
    value = multi(probs.log(), torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]))
    # group means: g0 (.4, .4, .2), g1 (.2, .2, .6); per-class gaps .2, .2, .4; mean over classes.
    assert value.item() == pytest.approx((0.2 + 0.2 + 0.4) / 3, rel=1e-9)


def test_half_precision_logits_are_upcast():
    logits, labels, groups = tiny_batch()
    for name in LOSS_NAMES:
        value = build_fairness_loss(name, num_groups=2)(logits.detach().bfloat16().requires_grad_(), labels, groups)
        assert value.dtype == torch.float32 and torch.isfinite(value)


# -------------------------------------------------------------------------------------- degenerate batches

DEGENERATE = {
    "one_group": ([1, 0, 1, 0], [1, 1, 1, -1]),
    "no_group": ([1, 0, 1, 0], [-1, -1, -1, -1]),
    "all_masked": ([-100, -100, -100, -100], [0, 1, 0, 1]),
    "no_positives": ([0, 0, 0, 0], [0, 1, 0, 1]),
    "empty": ([], []),
}


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("conditions", CONDITIONS)
@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_degenerate_batches_are_finite_with_a_graph(name, case, conditions, num_classes):
    labels, groups = DEGENERATE[case]
    torch.manual_seed(0)
    logits = (5 * torch.randn(len(labels), num_classes)).requires_grad_()
    loss = build_fairness_loss(name, num_groups=2, num_classes=num_classes, conditions=conditions)
    value = loss(logits, torch.tensor(labels, dtype=torch.long), torch.tensor(groups, dtype=torch.long))
    assert value.dim() == 0 and torch.isfinite(value)
    assert value.requires_grad  # a trainer can always add it to the task loss and call backward
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    if case != "no_positives":
        assert value.item() == 0.0
        assert (logits.grad == 0).all()


def test_extreme_logits_stay_finite():
    logits = torch.tensor([[0.0, 200.0], [0.0, -200.0], [0.0, 200.0], [0.0, -200.0]], requires_grad=True)
    for name in LOSS_NAMES:
        value = build_fairness_loss(name, num_groups=2)(logits, torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 1]))
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(value) and torch.isfinite(grad).all(), name


# ---------------------------------------------------------------------------------------------- optimisation


def soft_gaps(logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> dict[str, float]:
    """Soft TPR/FPR/selection-rate gaps between groups 0 and 1 (the quantities the losses target)."""
    p = torch.softmax(logits, dim=-1)[:, 1]

    def gap(mask: torch.Tensor) -> float:
        return abs(p[mask & (groups == 0)].mean() - p[mask & (groups == 1)].mean()).item()

    everyone = torch.ones_like(labels, dtype=torch.bool)
    return {"eo": gap(labels == 1) + gap(labels == 0), "dp": gap(everyone)}


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradient_descent_shrinks_the_gap(name):
    """Group 0 is predicted well, group 1 badly (and with a lower selection rate): the loss alone must fix it."""
    torch.manual_seed(0)
    n = 40
    labels = torch.tensor([1, 0] * n)
    groups = torch.tensor([0] * n + [1] * n)
    p1 = torch.where(groups == 0, torch.where(labels == 1, 0.9, 0.2), torch.where(labels == 1, 0.3, 0.05))
    p1 = (p1 + 0.02 * torch.randn(2 * n)).clamp(0.01, 0.99)
    logits = torch.stack([torch.zeros(2 * n), torch.log(p1 / (1 - p1))], dim=1).requires_grad_()
    loss = build_fairness_loss(name, num_groups=2)
    target = "dp" if name == "dp_gap" else "eo"
    before = soft_gaps(logits.detach(), labels, groups)[target]
    optimizer = torch.optim.SGD([logits], lr=5.0 if name != "robust_eo" else 50.0)
    for _ in range(150):
        optimizer.zero_grad()
        loss(logits, labels, groups).backward()
        optimizer.step()
    after = soft_gaps(logits.detach(), labels, groups)[target]
    assert before > 0.3
    assert after < 0.5 * before, (name, before, after)


# ------------------------------------------------------------------------------------------ eps_deo state


def test_eps_deo_state_dict_round_trip():
    torch.manual_seed(0)
    loss = build_fairness_loss("eps_deo", num_groups=3, num_classes=3)
    for _ in range(3):
        loss(torch.randn(16, 3), torch.randint(0, 3, (16,)), torch.randint(-1, 3, (16,)))
    state = loss.state_dict()
    assert {"running_soft_sums", "running_counts", "num_updates"} <= set(state)
    assert "epsilon" not in state  # a logging value, not state to resume
    assert state["num_updates"].item() == 3 and state["running_counts"].sum() > 0

    restored = build_fairness_loss("eps_deo", num_groups=3, num_classes=3)
    restored.load_state_dict(state)
    for key, value in state.items():
        assert torch.equal(restored.state_dict()[key], value)
    batch = (torch.randn(16, 3), torch.randint(0, 3, (16,)), torch.randint(0, 3, (16,)))
    assert torch.equal(loss(*batch), restored(*batch))
    # Shapes follow num_groups / num_classes, so a mismatched checkpoint fails loudly.
    with pytest.raises(RuntimeError):
        build_fairness_loss("eps_deo", num_groups=2, num_classes=3).load_state_dict(state)


def test_eps_deo_eval_mode_freezes_estimates():
    loss = build_fairness_loss("eps_deo", num_groups=2)
    loss(*tiny_batch())
    snapshot = {key: value.clone() for key, value in loss.state_dict().items()}
    loss.eval()
    logits, labels, groups = tiny_batch()
    loss(logits.detach() * 3, labels, groups)
    for key, value in loss.state_dict().items():
        assert torch.equal(value, snapshot[key])
    # A batch without usable rows leaves the estimates (and ε) untouched in training mode too.
    loss.train()
    epsilon = loss.epsilon.clone()
    assert loss(logits, torch.full_like(labels, -100), groups).item() == 0.0
    assert loss.num_updates.item() == 1 and torch.equal(loss.epsilon, epsilon)
    loss.reset_estimates()
    assert loss.num_updates.item() == 0 and loss.running_counts.sum() == 0


def test_eps_deo_single_group_batch_uses_running_estimates():
    """After both groups were seen, a one-group batch still pulls its rates towards the other group's."""
    loss = build_fairness_loss("eps_deo", num_groups=2)
    loss(*tiny_batch())
    logits = binary_logits([0.9, 0.1]).requires_grad_()
    value = loss(logits, torch.tensor([1, 0]), torch.tensor([0, 0]))
    value.backward()
    assert value.item() > 0 and logits.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- stacking


def stacked_inputs(num_tasks: int, num_classes: int, num_groups: int, soft: bool, seed: int):
    """Random stacked task batches with missing labels, unknown groups, and one task without any label."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_tasks, 24, num_classes, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, num_classes, (num_tasks, 24), generator=generator)
    labels[torch.rand(num_tasks, 24, generator=generator) < 0.3] = -100
    labels[-1] = -100  # a task absent from the batch
    if soft:
        groups = torch.rand(24, num_groups, dtype=torch.float64, generator=generator)
        groups[:3] = 0.0  # unknown rows
    else:
        groups = torch.randint(-1, num_groups, (24,), generator=generator)
    return logits.requires_grad_(), labels, groups


@pytest.mark.parametrize("soft", [False, True], ids=["ids", "soft"])
@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("conditions", CONDITIONS)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_stacked_losses_equal_one_call_per_task(name, conditions, num_classes, soft):
    """One stacked call over T tasks gives each task's value, gradient and running state of T separate calls."""
    from hf_fairmtl.losses import stacked_fairness_loss

    assert FAIRNESS_LOSSES[name].supports_stacking
    separate = [build_fairness_loss(name, 3, num_classes, conditions=conditions) for _ in range(4)]
    stacked = [build_fairness_loss(name, 3, num_classes, conditions=conditions) for _ in range(4)]
    for step in range(3):  # several steps: eps_deo's running estimates must stay per task
        logits, labels, groups = stacked_inputs(4, num_classes, 3, soft, seed=step)
        expected = torch.stack([loss(logits[t], labels[t], groups) for t, loss in enumerate(separate)])
        (expected_grad,) = torch.autograd.grad(expected.sum(), logits)
        values = stacked_fairness_loss(stacked, logits, labels, groups)
        (grad,) = torch.autograd.grad(values.sum(), logits)
        assert values.shape == (4,)
        torch.testing.assert_close(values, expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)
        assert values[-1].item() == 0.0  # the task without labels
    for one, other in zip(separate, stacked, strict=True):
        for key, value in one.state_dict().items():
            torch.testing.assert_close(other.state_dict()[key], value)


def test_losses_that_cannot_stack_run_one_call_per_task():
    """A user loss without `supports_stacking` (and losses of different settings) fall back to separate calls."""
    from hf_fairmtl.losses import stacked_fairness_loss

    calls = []

    class CountingLoss(FairnessLoss):
        def forward(self, logits, labels, groups):
            calls.append(logits.shape)
            return logits.sum() * 0.0 + len(calls)

    logits, labels, groups = stacked_inputs(3, 2, 2, soft=False, seed=0)
    values = stacked_fairness_loss([CountingLoss(2) for _ in range(3)], logits, labels, groups)
    assert calls == [torch.Size([24, 2])] * 3 and values.tolist() == [1.0, 2.0, 3.0]
    mixed = [build_fairness_loss("eps_deo", 2, target_epsilon=0.0), build_fairness_loss("eps_deo", 2, target_epsilon=5)]
    copies = copy.deepcopy(mixed)
    values = stacked_fairness_loss(mixed, logits[:2], labels[:2], groups)
    torch.testing.assert_close(values, torch.stack([copies[t](logits[t], labels[t], groups) for t in range(2)]))


def test_stacked_logits_on_one_stateful_instance_are_refused():
    logits, labels, groups = stacked_inputs(2, 2, 2, soft=False, seed=0)
    with pytest.raises(ValueError, match="forward_stacked"):
        build_fairness_loss("eps_deo", num_groups=2)(logits, labels, groups)
    with pytest.raises(ValueError, match=r"labels must have shape \[2, 24\]"):
        build_fairness_loss("robust_eo", num_groups=2)(logits, labels[0], groups)
