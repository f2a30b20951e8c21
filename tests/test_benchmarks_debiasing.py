"""`benchmarks/quality_debiasing.py`: the sweep options' method table, the family fronts, the census smoke run."""

from __future__ import annotations

import json

import pytest

from benchmarks import quality_debiasing as qd
from benchmarks.common import mean_std


def test_sweep_options_build_the_method_table():
    args = qd.parse_args(
        ["--methods", "Vanilla MTL", "--transfer_weights", "1", "10", "--constrained_targets", "0.1", "0.05"]
    )
    methods = qd.selected_methods(args, "target", "auxiliary", "group")
    assert list(methods) == [
        qd.VANILLA,
        "ε-DEO transfer (weighted, λ=1)",
        "ε-DEO transfer (weighted, λ=10)",
        "Constrained (auxiliary EO ≤ 0.1)",
        "Constrained (auxiliary EO ≤ 0.05)",
    ]
    with_groups, weighted = methods["ε-DEO transfer (weighted, λ=10)"]
    assert not with_groups
    assert weighted == {"strategy": "weighted", "fairness_attributes": {"auxiliary": ["group"]}, "fairness_weight": 10}
    _, constrained = methods["Constrained (auxiliary EO ≤ 0.05)"]
    assert constrained == {
        "strategy": "constrained",
        "fairness_attributes": {"auxiliary": ["group"]},
        "fairness_target": 0.05,
        "fairness_metric": "eo_violation",
    }
    assert qd.method_family(weighted, "target") == "weighted"
    assert qd.method_family(constrained, "target") == "constrained"
    assert qd.sweep_label(constrained) == "constrained[target=0.05]"
    everything = qd.selected_methods(qd.parse_args(["--transfer_weights", "3"]), "target", "auxiliary", "group")
    assert qd.transfer_name(3) == qd.TRANSFER and list(everything).count(qd.TRANSFER) == 1  # λ = 3 is the default row
    assert qd.method_family(everything[qd.TRANSFER][1], "target") == "weighted"
    assert qd.method_family(everything[qd.ORACLE][1], "target") is None  # ε-DEO on the target's own groups
    assert qd.method_family(everything[qd.VANILLA][1], "target") is None


def test_skip_takes_several_settings_and_unknown_methods_are_named():
    assert qd.parse_args(["--skip", "text"]).skip == ["text"]
    assert qd.parse_args(["--skip", "text", "synthetic"]).skip == ["text", "synthetic"]
    with pytest.raises(SystemExit):
        qd.parse_args(["--skip", "tabular"])
    with pytest.raises(ValueError, match="Unknown method.*'Nope'"):
        qd.selected_methods(qd.parse_args(["--methods", "Nope"]), "target", "auxiliary", "group")


def block(points: dict[str, tuple[float, float, list[float], str | None]]) -> dict:
    """A result block from (accuracy, EO, collapsed per seed, family) per method."""
    summary = {
        name: {"accuracy": mean_std([acc]), "eo_violation": mean_std([eo]), "collapsed": mean_std(collapsed)}
        for name, (acc, eo, collapsed, _) in points.items()
    }
    families = {name: family for name, (*_, family) in points.items()}
    labels = {name: name for name, family in families.items() if family}
    return {"summary": summary, "families": families, "labels": labels}


def test_family_fronts_drop_dominated_and_collapsed_points():
    result = block(
        {
            "vanilla": (0.9, 0.5, [0, 0], None),
            "w1": (0.85, 0.3, [0, 0], "weighted"),
            "w3": (0.80, 0.35, [0, 0], "weighted"),  # dominated by w1
            "w10": (0.95, 0.0, [0, 1], "weighted"),  # best on both axes, but one seed collapsed
            "c1": (0.7, 0.1, [0, 0], "constrained"),
            "c2": (0.75, 0.2, [0, 0], "constrained"),
        }
    )
    assert qd.family_fronts(result) == {"weighted": ["w1"], "constrained": ["c1", "c2"]}
    points = qd.trade_off_points(result)
    assert [p.collapsed for p in points] == [False, False, False, True, False, False]
    assert points[1].method == "weighted" and points[0].method == "vanilla"


def test_constraint_check_needs_the_bound_and_no_collapsed_seed():
    summary = {
        "c": {"auxiliary_eo_violation": mean_std([0.12, 0.14]), "auxiliary_collapsed": mean_std([0, 0])},
        "d": {"auxiliary_eo_violation": mean_std([0.0, 0.0]), "auxiliary_collapsed": mean_std([0, 1])},
    }
    methods = {
        "c": (False, {"strategy": "constrained", "fairness_target": 0.1}),
        "d": (False, {"strategy": "constrained", "fairness_target": 0.1}),
    }
    checks = qd.constraint_check(summary, methods)
    assert checks["c"]["met"] and checks["c"]["eo"] == pytest.approx(0.13)
    assert not checks["d"]["met"] and checks["d"]["collapsed_seeds"] == 1  # a constant predictor meets no bound


def test_census_smoke_writes_the_tables(tmp_path):
    qd.main(
        ["--smoke", "--skip", "text", "synthetic", "--methods", f"{qd.VANILLA},{qd.ORACLE}", "--transfer_weights", "1",
         "--constrained_targets", "0.1", "--output-dir", str(tmp_path), "--stem", "census_smoke"]
    )  # fmt: skip
    markdown = (tmp_path / "census_smoke.md").read_text()
    assert "## Census transfer" in markdown and "target `income` without sex" in markdown
    for column in ("balanced acc. ↑", "collapsed seeds", "goal met", "on family front", "bound met"):
        assert column in markdown
    assert "| Constrained (auxiliary EO ≤ 0.1) | constrained |" in markdown
    assert "oracle-like: fairlearn ExponentiatedGradient" in markdown
    assert (tmp_path / "census_smoke_census.png").stat().st_size > 0
    census = json.loads((tmp_path / "census_smoke.json").read_text())["census"]
    assert list(census["summary"]) == [qd.VANILLA, qd.ORACLE, qd.transfer_name(1), qd.constrained_name(0.1)]
    assert census["families"][qd.ORACLE] is None and census["families"][qd.constrained_name(0.1)] == "constrained"
    assert "auxiliary_eo_violation" in census["summary"][qd.VANILLA]  # the auxiliary task is scored on its own rows
    assert set(census["anchors"]["summary"]) >= {"threshold_optimizer", "exponentiated_gradient"}
    assert not list(tmp_path.glob("*.partial.json"))


def test_text_task_loss_reaches_every_text_run():
    """`--text_task_loss balanced` trains both text tasks with class-balanced CE in every method (smoke settings)."""
    setting = qd.text_part(qd.parse_args(["--smoke", "--text_task_loss", "balanced"]))
    assert setting.training["task_loss"] == "balanced" and "task_loss 'balanced'" in setting.description
    assert "task_loss" not in qd.text_part(qd.parse_args(["--smoke"])).training
