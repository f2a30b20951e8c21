"""Run directories, the summary table and `report.md` with its plots, from a tiny run through the CLI's code path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hf_fairmtl import FairMTLConfig
from hf_fairmtl.experiments import (
    DataArguments,
    ExperimentArguments,
    ModelArguments,
    RunInfo,
    load_run,
    run_experiment,
    save_method_result,
    write_run_info,
)
from hf_fairmtl.experiments.report import format_table, group_rates, summary_rows, write_report

from .test_cli import write_tables

PLOTS = (
    "accuracy_eo.png",
    "teacher_actions.png",
    "task_weights.png",
    "training_losses.png",
    "group_rates_target.png",
    "group_rates_auxiliary.png",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Three methods x two seeds of a tiny tabular model, trained by `run_experiment` (the code `train` runs)."""
    folder = tmp_path_factory.mktemp("report")
    tables = write_tables(folder)
    data_args = DataArguments(
        train_files=[str(tables["target"]), str(tables["auxiliary"])],
        test_files=[str(tables["test"])],
        task_columns={"target": "target", "auxiliary": "auxiliary"},
        attribute_columns={"gender": "gender"},
        feature_columns=["x1", "x2", "x3"],
        categorical_columns=["colour"],
    )
    training = {
        "output_dir": str(folder / "run"),
        "max_steps": 8,
        "logging_steps": 2,
        "per_device_train_batch_size": 32,
        "learning_rate": 1e-2,
        "teacher_interval": 2,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": True,  # what the CLI sets on a machine without an accelerator
    }
    run_experiment(
        data_args,
        ModelArguments(tabular_hidden_sizes=[16]),
        ExperimentArguments(make_report=False),
        training,
        methods=["vanilla", "weighted", "teacher+gradnorm"],
        seeds=[0, 1],
        printer=lambda text: None,
    )
    return folder / "run"


def test_report_renders_nontrivial_plots(tiny_run) -> None:
    import matplotlib.image

    report = write_report(tiny_run)
    text = report.read_text()
    for name in PLOTS:
        path = tiny_run / "plots" / name
        assert path.is_file(), name
        assert f"plots/{name}" in text, name
        assert path.stat().st_size > 10_000, name  # a real figure, not an empty canvas
        pixels = matplotlib.image.imread(path)[..., :3].reshape(-1, 3)
        colours = np.unique((pixels * 255).astype(np.uint8), axis=0)
        assert len(colours) > 50 and pixels.std() > 0.05, name  # drawn content: bars, boxes, text
    assert "| teacher+gradnorm | target | gender |" in text
    assert "± " in text  # two seeds: mean ± std
    assert "trained WITHOUT demographic labels" in text  # the target task's note


def test_run_directory_holds_what_the_report_needs(tiny_run) -> None:
    run = load_run(tiny_run)
    assert run.methods == ["vanilla", "weighted", "teacher+gradnorm"] and run.info.seeds == [0, 1]
    assert len(run.results) == 6
    teacher = [r for r in run.results if r.method == "teacher+gradnorm"]
    assert all(r.teacher and r.teacher["tasks"] == ["target", "auxiliary"] for r in teacher)
    steps = [step for step, _ in teacher[0].teacher["history"]]
    assert steps[0] == 0 and steps[1:] == list(range(2, 9, 2))  # initial decision, then every 2 steps
    weights = [e for e in teacher[0].log_history if "target_gradnorm_weight" in e]
    assert weights and all(
        e["target_gradnorm_weight"] + e["auxiliary_gradnorm_weight"] == pytest.approx(2.0, abs=1e-3) for e in weights
    )
    assert run.info.settings["train rows"] + run.info.settings["validation rows"] == 320


def test_summary_rows_mean_and_std_over_seeds(tmp_path) -> None:
    config = FairMTLConfig(
        tasks=["topic"],
        num_labels={"topic": 3},
        protected_attributes=["g"],
        group_vocab={"g": ["a", "b"]},
        num_features=2,
    )
    write_run_info(tmp_path, RunInfo.from_config(config, ["m"], [0, 1]))
    for seed, (accuracy, eo) in enumerate([(0.5, 0.2), (0.7, 0.4)]):
        metrics = {"eval_topic_accuracy": accuracy, "eval_topic_g_eo_violation": eo}
        metrics |= {"eval_topic_g_tpr_gap": eo / 2, "eval_topic_g_fpr_gap": eo / 2}
        # Multi-class per-group rates: one-vs-rest per class; a NaN class (no positives) is skipped.
        metrics |= {f"eval_topic_g_tpr_a_{c}": v for c, v in enumerate([0.2, 0.4, math.nan])}
        metrics |= {f"eval_topic_g_tpr_b_{c}": v for c, v in enumerate([0.6, 0.8, 1.0])}
        save_method_result(tmp_path, "m", seed, metrics)
    (row,) = summary_rows(load_run(tmp_path))
    assert row["accuracy"] == pytest.approx(0.6) and row["accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert row["eo_violation"] == pytest.approx(0.3) and row["tpr_gap"] == pytest.approx(0.15)
    table = format_table([row])
    assert "0.600 ± 0.141" in table and "0.300 ± 0.141" in table
    rates = group_rates(load_run(tmp_path), "m", "topic", "g")
    np.testing.assert_allclose(rates["tpr"], [[0.3, 0.8], [0.3, 0.8]])
    assert np.isnan(rates["fpr"]).all()  # not reported: NaN, drawn as an empty bar


def test_load_run_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="run.json"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"tasks": ["t"]}))
    with pytest.raises(ValueError, match="not a run description"):
        load_run(tmp_path)


def _strict_json(text: str):
    """`json.loads` that refuses NaN/Infinity, as every JSON reader other than Python's does."""

    def refuse(constant: str):
        raise ValueError(f"not valid JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_run_files_are_strict_json_and_undefined_rates_read_back_as_nan(tmp_path) -> None:
    config = FairMTLConfig(tasks=["t"], protected_attributes=["g"], group_vocab={"g": ["a", "b"]}, num_features=2)
    write_run_info(tmp_path, RunInfo.from_config(config, ["m"], [0]))
    metrics = {"eval_t_accuracy": 0.5, "eval_t_g_tpr_a": math.nan, "eval_t_g_eo_violation": 0.25}
    folder = save_method_result(tmp_path, "m", 0, metrics, [{"grad_norm": math.inf, "step": 1}])
    text = (folder / "metrics.json").read_text()
    assert "NaN" not in text and _strict_json(text)["eval_t_g_tpr_a"] is None
    assert _strict_json((folder / "log_history.json").read_text())[0]["grad_norm"] is None
    run = load_run(tmp_path)
    assert np.isnan(run.values("m", "t_g_tpr_a")).all() and run.values("m", "t_accuracy")[0] == 0.5


def test_collapsed_task_is_marked_in_the_table_and_the_report(tmp_path) -> None:
    """Data built to collapse: seed 0 predicts one class for every row (EO violation 0), seed 1 does not."""
    config = FairMTLConfig(tasks=["t"], protected_attributes=["g"], group_vocab={"g": ["a", "b"]}, num_features=2)
    write_run_info(tmp_path, RunInfo.from_config(config, ["weighted"], [0, 1]))
    for seed, (share, eo) in enumerate([(1.0, 0.0), (0.6, 0.3)]):
        metrics = {"eval_t_accuracy": 0.9, "eval_t_balanced_accuracy": 0.5 if share == 1.0 else 0.7}
        metrics |= {"eval_t_majority_prediction_share": share, "eval_t_collapsed": float(share >= 0.95)}
        metrics |= {"eval_t_g_eo_violation": eo, "eval_t_g_tpr_gap": eo, "eval_t_g_fpr_gap": 0.0}
        save_method_result(tmp_path, "weighted", seed, metrics)
    (row,) = summary_rows(load_run(tmp_path))
    assert row["collapsed_seeds"] == 1 and row["balanced_accuracy"] == pytest.approx(0.6)
    table = format_table([row])
    header, _, line, note = table.splitlines()
    assert header.split()[-1] == "collapsed" and line.split()[-1] == "1/2"
    assert "balanced acc." in header and note.startswith("collapsed: one class predicted for at least 95 %")
    assert "| 1/2 |" in format_table([row], markdown=True)
    report = write_report(tmp_path).read_text()
    assert "**Collapsed tasks**" in report and "`weighted` on `t` (1/2 seeds)" in report
    # Runs written before the collapse guard: "–", and no note.
    old = {**row, "collapsed_seeds": None}
    assert format_table([old]).splitlines()[-1].split()[-1] == "–"


def test_dto_pick_is_chosen_on_validation_rows_and_reported_on_held_out_ones(tmp_path) -> None:
    """The recommendation must not be tuned on the rows that report it: the validation figures choose, the
    held-out figures are shown; a method without validation figures (e.g. `+thresholds`) is no candidate."""
    from hf_fairmtl.experiments.report.trade_off import plot_trade_offs

    config = FairMTLConfig(tasks=["t"], protected_attributes=["g"], group_vocab={"g": ["a", "b"]}, num_features=2)
    methods = ["vanilla", "weighted", "weighted+thresholds"]
    write_run_info(tmp_path, RunInfo.from_config(config, methods, [0]))

    def figures(accuracy: float, eo: float) -> dict[str, float]:
        return {"eval_t_accuracy": accuracy, "eval_t_collapsed": 0.0, "eval_t_g_eo_violation": eo}

    # On the held-out rows vanilla looks best; on the validation rows weighted does: the pick is weighted.
    save_method_result(tmp_path, "vanilla", 0, figures(0.90, 0.05), validation_metrics=figures(0.80, 0.60))
    save_method_result(tmp_path, "weighted", 0, figures(0.70, 0.30), validation_metrics=figures(0.80, 0.10))
    save_method_result(tmp_path, "weighted+thresholds", 0, figures(0.99, 0.00))  # fitted on validation: no figures
    run = load_run(tmp_path)
    assert run.values("weighted", "t_accuracy", split="validation").tolist() == [0.80]
    (plot,) = plot_trade_offs(run, tmp_path / "plots")
    assert plot.picked_on == "validation" and plot.pick.label == "weighted" and plot.pick.accuracy == 0.70
    report = write_report(tmp_path).read_text()
    assert "* DTO pick, `t` / `g` (chosen on the validation rows): `weighted` (held-out accuracy 0.700" in report
    with pytest.raises(ValueError, match="split must be"):
        run.values("weighted", "t_accuracy", split="test rows")
