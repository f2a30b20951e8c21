"""Two gloo processes under torchrun: the teacher decides the same actions on every rank, every step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .test_ddp_losses import free_port

SCRIPT = Path(__file__).parent / "distributed" / "teacher_ranks.py"
REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def launch(prefix: list[str], output_dir: Path) -> list[dict]:
    output_dir.mkdir()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    # A new session, so a timeout can kill torchrun *and* its workers.
    process = subprocess.Popen(
        [*prefix, str(SCRIPT), str(output_dir)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"run did not finish in {TIMEOUT_S} s:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]
    return [torch.load(path, weights_only=False) for path in sorted(output_dir.glob("rank*.pt"))]


def test_two_ranks_take_identical_actions_every_step(tmp_path) -> None:
    pytest.importorskip("torch.distributed")
    torchrun = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--max_restarts", "0", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
    ]  # fmt: skip
    ranks = launch(torchrun, tmp_path / "double")
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
