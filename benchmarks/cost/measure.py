"""Measuring a setting: interleaved per-step timing of every method, peak memory in fresh processes, cProfile."""

from __future__ import annotations

import copy
import cProfile
import gc
import io
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmarks.common import REPO_ROOT
from hf_fairmtl.teacher import TeacherSettings

from .settings import HELDOUT_ROWS, PLAIN, Setting, build_model, make_trainer, synthetic_rows
from .timers import StepTimer, lower_quartile


def measure_setting(
    setting: Setting,
    methods: Sequence[str],
    steps: int,
    repeats: int,
    batch_size: int,
    seq_len: int,
    teacher_interval: int,
) -> dict[str, Any]:
    """Interleaved timing of every method on one setting, in this process. See the module docstring."""
    base = build_model(setting)
    train = synthetic_rows(batch_size * steps * 2, setting, seq_len, seed=1)
    heldout = synthetic_rows(HELDOUT_ROWS, setting, seq_len, seed=2)
    timers = {method: StepTimer(steps, amortize_over=teacher_interval) for method in methods}
    with tempfile.TemporaryDirectory() as output_dir:
        trainers = {}
        for method in methods:
            # The teacher runs once per block (interval = block length); its cost is amortised over teacher_interval.
            # Its held-out rows are encoded once and never refreshed inside the timed blocks: the refresh is timed
            # on its own below and amortised at the default cadence, so no quantile can drop it.
            model = copy.deepcopy(base)
            trainers[method] = make_trainer(
                method, model, train, heldout, output_dir, steps, batch_size, steps, heldout_refresh=NEVER
            )
            trainers[method].add_callback(timers[method])  # last: its on_step_end follows GradNorm and the teacher
        del base
        # Every train() call starts with accelerate's gc.collect(); with nine models alive that takes ~1 s of wall
        # time per block (outside the timed window). Freezing the long-lived objects makes it cheap.
        gc.collect()
        gc.freeze()
        try:
            for repeat in tqdm(range(repeats + 1), desc=f"cost {setting.name}", leave=False):
                shift = repeat % len(methods)
                for method in list(methods[shift:]) + list(methods[:shift]):
                    timers[method].recording = repeat > 0  # pass 0 warms up
                    trainers[method].train()
        finally:
            gc.unfreeze()
        refresh = {method: heldout_refresh_cost(trainer, teacher_interval) for method, trainer in trainers.items()}
    for method, (cpu_s, wall_s) in refresh.items():
        timers[method].fixed_extra = (cpu_s, wall_s)
    results = {}
    plain = timers.get(PLAIN)
    for method in methods:
        timer = timers[method]
        cpu, wall = timer.pooled_estimate(1), timer.pooled_estimate(2)
        per_pass = timer.pass_estimates(1)
        entry = {
            "step_ms_cpu": round(cpu * 1e3, 3),
            "step_ms_wall": round(wall * 1e3, 3),
            "step_ms_cpu_pass_median": round(statistics.median(per_pass) * 1e3, 3),
            "examples_per_s_cpu": round(batch_size / cpu, 1),
            "examples_per_s_wall": round(batch_size / wall, 1),
            "passes": len(per_pass),
            "heldout_refresh_ms_per_step_cpu": round(refresh[method][0] * 1e3, 3),
        }
        if plain is not None:
            paired = [c / p for c, p in zip(per_pass, plain.pass_estimates(1), strict=True)]
            quartiles = statistics.quantiles(paired, n=4, method="inclusive") if len(paired) > 1 else paired * 3
            entry.update(
                {
                    "ratio_cpu": round(cpu / plain.pooled_estimate(1), 4),
                    "ratio_wall": round(wall / plain.pooled_estimate(2), 4),
                    "ratio_cpu_paired_median": round(statistics.median(paired), 4),
                    "ratio_cpu_paired_iqr": [round(quartiles[0], 4), round(quartiles[2], 4)],
                }
            )
        results[method] = entry
    return {"setting": setting.__dict__, "name": setting.name, "methods": results}


NEVER = 10**9  # a `teacher_heldout_refresh` no timed block reaches


def heldout_refresh_cost(trainer: Any, teacher_interval: int, repeats: int = 3) -> tuple[float, float]:
    """Per optimizer step `(cpu s, wall s)` of the teacher's held-out re-encoding at the default cadence (one
    encoding every `teacher_heldout_refresh` teacher steps of `teacher_interval` optimizer steps); `(0, 0)` without
    a teacher. The encoding is timed `repeats` times on the trained model (lower quartile)."""
    callback = getattr(trainer, "teacher_callback", None)
    if callback is None:
        return 0.0, 0.0
    model, device = trainer.student_model(), trainer.args.device
    samples = []
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        callback.heldout.encode(model, device)
        samples.append((time.process_time() - cpu, time.perf_counter() - wall))
    steps_between = teacher_interval * TeacherSettings.heldout_refresh
    return tuple(lower_quartile([sample[i] for sample in samples]) / steps_between for i in range(2))


# ----------------------------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: peak RSS growth while training `spec['method']` on `spec['setting']`."""
    torch.set_num_threads(int(spec.get("threads", 1)))
    setting = Setting(**spec["setting"])
    model = build_model(setting)
    train = synthetic_rows(spec["batch_size"] * spec["steps"], setting, spec["seq_len"], seed=1)
    heldout = synthetic_rows(HELDOUT_ROWS, setting, spec["seq_len"], seed=2)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = make_trainer(
            spec["method"],
            model,
            train,
            heldout,
            output_dir,
            spec["steps"],
            spec["batch_size"],
            spec["steps"],  # the teacher runs once, at the last step
        )
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux ≥ 4.0)
            reset = True
        except OSError:
            reset = False
        before = _status_kib("VmRSS")
        trainer.train()
        peak = _status_kib("VmHWM")
    return {
        "peak_delta_mib": round((peak - before) / 1024, 1),
        "rss_before_mib": round(before / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "peak_mark_reset": reset,
    }


def measure_memory(
    setting: Setting, methods: Sequence[str], steps: int, batch_size: int, seq_len: int, teacher_interval: int, threads
) -> dict[str, Any]:
    """One fresh subprocess per method (peak RSS is per process)."""
    results = {}
    for method in tqdm(methods, desc=f"memory {setting.name}", leave=False):
        spec = {
            "setting": setting.__dict__,
            "method": method,
            "steps": steps,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "teacher_interval": teacher_interval,
            "threads": threads,
        }
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.cost", "--memory-probe", json.dumps(spec)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"memory probe {setting.name} {method} failed:\n{completed.stderr[-3000:]}")
        results[method] = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"setting": setting.__dict__, "name": setting.name, "methods": results}


# ----------------------------------------------------------------------------------------------- profile


PROFILE_ANCHORS = [
    ("transformers/trainer.py", "training_step", "Trainer.training_step (forward + loss + backward)"),
    ("transformers/trainer.py", "compute_loss", "transformers Trainer.compute_loss (plain Trainer)"),
    ("torch/_tensor.py", "backward", "Tensor.backward"),
    ("accelerate/optimizer.py", "step", "optimizer.step"),
    ("torch/_functorch/functional_call.py", "functional_call", "torch.func.functional_call"),
    ("torch/autograd/__init__.py", "grad", "torch.autograd.grad"),
]


def profile_methods(
    setting: Setting, methods: Sequence[str], steps: int, batch_size: int, seq_len: int
) -> tuple[dict[str, dict[str, float]], str]:
    """cProfile one block of `steps` steps per method (after a warm-up block), the teacher running once at the
    last step (so with `steps` = the default teacher interval its cost is amortised as in training).

    Returns:
        `(summary, listing)`: `summary[method][function] = cumulative ms per step` for hf_fairmtl's functions
        (at least 0.5% of the step) and a few framework anchors; `listing` the raw top functions per method.
        cProfile slows Python-heavy code more than torch kernels, so read shares, not absolute times.
    """
    base = build_model(setting)
    train = synthetic_rows(batch_size * steps * 2, setting, seq_len, seed=1)
    heldout = synthetic_rows(HELDOUT_ROWS, setting, seq_len, seed=2)
    listing = io.StringIO()
    summary: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as output_dir:
        for method in methods:
            trainer = make_trainer(method, copy.deepcopy(base), train, heldout, output_dir, steps, batch_size, steps)
            timer = StepTimer(steps)
            trainer.add_callback(timer)
            trainer.train()  # warm-up
            timer.recording = True
            profiler = cProfile.Profile()
            profiler.enable()
            trainer.train()
            profiler.disable()
            stats = pstats.Stats(profiler)
            block = timer.blocks[-1]
            step_ms = sum(row[2] for row in block) / len(block) * 1e3
            rows: dict[str, float] = {"step (wall, under the profiler)": step_ms}
            for (path, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():
                per_step = cumulative / steps * 1e3
                path = path.replace("\\", "/")
                for fragment, name, label in PROFILE_ANCHORS:
                    if path.endswith(fragment) and function == name:
                        rows[label] = rows.get(label, 0.0) + per_step
                if "/hf_fairmtl/" in path and per_step >= 0.005 * step_ms:
                    label = f"{path.split('/hf_fairmtl/')[-1]}:{function}"
                    rows[label] = rows.get(label, 0.0) + per_step
            summary[method] = {k: round(v, 2) for k, v in sorted(rows.items(), key=lambda kv: -kv[1])}
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(30)
            listing.write(f"\n===== {method} on {setting.name}: {steps} steps, top 30 by cumulative time =====\n")
            listing.write(stream.getvalue())
    return summary, listing.getvalue()
