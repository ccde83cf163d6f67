"""The bench report as a terminal table, JSON, Markdown and a PNG chart (the chart needs matplotlib).

One set of columns and cell formats serves the terminal and the Markdown, so they always agree.
"""

from __future__ import annotations

import importlib.util
import io
import json
from dataclasses import asdict
from pathlib import Path

from rnnedge.atomic import write_bytes_atomic, write_text_atomic
from rnnedge.devices.bench import OK, BenchRow, Report
from rnnedge.tasks import get_task

COLUMNS = ("variant", "backend", "status", "file KB", "step us p50/p90/p99", "chunk us/step", "pool steps/s",
           "RT streams", "cold start s", "peak RSS MB", "score", "max diff")


def num(value: float | None, fmt: str) -> str:
    """A number in `fmt`, or '-' where there is none (a row that did not run)."""
    return "-" if value is None else format(value, fmt)


def cells(row: BenchRow) -> list[str]:
    best_pool = max(row.pool_steps_per_s.items(), key=lambda item: item[1], default=None)
    variant = f"{row.format} {row.precision}" if row.kind == "stream" else f"{row.kind} ({row.precision})"
    return [
        variant, row.backend, row.status,
        num(row.file_bytes and row.file_bytes / 1024, ".0f"),
        "-" if row.step_us is None else "/".join(format(v, ".1f") for v in row.step_us),
        "-" if row.chunk_us is None else f"{row.chunk_us / row.chunk_len:.2f} (T={row.chunk_len})",
        "-" if best_pool is None else f"{best_pool[1]:,.0f} (N={best_pool[0]})",
        num(row.streams, ","),
        num(row.cold_start_s, ".2f"),
        num(row.peak_rss_mb, ".0f"),
        num(row.score, ".4g"),
        num(row.max_abs_diff, ".1e"),
    ]


def header(report: Report) -> list[str]:
    m = report.machine
    gpus = ", ".join(g["name"] for g in m["gpus"]) or "none"
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    return [
        f"bundle `{report.bundle}` ({report.model}, {report.task}, {report.sample_rate_hz:g} Hz); "
        f"score: {get_task(report.task).metric} on the reference slice",
        f"machine: {m['arch']}, {m['cpu_model']}, {m['cores']} cores, {m['memory_mb'] / 1024:.1f} GiB, "
        f"board {m['board'] or '-'}, GPU {gpus}; profile `{report.profile}`",
        f"versions: {versions}; {report.created}",
    ]


def table(report: Report):
    from rich.table import Table

    out = Table(title="rnnedge bench", caption="\n".join(header(report)).replace("`", ""))
    for name in COLUMNS:
        out.add_column(name, justify="left" if name in ("variant", "backend", "status") else "right")
    for row in report.rows:
        style = None if row.status == OK else "red" if row.status == "parity failed" else "dim"
        out.add_row(*cells(row), style=style)
    return out


def markdown(report: Report) -> str:
    lines = [*(f"- {line}" for line in header(report)), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in report.rows]
    notes = [f"- {row.kind} {row.format} {row.precision} on {row.backend}: {row.note}" for row in report.rows
             if row.note]
    lines += ["", "File KB: the file that steps one sample (ONNX: its one file; TFLite: the T=1 file, not the "
              "chunk file beside it); step latency at batch 1; chunk = one `feed` of T samples; pool = all streams "
              "advanced by one batched call (best size shown; all sizes in bench.json); RT streams = streams whose "
              f"samples the best of these keeps up with at {report.sample_rate_hz:g} Hz on the threads used; "
              "cold start = import + load + first step in a fresh process; max diff = largest "
              "|output - torch reference| on the bundle's reference data.", "", *notes]
    return "\n".join(lines) + "\n"


def chart(report: Report) -> bytes | None:
    """Three panels over every variant (n/a where it did not run): step latency (p50 bar, p99 whisker, the axis
    cut at 10x the largest p50 so one outlier cannot flatten the rest), best pool throughput with its N, and
    size against score (the trade-off when choosing a variant). PNG bytes."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.rows
    labels = [f"{cells(r)[0]} on {r.backend}" for r in rows]
    y = list(range(len(rows)))
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 2.2 + 0.32 * len(rows)),
                                                 gridspec_kw={"width_ratios": [1.3, 1, 1.2]})
    timed_rows = [r for r in rows if r.step_us is not None]
    top = 10 * max((r.step_us[0] for r in timed_rows), default=1.0)
    for i, r in enumerate(rows):
        if r.step_us is None:
            left.text(1.1, i, "no time: QEMU counts instructions (note)" if r.status == OK else f"n/a ({r.status})",
                      va="center", fontsize=8, color="gray")
            continue
        p50, p99 = r.step_us[0], r.step_us[2]
        left.barh(i, p50, color="tab:blue" if r.status == OK else "tab:red")
        left.plot([p50, min(p99, top)], [i, i], color="black", lw=1)
        left.text(min(p99, top), i, f" {p50:.1f}" + (f" (p99 {p99:,.0f})" if p99 > top else ""), va="center",
                  fontsize=7)
    left.set(xscale="log", xlim=(1, top * 3), xlabel="us per step at batch 1 (bar p50, line to p99)",
             title="latency")
    left.set_yticks(y, labels, fontsize=8)
    left.invert_yaxis()
    best = [max(r.pool_steps_per_s.items(), key=lambda item: item[1], default=None) for r in rows]
    for i, pool in enumerate(best):
        if pool is None:
            middle.text(0, i, " n/a", va="center", fontsize=8, color="gray")
        else:
            middle.barh(i, pool[1], color="tab:green")
            middle.text(pool[1], i, f" {pool[1]:,.0f} (N={pool[0]:,})", va="center", fontsize=7)
    middle.set(xlabel="stream-steps / s, best pool size N", title="throughput (batched pool)")
    middle.set_xlim(0, 1.45 * max([p[1] for p in best if p] or [1]))
    middle.set_yticks(y, [])
    middle.invert_yaxis()
    scored = [r for r in rows if r.score is not None and r.file_bytes]
    for r in scored:
        right.scatter(r.file_bytes / 1024, r.score, color="tab:blue" if r.status == OK else "tab:red")
        right.annotate(cells(r)[0], (r.file_bytes / 1024, r.score), fontsize=7, xytext=(3, 3),
                       textcoords="offset points")
    metric = get_task(report.task).metric
    right.set(xscale="log", xlabel="file size (KB, T=1 stream file)", ylabel=f"{metric} (reference slice)",
              title="size vs " + metric)
    machine = header(report)[1].replace("`", "")
    figure.suptitle(f"rnnedge bench: {report.model} ({report.bundle}), {report.created}\n{machine}", fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def write(report: Report, out: Path) -> list[Path]:
    """bench.json, bench.md and (with matplotlib) bench.png in `out`; returns the paths written."""
    written = [write_text_atomic(out / "bench.json", json.dumps(asdict(report), indent=2) + "\n"),
               write_text_atomic(out / "bench.md", markdown(report))]
    png = chart(report)
    if png is not None:
        written.append(write_bytes_atomic(out / "bench.png", png))
    return written
