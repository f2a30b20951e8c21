"""Rendering cost results: the target verdicts, the Markdown report and the ratio-vs-tasks plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table, metadata_markdown
from hf_fairmtl.teacher import TeacherSettings

from .settings import ENCODERS, PLAIN, TARGETS, TINY_BERT


def summarise(timing: Sequence[dict[str, Any]]) -> list[str]:
    """One verdict line per target whose method and setting were timed (the pooled ratio decides)."""
    lines = []
    for target in TARGETS:
        method, name = target["method"], f"{target['setting']}:2"
        for entry in timing:
            if entry["name"] != name or "ratio_cpu" not in entry["methods"].get(method, {}):
                continue
            result = entry["methods"][method]
            ratio, (low, high) = result["ratio_cpu"], result["ratio_cpu_paired_iqr"]
            verdict = "met" if ratio <= target["bound"] else "NOT met"
            lines.append(
                f"`{method}` on {entry['name']}: ×{ratio:.3f} [IQR {low:.2f}–{high:.2f}] vs target ≤ "
                f"×{target['bound']:.2f}: {verdict}"
            )
    return lines


def render_markdown(payload: dict[str, Any]) -> str:
    meta, settings = payload["meta"], payload["settings"]
    lines = metadata_markdown("Training cost of FairMTLTrainer vs plain transformers.Trainer", meta)
    lines += [
        f"- Batch {settings['batch_size']}, {settings['seq_len']} tokens. Blocks of k = {settings['steps']} optimizer "
        f"steps, {settings['repeats']} interleaved passes (+1 warm-up) for tiny-bert; k = {settings['minilm_steps']} "
        f"steps, {settings['minilm_repeats']} passes for MiniLM. Step cost: lower quartile over all passes of "
        "the block's steps 2..k−1 (step 1 builds optimizer state) + the extra of step k, where the teacher runs, "
        f"÷ {settings['teacher_interval']} (the trainer's default `teacher_interval`), plus the teacher's held-out "
        "re-encoding (timed on its own after the passes, never inside a block) ÷ the optimizer steps between two "
        f"refreshes (`teacher_interval` × `teacher_heldout_refresh` = {settings['teacher_interval']} × "
        f"{TeacherSettings.heldout_refresh}); process CPU time; data "
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
        key = "heldout_refresh_ms_per_step_cpu"
        refresh = [
            f"`{method}` " + " / ".join(f"{e['methods'][method][key]:.1f}" for e in entries)
            for method in methods
            if any(e["methods"][method].get(key) for e in entries)
        ]
        if refresh:
            lines += ["", "Of which the held-out re-encoding, ms per step (" + ", ".join(header[1:]) + "): "
                      + "; ".join(refresh) + ".", ""]  # fmt: skip
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
    lines += ["## Targets of issue 16", "", *[f"- {line}" for line in payload["summary"]], ""]
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


FAR_RATIO = 3.0
"""Methods above this ratio are named on the plot instead of drawn."""


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
        methods = [method for method in entries[0]["methods"] if method != PLAIN]
        ratios = {method: [e["methods"][method]["ratio_cpu"] for e in entries] for method in methods}
        # A method at ×10–100 (PCGrad) would flatten every other line into the floor: it is named, not drawn.
        far = [method for method in methods if max(ratios[method]) > FAR_RATIO]
        colors = matplotlib.colormaps["tab20"].colors  # distinct colours for up to 20 methods (tab10 repeats)
        for k, method in enumerate(m for m in methods if m not in far):
            axis.plot(tasks, ratios[method], marker="o", label=method, color=colors[k % len(colors)])
        if far:
            text = "; ".join(f"{m}: ×{min(ratios[m]):.0f}–{max(ratios[m]):.0f}" for m in far)
            axis.text(0.02, 0.98, f"not drawn (see the table): {text}", transform=axis.transAxes, fontsize=7,
                      va="top")  # fmt: skip
        for bound in {target["bound"] for target in TARGETS if target["setting"].startswith(f"{encoder}:")}:
            axis.axhline(bound, linestyle=":", linewidth=1, color="grey")
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_xticks(tasks, [str(t) for t in tasks])
        axis.set_xlabel("number of tasks T")
        axis.set_ylabel("step time ÷ plain Trainer (CPU)")
        axis.set_title(f"{encoder}, batch {payload['settings']['batch_size']}, {payload['settings']['seq_len']} tokens")
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
