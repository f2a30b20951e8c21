"""`python -m benchmarks.cost`: arguments, the run over the grids, the result files."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmarks.common import RESULTS_DIR, command_string, finish_metadata, start_metadata, write_results

from .measure import measure_memory, measure_setting, memory_probe, profile_methods
from .render import plot, render_markdown, summarise
from .settings import (
    FULL_GRID,
    FULL_MEMORY_GRID,
    FULL_MEMORY_GRID_SUBSET,
    FULL_PROFILE,
    METHODS,
    MINILM,
    PLAIN,
    PROFILE_METHODS,
    QUICK_GRID,
    QUICK_MEMORY_GRID,
    QUICK_MEMORY_METHODS,
    TARGETS,
    Setting,
)

DESCRIPTION = "Training cost of FairMTLTrainer per strategy and task weighting, relative to a plain Trainer."


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=DESCRIPTION)
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


def _methods(args: argparse.Namespace) -> list[str]:
    """The methods to time, the plain Trainer first."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; known: {list(METHODS)}")
    return methods if PLAIN in methods else [PLAIN, *methods]


def _grid(given: list[str] | None, quick: bool, quick_grid: list[str], full_grid: list[str]) -> list[Setting]:
    return [Setting.parse(s) for s in (given if given is not None else quick_grid if quick else full_grid)]


def _memory(args: argparse.Namespace, methods: list[str]) -> list[dict[str, Any]]:
    """Peak memory of the memory grid's settings, one fresh process per method."""
    memory_methods = QUICK_MEMORY_METHODS if args.quick else methods
    if args.memory_methods is not None:
        memory_methods = [m.strip() for m in args.memory_methods.split(",") if m.strip() in METHODS]
    grid = _grid(args.memory_grid, args.quick, QUICK_MEMORY_GRID, FULL_MEMORY_GRID)
    plan = [(s, memory_methods) for s in grid]
    if args.memory_grid is None and not args.quick:
        plan += [(Setting.parse(s), QUICK_MEMORY_METHODS) for s in FULL_MEMORY_GRID_SUBSET]
    return [
        measure_memory(
            s, plan_methods, args.memory_steps, args.batch_size, args.seq_len, args.teacher_interval, args.threads
        )
        for s, plan_methods in plan
    ]


def _profiles(args: argparse.Namespace, stem: str, command: str) -> tuple[dict[str, Any], Path | None]:
    """cProfile summaries per setting, and the raw listing's path (`None` when nothing was profiled)."""
    profile_settings = args.profile if args.profile is not None else ([] if args.quick else FULL_PROFILE)
    if not profile_settings:
        return {}, None
    methods = [m.strip() for m in args.profile_methods.split(",") if m.strip()]
    profiles: dict[str, Any] = {}
    listings = []
    for text in tqdm(profile_settings, desc="profiles"):
        setting = Setting.parse(text)
        profiles[setting.name], listing = profile_methods(
            setting, methods, args.teacher_interval, args.batch_size, args.seq_len
        )
        listings.append(listing)
    path = args.output_dir / f"{stem}_profile.txt"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {command}\n" + "".join(listings))
    return profiles, path


def _settings_record(args: argparse.Namespace, methods: list[str], repeats: int, minilm_repeats: int) -> dict[str, Any]:
    return {
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
    }


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
    methods = _methods(args)
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 8)
    minilm_repeats = args.minilm_repeats if args.minilm_repeats is not None else (3 if args.quick else 4)
    meta = start_metadata(
        command or command_string("benchmarks.cost", argv), args.threads, "quick" if args.quick else "full"
    )
    timing = []
    for setting in tqdm(_grid(args.grid, args.quick, QUICK_GRID, FULL_GRID), desc="cost settings"):
        # MiniLM steps are ~10x dearer than tiny BERT's, so fewer and shorter blocks.
        steps, passes = (args.minilm_steps, minilm_repeats) if setting.encoder == MINILM else (args.steps, repeats)
        timing.append(
            measure_setting(setting, methods, steps, passes, args.batch_size, args.seq_len, args.teacher_interval)
        )
        print(json.dumps({setting.name: {m: v.get("ratio_cpu") for m, v in timing[-1]["methods"].items()}}), flush=True)
    stem = args.stem or ("cost_quick" if args.quick else "cost")
    memory = _memory(args, methods)
    profiles, profile_path = _profiles(args, stem, meta["command"])
    payload: dict[str, Any] = {
        "meta": finish_metadata(meta),
        "settings": _settings_record(args, methods, repeats, minilm_repeats),
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
