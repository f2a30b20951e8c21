"""Cost of the L2T-FMT teacher vs a plain `transformers.Trainer`, by teacher interval and held-out refresh.

Run from the repository root:

    python -m benchmarks.bench_teacher                       # tiny-bert T = 5, 17 and MiniLM T = 5, 3 timed passes
    python -m benchmarks.bench_teacher --quick               # 2 timed passes
    python -m benchmarks.bench_teacher --settings tiny-bert:5 --repeats 1   # one setting

What is measured, per setting (`benchmarks.cost.Setting`: tiny BERT built from a config, or the packaged MiniLM;
batch 16 of 32 tokens; every task labelled; one protected attribute with 2 groups):

* Three trainers on copies of one model, in ONE process, in interleaved passes (order rotated each pass, one
  untimed warm-up pass), each pass one block of `--steps` optimizer steps (`benchmarks.cost.BlockTimer`, process
  CPU time per step; the machine is shared and torch runs 1 thread):
  - `plain_trainer`: `transformers.Trainer` on the same model (the baseline of the issue's targets);
  - `teacher+gradnorm@student`: the teacher strategy with GradNorm and a teacher that never steps
    (interval > steps): the student's own step under `teacher`;
  - `teacher+gradnorm@default`: the defaults (`TeacherSettings.interval`, `TeacherSettings.heldout_refresh`).
* Every teacher step of the default run is timed (`TeacherCallback.teacher_step`) and so is every encoding of the
  held-out rows (`HeldoutSet.encode`), so the cost of a teacher step without encoding and of one encoding are known.
* Predicted ratio at interval k and refresh r:
  `(student step + (teacher step without encoding + encoding / r) / k) / plain step`, beside the measured ratio of
  the default run (paired per pass, median [min, max]). The noise floor is the spread of the paired ratios.
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
    quiet,
    start_metadata,
    training_argument_values,
    write_results,
)
from benchmarks.cost import HELDOUT_ROWS, MINILM, TINY_BERT, BlockTimer, Setting, build_model, synthetic_rows
from hf_fairmtl import DataCollatorForFairMTL, FairMTLTrainer, FairMTLTrainingArguments
from hf_fairmtl.teacher import TeacherSettings

PLAIN = "plain_trainer"
STUDENT = "teacher+gradnorm@student"
DEFAULT = "teacher+gradnorm@default"
METHODS = (PLAIN, STUDENT, DEFAULT)
STEM = "teacher_overhead"
# Issue 16's targets: teacher + GradNorm at the default interval ÷ plain Trainer.
TARGETS = {f"{MINILM}:5": 1.15, f"{TINY_BERT}:17": 1.25}
DEFAULT_SETTINGS = [f"{TINY_BERT}:5", f"{TINY_BERT}:17", f"{MINILM}:5"]
PREDICTED_INTERVALS = (5, 10, 20)
PREDICTED_REFRESH = (1, 2, 5, 10)


class Stopwatch:
    """Accumulates the CPU and wall seconds of every call of a wrapped method of one object."""

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


def make_trainer(method: str, model, train, heldout, output_dir: str, steps: int, batch_size: int):
    """The plain Trainer or a teacher+GradNorm `FairMTLTrainer` with the shared benchmark arguments."""
    from transformers import Trainer, TrainingArguments

    values = training_argument_values(
        output_dir, seed=0, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=5e-5
    )
    if method == PLAIN:
        return quiet(
            Trainer(
                model=model,
                args=TrainingArguments(**values),
                train_dataset=train,
                data_collator=DataCollatorForFairMTL(),
            )
        )
    interval = steps + 1 if method == STUDENT else TeacherSettings.interval
    args = FairMTLTrainingArguments(**values, strategy="teacher", gradnorm=True, teacher_interval=interval)
    return quiet(FairMTLTrainer(model=model, args=args, train_dataset=train, eval_dataset=heldout))


def measure(setting: Setting, steps: int, repeats: int, batch_size: int, seq_len: int) -> dict[str, Any]:
    """Interleaved timing of the three trainers of one setting (see the module docstring)."""
    base = build_model(setting)
    train = synthetic_rows(batch_size * steps * 2, setting, seq_len, seed=1)
    heldout = synthetic_rows(HELDOUT_ROWS, setting, seq_len, seed=2)
    timers = {method: BlockTimer() for method in METHODS}
    with tempfile.TemporaryDirectory() as output_dir:
        trainers = {}
        for method in METHODS:
            trainer = make_trainer(method, copy.deepcopy(base), train, heldout, output_dir, steps, batch_size)
            trainer.add_callback(timers[method])  # last: its on_step_end follows GradNorm and the teacher
            trainers[method] = trainer
        callback = trainers[DEFAULT].teacher_callback
        teacher_steps = Stopwatch(callback, "teacher_step")
        encodings = Stopwatch(callback.heldout, "encode")
        for repeat in range(repeats + 1):
            shift = repeat % len(METHODS)
            for method in METHODS[shift:] + METHODS[:shift]:
                timers[method].recording = repeat > 0  # pass 0 warms up
                if repeat == 1 and method == DEFAULT:
                    teacher_steps.reset()
                    encodings.reset()
                trainers[method].train()
            print(f"{setting.name}: pass {repeat}/{repeats} done", file=sys.stderr, flush=True)
    return summarise(setting, timers, teacher_steps, encodings)


def summarise(setting: Setting, timers, teacher_steps: Stopwatch, encodings: Stopwatch) -> dict[str, Any]:
    """Step times, paired ratios vs the plain Trainer, the teacher step's parts and the predicted ratios."""
    plain_cpu = [sample[0] for sample in timers[PLAIN].samples]
    plain_ms = statistics.median(plain_cpu) * 1e3
    rows = {}
    for method in METHODS:
        cpu = [sample[0] for sample in timers[method].samples]
        ratios = [c / p for c, p in zip(cpu, plain_cpu, strict=True)]
        rows[method] = {
            "step_ms_cpu": round(statistics.median(cpu) * 1e3, 3),
            "step_ms_wall": round(statistics.median(sample[1] for sample in timers[method].samples) * 1e3, 3),
            "ratio_cpu": round(statistics.median(ratios), 4),
            "ratio_cpu_range": [round(min(ratios), 4), round(max(ratios), 4)],
        }
    encode_ms = statistics.mean(encodings.cpu) * 1e3 if encodings.cpu else 0.0
    step_total = sum(teacher_steps.cpu) * 1e3
    without_encoding_ms = (step_total - sum(encodings.cpu) * 1e3) / max(len(teacher_steps.cpu), 1)
    student_ms = rows[STUDENT]["step_ms_cpu"]
    predicted = {
        f"k={k},r={r}": round((student_ms + (without_encoding_ms + encode_ms / r) / k) / plain_ms, 4)
        for k in PREDICTED_INTERVALS
        for r in PREDICTED_REFRESH
    }
    return {
        "setting": setting.name,
        "methods": rows,
        "plain_step_ms_cpu": round(plain_ms, 3),
        "teacher_steps_timed": len(teacher_steps.cpu),
        "encodings_timed": len(encodings.cpu),
        "teacher_step_without_encoding_ms_cpu": round(without_encoding_ms, 3),
        "heldout_encoding_ms_cpu": round(encode_ms, 3),
        "predicted_ratio": predicted,
        "target": TARGETS.get(f"{setting.encoder}:{setting.num_tasks}"),
    }


def render_markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    lines = metadata_markdown("L2T-FMT teacher: cost vs a plain `transformers.Trainer`", payload["meta"])
    lines += [
        f"Batch {settings['batch_size']} × {settings['seq_len']} tokens, held-out batch {settings['heldout_rows']} "
        f"rows, blocks of {settings['steps']} optimizer steps, {settings['repeats']} interleaved timed passes "
        f"(+1 warm-up). Defaults: teacher step every {settings['interval']} optimizer steps, held-out rows "
        f"re-encoded every {settings['heldout_refresh']} teacher steps. Step time = process CPU time per optimizer "
        "step (median over passes); ratio = ÷ the plain Trainer's, paired per pass, median [min, max] (the spread "
        "is the noise floor). `@student` = the teacher strategy's own step (GradNorm on, the teacher never steps).",
        "",
    ]
    for result in payload["results"]:
        rows = [
            [
                method,
                f"{entry['step_ms_cpu']:.1f}",
                f"{entry['step_ms_wall']:.1f}",
                f"×{entry['ratio_cpu']:.3f} [{entry['ratio_cpu_range'][0]:.3f}, {entry['ratio_cpu_range'][1]:.3f}]",
            ]
            for method, entry in result["methods"].items()
        ]
        target = result["target"]
        measured = result["methods"][DEFAULT]["ratio_cpu"]
        lines += [f"## {result['setting']}", ""]
        lines += markdown_table(["method", "step ms (CPU)", "step ms (wall)", "ratio vs plain Trainer"], rows)
        lines += [
            f"- Teacher step without encoding: {result['teacher_step_without_encoding_ms_cpu']:.1f} ms CPU; one "
            f"encoding of the held-out rows: {result['heldout_encoding_ms_cpu']:.1f} ms "
            f"({result['teacher_steps_timed']} teacher steps, {result['encodings_timed']} encodings timed).",
            "- Predicted ratio `(student + (teacher step + encoding / r) / k) / plain` at interval k, refresh r: "
            + ", ".join(f"{key}: {value:.2f}" for key, value in result["predicted_ratio"].items())
            + ".",
        ]
        if target is not None:
            verdict = "meets" if measured <= target else "misses"
            lines.append(f"- Target ≤ ×{target}: the default run's measured ×{measured:.3f} {verdict} it.")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed passes instead of 3")
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="ENCODER:T[:G] (benchmarks.cost)")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per block (default interval × refresh)"
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    # A block holds a whole number of refresh cycles, so every block pays the same share of encodings.
    cycle = TeacherSettings.interval * TeacherSettings.heldout_refresh
    steps = args.steps if args.steps is not None else cycle
    if steps % cycle:
        raise ValueError(f"--steps {steps} must be a multiple of interval × heldout_refresh = {cycle}")
    torch.set_num_threads(args.threads)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    meta = start_metadata(
        command_string("benchmarks.bench_teacher", argv), args.threads, "quick" if args.quick else "full"
    )
    results = [measure(Setting.parse(s), steps, repeats, args.batch_size, args.seq_len) for s in args.settings]
    payload = {
        "meta": finish_metadata(meta),
        "settings": {
            "settings": args.settings,
            "steps": steps,
            "repeats": repeats,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "heldout_rows": HELDOUT_ROWS,
            "interval": TeacherSettings.interval,
            "heldout_refresh": TeacherSettings.heldout_refresh,
            "time_measure": "process CPU time per optimizer step (primary), wall time kept",
        },
        "results": results,
    }
    paths = write_results(STEM, payload, render_markdown(payload), args.output_dir)
    print("wrote", ", ".join(str(p) for p in paths))
    return payload


if __name__ == "__main__":
    main()
