"""Run every benchmark with one command and write an index of the headline numbers.

From the repository root:

    python -m benchmarks.run --quick                 # < 15 min on 2 CPU cores: cost, tabular and text quality
    python -m benchmarks.run                         # full mode (about 40 min on 2 shared cores)
    python -m benchmarks.run --acs_root_dir DIR      # also the L2T-FMT ACS-PUMS setting (folktables files in DIR)
    python -m benchmarks.run --only cost             # one part: cost, tabular, text (comma-separated)

Each part writes `benchmarks/results/{part}[_quick].json|.md|.png` with this command at the top; the index
`benchmarks/results/run[_quick].md` collects the headline numbers. `--rerender` rewrites the markdown and plots
of existing results from their JSON (same flags otherwise), without running anything. `--smoke` runs every part
on tiny settings (seconds; the test suite uses it) and is not meant for numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import cost, quality_tabular, quality_text
from benchmarks.common import RESULTS_DIR, command_string, format_mean_std, markdown_table

PARTS = ("cost", "tabular", "text")
SMOKE_ARGS = {
    "cost": [
        "--grid",
        "tiny-bert:2",
        "--memory-grid",
        "tiny-bert:2",
        "--memory-methods",
        "plain_trainer",
        "--methods",
        "plain_trainer,weighted,teacher+gradnorm",
        "--steps",
        "3",
        "--repeats",
        "1",
        "--memory-steps",
        "2",
        "--profile",
    ],
    "tabular": [
        "--seeds",
        "1",
        "--max_rows",
        "1500",
        "--max_test_rows",
        "800",
        "--epochs",
        "1",
        "--methods",
        "L2T-FMT",
    ],
    "text": [
        "--seeds",
        "1",
        "--max_rows",
        "200",
        "--max_steps",
        "2",
        "--census_rows",
        "1500",
        "--census_test_rows",
        "800",
        "--census_epochs",
        "1",
        "--tiny_encoder",
        "--methods",
        ",".join([quality_text.VANILLA, quality_text.TRANSFER, quality_text.ORACLE]),
    ],
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the < 15 min mode")
    mode.add_argument("--smoke", action="store_true", help="tiny settings, seconds (tests); numbers mean nothing")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts among {PARTS}")
    parser.add_argument("--acs_root_dir", default=None, help="also run the tabular benchmark on ACS PUMS from DIR")
    parser.add_argument("--acs_states", default="CA")
    parser.add_argument("--acs_year", type=int, default=2018)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="rewrite the markdown files and plots of existing results from their JSON (after editing a report)",
    )
    return parser.parse_args(argv)


def headline(payloads: dict[str, dict[str, Any]]) -> list[str]:
    """The few numbers the README quotes, from the payloads of this run."""
    lines: list[str] = []
    if "cost" in payloads:
        lines += ["## Cost: step time ÷ plain Trainer (CPU time)", ""]
        timing = [e for e in payloads["cost"]["timing"] if e["setting"]["num_groups"] == 2]
        methods = [m for m in payloads["cost"]["settings"]["methods"] if m != cost.PLAIN]
        rows = [[e["name"], *[f"×{e['methods'][m]['ratio_cpu']:.2f}" for m in methods]] for e in timing]
        lines += markdown_table(["encoder:T:G", *methods], rows)
        lines += [f"- {line}" for line in payloads["cost"]["summary"]] + [""]
    for key in ("tabular", "acs"):
        if key in payloads:
            result = payloads[key]["result"]
            lines += [f"## {payloads[key]['settings']['dataset']}: ARA / AREO vs STL", ""]
            rows = [
                [name, format_mean_std(block["ARA"]), format_mean_std(block["AREO"])]
                for name, block in result["summary"].items()
                if "ARA" in block
            ]
            lines += markdown_table(["method", "ARA ↑", "AREO ↓"], rows)
    if "text" in payloads and "transfer" in payloads["text"]:
        lines += ["## Text transfer: target task (occupation) by pronoun gender", ""]
        rows = [
            [name, format_mean_std(b["accuracy"]), format_mean_std(b["eo_violation"]), format_mean_std(b["eps_deo"])]
            for name, b in payloads["text"]["transfer"]["summary"].items()
        ]
        lines += markdown_table(["method", "accuracy", "EO violation", "ε-DEO"], rows)
    return lines


MODULES = {"cost": cost, "tabular": quality_tabular, "text": quality_text, "acs": quality_tabular}
STEMS = {"cost": "cost", "tabular": "quality_tabular", "text": "quality_text", "acs": "quality_acs"}


def write_index(payloads: dict[str, dict[str, Any]], command: str, suffix: str, output_dir: Path) -> Path:
    """`run{suffix}.md`: the command, the total time and load (from the parts' metadata) and the headline numbers."""
    metas = [payload["meta"] for payload in payloads.values()]
    wall = sum(meta["duration_s"] for meta in metas)
    cpu = sum(meta.get("cpu_s", float("nan")) for meta in metas)
    lines = ["# Benchmark headline numbers", "", "Made with (from the repository root):", "", "```", command, "```", ""]
    remade = {part: payload["meta"]["command"] for part, payload in payloads.items()}
    remade = {part: part_command for part, part_command in remade.items() if part_command != command}
    if remade:  # a part re-run on its own since (e.g. after a fix): say so rather than pass it off as this run's
        lines += ["Parts re-run on their own since:", ""]
        lines += [f"- `{STEMS[part]}{suffix}`: `{part_command}`" for part, part_command in remade.items()]
        lines += [""]
    lines += [
        f"Wall time {wall / 60:.1f} min, CPU time {cpu / 60:.1f} min (sums over the parts; ≈ the wall time on an "
        "idle machine: one torch thread, one process at a time); load average before "
        f"{metas[0]['load_before']['loadavg']}, after {metas[-1]['load_after']['loadavg']} (2 cores shared with other "
        "jobs).",
        "",
    ]
    lines += [f"Details: `{STEMS[part]}{suffix}.md` / `.json` next to this file." for part in payloads]
    lines += ["", *headline(payloads)]
    index = output_dir / f"run{suffix}.md"
    index.write_text("\n".join(lines).rstrip() + "\n")
    return index


def rerender(parts: Sequence[str], suffix: str, output_dir: Path) -> dict[str, dict[str, Any]]:
    """Rewrite the markdown, plots and index of existing results from their JSON, without running anything."""
    payloads = {}
    for part in [*parts, "acs"]:
        path = output_dir / f"{STEMS[part]}{suffix}.json"
        if not path.is_file():
            continue
        payload = json.loads(path.read_text())
        module = MODULES[part]
        (output_dir / f"{STEMS[part]}{suffix}.md").write_text(module.render_markdown(payload).rstrip() + "\n")
        module.plot(payload, output_dir / f"{STEMS[part]}{suffix}.png")
        payloads[part] = payload
    if payloads:
        print("rewrote", write_index(payloads, next(iter(payloads.values()))["meta"]["command"], suffix, output_dir))
    return payloads


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the selected benchmark parts; return their payloads by part name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = command_string("benchmarks.run", argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"Unknown part(s) {unknown}; choose among {PARTS}")
    suffix = "_smoke" if args.smoke else "_quick" if args.quick else ""
    if args.rerender:
        return rerender(parts, suffix, args.output_dir)
    common = ["--output-dir", str(args.output_dir)]
    if args.quick:
        common.append("--quick")
    payloads: dict[str, dict[str, Any]] = {}
    for part in parts:
        extra = (SMOKE_ARGS[part] if args.smoke else []) + ["--stem", STEMS[part] + suffix]
        payloads[part] = MODULES[part].main(common + extra, command=command)
    if args.acs_root_dir and "tabular" in parts:
        acs = ["--acs_root_dir", args.acs_root_dir, "--acs_states", args.acs_states, "--acs_year", str(args.acs_year)]
        extra = (SMOKE_ARGS["tabular"] if args.smoke else []) + ["--stem", STEMS["acs"] + suffix]
        payloads["acs"] = quality_tabular.main(common + acs + extra, command=command)
    print("wrote", write_index(payloads, command, suffix, args.output_dir))
    return payloads


if __name__ == "__main__":
    main()
