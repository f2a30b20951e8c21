"""Two gloo processes under torchrun: the teacher decides the same actions on every rank, every step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from .launching import run_processes, torchrun

SCRIPT = Path(__file__).parent / "distributed" / "teacher_ranks.py"
TIMEOUT_S = 240


def launch(prefix: list[str], output_dir: Path) -> list[dict]:
    output_dir.mkdir()
    run_processes([*prefix, str(SCRIPT), str(output_dir)], TIMEOUT_S)
    return [torch.load(path, weights_only=False) for path in sorted(output_dir.glob("rank*.pt"))]


def test_two_ranks_take_identical_actions_every_step(tmp_path) -> None:
    pytest.importorskip("torch.distributed")
    ranks = launch(torchrun(2), tmp_path / "double")
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    zero, one = ranks
    assert [step for step, _ in zero["history"]] == [0, 2, 4, 6, 8, 10, 12]
    assert zero["history"] == one["history"]
    assert zero["task_actions"] == one["task_actions"] == zero["history"][-1][1]
    # The ranks run the same teacher step on the global batch: their teachers stay identical, not just in sync.
    assert zero["best_accuracy"] == one["best_accuracy"]
    for name, value in zero["dqn"].items():
        torch.testing.assert_close(one["dqn"][name], value, rtol=0, atol=1e-6, msg=name)

    # And they decide what one process deciding on the same global batches decides.
    (single,) = launch([sys.executable], tmp_path / "single")
    assert single["history"] == zero["history"]
    for name, value in single["params"].items():
        torch.testing.assert_close(zero["params"][name], value, rtol=1e-4, atol=1e-5, msg=name)
