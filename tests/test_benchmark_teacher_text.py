"""`benchmarks/teacher_text.py`: the L2T-FMT teacher on BUG text, end to end on the tiny encoder (`--smoke`)."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from benchmarks.quality_debiasing import AUXILIARY, GENDER, TARGET
from benchmarks.teacher_text import main, methods, teacher_split, variant_name


def test_teacher_split_holds_out_a_fixed_disjoint_tenth() -> None:
    rows = Dataset.from_dict({"row": list(range(50))})
    kept, held = teacher_split(rows, 0.1)
    again, held_again = teacher_split(rows, 0.1)
    assert len(held) == 5 and len(kept) == 45
    assert set(held["row"]).isdisjoint(kept["row"]) and set(held["row"]) | set(kept["row"]) == set(range(50))
    assert held["row"] == held_again["row"] and kept["row"] == again["row"]
    with pytest.raises(ValueError, match="--heldout_fraction"):
        teacher_split(rows, 0.0)


def test_methods_put_fairness_on_the_auxiliary_task_only() -> None:
    plan = methods(["default", "balanced_lookahead1"], interval=5)
    assert list(plan) == [
        "Vanilla MTL + GradNorm",
        "G-FMT",
        variant_name("default"),
        variant_name("balanced_lookahead1"),
    ]
    for overrides, _ in plan.values():
        assert overrides["fairness_attributes"] == {AUXILIARY: [GENDER]}
    assert plan["G-FMT"] == (
        {"strategy": "greedy", "gradnorm": True, "fairness_attributes": {AUXILIARY: [GENDER]}},
        None,
    )
    default_overrides, default_teacher = plan[variant_name("default")]
    assert default_overrides["strategy"] == "teacher" and default_overrides["teacher_interval"] == 5
    assert default_teacher == {}  # the trainer's own teacher, from the teacher_* arguments
    assert plan[variant_name("balanced_lookahead1")][1]["reward_accuracy"] == "balanced_accuracy"


def test_smoke_run_writes_decision_shares_diagnostics_and_plots(tmp_path) -> None:
    payload = main(["--smoke", "--variants", "default", "interval1", "--output-dir", str(tmp_path)])
    stored = json.loads((tmp_path / "teacher_text_smoke.json").read_text())
    assert stored["meta"]["command"].startswith("python -m benchmarks.teacher_text --smoke")
    sizes = payload["sizes"]
    assert sizes["heldout_rows"] == round(0.1 * (sizes["train_rows"] + sizes["heldout_rows"]))
    for variant, decisions in (("default", 2), ("interval1", 4)):  # 4 smoke steps at interval 2 and 1
        run = payload["per_seed"][variant_name(variant)][0]
        assert run["fairness_share"][TARGET] == 0.0  # no fairness loss on the target: always its CE
        assert 0.0 <= run["fairness_share"][AUXILIARY] <= 1.0
        assert run["diagnostic_summary"][AUXILIARY]["steps"] == decisions
        assert (tmp_path / f"teacher_text_smoke_{variant}.png").stat().st_size > 0
    for name in ("Vanilla MTL + GradNorm", "G-FMT"):
        assert "fairness_share" not in payload["per_seed"][name][0]
        assert {"accuracy", "macro_f1", "eo_violation", "eps_deo", "collapsed"} <= set(
            payload["per_seed"][name][0]["figures"]
        )
    markdown = (tmp_path / "teacher_text_smoke.md").read_text()
    assert "python -m benchmarks.teacher_text --smoke" in markdown
    assert "## Teacher decisions and diagnostics" in markdown
    assert f"| {variant_name('interval1')} | {AUXILIARY} |" in markdown
    assert "auxiliary_eo_violation" in payload["summary"]["G-FMT"]["figures"]
    rerendered = main(["--smoke", "--render_only", "--output-dir", str(tmp_path)])
    assert rerendered["summary"] == stored["summary"]
    assert (tmp_path / "teacher_text_smoke.md").read_text() == markdown


def test_combine_pools_the_seeds_of_two_runs(tmp_path) -> None:
    common = ["--smoke", "--variants", "default", "--output-dir", str(tmp_path)]
    first = main([*common, "--stem", "a"])
    second = main([*common, "--first_seed", "1", "--stem", "b"])
    pooled = main([*common, "--combine", "a", "b", "--stem", "ab"])
    assert pooled["seeds"] == [0, 1]
    for name, runs in pooled["per_seed"].items():
        assert [run["seed"] for run in runs] == [0, 1]
        expected = first["per_seed"][name] + second["per_seed"][name]
        assert [run["figures"]["eo_violation"] for run in runs] == [run["figures"]["eo_violation"] for run in expected]
    accuracy = pooled["summary"]["G-FMT"]["figures"]["accuracy"]
    assert accuracy["n"] == 2 and accuracy["values"] == [
        round(run["figures"]["accuracy"], 6) for run in pooled["per_seed"]["G-FMT"]
    ]
    markdown = (tmp_path / "ab.md").read_text()
    assert "--combine a b" in markdown and "| seed 0 | seed 1 | wins |" in markdown
    with pytest.raises(ValueError, match="share seeds"):
        main([*common, "--combine", "a", "a", "--stem", "aa"])


def test_text_task_loss_reaches_every_method() -> None:
    """`--text_task_loss balanced`: both text tasks of every method train on class-balanced CE (the census remedy)."""
    from benchmarks.quality_debiasing import text_part
    from benchmarks.teacher_text import parse_args

    setting = text_part(parse_args(["--smoke", "--text_task_loss", "balanced"]))
    assert setting.training["task_loss"] == "balanced" and "task_loss 'balanced'" in setting.description
    assert "task_loss" not in text_part(parse_args(["--smoke"])).training
