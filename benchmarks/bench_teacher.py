"""Per-step time overhead of the L2T-FMT teacher vs strategy `weighted`, and the default `teacher_interval`.

Run from the repository root:

    python -m benchmarks.bench_teacher            # T = 5 and 17, intervals 1 2 5 10 20, 3 timed passes
    python -m benchmarks.bench_teacher --quick    # 2 timed passes

What is measured, per number of tasks T (tiny BERT from `benchmarks.cost`: 2 layers, hidden 128; batch 16 of 32
tokens; every task labelled; one protected attribute with 2 groups; GradNorm on for both strategies, since
L2T-FMT balances its tasks with GradNorm):

* `weighted+gradnorm` and `teacher+gradnorm` at each interval k train their own copy of one model in ONE process,
  in interleaved passes (order rotated each pass, one untimed warm-up pass). A pass trains each method for one
  block of `--steps` optimizer steps (20: a multiple of every interval, so the block holds exactly `steps / k`
  teacher steps plus the decision before training). `benchmarks.cost.BlockTimer` times each block.
* Step time is process CPU time (the machine is shared; torch runs 1 thread), the ratio teacher ÷ weighted is
  taken per pass and its median reported; wall time is kept too.
* Each teacher step is also timed on its own (its held-out encoding separately), so the cost of one teacher
  step and the predicted ratio at any interval, `(student step + teacher step / k) / weighted step`, are reported.

The recommended default interval is the smallest measured one whose ratio is at most `--target` (1.3) for every T.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    RESULTS_DIR,
    command_string,
    finish_metadata,
    markdown_table,
    metadata_markdown,
    start_metadata,
    write_results,
)
from benchmarks.cost import HELDOUT_ROWS, TINY_BERT, BlockTimer, Setting, build_model, make_trainer, synthetic_rows

BASELINE = "weighted+gradnorm"
TEACHER = "teacher+gradnorm"
STEM = "teacher_overhead"


class _Stopwatch:
    """Accumulates CPU and wall seconds of every call of a wrapped method."""

    def __init__(self, owner: Any, name: str) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.cpu.append(time.process_time() - cpu)
                self.wall.append(time.perf_counter() - wall)

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.cpu.clear()
        self.wall.clear()


def measure(num_tasks: int, intervals: Sequence[int], steps: int, repeats: int, batch_size: int, seq_len: int):
    """Interleaved timing of `weighted` and the teacher at each interval for one T (see the module docstring)."""
    setting = Setting(TINY_BERT, num_tasks)
    base = build_model(setting)
    train = synthetic_rows(batch_size * steps * 2, setting, seq_len, seed=1)
    heldout = synthetic_rows(HELDOUT_ROWS, setting, seq_len, seed=2)
    methods = [BASELINE, *(f"{TEACHER}@{k}" for k in intervals)]
    timers = {method: BlockTimer() for method in methods}
    teacher_steps: dict[str, _Stopwatch] = {}
    encodings: dict[str, _Stopwatch] = {}
    with tempfile.TemporaryDirectory() as output_dir:
        trainers = {}
        for method in methods:
            name, _, interval = method.partition("@")
            trainer = make_trainer(
                name, copy.deepcopy(base), train, heldout, output_dir, steps, batch_size, int(interval or 10)
            )
            trainer.add_callback(timers[method])  # last: its on_step_end follows GradNorm and the teacher
            if interval:
                teacher_steps[method] = _Stopwatch(trainer.teacher_callback, "teacher_step")
                encodings[method] = _Stopwatch(trainer.teacher_callback, "heldout_features")
            trainers[method] = trainer
        for repeat in range(repeats + 1):
            shift = repeat % len(methods)
            for method in methods[shift:] + methods[:shift]:
                timers[method].recording = repeat > 0  # pass 0 warms up
                if repeat == 1 and method in teacher_steps:
                    teacher_steps[method].reset()
                    encodings[method].reset()
                trainers[method].train()
            print(f"T={num_tasks}: pass {repeat}/{repeats} done", file=sys.stderr, flush=True)

    baseline_cpu = [sample[0] for sample in timers[BASELINE].samples]
    baseline_ms = statistics.median(baseline_cpu) * 1e3
    # One teacher step, all intervals pooled (its cost does not depend on the interval).
    step_cpu = [s for watch in teacher_steps.values() for s in watch.cpu]
    encode_cpu = [s for watch in encodings.values() for s in watch.cpu]
    teacher_step_ms = statistics.median(step_cpu) * 1e3
    rows = {}
    for method in methods:
        cpu = [sample[0] for sample in timers[method].samples]
        wall = [sample[1] for sample in timers[method].samples]
        ratios = [c / b for c, b in zip(cpu, baseline_cpu, strict=True)]
        rows[method] = {
            "step_ms_cpu": round(statistics.median(cpu) * 1e3, 3),
            "step_ms_wall": round(statistics.median(wall) * 1e3, 3),
            "ratio_cpu": round(statistics.median(ratios), 4),
            "ratio_cpu_range": [round(min(ratios), 4), round(max(ratios), 4)],
        }
    # The student's own step under the teacher strategy (one objective per task instead of CE + F for every
    # task), from the largest interval's block minus its share of teacher steps.
    largest = f"{TEACHER}@{max(intervals)}"
    decisions_per_block = steps // max(intervals) + 1  # + the decision at on_train_begin (no look-ahead: cheap)
    student_ms = rows[largest]["step_ms_cpu"] - teacher_step_ms * (steps // max(intervals)) / steps
    predicted = {str(k): round((student_ms + teacher_step_ms / k) / baseline_ms, 4) for k in (1, 2, 5, 10, 20, 50, 100)}
    return {
        "num_tasks": num_tasks,
        "methods": rows,
        "weighted_step_ms_cpu": round(baseline_ms, 3),
        "teacher_step_ms_cpu": round(teacher_step_ms, 3),
        "teacher_step_ms_cpu_range": [round(min(step_cpu) * 1e3, 3), round(max(step_cpu) * 1e3, 3)],
        "heldout_encoding_ms_cpu": round(statistics.median(encode_cpu) * 1e3, 3),
        "student_step_ms_cpu": round(student_ms, 3),
        "decisions_per_block_at_largest_interval": decisions_per_block,
        "predicted_ratio_by_interval": predicted,
    }


def recommend(results: Sequence[dict[str, Any]], intervals: Sequence[int], target: float) -> int | None:
    """Smallest measured interval whose measured ratio is within `target` for every T."""
    for k in sorted(intervals):
        if all(r["methods"][f"{TEACHER}@{k}"]["ratio_cpu"] <= target for r in results):
            return k
    return None


def render_markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    lines = metadata_markdown("L2T-FMT teacher: per-step overhead vs `weighted`", payload["meta"])
    lines += [
        f"Tiny BERT (2 layers, hidden 128), batch {settings['batch_size']} × {settings['seq_len']} tokens, "
        f"held-out batch {settings['heldout_rows']} rows, GradNorm on for both strategies, blocks of "
        f"{settings['steps']} optimizer steps, {settings['repeats']} interleaved timed passes (+1 warm-up). "
        "Step time = process CPU time per optimizer step (median over passes); ratio = teacher ÷ weighted, "
        "paired per pass, median [min, max].",
        "",
    ]
    for result in payload["results"]:
        rows = [
            [
                method,
                f"{entry['step_ms_cpu']:.1f}",
                f"{entry['step_ms_wall']:.1f}",
                f"{entry['ratio_cpu']:.3f} [{entry['ratio_cpu_range'][0]:.3f}, {entry['ratio_cpu_range'][1]:.3f}]",
            ]
            for method, entry in result["methods"].items()
        ]
        lines += [f"## T = {result['num_tasks']}", ""]
        lines += markdown_table(["method@interval", "step ms (CPU)", "step ms (wall)", "ratio vs weighted"], rows)
        lines += [
            f"- One teacher step: {result['teacher_step_ms_cpu']:.1f} ms CPU (range "
            f"{result['teacher_step_ms_cpu_range'][0]:.1f}–{result['teacher_step_ms_cpu_range'][1]:.1f}), of which "
            f"held-out encoding {result['heldout_encoding_ms_cpu']:.1f} ms; weighted step "
            f"{result['weighted_step_ms_cpu']:.1f} ms; the student's own step under `teacher` "
            f"{result['student_step_ms_cpu']:.1f} ms.",
            "- Predicted ratio `(student step + teacher step / k) / weighted step` by interval k: "
            + ", ".join(f"k={k}: {v:.2f}" for k, v in result["predicted_ratio_by_interval"].items())
            + ".",
            "",
        ]
    recommended = payload["recommended_interval"]
    lines += [
        "## Default interval",
        "",
        f"Target: ratio ≤ {settings['target']} for every T. Smallest measured interval meeting it: "
        + (f"**{recommended}**." if recommended is not None else "none of the measured intervals."),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed passes instead of 3")
    parser.add_argument("--tasks", type=int, nargs="+", default=[5, 17])
    parser.add_argument("--intervals", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per timed block")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target", type=float, default=1.3)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if any(args.steps % k for k in args.intervals):
        raise ValueError(f"--steps {args.steps} must be a multiple of every interval {args.intervals}")
    torch.set_num_threads(args.threads)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    meta = start_metadata(
        command_string("benchmarks.bench_teacher", argv), args.threads, "quick" if args.quick else "full"
    )
    results = [measure(t, args.intervals, args.steps, repeats, args.batch_size, args.seq_len) for t in args.tasks]
    payload = {
        "meta": finish_metadata(meta),
        "settings": {
            "encoder": TINY_BERT,
            "tasks": args.tasks,
            "intervals": args.intervals,
            "steps": args.steps,
            "repeats": repeats,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "heldout_rows": HELDOUT_ROWS,
            "target": args.target,
            "time_measure": "process CPU time per optimizer step (primary), wall time kept",
        },
        "results": results,
        "recommended_interval": recommend(results, args.intervals, args.target),
    }
    paths = write_results(STEM, payload, render_markdown(payload), args.output_dir)
    print("wrote", ", ".join(str(p) for p in paths))
    return payload


if __name__ == "__main__":
    main()
