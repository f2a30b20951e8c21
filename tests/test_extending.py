"""docs/extending.md: the strategy and weighting registered from user code train as the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hf_fairmtl.strategies import STRATEGIES
from hf_fairmtl.weighting import WEIGHTINGS

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def test_the_documented_example_runs(tmp_path, monkeypatch) -> None:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    try:
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the documentation's own example
        trainer = namespace["trainer"]
        logs = [entry for entry in trainer.state.log_history if "train_loss" in entry]
        assert logs and trainer.state.global_step == 4
        assert trainer.weighting.task_weights.tolist() == pytest.approx([4 / 3, 2 / 3])
    finally:
        STRATEGIES.unregister("hinge")
        WEIGHTINGS.unregister("first_task_double")
