"""Helpers shared by the benchmarks: run metadata, result files, training runs, mean ± std, plots.

Every benchmark writes `benchmarks/results/{name}.json` and `{name}.md`; both start with the exact command that
made them and the machine and its load (the machine may be shared: the load average before and after the run is
recorded so a reader can judge the timings).
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from hf_fairmtl.metrics.keys import EVAL_PREFIX, attribute_key, task_key

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------------------------- run metadata


def command_string(module: str, argv: Sequence[str]) -> str:
    """The shell command that reproduces a run: `python -m {module} {argv...}` from the repository root."""
    return shlex.join(["python", "-m", module, *argv])


def load_snapshot() -> dict[str, Any]:
    """Load average and the `uptime` line now (the machine is shared with other jobs)."""
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        uptime = ""
    one, five, fifteen = os.getloadavg()
    return {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)],
        "uptime": uptime,
    }


def start_metadata(command: str, threads: int, mode: str) -> dict[str, Any]:
    """Metadata written at the top of every result file; `finish_metadata` completes it."""
    return {
        "command": command,
        "mode": mode,
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, no GPU used (device cpu)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": threads,
        "load_before": load_snapshot(),
        "_start": time.perf_counter(),
        "_cpu_start": cpu_seconds(),
    }


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the memory probes), user + system."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def finish_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    meta = dict(meta)
    meta["load_after"] = load_snapshot()
    meta["duration_s"] = round(time.perf_counter() - meta.pop("_start"), 1)
    # On an otherwise idle machine wall time ≈ CPU time (one torch thread, one process at a time).
    meta["cpu_s"] = round(cpu_seconds() - meta.pop("_cpu_start"), 1)
    return meta


def metadata_markdown(title: str, meta: Mapping[str, Any]) -> list[str]:
    """Title, the command block and the machine/load lines of a result markdown file."""
    before, after = meta["load_before"], meta["load_after"]
    return [
        f"# {title}",
        "",
        "Made with (from the repository root):",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"- Machine: {meta['machine']}; Python {meta['python']}, torch {meta['torch']}, transformers "
        f"{meta['transformers']}, {meta['torch_threads']} torch thread(s). Mode: `{meta['mode']}`; "
        f"wall time {meta['duration_s']:.0f} s, CPU time {meta['cpu_s']:.0f} s (≈ the wall time on an idle machine).",
        f"- Load average (1/5/15 min) before: {before['loadavg']}, after: {after['loadavg']} "
        "(the 2 cores were shared with other jobs).",
        "",
    ]


def write_results(stem: str, payload: Mapping[str, Any], markdown: str, output_dir: Path | str) -> list[Path]:
    """Write `{stem}.json` (the payload, command first) and `{stem}.md`; return the paths."""
    import json

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / f"{stem}.json", output_dir / f"{stem}.md"
    json_path.write_text(json.dumps(_finite_or_none(payload), indent=2) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return [json_path, md_path]


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------- statistics


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """`{"mean", "std", "n", "values"}` over the finite values (sample std, ddof = 1; 0 for one value)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": math.nan, "std": math.nan, "n": 0, "values": [float(v) for v in values]}
    array = np.asarray(finite)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "n": len(array), "values": [round(v, 6) for v in finite]}


def format_mean_std(stats: Mapping[str, Any], digits: int = 3) -> str:
    """`"0.812 ± 0.004"`, or `"n/a"` when the mean is not finite."""
    mean = stats.get("mean", math.nan)
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {stats['std']:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


# ----------------------------------------------------------------------------------------------- training runs


def training_argument_values(output_dir: str, seed: int, **overrides: Any) -> dict[str, Any]:
    """`TrainingArguments` values every benchmark run shares: CPU, no saving, no reporting, no progress bar."""
    values: dict[str, Any] = {
        "output_dir": output_dir,
        "report_to": [],
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
    }
    values.update(overrides)
    return values


def fairmtl_arguments(output_dir: str, seed: int, **overrides: Any):
    """`FairMTLTrainingArguments` with the shared benchmark values plus `overrides`."""
    from hf_fairmtl import FairMTLTrainingArguments

    return FairMTLTrainingArguments(**training_argument_values(output_dir, seed, **overrides))


def quiet(trainer):
    """Drop the Trainer's log printer (with `disable_tqdm` it prints every log dict, e.g. after each `train()`)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def train_and_predict(
    build_model,
    seed: int,
    train_dataset,
    test_dataset,
    heldout_dataset=None,
    processing_class=None,
    **argument_overrides: Any,
) -> dict[str, Any]:
    """Train a fresh model with `FairMTLTrainer` and evaluate it once on `test_dataset`.

    Args:
        build_model: Zero-argument callable returning a new `FairMTLModel` (called after seeding).
        seed: Seeds the model initialisation, the data order and dropout.
        train_dataset: Training rows in the `FairMTLModel` data contract.
        test_dataset: Rows the returned metrics are computed on.
        heldout_dataset: The trainer's `eval_dataset`, used only by the L2T-FMT teacher to score its look-ahead
            (never the test rows); `None` is fine for the other strategies.
        processing_class: Tokenizer of text models (pads batches).
        **argument_overrides: `FairMTLTrainingArguments` fields (strategy, epochs, batch size, ...).

    Returns:
        `metrics` (the `eval_*` keys of `make_compute_metrics`), `predictions` (per-task logits), `label_ids`,
        `train_seconds`, and the teacher's fairness-action fractions where there is a teacher.
    """
    from hf_fairmtl import FairMTLTrainer

    transformers.set_seed(seed)
    model = build_model()
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = FairMTLTrainer(
            model=model,
            args=fairmtl_arguments(output_dir, seed, **argument_overrides),
            train_dataset=train_dataset,
            eval_dataset=heldout_dataset,
            processing_class=processing_class,
        )
        quiet(trainer)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        output = trainer.predict(test_dataset, metric_key_prefix="eval")
    result = {
        "metrics": dict(output.metrics),
        "predictions": output.predictions,
        "label_ids": output.label_ids,
        "train_seconds": train_seconds,
        "steps": trainer.state.global_step,
    }
    if trainer.teacher_callback is not None:
        result["teacher_fairness_fraction"] = trainer.teacher_callback.summary()
    return result


def task_figures(metrics: Mapping[str, float], task: str, attribute: str) -> dict[str, float]:
    """Accuracy, the collapse figures and the group gaps of one task and attribute from `eval_*` metric keys.

    `collapsed` / `majority_prediction_share` ride along so `relative_scores` can leave collapsed tasks out.
    """
    figures = {"accuracy": float(metrics[task_key(task, "accuracy", EVAL_PREFIX)])}
    for name in ("majority_prediction_share", "collapsed"):
        if task_key(task, name, EVAL_PREFIX) in metrics:
            figures[name] = float(metrics[task_key(task, name, EVAL_PREFIX)])
    for name in ("eo_violation", "tpr_gap", "fpr_gap", "eps_deo", "dp_gap"):
        key = attribute_key(task, attribute, name, EVAL_PREFIX)
        if key in metrics:
            figures[name] = float(metrics[key])
    return figures


def prediction_scores(result: Mapping[str, Any], task_index: int) -> dict[str, float]:
    """Macro-F1, balanced accuracy and the majority-class accuracy of one task over its labelled test rows.

    Computed with sklearn from the predictions `train_and_predict` returns (the project's metrics report plain
    accuracy, which a constant majority-class predictor maximises on imbalanced tasks).
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score

    label_ids = result["label_ids"]
    labels = np.asarray(label_ids[0] if isinstance(label_ids, (tuple, list)) else label_ids)
    labels = labels.reshape(len(labels), -1)[:, task_index]
    predicted = np.asarray(result["predictions"][task_index]).argmax(-1)
    labelled = labels != -100
    if not labelled.any():
        return {"macro_f1": math.nan, "balanced_accuracy": math.nan, "majority_accuracy": math.nan}
    y_true, y_pred = labels[labelled], predicted[labelled]
    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "majority_accuracy": float(np.bincount(y_true).max() / len(y_true)),
    }


def seed_stats(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Mean ± std over seeds of every key the per-seed dicts share."""
    keys = [k for k in per_seed[0] if all(k in d for d in per_seed)]
    return {k: mean_std([d[k] for d in per_seed]) for k in keys}


# ----------------------------------------------------------------------------------------------- plots


def scatter_plot(
    points: Sequence[Mapping[str, Any]],
    xlabel: str,
    ylabel: str,
    title: str,
    path: Path,
    reference: tuple[float, float] | None = None,
) -> Path:
    """Save a scatter of `points` (`label`, `x`, `y` mean ± std dicts, optional `marker`) with error bars.

    Args:
        points: One dict per method.
        xlabel: x axis label.
        ylabel: y axis label.
        title: Plot title.
        path: PNG path.
        reference: Optional `(x, y)` drawn as dotted guide lines (e.g. STL = (1, 1) for ARA/AREO).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    for point in points:
        x, y = point["x"], point["y"]
        values = (x["mean"], y["mean"], x["std"], y["std"])
        if any(v is None or not math.isfinite(v) for v in values):  # NaN is null in the JSON files
            continue
        axis.errorbar(
            x["mean"],
            y["mean"],
            xerr=x["std"],
            yerr=y["std"],
            fmt=point.get("marker", "o"),
            capsize=3,
            label=point["label"],
        )
    if reference is not None:
        axis.axvline(reference[0], color="grey", linestyle=":", linewidth=1)
        axis.axhline(reference[1], color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
