"""Trainer callbacks that time optimizer steps (process CPU and wall time), and their estimates."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from transformers import TrainerCallback


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
        # Per-step cost (cpu s, wall s) measured outside the blocks and added to every estimate: the teacher's
        # held-out re-encoding, amortised over the optimizer steps between two refreshes.
        self.fixed_extra: tuple[float, float] = (0.0, 0.0)

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
            return lower_quartile(special) + self.fixed_extra[column - 1]
        base = lower_quartile(ordinary)
        extra = max(0.0, lower_quartile(special) - base) if special else 0.0
        return base + extra / self.amortize_over + self.fixed_extra[column - 1]

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
            estimates.append(base + extra / self.amortize_over + self.fixed_extra[column - 1])
        return estimates


def lower_quartile(values: Sequence[float]) -> float:
    """The lower quartile (inclusive method); the value itself for one value."""
    return statistics.quantiles(values, n=4, method="inclusive")[0] if len(values) > 1 else values[0]
