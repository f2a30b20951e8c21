"""`hf-fairmtl train --postprocess equalized_odds`: a `<method>+thresholds` row fitted on validation rows."""

from __future__ import annotations

import json

from hf_fairmtl.cli import main
from hf_fairmtl.experiments.run_folder import METRICS_FILE, method_dir


def test_postprocess_adds_a_thresholds_row_that_narrows_the_gap(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    argv = ["train", "--dataset", "census", "--max_rows", "8000", "--max_test_rows", "3000", "--max_steps", "200"]
    argv += ["--task_loss", "balanced", "--methods", "vanilla", "--postprocess", "equalized_odds"]
    argv += ["--postprocess_objective", "balanced_accuracy"]
    argv += ["--output_dir", str(run_dir), "--make_report", "false"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "vanilla+thresholds" in table
    plain = json.loads((method_dir(run_dir, "vanilla", 42) / METRICS_FILE).read_text())
    post = json.loads((method_dir(run_dir, "vanilla+thresholds", 42) / METRICS_FILE).read_text())
    tasks = [key[len("eval_") : -len("_sex_eo_violation")] for key in post if key.endswith("_sex_eo_violation")]
    assert tasks, "the census tasks are post-processed for sex"
    # A weak task (union, balanced accuracy ≈ 0.56) can be post-processed into one class: that is flagged as
    # collapsed, never counted as fair; on the tasks that stay learnable the held-out gap narrows.
    learnable = [t for t in tasks if post[f"eval_{t}_collapsed"] == 0]
    assert len(learnable) >= 2
    for task in tasks:
        if post[f"eval_{task}_collapsed"]:
            assert post[f"eval_{task}_majority_prediction_share"] >= 0.95
    gap = sum(post[f"eval_{t}_sex_eo_violation"] for t in learnable) / len(learnable)
    before = sum(plain[f"eval_{t}_sex_eo_violation"] for t in learnable) / len(learnable)
    assert gap < 0.5 * before, (gap, before)
