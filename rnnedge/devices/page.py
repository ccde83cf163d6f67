"""`rnnedge report BUNDLE`: one self-contained HTML page for a bundle (no network: styles inline, pictures as
data URIs), from what the other commands wrote: the manifest (model, files, accuracy, parity), the benchmark
(`rnnedge bench`: bench.json and bench.png), the alarms (`rnnedge evaluate-alarms`: report.json, trace.png,
placements.png), the microcontroller fit and the plain C under QEMU (`rnnedge mcu`: mcu.json). Results are found
beside the bundle (the folders `make export` writes) when they name this bundle, or given by path; a section
without results says which command makes them."""

from __future__ import annotations

import base64
import datetime
import html
import json
from dataclasses import dataclass
from pathlib import Path

from rnnedge.atomic import write_text_atomic
from rnnedge.bundle import Manifest, read_manifest
from rnnedge.devices.report import num
from rnnedge.errors import RnnedgeError

SECTIONS = ("model", "files", "benchmark", "alarms", "microcontrollers")


@dataclass(frozen=True)
class Found:
    """A results folder of another command, and the JSON it wrote there."""

    folder: Path
    data: dict


def find_results(bundle: Path, name: str, given: Path | None) -> Found | None:
    """`given` (a folder or its JSON file), else the newest `<bundle's parent>/*/name` whose "bundle" is this
    bundle: results of another bundle never land on its page."""
    if given is not None:
        path = given / name if given.is_dir() else given
        try:
            return Found(path.parent, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise RnnedgeError(f"{path}: cannot read the results ({getattr(exc, 'strerror', None) or exc})") from None
    mine = []
    for path in bundle.resolve().parent.glob(f"*/{name}"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not results of ours: ignored, as any other file beside the bundle
        if isinstance(data, dict) and Path(str(data.get("bundle", ""))).resolve() == bundle.resolve():
            mine.append((path.stat().st_mtime, str(path), data))
    if not mine:
        return None
    _, newest, data = max(mine, key=lambda found: found[:2])
    return Found(Path(newest).parent, data)


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(header: list[str] | None, rows: list[list[object]]) -> str:
    head = "" if header is None else "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _picture(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _model(m: Manifest, bundle: Path) -> str:
    cfg = m.model
    shape = f"{cfg.get('cell', '?')} {cfg.get('num_layers', '?')}x{cfg.get('hidden_size', '?')}"
    rows = [["bundle", str(bundle)], ["name", m.name], ["created", m.created], ["rnnedge", m.rnnedge_version],
            ["model", f"{shape}, task {m.task}, {'streams' if m.streamable else 'windows only'}"],
            ["input", f"{', '.join(m.input.channels)} at {m.input.sample_rate_hz:g} Hz (raw units; normalized "
                      "inside each file)"],
            ["output", f"{m.output.size} {m.output.kind}: {', '.join(m.output.labels or m.output.names)}"],
            ["state", f"{m.state.size} floats ({'+'.join(m.state.parts)}, {m.state.layers} layers x "
                      f"{m.state.hidden_size})"],
            ["evaluated on", f"{m.evaluation.data}: {m.evaluation.metric}, torch "
                             f"{num(m.evaluation.torch_score, '.4f')}"],
            ["operating point", "in the bundle (rnnedge monitor runs it)" if m.operating_point else
             "none yet: rnnedge evaluate-alarms BUNDLE writes one"]]
    return _table(None, rows)


def _files(m: Manifest) -> str:
    rows = [[f.format, f.precision, f.graph, f.chunk_len or "any", f"{f.size_bytes / 1024:.1f}",
             num(f.score, ".4f"), f"{f.parity.max_abs_diff_output:.1e}", num(f.parity.argmax_agreement, ".4f"),
             f.path, f.sha256[:12]] for f in m.files]
    rows += [[r.format, r.precision, "rejected", "", "", num(r.score, ".4f"), "", "", r.reason, ""]
             for r in m.rejected]
    return _table(["format", "precision", "graph", "T", "KB", m.evaluation.metric, "max diff vs torch",
                   "argmax agreement", "file", "sha256"], rows)


def _benchmark(found: Found | None) -> str:
    if found is None:
        return "<p class=missing>No benchmark of this bundle beside it: <code>rnnedge bench BUNDLE</code>.</p>"
    from rnnedge.devices.bench import Report
    from rnnedge.devices.report import COLUMNS, cells

    b = found.data
    report = Report.from_json(b)
    rows = [cells(row) for row in report.rows]
    notes = "".join(f"<li>{_e(r.format)} {_e(r.precision)} on {_e(r.backend)}: {_e(r.note)}</li>"
                    for r in report.rows if r.note)
    m = b["machine"]
    where = (f"{m['arch']}, {m['cpu_model']}, {m['cores']} cores, {m['memory_mb'] / 1024:.1f} GiB, GPU "
             f"{', '.join(g['name'] for g in m['gpus']) or 'none'}; {b['created']} ({found.folder})")
    return (f"<p>Measured on {_e(where)}.</p>" + _table(list(COLUMNS), rows) + (f"<ul>{notes}</ul>" if notes else "")
            + _picture(found.folder / "bench.png", "latency, throughput and size against score per variant"))


def _alarms(found: Found | None) -> str:
    if found is None:
        return ("<p class=missing>No alarm evaluation of this bundle beside it: <code>rnnedge evaluate-alarms "
                "BUNDLE</code>.</p>")
    r = found.data
    point = r["operating_point"]
    rows = []
    for name, metrics in (("validation (chose the point)", r["validation"]), ("test", r["test"]),
                          ("test, 120 s gaps between recordings", r.get("gaps"))):
        if metrics:
            rows.append([name, f"{metrics['detected']}/{metrics['events']}", f"{metrics['false_alarms']} in "
                         f"{metrics['other_hours']:.2f} h ({metrics['false_alarms_per_hour']:.2f}/h)",
                         num(metrics.get("median_delay_s"), ".2f")])
    text = (f"<p>Backend {_e(r['backend'])}, attached {_e(r.get('attach', 'upright'))}; threshold "
            f"{point['alarm']['threshold']:g}, release {point['alarm']['release']:g}, refractory "
            f"{point['alarm']['refractory_s']:g} s ({found.folder}).</p>")
    text += _table(["subjects", "get-ups alarmed within 1.5 s", "false alarms", "median delay s"], rows)
    if r.get("sweep"):
        recalls = [c["recall"] for c in r["sweep"]]
        most = max(c["false_alarms_per_hour"] for c in r["sweep"])
        text += (f"<p>Placements and rates ({len(recalls)} conditions): mean recall "
                 f"{sum(recalls) / len(recalls):.1%}, worst {min(recalls):.1%}, most false alarms {most:.2f}/h.</p>")
    return (text + _picture(found.folder / "trace.png", "signal, get-up score and alarms on one test recording")
            + _picture(found.folder / "placements.png", "recall and false alarms per orientation"))


def _microcontrollers(m: Manifest, found: Found | None) -> str:
    from rnnedge.devices.mcu import MCU_PROFILES, fit

    rows = []
    for profile in MCU_PROFILES:
        result = fit(m, profile)
        rows.append([profile.name, "yes" if result.file is not None else "no", result.reason])
    text = "<p>TFLite Micro (the integer-only file and its tensor arena):</p>" + _table(
        ["microcontroller", "fits", "why"], rows)
    plain = [f for f in m.files if f.mcu is not None and f.mcu.c is not None]
    for f in plain:
        text += (f"<p>Plain C without an interpreter: <code>{_e(f.mcu.c.source)}</code>, <code>{_e(f.mcu.c.header)}"
                 f"</code> (<code>{_e(f.mcu.c.step)}</code>, {f.mcu.c.scratch_bytes:,} B of scratch on the stack, "
                 f"state {2 * m.state.size:,} B).</p>")
    if found is None:
        return text + ("<p class=missing>Not run on a Cortex-M yet: <code>rnnedge mcu BUNDLE</code>.</p>"
                       if plain else "")
    r = found.data
    runs = [[row["name"], f"{row['differing']}", f"{row['flash_bytes'] / 1024:.1f}", f"{row['ram_bytes']:,}",
             f"{row['instructions_per_step']:,}", f"{row['budget_share']:.1%}"] for row in r["rows"]]
    return text + (f"<p>Under QEMU, {r['steps']:,} steps of {_e(r['recording'])} ({found.folder}):</p>" + _table(
        ["target", "outputs differing from TFLite Micro", "flash KB", "RAM B", "instructions per step",
         "share of 20 ms at 64 MHz"], runs))


STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:24px}h2{font-size:19px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left}th{background:#f2f2f2}img{max-width:100%;margin:8px 0;border:1px solid #eee}
.missing{color:#a40}code{background:#f4f4f4;padding:1px 4px}"""


def render(bundle: Path, bench: Path | None = None, alarms: Path | None = None, mcu: Path | None = None) -> str:
    m = read_manifest(bundle)
    parts = {"model": _model(m, bundle), "files": _files(m),
             "benchmark": _benchmark(find_results(bundle, "bench.json", bench)),
             "alarms": _alarms(find_results(bundle, "report.json", alarms)),
             "microcontrollers": _microcontrollers(m, find_results(bundle, "mcu.json", mcu))}
    titles = {"model": "Model", "files": "Files: size, accuracy, parity", "benchmark": "Benchmark on a device",
              "alarms": "Bed-exit alarms", "microcontrollers": "Microcontrollers (integer-only file, TFLite Micro)"}
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(f'<section id="{key}"><h2>{titles[key]}</h2>{parts[key]}</section>' for key in SECTIONS)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>rnnedge: {_e(m.name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>rnnedge bundle: {_e(m.name)}</h1>"
            f"<p>Page written {now} by <code>rnnedge report</code>.</p>{body}</body></html>\n")


def write(bundle: Path, out: Path, bench: Path | None = None, alarms: Path | None = None,
          mcu: Path | None = None) -> Path:
    return write_text_atomic(out, render(bundle, bench, alarms, mcu))
