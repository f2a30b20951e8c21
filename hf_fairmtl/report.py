"""Run directories, the summary table and the Markdown report with plots (`hf-fairmtl report RUN_DIR`).

A run directory holds one experiment: several methods (strategies), each trained with one or more seeds
and evaluated on the same held-out rows. Layout (written by `hf-fairmtl train` and the examples through
[`write_run_info`] and [`save_trainer_result`], read by [`load_run`]):

```
RUN_DIR/
  run.json                                  tasks, attributes, group names, methods, seeds, settings
  {method}/seed-{seed}/metrics.json         trainer.evaluate() on the held-out rows (`eval_` keys)
  {method}/seed-{seed}/log_history.json     trainer.state.log_history
  {method}/seed-{seed}/teacher_actions.json teacher decisions (strategy "teacher" only)
  report.md, plots/*.png                    written by write_report
```

Plots (matplotlib, Agg backend, so no display is needed): per-task accuracy and EO-violation box plots per
method over seeds (L2T-FMT paper, Figs. 3-5), the teacher's action map task x step (Fig. 6), per-group TPR
and FPR bars, GradNorm task weights and the per-task training losses over steps.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .configuration_fairmtl import FairMTLConfig
from .metrics import GAP_METRIC_TITLES

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
LOG_HISTORY_FILE = "log_history.json"
TEACHER_FILE = "teacher_actions.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
METRIC_PREFIX = "eval_"
# Columns of the summary table: (metric key suffix, title).
TABLE_METRICS = tuple((key, GAP_METRIC_TITLES[key]) for key in ("eo_violation", "tpr_gap", "fpr_gap"))
ACTION_COLORS = ("#9ecae1", "#e6550d")  # accuracy loss, fairness loss


# ---------------------------------------------------------------------------------------------- run files


@dataclass
class RunInfo:
    """What a report needs to know about an experiment besides the per-method results.

    Args:
        tasks: Task names in config order.
        attributes: Group attribute names reported (single ones, then intersectional `"gender*race"`).
        group_names: Group names per attribute, in group-id order.
        num_labels: Classes per task.
        methods: Method names in the order they were run (a strategy, e.g. `"weighted"`, or a label such as
            `"teacher+gradnorm"`).
        seeds: Seeds every method was run with.
        settings: Free-form description shown in the report (dataset, model, steps, wall time, ...).
        task_notes: Optional note per task (e.g. "target: no demographic labels in training").
    """

    tasks: list[str]
    attributes: list[str]
    group_names: dict[str, list[str]]
    num_labels: dict[str, int]
    methods: list[str]
    seeds: list[int]
    settings: dict[str, Any] = field(default_factory=dict)
    task_notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        config: FairMTLConfig,
        methods: Sequence[str],
        seeds: Sequence[int],
        settings: Mapping[str, Any] | None = None,
        task_notes: Mapping[str, str] | None = None,
    ) -> RunInfo:
        """The run description of a model config: its tasks, attributes (intersections included) and groups."""
        attributes = list(config.group_attribute_names)
        return cls(
            tasks=list(config.tasks),
            attributes=attributes,
            group_names={attr: config.group_names(attr) for attr in attributes},
            num_labels=dict(config.task_num_labels),
            methods=list(methods),
            seeds=[int(seed) for seed in seeds],
            settings=dict(settings or {}),
            task_notes=dict(task_notes or {}),
        )


def method_dir(run_dir: str | os.PathLike, method: str, seed: int) -> Path:
    """Folder of one method and seed (`+` in a method label becomes `-` so the path stays shell-friendly)."""
    return Path(run_dir) / method.replace("+", "-").replace(os.sep, "_") / f"seed-{int(seed)}"


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # allow_nan: NaN is a legitimate "undefined rate" (metrics.py); Python's json reads it back.
    path.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_run_info(run_dir: str | os.PathLike, info: RunInfo) -> Path:
    """Write `run.json` (call on the main process only)."""
    path = Path(run_dir) / RUN_FILE
    _write_json(path, asdict(info))
    return path


def save_method_result(
    run_dir: str | os.PathLike,
    method: str,
    seed: int,
    metrics: Mapping[str, Any],
    log_history: Sequence[Mapping[str, Any]] = (),
    teacher: Mapping[str, Any] | None = None,
) -> Path:
    """Write one method's held-out metrics, log history and (for the teacher) action history.

    Args:
        run_dir: The run directory.
        method: Method label.
        seed: Seed of this run.
        metrics: `trainer.evaluate()` output on the held-out rows (`eval_` keys).
        log_history: `trainer.state.log_history`.
        teacher: `{"tasks": [...], "history": [[step, [action per task]], ...], "summary": {task: fraction}}`.

    Returns:
        The method's folder.
    """
    folder = method_dir(run_dir, method, seed)
    _write_json(folder / METRICS_FILE, dict(metrics))
    _write_json(folder / LOG_HISTORY_FILE, list(log_history))
    if teacher is not None:
        _write_json(folder / TEACHER_FILE, dict(teacher))
    return folder


def save_trainer_result(
    run_dir: str | os.PathLike, method: str, seed: int, trainer: Any, metrics: Mapping[str, Any]
) -> Path | None:
    """[`save_method_result`] for a `FairMTLTrainer` after `train()` and `evaluate()`.

    Takes the log history from `trainer.state` and the teacher's decisions from `trainer.teacher_callback`.
    Writes on the main process only (returns `None` elsewhere), so it is safe under `accelerate launch`.
    """
    if not trainer.is_world_process_zero():
        return None
    teacher = None
    callback = getattr(trainer, "teacher_callback", None)
    if callback is not None and getattr(callback, "teacher", None) is not None:
        teacher = {
            "tasks": list(callback.tasks),
            "history": [[step, list(actions)] for step, actions in callback.action_history],
            "summary": callback.summary(),
        }
    return save_method_result(run_dir, method, seed, metrics, trainer.state.log_history, teacher)


@dataclass
class MethodResult:
    """One method and seed, as read back from a run directory."""

    method: str
    seed: int
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    teacher: dict[str, Any] | None = None


@dataclass
class RunResults:
    """A run directory read back: its [`RunInfo`] and every [`MethodResult`]."""

    info: RunInfo
    results: list[MethodResult]
    run_dir: Path | None = None

    @property
    def methods(self) -> list[str]:
        """Methods that have results, in run order."""
        present = {result.method for result in self.results}
        return [method for method in self.info.methods if method in present]

    def of(self, method: str) -> list[MethodResult]:
        return [result for result in self.results if result.method == method]

    def values(self, method: str, key: str) -> np.ndarray:
        """A metric (without the `eval_` prefix) over the seeds of a method; NaN where a run lacks it."""
        return np.array([_number(r.metrics.get(METRIC_PREFIX + key)) for r in self.of(method)], dtype=float)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def load_run(run_dir: str | os.PathLike) -> RunResults:
    """Read a run directory written by `hf-fairmtl train` (or the examples).

    Raises:
        FileNotFoundError: No `run.json`, or no method has a `metrics.json`.
        ValueError: `run.json` is not a run description.
    """
    run_dir = Path(run_dir)
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        raise FileNotFoundError(f"{run_file} not found: not a run directory of `hf-fairmtl train`")
    try:
        info = RunInfo(**json.loads(run_file.read_text()))
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{run_file} is not a run description ({error})") from None
    results = []
    for method in info.methods:
        for seed in info.seeds:
            folder = method_dir(run_dir, method, seed)
            if not (folder / METRICS_FILE).is_file():
                continue  # a run that stopped early: report what is there
            teacher_file = folder / TEACHER_FILE
            results.append(
                MethodResult(
                    method=method,
                    seed=seed,
                    metrics=json.loads((folder / METRICS_FILE).read_text()),
                    log_history=_read_optional(folder / LOG_HISTORY_FILE, []),
                    teacher=_read_optional(teacher_file, None),
                )
            )
    if not results:
        raise FileNotFoundError(f"No method results ({METRICS_FILE}) under {run_dir}")
    return RunResults(info=info, results=results, run_dir=run_dir)


def _read_optional(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


# ---------------------------------------------------------------------------------------------- table


def summary_rows(run: RunResults) -> list[dict[str, Any]]:
    """One row per method x task x attribute: accuracy and the gap metrics, mean and std over seeds.

    Each row has `method`, `task`, `attribute`, `seeds` (count) and, for `accuracy` and every metric of
    `TABLE_METRICS`, `{metric}` (mean) and `{metric}_std` (NaN with one seed).
    """
    rows = []
    for method in run.methods:
        for task in run.info.tasks:
            accuracy = run.values(method, f"{task}_accuracy")
            attributes = [a for a in run.info.attributes if _has_metric(run, method, f"{task}_{a}_eo_violation")]
            for attr in attributes or [None]:
                row: dict[str, Any] = {"method": method, "task": task, "attribute": attr or "–"}
                row["seeds"] = len(accuracy)
                row["accuracy"], row["accuracy_std"] = _mean_std(accuracy)
                for key, _ in TABLE_METRICS:
                    values = run.values(method, f"{task}_{attr}_{key}") if attr else np.array([math.nan])
                    row[key], row[f"{key}_std"] = _mean_std(values)
                rows.append(row)
    return rows


def _has_metric(run: RunResults, method: str, key: str) -> bool:
    return any(METRIC_PREFIX + key in r.metrics for r in run.of(method))


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not values.size:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def format_table(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """The summary rows as an aligned text table (or a Markdown table).

    Mean over seeds, `± std` when there are several.
    """
    header = ["method", "task", "attribute", "accuracy"] + [title for _, title in TABLE_METRICS]
    body = [
        [str(row["method"]), str(row["task"]), str(row["attribute"]), _cell(row["accuracy"], row["accuracy_std"])]
        + [_cell(row[key], row[f"{key}_std"]) for key, _ in TABLE_METRICS]
        for row in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        # Text columns left-aligned, numbers right-aligned.
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(cells) for cells in body)])


# ---------------------------------------------------------------------------------------------- plots


def _subplots(rows: int, cols: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, np.ndarray]:
    """A figure and its axes grid without pyplot: no global backend state, no display (drawn by Agg on save).

    Constrained layout is computed while saving, so each figure is drawn once (tight_layout draws twice).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs)


def _palette() -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"]


def _method_colors(methods: Sequence[str]) -> dict[str, Any]:
    palette = _palette()
    return {method: palette(i % 10) for i, method in enumerate(methods)}


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "x" if c == "*" else "_" for c in name)


def plot_accuracy_eo(run: RunResults, path: str | os.PathLike) -> Path:
    """Box plots per task: accuracy and EO violation (per attribute) per method, over seeds.

    One row per task; columns: accuracy, then one EO-violation panel per attribute. Every seed is also drawn
    as a dot, so a single-seed run still shows its value.
    """
    methods = run.methods
    colors = _method_colors(methods)
    tasks = run.info.tasks
    attributes = [
        a
        for a in run.info.attributes
        if any(_has_metric(run, m, f"{t}_{a}_eo_violation") for m in methods for t in tasks)
    ]
    panels = [("accuracy", None)] + [("eo_violation", attr) for attr in attributes]
    fig, axes = _subplots(len(tasks), len(panels), figsize=(3.2 * len(panels) + 0.6, 2.6 * len(tasks) + 0.6))
    rng = np.random.default_rng(0)
    for row, task in enumerate(tasks):
        for col, (metric, attr) in enumerate(panels):
            ax = axes[row][col]
            key = f"{task}_accuracy" if attr is None else f"{task}_{attr}_{metric}"
            data = [run.values(method, key) for method in methods]
            finite = [values[~np.isnan(values)] for values in data]
            positions = np.arange(1, len(methods) + 1)
            shown = [i for i, values in enumerate(finite) if values.size]
            if shown:
                boxes = ax.boxplot(
                    [finite[i] for i in shown],
                    positions=positions[shown],
                    widths=0.55,
                    patch_artist=True,
                    medianprops={"color": "black"},
                    showfliers=False,
                )
                for patch, i in zip(boxes["boxes"], shown, strict=True):
                    patch.set_facecolor(colors[methods[i]])
                    patch.set_alpha(0.45)
                for i in shown:
                    jitter = rng.uniform(-0.12, 0.12, finite[i].size) if finite[i].size > 1 else np.zeros(1)
                    ax.scatter(positions[i] + jitter, finite[i], color=colors[methods[i]], s=18, zorder=3)
            else:
                ax.text(0.5, 0.5, "no labelled groups", ha="center", va="center", transform=ax.transAxes, color="gray")
            ax.set_xticks(positions)
            ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
            title = "accuracy ↑" if attr is None else f"EO violation ({attr}) ↓"
            ax.set_title(f"{task}: {title}", fontsize=9)
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(axis="y", alpha=0.3)
    seeds = len(run.info.seeds)
    fig.suptitle(
        f"Held-out accuracy and EO violation per method ({seeds} seed{'s' if seeds != 1 else ''})", fontsize=11
    )
    return _save(fig, path)


def plot_teacher_actions(run: RunResults, path: str | os.PathLike, max_panels: int = 4) -> Path | None:
    """The teacher's action map (L2T-FMT Fig. 6): task x decision step, accuracy vs fairness loss.

    One panel per teacher run (method x seed, at most `max_panels`). Returns `None` when no run has a teacher.
    """
    runs = [r for r in run.results if r.teacher and r.teacher.get("history")][:max_panels]
    if not runs:
        return None
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    height = 0.55 * sum(len(r.teacher["tasks"]) for r in runs) + 1.4 * len(runs)
    fig, axes = _subplots(len(runs), 1, figsize=(9, height))
    cmap = ListedColormap(ACTION_COLORS)
    for ax, result in zip(axes[:, 0], runs, strict=True):
        tasks = result.teacher["tasks"]
        history = result.teacher["history"]
        steps = [int(step) for step, _ in history]
        grid = np.array([[int(a) for a in actions] for _, actions in history], dtype=float).T  # [T, decisions]
        # Each decision holds until the next one, so cells span real optimizer steps; the last one holds until the end
        # of training (a decision taken at the last step is never used and gets no width).
        logged = [int(e["step"]) for e in result.log_history if "step" in e]
        end = max(logged) if logged else steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1)
        edges = np.array(steps + [max(end, steps[-1])], dtype=float)
        ax.pcolormesh(edges, np.arange(len(tasks) + 1) - 0.5, grid, cmap=cmap, vmin=0, vmax=1)
        ax.set_ylim(len(tasks) - 0.5, -0.5)
        ax.set_yticks(range(len(tasks)))
        summary = result.teacher.get("summary") or {}
        ax.set_yticklabels([f"{t} ({_percent(summary.get(t))} fair)" for t in tasks], fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.set_title(f"{result.method}, seed {result.seed}", fontsize=9)
    fig.legend(
        handles=[
            Patch(color=ACTION_COLORS[0], label="accuracy loss"),
            Patch(color=ACTION_COLORS[1], label="fairness loss"),
        ],
        loc="outside upper right",
        fontsize=8,
        ncol=2,
    )
    fig.suptitle("Teacher actions per task", fontsize=11)
    return _save(fig, path)


def _percent(value: Any) -> str:
    value = _number(value)
    return "–" if math.isnan(value) else f"{100 * value:.0f}%"


def group_rates(run: RunResults, method: str, task: str, attr: str) -> dict[str, np.ndarray]:
    """Per-group TPR and FPR of one method, task and attribute, over seeds: `{"tpr": [S, G], "fpr": [S, G]}`.

    Multi-class tasks: the mean over classes of the one-vs-rest rates (classes where a group has no
    positives, or no negatives, are skipped), i.e. the group's macro recall and macro false-positive rate.
    """
    groups = run.info.group_names[attr]
    classes = run.info.num_labels[task]
    out = {}
    for rate in ("tpr", "fpr"):
        per_seed = []
        for result in run.of(method):
            row = []
            for group in groups:
                base = f"{METRIC_PREFIX}{task}_{attr}_{rate}_{group}"
                keys = [base] if classes == 2 else [f"{base}_{c}" for c in range(classes)]
                values = np.array([_number(result.metrics.get(k)) for k in keys])
                row.append(np.nanmean(values) if (~np.isnan(values)).any() else math.nan)
            per_seed.append(row)
        out[rate] = np.array(per_seed, dtype=float).reshape(len(per_seed), len(groups))
    return out


def plot_group_rates(run: RunResults, task: str, path: str | os.PathLike) -> Path | None:
    """Bars of per-group TPR and FPR per method (mean over seeds, std as error bar), one row per attribute."""
    attributes = [
        a for a in run.info.attributes if any(_has_metric(run, m, f"{task}_{a}_eo_violation") for m in run.methods)
    ]
    if not attributes:
        return None
    colors = _method_colors(run.methods)
    widest = max(len(run.info.group_names[a]) for a in attributes)
    width_inches = min(max(7.0, 1.0 + 0.25 * widest * len(run.methods) * 2), 14.0)
    fig, axes = _subplots(len(attributes), 2, figsize=(width_inches, 2.9 * len(attributes) + 0.7))
    multi = run.info.num_labels[task] > 2
    for row, attr in enumerate(attributes):
        methods = [m for m in run.methods if _has_metric(run, m, f"{task}_{attr}_eo_violation")]
        groups = run.info.group_names[attr]
        width = 0.8 / len(methods)
        for ax, rate in zip(axes[row], ("tpr", "fpr"), strict=True):
            x = np.arange(len(groups))
            for i, method in enumerate(methods):
                values = group_rates(run, method, task, attr)[rate]
                mean = np.array([np.nanmean(c) if (~np.isnan(c)).any() else np.nan for c in values.T])
                std = np.array([np.nanstd(c, ddof=1) if (~np.isnan(c)).sum() > 1 else 0.0 for c in values.T])
                ax.bar(
                    x + (i - (len(methods) - 1) / 2) * width,
                    np.nan_to_num(mean),
                    width,
                    yerr=std,
                    label=method if row == 0 else None,
                    color=colors[method],
                    capsize=2,
                    error_kw={"ecolor": "#555555", "elinewidth": 0.8},
                )
            ax.set_xticks(x)
            tilt = len(groups) > 3
            ax.set_xticklabels(groups, rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
            name = rate.upper() + (" (macro over classes)" if multi else "")
            ax.set_title(f"{name} per {attr} group", fontsize=9)
            ax.set_ylim(0, 1.05)
            ax.grid(axis="y", alpha=0.3)
            ax.tick_params(axis="y", labelsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=min(len(handles), 5), frameon=False)
    fig.suptitle(f"{task}: per-group rates on held-out rows", fontsize=10)
    return _save(fig, path)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(entry["step"], _number(entry[key])) for entry in history if key in entry and "step" in entry]
    if not points:
        return np.empty(0), np.empty(0)
    steps, values = zip(*points, strict=True)
    return np.array(steps, dtype=float), np.array(values, dtype=float)


def _training_entries(result: MethodResult) -> list[dict[str, Any]]:
    # Training logs only: evaluation entries carry the same names with an `eval_` prefix.
    return [e for e in result.log_history if not any(k.startswith(METRIC_PREFIX) for k in e)]


def plot_gradnorm_weights(run: RunResults, path: str | os.PathLike) -> Path | None:
    """GradNorm task weights over training steps, one panel per method that used GradNorm (all seeds drawn)."""
    tasks = run.info.tasks
    methods = [
        m
        for m in run.methods
        if any(_series(_training_entries(r), f"{t}_gradnorm_weight")[0].size for r in run.of(m) for t in tasks)
    ]
    if not methods:
        return None
    palette = _palette()
    fig, axes = _subplots(1, len(methods), figsize=(4.6 * len(methods), 3.2), sharey=True)
    for ax, method in zip(axes[0], methods, strict=True):
        for t, task in enumerate(tasks):
            for k, result in enumerate(run.of(method)):
                steps, weights = _series(_training_entries(result), f"{task}_gradnorm_weight")
                ax.plot(
                    steps,
                    weights,
                    color=palette(t % 10),
                    alpha=0.9 if k == 0 else 0.4,
                    label=task if k == 0 else None,
                    marker="." if steps.size < 30 else None,
                )
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("task weight (sum = #tasks)", fontsize=8)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("GradNorm task weights", fontsize=10)
    return _save(fig, path)


def plot_training_losses(run: RunResults, path: str | os.PathLike) -> Path | None:
    """Per-task accuracy (solid) and fairness (dashed) training losses over steps, one panel per method."""
    tasks = run.info.tasks
    methods = [m for m in run.methods if any(_training_entries(r) for r in run.of(m))]
    if not methods:
        return None
    palette = _palette()
    fig, axes = _subplots(1, len(methods), figsize=(4.6 * len(methods), 3.2))
    drawn = False
    for ax, method in zip(axes[0], methods, strict=True):
        result = run.of(method)[0]  # the first seed: several seeds on one panel are unreadable
        for t, task in enumerate(tasks):
            for kind, style in (("accuracy", "-"), ("fairness", "--")):
                steps, values = _series(_training_entries(result), f"{task}_{kind}_loss")
                if steps.size:
                    drawn = True
                    ax.plot(
                        steps,
                        values,
                        style,
                        color=palette(t % 10),
                        label=f"{task} {kind}",
                        marker="." if steps.size < 30 else None,
                    )
        ax.set_title(f"{method} (seed {result.seed})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    if not drawn:
        return None
    fig.suptitle("Training losses per task (solid: accuracy, dashed: fairness)", fontsize=10)
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Figure.savefig draws with the Agg canvas for PNG.
    fig.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------------------------------------- report


def write_report(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Render `report.md` and its plots for a run directory.

    Args:
        run_dir: A directory written by `hf-fairmtl train` or an example.
        output: Report path (default `RUN_DIR/report.md`); plots go to `plots/` next to it.

    Returns:
        The report path.
    """
    run = load_run(run_dir)
    report_path = Path(output) if output is not None else Path(run_dir) / REPORT_FILE
    plots = report_path.parent / PLOTS_DIR
    info = run.info
    lines = [f"# hf-fairmtl report: `{Path(run_dir).resolve().name}`", ""]
    if info.settings:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {key} | {_setting_text(value)} |" for key, value in info.settings.items()]
        lines.append("")
    lines += [
        "## Held-out results",
        "",
        f"Methods: {', '.join(run.methods)}; seeds: {', '.join(str(s) for s in info.seeds)}. "
        "Mean over seeds (± standard deviation when there are several).",
        "",
        format_table(summary_rows(run), markdown=True),
        "",
        "*EO violation* = TPR gap + FPR gap, each the max − min over groups of the rate on held-out rows whose group "
        "is known (Roy & Ntoutsi 2022, Eq. 1); lower is fairer. Multi-class tasks: one-vs-rest gaps averaged over "
        "classes.",
        "",
    ]
    if info.task_notes:
        lines += [f"* `{task}`: {note}" for task, note in info.task_notes.items()] + [""]
    lines += [
        "## Accuracy and EO violation per method",
        "",
        f"![accuracy and EO violation]({PLOTS_DIR}/{plot_accuracy_eo(run, plots / 'accuracy_eo.png').name})",
        "",
    ]
    teacher_plot = plot_teacher_actions(run, plots / "teacher_actions.png")
    lines += ["## Teacher actions", ""]
    if teacher_plot is not None:
        lines += [
            "Which loss the L2T-FMT teacher chose for each task between decisions (the choice holds until the next "
            "decision); the percentage is the share of decisions for the fairness loss.",
            "",
            f"![teacher actions]({PLOTS_DIR}/{teacher_plot.name})",
            "",
        ]
        for result in run.results:
            if result.teacher and result.teacher.get("summary"):
                shares = ", ".join(f"{t}: {_percent(v)}" for t, v in result.teacher["summary"].items())
                lines.append(f"* {result.method}, seed {result.seed}: fairness-loss decisions {shares}")
        lines.append("")
    else:
        lines += ["No method of this run used the teacher.", ""]
    lines += ["## Per-group TPR and FPR", ""]
    for task in info.tasks:
        plot = plot_group_rates(run, task, plots / f"group_rates_{_safe_name(task)}.png")
        if plot is not None:
            lines += [f"![{task}]({PLOTS_DIR}/{plot.name})", ""]
    gradnorm_plot = plot_gradnorm_weights(run, plots / "gradnorm_weights.png")
    lines += ["## GradNorm task weights", ""]
    if gradnorm_plot is not None:
        lines += [f"![GradNorm weights]({PLOTS_DIR}/{gradnorm_plot.name})", ""]
    else:
        lines += ["No method of this run used GradNorm.", ""]
    loss_plot = plot_training_losses(run, plots / "training_losses.png")
    if loss_plot is not None:
        lines += ["## Training losses", "", f"![training losses]({PLOTS_DIR}/{loss_plot.name})", ""]
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text("\n".join(lines))
    return report_path


def _setting_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, default=str) + "`"
    return str(value).replace("|", "\\|")


def summarize_run(run_dir: str | os.PathLike, report: bool = True) -> str:
    """The summary table of a run directory (and, with `report`, the path of the freshly written report).

    Call it on the main process only (e.g. `if PartialState().is_main_process: print(summarize_run(dir))`).
    """
    text = format_table(summary_rows(load_run(run_dir)))
    if report:
        text += f"\nreport: {write_report(run_dir)}"
    return text
