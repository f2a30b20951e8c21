"""Sweeps (λ / target expansion, names that parse back), Pareto fronts, fairlib's DTO and the trade-off plot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_fairmtl.experiments.sweeps import (
    TradeOffPoint,
    dto,
    expand_sweeps,
    method_name,
    pareto_front,
    plot_trade_off,
    recommend,
    split_method_name,
    split_sweep_argv,
    strategy_sweep_setting,
    summary_rows,
)
from hf_fairmtl.strategies import STRATEGIES

SETTINGS = {"weighted": "fairness_weight", "mtaf": "fairness_weight", "constrained": "fairness_target", "vanilla": None}


def test_names_parse_back() -> None:
    assert method_name("weighted", "fairness_weight", 3.0) == "weighted[λ=3]"
    assert method_name("constrained", "fairness_target", 0.1) == "constrained[target=0.1]"
    assert split_method_name("weighted[λ=3]") == ("weighted", {"fairness_weight": 3.0})
    assert split_method_name("weighted+gradnorm[lambda=0.5]") == ("weighted+gradnorm", {"fairness_weight": 0.5})
    assert split_method_name("constrained[target=0.05]") == ("constrained", {"fairness_target": 0.05})
    assert split_method_name("vanilla") == ("vanilla", {})
    for value in (0.0, 1e-3, 0.3, 10.0, 1 / 3):
        assert split_method_name(method_name("weighted", "fairness_weight", value))[1]["fairness_weight"] == value


@pytest.mark.parametrize(
    ("name", "message"),
    [("weighted[mu=3]", "reads '<method>"), ("weighted[λ=x]", "is not a number"), ("weighted[λ=-1]", ">= 0")],
)
def test_bad_names_raise(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_method_name(name)


def test_expand_sweeps_expands_only_methods_taking_the_setting() -> None:
    points = expand_sweeps(
        ["vanilla", "weighted", "constrained", "weighted[λ=0.5]"],
        {"fairness_weight": [0, 1, 3, 10], "fairness_target": [0.3, 0.1]},
        SETTINGS,
    )
    assert [p.name for p in points] == [
        "vanilla",
        "weighted[λ=0]",
        "weighted[λ=1]",
        "weighted[λ=3]",
        "weighted[λ=10]",
        "constrained[target=0.3]",
        "constrained[target=0.1]",
        "weighted[λ=0.5]",
    ]
    assert points[3].method == "weighted" and points[3].overrides == {"fairness_weight": 3.0}
    assert points[0].overrides == {} and points[-1].overrides == {"fairness_weight": 0.5}
    with pytest.raises(ValueError, match="--fairness_target sweeps nothing"):
        expand_sweeps(["vanilla", "weighted"], {"fairness_target": [0.1, 0.2]}, SETTINGS)


def test_constrained_declares_its_sweep_setting() -> None:
    assert strategy_sweep_setting(STRATEGIES.get_class("constrained")) == "fairness_target"
    assert strategy_sweep_setting(STRATEGIES.get_class("vanilla")) is None


def test_split_sweep_argv_takes_only_multi_value_sweeps() -> None:
    argv = ["--methods", "weighted", "constrained", "--fairness_weight", "0", "1", "3", "10", "--seed", "2"]
    argv += ["--fairness_target", "0.3", "0.2", "0.1", "--output_dir", "x"]
    rest, sweeps = split_sweep_argv(argv)
    assert sweeps == {"fairness_weight": [0.0, 1.0, 3.0, 10.0], "fairness_target": [0.3, 0.2, 0.1]}
    assert rest == ["--methods", "weighted", "constrained", "--seed", "2", "--output_dir", "x"]
    single = ["--fairness_weight", "3", "--fairness_target", '{"income": 0.1}']
    assert split_sweep_argv(single) == (single, {})


def points(*rows: tuple[float, float, bool]) -> list[TradeOffPoint]:
    return [TradeOffPoint("m", accuracy, gap, collapsed) for accuracy, gap, collapsed in rows]


def test_pareto_front_drops_dominated_and_collapsed_points() -> None:
    cloud = points(
        (0.90, 0.40, False),  # 0: front (most accurate)
        (0.85, 0.20, False),  # 1: front
        (0.84, 0.25, False),  # 2: dominated by 1
        (0.80, 0.05, False),  # 3: front (fairest usable)
        (0.94, 0.00, True),  # 4: collapsed: would dominate everything, never on the front
        (0.85, 0.20, False),  # 5: a tie with 1: neither dominates the other
    )
    assert pareto_front(cloud) == [3, 1, 5, 0]


def test_dto_matches_fairlib_definition() -> None:
    cloud = points((0.90, 0.40, False), (0.85, 0.20, False), (0.80, 0.05, False), (0.99, 0.0, True))
    accuracy = np.array([0.90, 0.85, 0.80])
    fairness = 1 - np.array([0.40, 0.20, 0.05])
    # fairlib: normalise by the best of each axis over the candidates, Euclidean distance to (1, 1).
    expected = np.hypot(1 - accuracy / accuracy.max(), 1 - fairness / fairness.max())
    distances = dto(cloud)
    np.testing.assert_allclose(distances[:3], expected)
    assert math.isnan(distances[3])  # the collapsed model is no candidate
    assert recommend(cloud) == int(np.argmin(expected))
    assert recommend(points((0.9, 0.0, True))) is None


def test_summary_and_plot(tmp_path) -> None:
    cloud = [
        TradeOffPoint("weighted", 0.90, 0.40, label="weighted[λ=0]"),
        TradeOffPoint("weighted", 0.86, 0.20, label="weighted[λ=3]"),
        TradeOffPoint("weighted", 0.70, 0.30, label="weighted[λ=10]"),
        TradeOffPoint("constrained", 0.88, 0.10, label="constrained[target=0.1]"),
        TradeOffPoint("constrained", 0.94, 0.00, collapsed=True, label="constrained[target=0.01]"),
    ]
    rows = summary_rows(cloud)
    assert [row["pareto"] for row in rows] == [True, True, False, True, False]
    assert [row["recommended"] for row in rows] == [False, False, False, True, False]
    anchor = TradeOffPoint("fairlearn", 0.85, 0.12, label="ExponentiatedGradient")
    path = plot_trade_off(cloud, tmp_path / "income.png", "income: accuracy vs EO", anchors=[anchor])
    assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"


def test_swept_names_are_methods_of_the_cli() -> None:
    from hf_fairmtl.experiments.methods import method_arguments, parse_method

    assert parse_method("weighted+gradnorm[λ=3]") == ("weighted", "gradnorm")
    args = method_arguments({}, "constrained[target=0.05]", seed=0, output_dir="unused")
    assert args.strategy == "constrained" and args.fairness_target == 0.05
    assert method_arguments({"fairness_weight": 1.0}, "weighted[λ=3]", seed=0, output_dir="unused").fairness_weight == 3


def test_sweep_methods_reads_the_registered_strategies() -> None:
    from hf_fairmtl.experiments.sweeps import sweep_methods

    methods = sweep_methods(["vanilla", "constrained+gradnorm"], {"fairness_target": [0.3, 0.1]})
    assert methods == ["vanilla", "constrained+gradnorm[target=0.3]", "constrained+gradnorm[target=0.1]"]
