"""2 CPU processes under `accelerate launch` (gloo) train exactly like 1 process on the same global batch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from .launching import accelerate_launch, run_processes

SCRIPT = Path(__file__).parent / "distributed" / "trainer_ddp.py"
TIMEOUT_S = 300


def run(launcher: list[str], output: Path) -> dict:
    run_processes([*launcher, str(SCRIPT), str(output)], TIMEOUT_S)
    return torch.load(output, weights_only=False)


def test_two_processes_match_one(tmp_path) -> None:
    single = run([sys.executable], tmp_path / "single.pt")
    double = run(accelerate_launch(2), tmp_path / "double.pt")
    assert double["world"] == 2 and single["world"] == 1
    for name, value in single["params"].items():
        torch.testing.assert_close(double["params"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(double["gradnorm"], single["gradnorm"], rtol=1e-4, atol=1e-5)
    # Logged losses are global means: the same as one process, not multiplied by the world size.
    for one, two in zip(single["logs"], double["logs"], strict=True):
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-3, abs=1e-4)
        assert two["target_accuracy_loss"] == pytest.approx(one["target_accuracy_loss"], rel=1e-3, abs=1e-4)
    # Evaluation on 37 rows split over 2 ranks: the same figures, no duplicated padding rows.
    for key in ("eval_target_accuracy", "eval_target_group_eo_violation", "eval_auxiliary_group_tpr_gap"):
        assert double["metrics"][key] == pytest.approx(single["metrics"][key], abs=1e-6), key
    assert double["metrics"]["eval_target_group_count_a"] + double["metrics"]["eval_target_group_count_b"] == 37
