"""Two gloo processes: DDP gradients of every fairness loss equal the single-process gradients."""

from __future__ import annotations

from pathlib import Path

import pytest

from .launching import run_processes, torchrun

SCRIPT = Path(__file__).parent / "distributed" / "ddp_loss_grad.py"
TIMEOUT_S = 120


def test_ddp_gradients_match_single_process():
    pytest.importorskip("torch.distributed")
    output = run_processes([*torchrun(2), str(SCRIPT)], TIMEOUT_S)
    assert "ALL OK" in output, output[-4000:]
