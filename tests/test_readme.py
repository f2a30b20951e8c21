"""The README's quick start runs as written (packaged MiniLM, offline) and reports what its comment promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start_code() -> str:
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, "README's Quick start has no python block"
    return match.group(1)


def test_readme_quick_start_runs(tmp_path) -> None:
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start_code())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.strip().splitlines()[-1]
    for key in ("eval_topic_accuracy", "eval_sentiment_gender_eo_violation", "eval_sentiment_gender_tpr_gap"):
        assert f"'{key}'" in printed
    # The target task's training rows carry no gender: it gets no (meaningless) group figures.
    assert "eval_topic_gender_" not in printed
    assert (tmp_path / "out").is_dir()
