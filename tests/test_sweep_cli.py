"""`hf-fairmtl train --fairness_weight 0 3 10`: one method per value, one run, the trade-off plot first."""

from __future__ import annotations

from hf_fairmtl.cli import main
from hf_fairmtl.experiments.run_folder import load_run


def test_fairness_weight_values_expand_into_a_sweep_with_a_trade_off_plot(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    argv = ["train", "--dataset", "census", "--max_rows", "2000", "--max_test_rows", "1000", "--max_steps", "20"]
    argv += ["--methods", "vanilla", "weighted", "--fairness_weight", "0", "3", "10", "--output_dir", str(run_dir)]
    argv += ["--anchors", "false"]  # fairlearn's anchors on census take a minute; tests/test_cli_anchors.py has them
    assert main(argv) == 0
    table = capsys.readouterr().out
    expected = ["vanilla", "weighted[λ=0]", "weighted[λ=3]", "weighted[λ=10]"]
    assert all(name in table for name in expected)
    assert load_run(run_dir).methods == expected
    report = (run_dir / "report.md").read_text()
    first_section = report.split("## ")[1]
    assert first_section.startswith("Accuracy vs fairness") and "trade_off_income_sex.png" in first_section
    assert (run_dir / "plots" / "trade_off_income_sex.png").stat().st_size > 10_000
