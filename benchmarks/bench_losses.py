"""Forward + backward time of every registered fairness loss vs batch size and number of groups.

Run from the repository root:

    python benchmarks/bench_losses.py                # full grid, writes benchmarks/results/losses.{json,md}
    python benchmarks/bench_losses.py --quick        # a smaller grid, for a smoke run

Each measurement times `loss(logits, labels, groups).backward()` on free logits (so only the loss is
timed), with ~10% missing labels and ~10% unknown groups: process CPU time per call, median over
interleaved passes through the grid (one block of calls per setting per pass), plus wall-clock min and
median. The task loss (`masked_cross_entropy`) is timed the same way as a reference point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from hf_fairmtl.losses import FAIRNESS_LOSSES, build_fairness_loss, masked_cross_entropy

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BATCH_SIZES = [64, 256, 1024, 4096]
GROUP_COUNTS = [2, 4, 8, 16, 32]
REFERENCE = "cross_entropy"


def make_inputs(batch_size: int, num_groups: int, num_classes: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch_size, num_classes, generator=generator).requires_grad_()
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    groups = torch.randint(0, num_groups, (batch_size,), generator=generator)
    labels[torch.rand(batch_size, generator=generator) < 0.1] = -100
    groups[torch.rand(batch_size, generator=generator) < 0.1] = -1
    return logits, labels, groups


def make_step(name: str, batch_size: int, num_groups: int, num_classes: int) -> Callable[[], None]:
    """One forward + backward of loss `name` on fixed random inputs."""
    logits, labels, groups = make_inputs(batch_size, num_groups, num_classes)
    if name == REFERENCE:

        def loss_fn(x, y, _):
            return masked_cross_entropy(x, y)[0]
    else:
        loss_fn = build_fairness_loss(name, num_groups=num_groups, num_classes=num_classes)

    def step() -> None:
        logits.grad = None
        loss_fn(logits, labels, groups).backward()

    return step


def block_size(step: Callable[[], None], min_block_s: float) -> int:
    """Calls per timed block, doubled until a block lasts `min_block_s` (timer resolution stops mattering)."""
    for _ in range(3):  # warm-up: allocator, lazy initialisation
        step()
    calls = 1
    while True:
        start = time.process_time()
        for _ in range(calls):
            step()
        if time.process_time() - start >= min_block_s:
            return calls
        calls *= 2


def time_block(step: Callable[[], None], calls: int) -> tuple[float, float]:
    """`(cpu, wall)` seconds per call over one block of `calls` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        step()
    return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


def render_markdown(payload: dict) -> str:
    meta = payload["meta"]
    lines = [
        "# Fairness-loss forward + backward time",
        "",
        "Made with:",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"- Machine: {meta['machine']}; torch {meta['torch']}, {meta['threads']} thread(s), device `cpu`.",
        "- Time of `loss(logits, labels, groups).backward()` on free logits, microseconds per call "
        f"(median over {meta['repeats']} interleaved passes of the process CPU time; wall-clock figures are in the"
        " JSON). CPU time because the machine is shared: other processes inflate wall time, not our CPU time."
        " ~10% missing labels and ~10% unknown groups.",
        f"- `{REFERENCE}` is the task loss (`masked_cross_entropy`), for scale.",
        "",
    ]
    for num_classes in meta["num_classes"]:
        rows = [r for r in payload["results"] if r["num_classes"] == num_classes]
        names = list(dict.fromkeys(r["loss"] for r in rows))
        sizes = sorted({r["batch_size"] for r in rows})
        group_counts = sorted({r["num_groups"] for r in rows})
        lines += [f"## {num_classes} classes", ""]
        header = "| loss | groups | " + " | ".join(f"B={b}" for b in sizes) + " |"
        lines += [header, "|" + "---|" * (2 + len(sizes))]
        for name in names:
            for g in group_counts:
                cells = []
                for b in sizes:
                    match = [r for r in rows if r["loss"] == name and r["num_groups"] == g and r["batch_size"] == b]
                    cells.append(f"{match[0]['microseconds']:.0f}" if match else "")
                if any(cells):
                    lines.append(f"| {name} | {g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Summary", "", *[f"- {line}" for line in payload["summary"]], ""]
    return "\n".join(lines)


def summarise(results: list[dict]) -> list[str]:
    """A few readable facts: slowest loss at the largest batch, scaling in batch size and in groups."""
    lines = []
    binary = [r for r in results if r["num_classes"] == 2]
    if not binary:
        return lines
    big_b, big_g = max(r["batch_size"] for r in binary), max(r["num_groups"] for r in binary)
    small_b, small_g = min(r["batch_size"] for r in binary), min(r["num_groups"] for r in binary)

    table = {(r["loss"], r["batch_size"], r["num_groups"]): r["microseconds"] for r in binary}

    def get(name, b, g):
        return table.get((name, b, g))

    for name in dict.fromkeys(r["loss"] for r in binary):
        worst, best = get(name, big_b, big_g), get(name, small_b, small_g)
        across_b, across_g = get(name, big_b, small_g), get(name, small_b, big_g)
        if None in (worst, best, across_b, across_g):
            continue
        lines.append(
            f"`{name}`: {best:.0f} µs at B={small_b}, G={small_g}; {worst:.0f} µs at B={big_b}, G={big_g} "
            f"(×{across_b / best:.1f} from B={small_b}→{big_b}, ×{across_g / best:.1f} from G={small_g}→{big_g})"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch sizes 64/1024, groups 2/32, 3 passes")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=9, help="passes through the grid")
    parser.add_argument("--min-block-ms", type=float, default=10.0, help="minimum duration of one timed block")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    batch_sizes, group_counts, repeats = BATCH_SIZES, GROUP_COUNTS, args.repeats
    if args.quick:
        batch_sizes, group_counts, repeats = [64, 1024], [2, 32], 3
    names = [REFERENCE, *sorted(FAIRNESS_LOSSES)]
    grid = [(name, b, g, 2) for name in names for g in group_counts for b in batch_sizes]
    # Multi-class (one-vs-rest) cost at a few sizes: 5 classes, 8 groups.
    grid += [(name, b, 8, 5) for name in names for b in batch_sizes]

    steps = [make_step(*config) for config in grid]
    calls = [block_size(step, args.min_block_ms / 1000) for step in steps]
    cpu_samples: list[list[float]] = [[] for _ in grid]
    wall_samples: list[list[float]] = [[] for _ in grid]
    # Passes over the whole grid rather than all repeats of one setting in a row, so a burst of load from
    # other processes on a shared machine spreads over many settings instead of skewing one.
    for _ in range(repeats):
        for index, step in enumerate(steps):
            cpu, wall = time_block(step, calls[index])
            cpu_samples[index].append(cpu)
            wall_samples[index].append(wall)

    results = []
    for (name, batch_size, num_groups, num_classes), cpu, wall in zip(grid, cpu_samples, wall_samples, strict=True):
        results.append(
            {
                "loss": name,
                "batch_size": batch_size,
                "num_groups": num_groups,
                "num_classes": num_classes,
                "microseconds": round(statistics.median(cpu) * 1e6, 2),
                "wall_microseconds_min": round(min(wall) * 1e6, 2),
                "wall_microseconds_median": round(statistics.median(wall) * 1e6, 2),
            }
        )
        print(
            f"{name:>14} B={batch_size:<5} G={num_groups:<3} C={num_classes}: "
            f"{statistics.median(cpu) * 1e6:9.1f} µs CPU, {min(wall) * 1e6:9.1f} µs wall (best)",
            flush=True,
        )

    argv_used = sys.argv[1:] if argv is None else argv
    payload = {
        "meta": {
            "command": shlex.join(["python", "benchmarks/bench_losses.py", *argv_used]),
            "torch": torch.__version__,
            "threads": args.threads,
            "repeats": repeats,
            "machine": " ".join(
                filter(None, [platform.machine(), platform.processor(), f"({os.cpu_count()} logical CPUs)"])
            ),
            "python": platform.python_version(),
            "num_classes": sorted({r["num_classes"] for r in results}),
        },
        "results": results,
    }
    payload["summary"] = summarise(results)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "losses.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.output_dir / "losses.md").write_text(render_markdown(payload))
    print(f"wrote {args.output_dir / 'losses.json'} and {args.output_dir / 'losses.md'}")


if __name__ == "__main__":
    main()
