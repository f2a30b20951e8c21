"""`balanced`: group × label weights, counts from data or running, the gap it targets, degenerate batches, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_fairmtl import FairMTLModel
from hf_fairmtl.strategies import STRATEGIES
from hf_fairmtl.strategies.balanced import balance_weights, group_label_counts
from hf_fairmtl.trainer import FairMTLTrainer

from .synthetic import NUM_FEATURES, biased_rows, tabular_config
from .test_adversarial import degenerate_rows
from .test_trainer import make_args, straight_and_resumed, train_tabular


def test_registered_with_card_metadata() -> None:
    cls = STRATEGIES.get_class("balanced")
    assert cls.title and cls.description and "han2022" in cls.citation


def test_weights_balance_groups_within_labels_and_keep_mean_one() -> None:
    counts = torch.tensor([[30.0, 10.0], [10.0, 30.0]])  # [group, label]
    both = balance_weights(counts, "both")
    torch.testing.assert_close(both, torch.tensor([[40 / 60, 2.0], [2.0, 40 / 60]]))
    # Within each label every group carries the same total weight, and the mean weight is 1.
    torch.testing.assert_close((both * counts).sum(0), torch.tensor([40.0, 40.0]))
    for condition in ("both", "positive", "joint"):
        weights = balance_weights(counts, condition)
        assert float((weights * counts).sum() / counts.sum()) == pytest.approx(1.0)
    positive = balance_weights(counts, "positive")
    torch.testing.assert_close(positive[:, 0], torch.ones(2))
    torch.testing.assert_close(positive[:, 1], both[:, 1])
    torch.testing.assert_close(balance_weights(counts, "joint"), 80 / (4 * counts))
    # An empty cell gets weight 0 and no division by zero.
    sparse = balance_weights(torch.tensor([[5.0, 0.0], [5.0, 5.0]]), "both")
    assert torch.isfinite(sparse).all() and sparse[0, 1] == 0 and sparse[1, 1] == 1


def test_counts_skip_unlabelled_and_unknown_rows() -> None:
    labels = torch.tensor([0, 1, 1, -100, 1])
    groups = torch.tensor([0, 0, 1, 1, -1])
    torch.testing.assert_close(
        group_label_counts(labels, groups, 2, 2), torch.tensor([[1.0, 1.0], [0.0, 1.0]]).double()
    )


def selection_biased_rows(num_rows: int, seed: int) -> list[dict]:
    """The label depends on a latent signal only; the group is drawn *given the label* (80/20), and leaks through
    feature 0. Balanced weights make the group independent of the label, so a balanced model has no use for it."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=num_rows)
    labels = (latent + rng.normal(scale=0.8, size=num_rows) > 0).astype(int)
    groups = (rng.random(num_rows) < np.where(labels == 1, 0.8, 0.2)).astype(int)
    features = rng.normal(size=(num_rows, NUM_FEATURES)) * 0.3
    features[:, 0] = groups + rng.normal(scale=0.2, size=num_rows)
    features[:, 1] += latent
    return [
        {
            "features": features[i].astype(np.float32).tolist(),
            "labels": [int(labels[i]), -100],
            "group_labels": [int(g)],
        }
        for i, g in enumerate(groups)
    ]


@pytest.mark.parametrize("condition", ["both", "positive"])
def test_balanced_lowers_the_gap_it_targets(condition: str, tmp_path) -> None:
    """EO variant: the EO violation falls; equal-opportunity variant: the TPR gap falls."""
    train = Dataset.from_list(selection_biased_rows(1500, seed=0))
    heldout = Dataset.from_list(selection_biased_rows(800, seed=1))
    key = "eval_target_group_eo_violation" if condition == "both" else "eval_target_group_tpr_gap"
    gaps = {}
    for strategy in ("vanilla", "balanced"):
        trainer = train_tabular(
            tmp_path / strategy, train, strategy=strategy, balanced_condition=condition, num_train_epochs=4
        )
        metrics = trainer.evaluate(heldout)
        gaps[strategy] = (metrics[key], metrics["eval_target_balanced_accuracy"])
    assert gaps["balanced"][0] <= 0.6 * gaps["vanilla"][0], gaps
    assert gaps["balanced"][1] >= 0.6, gaps


def test_rows_without_groups_train_exactly_like_vanilla(tmp_path) -> None:
    train = Dataset.from_list(biased_rows(128, seed=3, with_groups=False))
    runs = {s: train_tabular(tmp_path / s, train, strategy=s, max_steps=4) for s in ("vanilla", "balanced")}
    for (name, a), b in zip(runs["vanilla"].model.named_parameters(), runs["balanced"].model.parameters(), strict=True):
        torch.testing.assert_close(b, a, msg=name)


def test_running_counts_reach_the_dataset_counts_after_one_epoch(tmp_path) -> None:
    train = Dataset.from_list(biased_rows(96, seed=4))
    dataset = train_tabular(tmp_path / "d", train, strategy="balanced", max_steps=1)
    running = train_tabular(tmp_path / "r", train, strategy="balanced", balanced_counts="running", num_train_epochs=1)
    assert dataset.strategy.counts.keys() == running.strategy.counts.keys()
    for key, counts in dataset.strategy.counts.items():
        torch.testing.assert_close(running.strategy.counts[key], counts)
        assert counts.sum() == 96


@pytest.mark.parametrize("counts", ["dataset", "running"])
def test_finite_on_degenerate_batches(counts: str, tmp_path) -> None:
    trainer = train_tabular(
        tmp_path,
        Dataset.from_list(degenerate_rows()),
        strategy="balanced",
        balanced_counts=counts,
        gradnorm=True,
        per_device_train_batch_size=16,
        num_train_epochs=2,
        logging_steps=1,
        train_sampling_strategy="sequential",
    )
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(math.isfinite(entry["loss"]) for entry in logs)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_resume_restores_running_counts_exactly(tmp_path) -> None:
    train = Dataset.from_list(biased_rows(320, seed=5))
    overrides = {
        "strategy": "balanced",
        "balanced_counts": "running",
        "balanced_condition": "joint",
        "weighting": "gradnorm",
        "max_steps": 12,
        "per_device_train_batch_size": 16,
        "save_strategy": "steps",
        "save_steps": 6,
    }
    straight, resumed = straight_and_resumed(tmp_path, train, 6, **overrides)
    torch.testing.assert_close(resumed.strategy.counts, straight.strategy.counts)


def test_dataset_counts_need_the_label_columns(tmp_path) -> None:
    class Streamed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> dict:
            return biased_rows(4, seed=0)[index]

    with pytest.raises(ValueError, match="balanced_counts='running'"):
        FairMTLTrainer(
            model=FairMTLModel(tabular_config()),
            args=make_args(tmp_path, strategy="balanced"),
            train_dataset=Streamed(),
        )
