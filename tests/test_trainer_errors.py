"""Bad trainer settings and broken checkpoints are refused with a message naming the setting or file."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from hf_fairmtl import FairMTLModel
from hf_fairmtl.trainer import STATE_FILE, FairMTLTrainer

from .synthetic import biased_rows, tabular_config
from .test_trainer import make_args, train_tabular


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("fairness_weight", -1.0),
        ("fairness_weight", math.nan),
        ("fairness_weight", math.inf),
        ("fairness_weight", '{"target": -3}'),
        ("gradnorm_alpha", -0.5),
        ("teacher_epsilon", 1.5),
        ("teacher_lr", 1e6),
        ("teacher_heldout_size", 0),
        ("teacher_interval", 0),
    ],
)
def test_bad_settings_are_refused_by_name(setting: str, value, tmp_path) -> None:
    with pytest.raises(ValueError, match=f"`{setting}`"):
        make_args(tmp_path, **{setting: value})


def test_unknown_strategy_suggests_the_close_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="did you mean 'weighted'"):
        make_args(tmp_path, strategy="wieghted")


def test_evaluate_without_group_labels_still_reports_accuracy_and_loss(tmp_path) -> None:
    train = Dataset.from_list(biased_rows(64, seed=1))
    heldout = Dataset.from_list(biased_rows(64, seed=2)).remove_columns("group_labels")
    trainer = train_tabular(tmp_path, train, max_steps=2)
    metrics = trainer.evaluate(heldout)
    assert "eval_loss" in metrics and "eval_target_accuracy" in metrics
    # The losses logged per task are in the returned dict too, not only in the log.
    assert "eval_target_accuracy_loss" in metrics


def test_a_task_absent_from_a_batch_does_not_drag_its_logged_loss_to_zero(tmp_path) -> None:
    rows = biased_rows(64, seed=3, label_tasks=("auxiliary",))  # the target has no label in any batch
    rows += biased_rows(64, seed=4)
    trainer = train_tabular(
        tmp_path,
        Dataset.from_list(rows),
        max_steps=8,
        logging_steps=8,
        per_device_train_batch_size=16,
        train_sampling_strategy="sequential",  # batches 1-4 have no target label at all
    )
    logged = next(entry for entry in trainer.state.log_history if "target_accuracy_loss" in entry)
    # Half the batches have no target label: a mean with zeros for them would be about half the real loss.
    assert logged["target_accuracy_loss"] > 0.5


def checkpoint(tmp_path, **overrides) -> str:
    train = Dataset.from_list(biased_rows(128, seed=5))
    train_tabular(tmp_path / "run", train, max_steps=4, save_strategy="steps", save_steps=4, **overrides)
    return str(tmp_path / "run" / "checkpoint-4")


def resume(tmp_path, folder: str, **overrides) -> None:
    train = Dataset.from_list(biased_rows(128, seed=5))
    trainer = FairMTLTrainer(
        model=FairMTLModel(tabular_config()),
        args=make_args(tmp_path / "resumed", max_steps=6, save_strategy="no", **overrides),
        train_dataset=train,
    )
    trainer.train(resume_from_checkpoint=folder)


def test_resuming_with_another_strategy_or_loss_names_the_setting(tmp_path) -> None:
    folder = checkpoint(tmp_path, strategy="weighted", fairness_loss="eps_deo")
    with pytest.raises(ValueError, match="strategy='weighted'"):
        resume(tmp_path, folder, strategy="greedy", fairness_loss="eps_deo")
    with pytest.raises(ValueError, match="fairness_loss='eps_deo'"):
        resume(tmp_path, folder, strategy="weighted", fairness_loss="robust_eo")


def test_corrupt_state_file_and_missing_optimizer_are_named(tmp_path) -> None:
    import os

    folder = checkpoint(tmp_path, strategy="weighted")
    state_file = os.path.join(folder, STATE_FILE)
    with open(state_file, "wb") as handle:
        handle.write(b"not a checkpoint")
    with pytest.raises(ValueError, match=STATE_FILE):
        resume(tmp_path, folder, strategy="weighted")
    os.remove(os.path.join(folder, "optimizer.pt"))
    with pytest.raises(FileNotFoundError, match="optimizer.pt"):
        resume(tmp_path, folder, strategy="weighted")


def test_nan_free_training_with_zero_fairness_weight(tmp_path) -> None:
    trainer = train_tabular(tmp_path, Dataset.from_list(biased_rows(64, seed=6)), strategy="weighted",
                            fairness_weight=0.0, max_steps=3)  # fmt: skip
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
