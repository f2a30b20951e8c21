"""Sweeps and selection: one method over several λ or fairness targets, Pareto fronts, and DTO.

A sweep turns `--fairness_weight 0 1 3 10` (or `--fairness_target 0.3 0.2 0.1`) into one method per value, named
`weighted[λ=3]` / `constrained[target=0.1]`, so one run shows the whole accuracy–fairness trade-off. Every name
carries its setting, so it parses back ([`split_method_name`]) wherever a method name is read.

Selection follows fairlib (Han et al. 2022, `fairlib/src/analysis/utils.py: DTO`): with fairness `1 − gap` and
performance `accuracy`, the utopia point is the best of each over the candidates, both are divided by it, and the
recommended point is the one nearest to `(1, 1)`. A collapsed task (one class on ≥ 95 % of held-out rows) is never a
candidate: its gap says nothing about fairness. Pick on validation figures, report test figures.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SWEEP_SETTINGS = {"fairness_weight": "λ", "fairness_target": "target"}
"""Settings a sweep may vary, with the symbol a method name shows for them."""
_SYMBOLS = {**{symbol: name for name, symbol in SWEEP_SETTINGS.items()}, "lambda": "fairness_weight"}
_NAME = re.compile(r"^(?P<method>[^\[\]]+)\[(?P<symbol>[^=\[\]]+)=(?P<value>[^\[\]]+)\]$")


@dataclass(frozen=True)
class SweepPoint:
    """One method of a sweep: display `name`, the plain `method` and the training-argument `overrides`."""

    name: str
    method: str
    overrides: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TradeOffPoint:
    """One trained model on the accuracy–fairness plane (one task): lower `gap` is fairer."""

    method: str
    accuracy: float
    gap: float
    collapsed: bool = False
    label: str = ""
    marker: str = ""
    """Matplotlib marker of an anchor (`plot_trade_off(anchors=...)`); empty: the next of a fixed sequence."""


def format_value(value: float) -> str:
    """`3.0` → `"3"`, `0.10` → `"0.1"`: the shortest text that reads back as the same float."""
    return format(float(value), "g") if float(value) == float(format(float(value), "g")) else repr(float(value))


def method_name(method: str, setting: str, value: float) -> str:
    """`method_name("weighted", "fairness_weight", 3)` → `"weighted[λ=3]"`."""
    if setting not in SWEEP_SETTINGS:
        raise ValueError(f"Unknown sweep setting {setting!r}; one of {list(SWEEP_SETTINGS)}")
    return f"{method}[{SWEEP_SETTINGS[setting]}={format_value(value)}]"


def split_method_name(name: str) -> tuple[str, dict[str, float]]:
    """`"weighted[λ=3]"` → `("weighted", {"fairness_weight": 3.0})`; a plain name → `(name, {})`.

    Raises:
        ValueError: On a bracket suffix with an unknown symbol or a value that is not a number.
    """
    if "[" not in name:
        return name, {}
    match = _NAME.match(name)
    setting = _SYMBOLS.get(match.group("symbol").strip()) if match else None
    if match is None or setting is None:
        raise ValueError(f"Method {name!r}: a swept method reads '<method>[λ=<value>]' or '<method>[target=<value>]'")
    try:
        value = float(match.group("value"))
    except ValueError:
        raise ValueError(f"Method {name!r}: {match.group('value')!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Method {name!r}: the {setting} must be a finite number >= 0")
    return match.group("method"), {setting: value}


def expand_sweeps(
    methods: Sequence[str], sweeps: Mapping[str, Sequence[float]], sweeps_setting: Mapping[str, str | None]
) -> list[SweepPoint]:
    """Every method, expanded over the values of the setting it sweeps.

    Args:
        methods: Method names (plain, or already swept like `weighted[λ=3]`, which stay as they are).
        sweeps: Setting → values, e.g. `{"fairness_weight": [0, 1, 3, 10]}`.
        sweeps_setting: Method → the setting its strategy takes (`fairness_weight` for fixed-λ strategies,
            `fairness_target` for `constrained`, `None` for others; see [`strategy_sweep_setting`]).

    Returns:
        The points in method order, values in the order given; methods that take none of the swept settings once.

    Raises:
        ValueError: A swept setting that no method takes (naming it and the methods), or an empty value list.
    """
    for setting, values in sweeps.items():
        if setting not in SWEEP_SETTINGS:
            raise ValueError(f"Unknown sweep setting {setting!r}; one of {list(SWEEP_SETTINGS)}")
        if not values:
            raise ValueError(f"--{setting} was given without values")
        if not any(sweeps_setting.get(split_method_name(m)[0]) == setting for m in methods):
            raise ValueError(f"--{setting} sweeps nothing: none of the methods {list(methods)} takes {setting}")
    points = []
    for method in methods:
        plain, fixed = split_method_name(method)
        setting = sweeps_setting.get(plain)
        if fixed or setting not in sweeps:
            points.append(SweepPoint(method, plain, fixed))
            continue
        points += [SweepPoint(method_name(plain, setting, v), plain, {setting: float(v)}) for v in sweeps[setting]]
    return points


def strategy_sweep_setting(strategy: type) -> str | None:
    """The setting a strategy class is swept over: `fairness_target` when it declares `uses_fairness_target`,
    `fairness_weight` when it declares `uses_fairness_weight`, else `None`."""
    if getattr(strategy, "uses_fairness_target", False):
        return "fairness_target"
    if getattr(strategy, "uses_fairness_weight", False):
        return "fairness_weight"
    return None


def sweep_methods(methods: Sequence[str], sweeps: Mapping[str, Sequence[float]]) -> list[str]:
    """[`expand_sweeps`] with each method's setting read from its registered strategy; returns the method names.

    Example (what `hf-fairmtl train` does with `--fairness_target 0.3 0.2 0.1`):
        ```python
        argv, sweeps = split_sweep_argv(argv)
        methods = sweep_methods(["vanilla", "constrained"], sweeps)
        # ["vanilla", "constrained[target=0.3]", "constrained[target=0.2]", "constrained[target=0.1]"]
        ```
    """
    from ..strategies import STRATEGIES

    settings = {}
    for method in methods:
        plain = split_method_name(method)[0]
        strategy = plain.partition("+")[0]
        settings[plain] = strategy_sweep_setting(STRATEGIES.get_class(strategy)) if strategy in STRATEGIES else None
    return [point.name for point in expand_sweeps(methods, sweeps, settings)]


def split_sweep_argv(argv: Sequence[str]) -> tuple[list[str], dict[str, list[float]]]:
    """Take `--fairness_weight 0 1 3 10` / `--fairness_target ...` with two or more values out of `argv`.

    A single value (or a JSON dict) stays in `argv` for `HfArgumentParser`: it sets the setting of every method.
    `--name=value` is a single value too.

    Returns:
        `(argv without the sweeps, setting -> values)`.
    """
    rest: list[str] = []
    sweeps: dict[str, list[float]] = {}
    index = 0
    while index < len(argv):
        option = argv[index]
        setting = option[2:] if option.startswith("--") else None
        values = []
        end = index + 1
        while setting in SWEEP_SETTINGS and end < len(argv) and _is_number(argv[end]):
            values.append(float(argv[end]))
            end += 1
        if len(values) >= 2:
            sweeps[setting] = values
            index = end
        else:
            rest.append(option)
            index += 1
    return rest, sweeps


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def pareto_front(points: Sequence[TradeOffPoint]) -> list[int]:
    """Indices of the points no other point dominates (accuracy ≥ and gap ≤, one strictly), by increasing gap.

    Collapsed points and points with a non-finite figure are never on the front.
    """
    usable = [i for i, p in enumerate(points) if not p.collapsed and math.isfinite(p.accuracy) and math.isfinite(p.gap)]

    def dominated(i: int) -> bool:
        a = points[i]
        return any(
            b.accuracy >= a.accuracy and b.gap <= a.gap and (b.accuracy > a.accuracy or b.gap < a.gap)
            for b in (points[j] for j in usable)
        )

    return sorted((i for i in usable if not dominated(i)), key=lambda i: (points[i].gap, -points[i].accuracy))


def dto(
    points: Sequence[TradeOffPoint], utopia: tuple[float, float] | None = None, gap_range: float = 1.0
) -> list[float]:
    """fairlib's distance to the utopia point per point (NaN for collapsed or non-finite points).

    Fairness is `1 − gap / gap_range` (fairlib's gaps lie in [0, 1]; pass `gap_range=2` for the EO violation
    |ΔTPR| + |ΔFPR|, which lies in [0, 2]), performance is accuracy; the utopia is `(max accuracy, max fairness)`
    over the usable points unless given; both axes are divided by it and the distance is to `(1, 1)`.
    """
    usable = [not p.collapsed and math.isfinite(p.accuracy) and math.isfinite(p.gap) for p in points]
    if utopia is not None and (utopia[0] <= 0 or utopia[1] <= 0):
        raise ValueError(f"The utopia point {utopia} must be positive on both axes (accuracy, 1 − gap)")
    if utopia is None:
        if not any(usable):
            return [math.nan] * len(points)
        utopia = (
            max(p.accuracy for p, ok in zip(points, usable, strict=True) if ok),
            max(1 - p.gap / gap_range for p, ok in zip(points, usable, strict=True) if ok),
        )
    best_accuracy, best_fairness = utopia

    def ratio(value: float, best: float) -> float:
        # Every point at 0 on an axis (e.g. EO violation 2 everywhere): that axis tells them apart no more.
        return value / best if best > 0 else 1.0

    return [
        math.hypot(1 - ratio(p.accuracy, best_accuracy), 1 - ratio(1 - p.gap / gap_range, best_fairness))
        if ok
        else math.nan
        for p, ok in zip(points, usable, strict=True)
    ]


def recommend(
    points: Sequence[TradeOffPoint], utopia: tuple[float, float] | None = None, gap_range: float = 1.0
) -> int | None:
    """Index of the point with the smallest DTO (the first on ties); `None` when every point is collapsed."""
    distances = dto(points, utopia, gap_range)
    finite = [i for i, d in enumerate(distances) if math.isfinite(d)]
    return min(finite, key=lambda i: distances[i]) if finite else None


def plot_trade_off(
    points: Sequence[TradeOffPoint],
    path: str | os.PathLike,
    title: str,
    gap_label: str = "EO violation",
    anchors: Sequence[TradeOffPoint] = (),
    pick: int | None = -1,
    gap_range: float = 1.0,
) -> Path:
    """Accuracy vs gap of one task: every point, each method's Pareto front as a line, the DTO pick circled.

    Collapsed points are drawn hollow; `anchors` (e.g. fairlearn baselines) are drawn as black marks (hollow and
    labelled "collapsed" when they are), on no front and never the pick: they are references. `pick` is the index
    of the recommended point (e.g. chosen on validation figures); the default `-1` picks by DTO on `points`
    themselves, `None` draws no pick.
    """
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    methods = list(dict.fromkeys(p.method for p in points))
    palette = matplotlib.colormaps["tab10"]
    for m, method in enumerate(methods):
        own = [p for p in points if p.method == method]
        color = palette(m % 10)
        for p in own:
            ax.scatter(p.gap, p.accuracy, color=color, facecolors="none" if p.collapsed else color, s=28, zorder=3)
            if p.label and p.label != p.method:  # name the sweep point (e.g. "λ=3")
                text = p.label[len(p.method) :].strip("[]") or p.label
                ax.annotate(text, (p.gap, p.accuracy), xytext=(4, 4), textcoords="offset points", fontsize=7)
        front = [own[i] for i in pareto_front(own)]
        ax.plot([p.gap for p in front], [p.accuracy for p in front], color=color, label=method, lw=1.5)
    for marker, p in zip("Xs^Dv*P", anchors, strict=False):
        label = (p.label or p.method) + (" (collapsed)" if p.collapsed else "")
        face = "none" if p.collapsed else "black"
        size = 90 if (p.marker or marker) == "*" else 50
        ax.scatter(
            p.gap, p.accuracy, color="black", facecolors=face, marker=p.marker or marker, s=size, zorder=4, label=label
        )
    pick = recommend(points, gap_range=gap_range) if pick == -1 else pick
    if pick is not None:
        ax.scatter(points[pick].gap, points[pick].accuracy, s=160, facecolors="none", edgecolors="red", zorder=5)
        ax.annotate("DTO pick", (points[pick].gap, points[pick].accuracy), xytext=(6, -12), textcoords="offset points")
    ax.set_xlabel(f"{gap_label} ↓ (hollow: collapsed, never counted fair)")
    ax.set_ylabel("accuracy ↑")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def summary_rows(points: Sequence[TradeOffPoint]) -> list[dict[str, Any]]:
    """One row per point: method, accuracy, gap, collapsed, on its method's front, DTO, recommended."""
    distances = dto(points)
    pick = recommend(points)
    fronts = {
        method: {idx for idx in pareto_front([p for p in points if p.method == method])}
        for method in {p.method for p in points}
    }
    rows = []
    position = {method: 0 for method in fronts}
    for index, p in enumerate(points):
        rows.append(
            {
                "method": p.method,
                "label": p.label,
                "accuracy": p.accuracy,
                "gap": p.gap,
                "collapsed": p.collapsed,
                "pareto": position[p.method] in fronts[p.method],
                "dto": distances[index],
                "recommended": index == pick,
            }
        )
        position[p.method] += 1
    return rows
