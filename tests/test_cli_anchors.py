"""fairlearn anchors in `hf-fairmtl train`: fitted on tabular runs, kept apart from the methods in the run
directory, drawn on the trade-off plot and listed in their own table, never on a front nor the DTO pick; none with
`--anchors false` or on text data; a note (not a crash) without fairlearn."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import numpy as np
import pytest

from hf_fairmtl import FairMTLConfig
from hf_fairmtl.cli import main, parse_arguments
from hf_fairmtl.experiments import RunInfo, load_run, save_method_result, write_run_info
from hf_fairmtl.experiments.anchors import ANCHORS, experiment_anchors
from hf_fairmtl.experiments.report import write_report
from hf_fairmtl.experiments.report.trade_off import anchor_points, plot_trade_offs
from hf_fairmtl.experiments.run_folder import ANCHORS_FILE, write_anchors

from .test_cli import file_flags, write_tables

FAST = ["--max_steps", "4", "--logging_steps", "2", "--learning_rate", "0.01", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return write_tables(tmp_path_factory.mktemp("anchor_tables"))


@pytest.fixture(scope="module")
def anchored_run(tables, tmp_path_factory):
    """vanilla and weighted x two seeds on the tiny transfer tables, anchors on (the default)."""
    run_dir = tmp_path_factory.mktemp("anchored") / "run"
    argv = ["train", *file_flags(tables), *FAST, "--methods", "vanilla", "weighted", "--seeds", "0", "1"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*argv, "--output_dir", str(run_dir)]) == 0
    return run_dir, printed.getvalue()


def test_tabular_run_stores_anchors_apart_from_the_methods(anchored_run) -> None:
    run_dir, _ = anchored_run
    run = load_run(run_dir)
    assert run.methods == ["vanilla", "weighted"]  # the anchors are not methods of the run
    assert {r.method for r in run.results} == {"vanilla", "weighted"}
    # The auxiliary task has gender on its training rows: every anchor, for every seed of the run.
    auxiliary = [a for a in run.anchors if a.task == "auxiliary" and a.attribute == "gender"]
    assert {(a.anchor, a.seed) for a in auxiliary} == {(name, seed) for name in ANCHORS for seed in (0, 1)}
    for anchor in auxiliary:
        assert 0.5 < anchor.figures["accuracy"] <= 1.0 and 0.0 <= anchor.figures["eo_violation"] <= 2.0
        assert anchor.figures["collapsed"] in (0.0, 1.0) and "balanced_accuracy" in anchor.figures
    # The target task's training rows carry no gender: fairlearn cannot fit it, and the note says so.
    assert not [a for a in run.anchors if a.task == "target"]
    assert any("`target` / `gender`" in note and "has 0 train rows" in note for note in run.anchor_notes)
    stored = json.loads((run_dir / ANCHORS_FILE).read_text())
    assert stored["settings"] == {"eg_max_iter": 20} and len(stored["records"]) == len(run.anchors)
    assert "ExponentiatedGradient max_iter=20" in run.info.settings["anchors"]


def test_report_lists_anchors_in_their_own_table_and_draws_them(anchored_run) -> None:
    run_dir, printed = anchored_run
    report = (run_dir / "report.md").read_text()
    held_out, anchors_section = report.split("### fairlearn anchors on the same features")
    anchor_table = anchors_section.split("\n\n")[2]
    assert anchor_table.startswith("| anchor | task | attribute | accuracy | balanced acc. | EO violation")
    rows = [line for line in anchor_table.splitlines()[2:] if line.startswith("| ")]
    assert len(rows) == len(ANCHORS) and all("| auxiliary | gender |" in row for row in rows)
    assert any(row.startswith("| fairlearn ExponentiatedGradient(LogReg, EqualizedOdds) |") for row in rows)
    assert "fairlearn" not in held_out.split("## Held-out results")[1]  # the methods' table has no anchor row
    assert "Black marks: fairlearn anchors" in report and "`target` / `gender`: no anchors" in anchors_section
    plot = run_dir / "plots" / "trade_off_auxiliary_gender.png"
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert "fairlearn anchors on the same features (references):" in printed and "ThresholdOptimizer(EO)" in printed


def test_dto_pick_is_a_method_of_the_run_never_an_anchor(anchored_run, tmp_path) -> None:
    run_dir, _ = anchored_run
    run = load_run(run_dir)
    plots = plot_trade_offs(run, tmp_path)
    assert plots and all(p.pick is None or p.pick.label in run.methods for p in plots)
    # An anchor that dominates every method (more accurate and fairer) is still not the pick.
    config = FairMTLConfig(tasks=["t"], protected_attributes=["g"], group_vocab={"g": ["a", "b"]}, num_features=2)
    write_run_info(tmp_path / "run", RunInfo.from_config(config, ["vanilla", "weighted"], [0]))
    for method, (accuracy, eo) in {"vanilla": (0.80, 0.40), "weighted": (0.75, 0.20)}.items():
        metrics = {"eval_t_accuracy": accuracy, "eval_t_balanced_accuracy": accuracy, "eval_t_collapsed": 0.0}
        save_method_result(tmp_path / "run", method, 0, metrics | {"eval_t_g_eo_violation": eo})
    figures = {"accuracy": 0.95, "balanced_accuracy": 0.95, "eo_violation": 0.01, "collapsed": 0.0}
    record = {"anchor": "exponentiated_gradient", "task": "t", "attribute": "g", "seed": 0, "figures": figures}
    write_anchors(tmp_path / "run", [record])
    small = load_run(tmp_path / "run")
    (plot,) = plot_trade_offs(small, tmp_path / "plots")
    assert [p.label for p in anchor_points(small, "t", "g")] == ["ExponentiatedGradient(EO)"]
    assert plot.pick is not None and plot.pick.label in ("vanilla", "weighted")
    report = write_report(tmp_path / "run").read_text()
    assert "* DTO pick, `t` / `g` (chosen on the held-out rows themselves (no validation figures" in report


def test_anchors_false_writes_none(tables, tmp_path) -> None:
    assert parse_arguments("train", ["--no_anchors"])[2].anchors is False
    run_dir = tmp_path / "run"
    argv = ["train", *file_flags(tables), *FAST, "--methods", "vanilla", "--anchors", "false"]
    assert main([*argv, "--output_dir", str(run_dir)]) == 0
    assert not (run_dir / ANCHORS_FILE).exists() and load_run(run_dir).anchors == []
    report = (run_dir / "report.md").read_text()
    assert "fairlearn anchors" not in report and "Black marks" not in report


def test_without_fairlearn_the_report_says_so(tables, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "fairlearn", None)  # `import fairlearn` raises ImportError
    run_dir = tmp_path / "run"
    assert main(["train", *file_flags(tables), *FAST, "--methods", "vanilla", "--output_dir", str(run_dir)]) == 0
    run = load_run(run_dir)
    assert run.anchors == [] and run.anchor_notes == [
        'fairlearn anchors left out: fairlearn is not installed (pip install "hf_fairmtl[anchors]")'
    ]
    assert 'fairlearn is not installed (pip install "hf_fairmtl[anchors]")' in (run_dir / "report.md").read_text()


def test_text_run_writes_no_anchors(tmp_path) -> None:
    """The default text run (packaged MiniLM + BUG): no anchors file, no error, anchors on by default."""
    run_dir = tmp_path / "run"
    argv = ["train", "--max_steps", "2", "--max_rows", "64", "--max_length", "24", "--methods", "vanilla"]
    assert main([*argv, "--disable_tqdm", "true", "--output_dir", str(run_dir)]) == 0
    assert not (run_dir / ANCHORS_FILE).exists() and (run_dir / "report.md").is_file()
    assert "fairlearn" not in (run_dir / "report.md").read_text()


def _tabular_rows(num_rows: int, seed: int, male_label: int | None = None):
    """Rows of a binary `income` and a 3-class `kind` task; `male_label` fixes the income of every male row."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    sex = rng.integers(0, 2, num_rows)
    income = (rng.random(num_rows) < np.where(sex == 1, 0.5, 0.25)).astype(int)
    if male_label is not None:
        income[sex == 1] = male_label
    features = rng.normal(size=(num_rows, 3)) + np.stack([0.8 * income, 2 * sex, np.zeros(num_rows)], axis=1)
    labels = [[int(y), int(rng.integers(0, 3))] for y in income]
    return Dataset.from_dict({"features": features.tolist(), "labels": labels, "group_labels": sex[:, None].tolist()})


def test_experiment_anchors_note_what_fairlearn_cannot_fit() -> None:
    """Validation rows whose male group has one class: ThresholdOptimizer is left out with a note naming the group;
    the other anchors are fitted once and predicted with each seed; the 3-class task gets a note, not an error."""
    config = FairMTLConfig(
        tasks=["income", "kind"],
        num_labels={"income": 2, "kind": 3},
        protected_attributes=["sex"],
        group_vocab={"sex": ["female", "male"]},
        num_features=3,
    )
    train, validation, test = _tabular_rows(600, 0), _tabular_rows(200, 1, male_label=0), _tabular_rows(400, 2)
    run = experiment_anchors(train, validation, test, config, seeds=[0, 1, 2], eg_max_iter=5)
    fitted = {(r["anchor"], r["seed"]) for r in run.records}
    assert fitted == {(a, s) for a in ("logistic_regression", "exponentiated_gradient") for s in (0, 1, 2)}
    assert {r["task"] for r in run.records} == {"income"}
    assert run.notes[0] == "task `kind`: 3-class, no anchors"
    to_notes = [n for n in run.notes if "ThresholdOptimizer" in n]
    assert len(to_notes) == 2 and all("validation rows: male (--validation_rows)" in n for n in to_notes)
