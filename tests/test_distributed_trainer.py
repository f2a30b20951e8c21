"""2 CPU processes under `accelerate launch` (gloo) train exactly like 1 process on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "distributed" / "trainer_ddp.py"
REPO = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str], output: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    try:
        result = subprocess.run(
            command + [str(SCRIPT), str(output)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired as error:  # never hang the suite
        pytest.fail(f"distributed run timed out: {error}")
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(output, weights_only=False)


def test_two_processes_match_one(tmp_path) -> None:
    single = run([sys.executable], tmp_path / "single.pt")
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--main_process_port", str(free_port()), "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no",
    ]  # fmt: skip
    double = run(launcher, tmp_path / "double.pt")
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
