"""Task-loss registry: cross-entropy, class-balanced cross-entropy, class counts, and non-collapse in training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.losses.task_losses import (
    TASK_LOSSES,
    BalancedCrossEntropyLoss,
    TaskLoss,
    build_task_losses,
    class_counts,
    default_task_losses,
    register_task_loss,
    resolve_task_loss_names,
)
from hf_fairmtl.modeling_fairmtl import masked_cross_entropy


def test_registry_lists_both_losses_with_metadata():
    assert {"cross_entropy", "balanced"} <= set(TASK_LOSSES)
    for name in ("cross_entropy", "balanced"):
        cls = TASK_LOSSES[name]
        assert cls.name == name and cls.title and cls.description


def test_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_task_loss("balanced")
        class Other(TaskLoss):
            pass


def test_cross_entropy_is_the_models_masked_cross_entropy():
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 2, -100, 1, 1, -100])
    loss, count = TASK_LOSSES["cross_entropy"](3)(logits, labels)
    expected, expected_count = masked_cross_entropy(logits, labels)
    assert torch.equal(loss, expected) and int(count) == int(expected_count) == 4


def test_balanced_loss_equals_hand_computation_on_an_imbalanced_batch():
    counts = [90, 10]  # w_0 = 100 / (2 · 90), w_1 = 100 / (2 · 10)
    loss_fn = BalancedCrossEntropyLoss(2, counts)
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [1.0, 1.5], [-0.2, 0.4], [3.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, -100, 1])
    loss, count = loss_fn(logits, labels)
    weights = {0: 100 / 180, 1: 100 / 20}
    terms = []
    for row, label in enumerate(labels.tolist()):
        if label == -100:
            continue
        log_p = logits[row].detach().double().log_softmax(-1)[label].item()
        terms.append(-weights[label] * log_p)
    assert int(count) == 4
    assert math.isclose(loss.item(), sum(terms) / 4, rel_tol=1e-6)
    loss.backward()
    assert torch.all(logits.grad[3] == 0)  # the unlabelled row gets no gradient


def test_balanced_loss_sum_count_form_is_exact_over_micro_batches():
    """Σ (loss · count) over micro-batches / total count = the loss of the whole batch (the trainer's rule)."""
    torch.manual_seed(0)
    loss_fn = BalancedCrossEntropyLoss(3, [50, 30, 20])
    logits, labels = torch.randn(12, 3), torch.tensor([0, 1, 2, -100, 0, 0, 1, -100, 2, 0, 1, 0])
    whole, whole_count = loss_fn(logits, labels)
    parts = [loss_fn(logits[i : i + 4], labels[i : i + 4]) for i in range(0, 12, 4)]
    merged = sum(loss * count for loss, count in parts) / sum(count for _, count in parts)
    assert torch.allclose(merged, whole) and int(whole_count) == 10


def test_balanced_loss_without_labels_is_zero_with_a_graph():
    logits = torch.randn(3, 2, requires_grad=True)
    loss, count = BalancedCrossEntropyLoss(2, [5, 5])(logits, torch.full((3,), -100))
    assert loss.item() == 0.0 and int(count) == 0
    loss.backward()


def test_balanced_weights_skip_a_class_absent_from_training():
    loss_fn = BalancedCrossEntropyLoss(3, [30, 0, 10])
    assert torch.allclose(loss_fn.class_weights, torch.tensor([40 / 60, 0.0, 40 / 20]))


@pytest.mark.parametrize(
    ("counts", "match"),
    [(None, "class_counts"), ([1, 2, 3], "2 non-negative"), ([0, 0], "no labelled training row")],
)
def test_balanced_loss_errors(counts, match):
    with pytest.raises(ValueError, match=match):
        BalancedCrossEntropyLoss(2, counts)


def _config() -> FairMTLConfig:
    return FairMTLConfig(
        tasks=["rare", "common"], num_labels={"rare": 2, "common": 3}, num_features=4, tabular_hidden_sizes=[8]
    )


def test_class_counts_from_the_labels_column():
    dataset = Dataset.from_dict({"labels": [[0, 2], [1, -100], [0, 0], [-100, 2], [0, 1]]})
    assert class_counts(dataset, _config()) == {"rare": [3, 1], "common": [1, 1, 2]}
    with pytest.raises(ValueError, match="labels"):
        class_counts(Dataset.from_dict({"label": [0]}), _config())
    with pytest.raises(ValueError, match="outside"):
        class_counts(Dataset.from_dict({"labels": [[2, 0]]}), _config())


def test_settings_resolve_per_task_and_errors_name_the_setting():
    config = _config()
    assert resolve_task_loss_names("balanced", config) == {"rare": "balanced", "common": "balanced"}
    assert resolve_task_loss_names({"rare": "balanced"}, config) == {"rare": "balanced", "common": "cross_entropy"}
    with pytest.raises(ValueError, match="task_loss 'balancd'.*did you mean 'balanced'"):
        resolve_task_loss_names("balancd", config)
    with pytest.raises(ValueError, match="unknown task"):
        resolve_task_loss_names({"income": "balanced"}, config)
    with pytest.raises(ValueError, match="needs training label counts"):
        build_task_losses(config, "balanced")
    losses = build_task_losses(config, {"rare": "balanced"}, {"rare": [9, 1], "common": [1, 1, 1]})
    assert isinstance(losses["rare"], BalancedCrossEntropyLoss) and losses["common"].name == "cross_entropy"
    assert default_task_losses({"rare": [9, 1], "common": [4, 3, 3]}) == {"rare": "balanced", "common": "cross_entropy"}


def _imbalanced_rows(num_rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """~10 % positives; the positives are separable only through a weak feature shift."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(num_rows) < 0.1).astype(np.int64)
    features = rng.normal(size=(num_rows, 4)) + labels[:, None] * np.array([1.2, 0.8, 0.0, 0.0])
    return torch.tensor(features, dtype=torch.float32), torch.tensor(labels)


def _train(loss_name: str, seed: int = 0, steps: int = 60) -> float:
    """Train a tiny tabular FairMTLModel with the task loss; return the test share of predicted positives."""
    torch.manual_seed(seed)
    config = FairMTLConfig(tasks=["rare"], num_features=4, tabular_hidden_sizes=[16], classifier_dropout=0.0)
    model = FairMTLModel(config)
    features, labels = _imbalanced_rows(2000, seed)
    loss_fn = build_task_losses(config, loss_name, {"rare": np.bincount(labels.numpy(), minlength=2).tolist()})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        batch = slice((step * 128) % 1920, (step * 128) % 1920 + 128)
        loss, _ = loss_fn["rare"](model(features=features[batch]).logits[0], labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_features, _ = _imbalanced_rows(1000, seed + 1)
    with torch.no_grad():
        predicted = model(features=test_features).logits[0].argmax(-1)
    return float(predicted.float().mean())


def test_balanced_does_not_collapse_where_cross_entropy_does():
    """On 90/10 data cross-entropy predicts the majority class on ≥ 95 % of rows; balanced does not."""
    assert _train("cross_entropy") < 0.05
    assert 0.1 < _train("balanced") < 0.9
