"""The contract every registered strategy, task weighting and fairness loss meets (cases: tests/contract_cases.py).

Each trains a few steps on a tiny tabular model without a NaN, logs finite per-task losses, and resumes from a
mid-run checkpoint to exactly the parameters and plug-in state of a straight run; 2 gloo processes train
like 1 (tests/distributed/contract_ddp.py).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from hf_fairmtl import FairMTLModel
from hf_fairmtl.trainer import FairMTLTrainer

from .contract_cases import contract_cases
from .launching import accelerate_launch, run_processes
from .synthetic import biased_rows, tabular_config
from .test_trainer import make_args

CASES = contract_cases()
IDS = [case_id for case_id, _ in CASES]
STEPS = 8


def contract_trainer(folder: Path, overrides: dict, train: Dataset, heldout: Dataset, **extra) -> FairMTLTrainer:
    torch.manual_seed(0)
    args = make_args(
        folder,
        max_steps=STEPS,
        per_device_train_batch_size=16,
        logging_steps=2,
        teacher_interval=2,
        teacher_heldout_size=32,
        **{**overrides, **extra},
    )
    return FairMTLTrainer(model=FairMTLModel(tabular_config()), args=args, train_dataset=train, eval_dataset=heldout)


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, Dataset]:
    return Dataset.from_list(biased_rows(256, seed=21)), Dataset.from_list(biased_rows(64, seed=22))


@pytest.mark.parametrize("overrides", [case for _, case in CASES], ids=IDS)
def test_trains_without_nan_and_resumes_exactly(overrides: dict, data, tmp_path) -> None:
    train, heldout = data
    straight = contract_trainer(tmp_path / "straight", overrides, train, heldout, save_strategy="steps", save_steps=4)
    straight.train()
    logs = [entry for entry in straight.state.log_history if "loss" in entry]
    assert logs and all(math.isfinite(entry["loss"]) for entry in logs)
    assert all(math.isfinite(entry["target_accuracy_loss"]) for entry in logs)
    assert all(torch.isfinite(p).all() for p in straight.model.parameters())

    torch.manual_seed(123)  # resuming must not depend on the ambient RNG
    resumed = contract_trainer(tmp_path / "resumed", overrides, train, heldout, save_strategy="steps", save_steps=4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "straight" / "checkpoint-4"))
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    assert_same_state(resumed.weighting.state_dict(), straight.weighting.state_dict())
    assert_same_state(resumed.strategy.state_dict(), straight.strategy.state_dict())


def assert_same_state(actual, expected, where: str = "state") -> None:
    """Tensors close, everything else (names, settings) equal, recursively through dicts and lists."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            assert_same_state(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_state(a, e, f"{where}[{i}]")
    elif torch.is_tensor(expected):
        torch.testing.assert_close(actual, expected, msg=where)
    else:
        assert actual == expected, where


def test_two_processes_match_one_for_every_plugin(tmp_path) -> None:
    script = Path(__file__).parent / "distributed" / "contract_ddp.py"
    run_processes([sys.executable, str(script), str(tmp_path / "single.pt")], 600)
    run_processes([*accelerate_launch(2), str(script), str(tmp_path / "double.pt")], 600)
    single = torch.load(tmp_path / "single.pt", weights_only=False)
    double = torch.load(tmp_path / "double.pt", weights_only=False)
    assert sorted(single) == sorted(double) == sorted(IDS)
    for case_id in IDS:
        for name, value in single[case_id].items():
            torch.testing.assert_close(double[case_id][name], value, rtol=1e-4, atol=1e-5, msg=f"{case_id}: {name}")
