"""Smoke runs of the example scripts on tiny settings, as a user runs them (a subprocess, offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_fairmtl.experiments import METRICS_FILE, method_dir

from .test_folktables import STATES, _person_records

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_example(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **OFFLINE},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "EO violation" in result.stdout and "report:" in result.stdout, result.stdout[-2000:]
    return result


def read_metrics(run_dir: Path, method: str) -> dict:
    return json.loads((method_dir(run_dir, method, 0) / METRICS_FILE).read_text())


def test_text_transfer(tmp_path) -> None:
    run_example("text_transfer.py", ["--max_rows", "40", "--max_steps", "1", "--max_length", "24"], tmp_path)
    run_dir = tmp_path / "runs" / "text_transfer"
    for method in ("vanilla", "transfer"):
        assert "eval_occupation_gender_eo_violation" in read_metrics(run_dir, method)
    assert (run_dir / "report.md").is_file()


def test_intersectional(tmp_path) -> None:
    result = run_example(
        "intersectional.py", ["--max_rows", "400", "--max_test_rows", "300", "--max_steps", "2"], tmp_path
    )
    metrics = read_metrics(tmp_path / "runs" / "intersectional", "transfer")
    assert "eval_income_sex*race_eo_violation" in metrics and "eval_union_sex*race_tpr_gap" in metrics
    assert "female*black" in result.stdout  # the intersectional groups are named
    assert "sex*race" in result.stdout


def test_tabular_census(tmp_path) -> None:
    run_example("tabular_census.py", ["--max_rows", "400", "--max_test_rows", "200", "--max_steps", "2"], tmp_path)
    run_dir = tmp_path / "runs" / "tabular_census"
    assert "eval_dividends_race_eo_violation" in read_metrics(run_dir, "weighted")
    assert (method_dir(run_dir, "teacher+gradnorm", 0) / "teacher_actions.json").is_file()


@pytest.fixture
def acs_root(tmp_path) -> Path:
    """Person records in folktables' layout, `{root}/2018/1-Year/psam_p{FIPS}.csv` (see test_folktables.py)."""
    folder = tmp_path / "acs" / "2018" / "1-Year"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for code in STATES.values():
        _person_records(200, code, rng).to_csv(folder / f"psam_p{code}.csv", index=False, float_format="%.0f")
    return tmp_path / "acs"


def test_acs_l2t_fmt(acs_root, tmp_path) -> None:
    args = ["--root_dir", str(acs_root), "--states", *STATES, "--max_steps", "1", "--max_rows", "0"]
    result = run_example("acs_l2t_fmt.py", args, tmp_path)
    run_dir = tmp_path / "runs" / "acs_l2t_fmt"
    for method in ("vanilla+gradnorm", "mtaf", "g-fmt", "l2t-fmt", "stl"):
        metrics = read_metrics(run_dir, method)
        assert all(f"eval_{task}_accuracy" in metrics for task in ("employment", "income", "poverty")), method
    assert "relative to STL" in result.stdout and "l2t-fmt" in result.stdout
