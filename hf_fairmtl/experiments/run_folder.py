"""Run folders: what `hf-fairmtl train` and the examples write per experiment, and reading them back.

A run directory holds one experiment: several methods, each trained with one or more seeds and evaluated on the
same held-out rows. Layout (written through [`write_run_info`] and [`save_trainer_result`], read by [`load_run`]):

```
RUN_DIR/
  run.json                                  tasks, attributes, group names, methods, seeds, settings
  {method}/seed-{seed}/metrics.json         trainer.evaluate() on the held-out rows (`eval_` keys)
  {method}/seed-{seed}/validation_metrics.json  the same on the validation rows, where the data has them: what the
                                            report's DTO pick is chosen on (never the held-out rows it reports)
  {method}/seed-{seed}/log_history.json     trainer.state.log_history
  {method}/seed-{seed}/teacher_actions.json teacher decisions (strategy "teacher" only)
  anchors.json                              fairlearn baselines on the same tabular features (references, not
                                            methods: [`write_anchors`]); absent on text data or with --anchors false
  report.md, plots/*.png                    written by `hf_fairmtl.experiments.report.write_report`
```

Every file is strict JSON: an undefined figure (a NaN rate, see `hf_fairmtl.metrics`) is written as `null` and
read back as NaN by [`as_number`].
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

from ..configuration_fairmtl import FairMTLConfig
from ..metrics.keys import EVAL_PREFIX, with_prefix

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
LOG_HISTORY_FILE = "log_history.json"
TEACHER_FILE = "teacher_actions.json"
VALIDATION_METRICS_FILE = "validation_metrics.json"
ANCHORS_FILE = "anchors.json"


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


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write `payload` as strict JSON (NaN and ±inf become `null`; NumPy values become Python ones)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
    return path


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by `None`, NumPy scalars/arrays as Python values, and
    anything else JSON cannot hold as its `str`."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def write_run_info(run_dir: str | os.PathLike, info: RunInfo) -> Path:
    """Write `run.json` (call on the main process only)."""
    path = Path(run_dir) / RUN_FILE
    write_json(path, asdict(info))
    return path


def save_method_result(
    run_dir: str | os.PathLike,
    method: str,
    seed: int,
    metrics: Mapping[str, Any],
    log_history: Sequence[Mapping[str, Any]] = (),
    teacher: Mapping[str, Any] | None = None,
    validation_metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write one method's held-out metrics, log history, (for the teacher) action history and validation metrics.

    Args:
        run_dir: The run directory.
        method: Method label.
        seed: Seed of this run.
        metrics: `trainer.evaluate()` output on the held-out rows (`eval_` keys).
        log_history: `trainer.state.log_history`.
        teacher: `{"tasks": [...], "history": [[step, [action per task]], ...], "summary": {task: fraction}}`.
        validation_metrics: `trainer.evaluate()` output on the validation rows (`eval_` keys), what recommendations
            are chosen on.

    Returns:
        The method's folder.
    """
    folder = method_dir(run_dir, method, seed)
    write_json(folder / METRICS_FILE, dict(metrics))
    if validation_metrics is not None:
        write_json(folder / VALIDATION_METRICS_FILE, dict(validation_metrics))
    write_json(folder / LOG_HISTORY_FILE, list(log_history))
    if teacher is not None:
        write_json(folder / TEACHER_FILE, dict(teacher))
    return folder


def save_trainer_result(
    run_dir: str | os.PathLike,
    method: str,
    seed: int,
    trainer: Any,
    metrics: Mapping[str, Any],
    validation_metrics: Mapping[str, Any] | None = None,
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
    return save_method_result(run_dir, method, seed, metrics, trainer.state.log_history, teacher, validation_metrics)


def write_anchors(
    run_dir: str | os.PathLike,
    records: Sequence[Mapping[str, Any]],
    notes: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write `anchors.json`: the reference baselines of a run, kept apart from the methods' results.

    Args:
        run_dir: The run directory.
        records: `{"anchor", "task", "attribute", "seed", "figures"}` each (figures: held-out `accuracy`,
            `balanced_accuracy`, `eo_violation`, `collapsed`, ... without prefix), e.g.
            `hf_fairmtl.experiments.anchors.experiment_anchors(...).records`.
        notes: Sentences on what was left out (fairlearn not installed, a task fairlearn could not fit, ...).
        settings: How the anchors were computed (e.g. `{"eg_max_iter": 20}`).
    """
    payload = {"records": [dict(record) for record in records], "notes": list(notes), "settings": dict(settings or {})}
    return write_json(Path(run_dir) / ANCHORS_FILE, payload)


@dataclass
class AnchorResult:
    """One reference baseline (e.g. fairlearn's ExponentiatedGradient) on one task, attribute and seed."""

    anchor: str
    task: str
    attribute: str
    seed: int
    figures: dict[str, Any]


@dataclass
class MethodResult:
    """One method and seed, as read back from a run directory."""

    method: str
    seed: int
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    teacher: dict[str, Any] | None = None
    validation_metrics: dict[str, Any] | None = None


@dataclass
class RunResults:
    """A run directory read back: its [`RunInfo`] and every [`MethodResult`]."""

    info: RunInfo
    results: list[MethodResult]
    run_dir: Path | None = None
    anchors: list[AnchorResult] = field(default_factory=list)
    anchor_notes: list[str] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        """Methods that have results, in run order."""
        present = {result.method for result in self.results}
        return [method for method in self.info.methods if method in present]

    def of(self, method: str) -> list[MethodResult]:
        """The results of one method, one per seed."""
        return [result for result in self.results if result.method == method]

    def values(self, method: str, key: str, split: str = "test") -> np.ndarray:
        """A metric (a key of `hf_fairmtl.metrics.keys`, without the `eval_` prefix) over the seeds of a method, on
        the held-out rows (`split="test"`) or the validation rows (`"validation"`); NaN where a run lacks it or it
        is undefined (`null`)."""
        if split not in ("test", "validation"):
            raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
        name = with_prefix(key, EVAL_PREFIX)
        return np.array(
            [
                as_number((r.metrics if split == "test" else r.validation_metrics or {}).get(name))
                for r in self.of(method)
            ],
            dtype=float,
        )

    def has(self, method: str, key: str) -> bool:
        """Whether any seed of `method` reports the metric `key` (without the `eval_` prefix)."""
        return any(with_prefix(key, EVAL_PREFIX) in r.metrics for r in self.of(method))

    @property
    def anchor_names(self) -> list[str]:
        """The reference baselines of the run (`anchors.json`), in the order they were written."""
        return list(dict.fromkeys(anchor.anchor for anchor in self.anchors))

    def anchor_values(self, anchor: str, task: str, attribute: str, key: str) -> np.ndarray:
        """A figure (`accuracy`, `eo_violation`, `collapsed`, ...) of an anchor over its seeds; empty when the
        anchor has no result for the task and attribute."""
        return np.array(
            [
                as_number(a.figures.get(key))
                for a in self.anchors
                if (a.anchor, a.task, a.attribute) == (anchor, task, attribute)
            ],
            dtype=float,
        )


def as_number(value: Any) -> float:
    """`value` as a float; NaN for `None` (a `null` in a run file) or anything that is not a number."""
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
                    validation_metrics=_read_optional(folder / VALIDATION_METRICS_FILE, None),
                )
            )
    if not results:
        raise FileNotFoundError(f"No method results ({METRICS_FILE}) under {run_dir}")
    anchors = _read_optional(run_dir / ANCHORS_FILE, {})
    return RunResults(
        info=info,
        results=results,
        run_dir=run_dir,
        anchors=[AnchorResult(**record) for record in anchors.get("records", [])],
        anchor_notes=list(anchors.get("notes", [])),
    )


def _read_optional(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default
