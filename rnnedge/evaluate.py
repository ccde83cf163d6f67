"""`rnnedge evaluate MODEL [--data T]`: score a checkpoint (torch) or every file of a bundle (through the runtime,
as a device streams it) on held-out data, by the task's own metric (rnnedge.tasks).

Held-out data defaults to the test (else validation) split recorded at training; `--data` reads another file or
folder the way the training data was read. A bundle's streams start from a zero state for each recording
(classify: each series, scored by the output at its last step).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import typer

from rnnedge.atomic import write_text_atomic
from rnnedge.choices import choice, key_from, verify_key_option
from rnnedge.console import table_console
from rnnedge.data.recording import Dataset
from rnnedge.data.source import held_out_data, read_like_training
from rnnedge.errors import RnnedgeError
from rnnedge.tasks import get_task, score, shown, trained_window_len

BACKEND_FOR = {"onnx": "onnxruntime", "tflite": "litert"}
FileBackend = choice("FileBackend", tuple(BACKEND_FOR.values()))


def evaluate_checkpoint(ckpt, data: Dataset | None) -> list[dict]:
    """The torch model's report (one row) for a loaded rnnedge.training.checkpoint.Checkpoint."""
    from rnnedge.training.scoring import report

    data = data or held_out_data(ckpt.provenance, ckpt.labels)
    result = report(ckpt.build_model(), data.recordings, ckpt.normalization, ckpt.labels,
                    trained_window_len(ckpt.provenance))
    return [{"model": "torch (checkpoint)", "backend": "torch", "data": data.source, **result}]


def evaluate_bundle(bundle: Path, data: Dataset | None, backends: list[str] | None = None,
                    verify_key: bytes | None = None) -> list[dict]:
    """One report per (stream file precision, backend) in the bundle, streamed through rnnedge.runtime."""
    import rnnedge.runtime as rt
    from rnnedge.bundle import read_manifest

    manifest = read_manifest(bundle, verify_key)
    if not manifest.streamable:
        raise RnnedgeError(f"{bundle}: a window (bidirectional) bundle does not stream; its files were scored at "
                           "export (manifest.json), or evaluate its checkpoint")
    training = manifest.provenance.get("training", {})
    data = data or held_out_data(training, manifest.output.labels)
    series = get_task(manifest.task).scored(data.recordings, trained_window_len(training))
    horizon = int(manifest.model.get("horizon", 1))
    rows = []
    for fmt, precision in sorted({(f.format, f.precision) for f in manifest.files if f.graph == "stream"}):
        backend = BACKEND_FOR[fmt]
        if backends and backend not in backends:
            continue
        if importlib.util.find_spec("onnxruntime" if fmt == "onnx" else "ai_edge_litert") is None:
            rows.append({"model": f"{fmt} {precision}", "backend": backend, "error": "backend not installed"})
            continue
        try:
            stream = rt.load(bundle, backend=backend, precision=precision, verify_key=verify_key).stream()
        except RnnedgeError as exc:  # e.g. a static int8 file shipped only at T=50: the runtime steps with T=1
            rows.append({"model": f"{fmt} {precision}", "backend": backend, "error": str(exc)})
            continue
        outputs = []
        for rec in series:
            stream.reset()
            outputs.append(stream.feed(rec.signals))
        result = score(manifest.task, outputs, series, manifest.output.labels, horizon)
        rows.append({"model": f"{fmt} {precision}", "backend": backend, "data": data.source, **result})
    return rows


def evaluate_command(
    model: Path = typer.Argument(..., help="A checkpoint (model.pt) or a bundle folder."),
    data: str | None = typer.Option(None, help="Held-out data (CSV file/folder or NPZ, read like the training "
                                    "data). Default: the test (else validation) split recorded at training."),
    backend: FileBackend | None = typer.Option(None, help="Bundles: only this backend."),
    verify_key: Path | None = verify_key_option(),
    out: Path | None = typer.Option(None, help="Also write evaluation.json (every report, confusion matrices) here."),
    label_column: str | None = typer.Option(None, help="--data CSVs: label column, if not the training data's."),
    unlabelled: str | None = typer.Option(None, help="--data CSVs: label value marking unlabelled rows."),
) -> None:
    """Score a checkpoint or every file of a bundle on held-out data: accuracy and confusion (tag, classify),
    MSE/MAE in the data's units beside persistence's (forecast)."""
    from rich.table import Table

    if not model.exists():
        raise RnnedgeError(f"{model}: no such checkpoint or bundle")
    meta = _model_meta(model)
    dataset = None if data is None else read_like_training(meta["provenance"], data, meta["channels"],
                                                           meta["sample_rate_hz"], meta["labels"], label_column,
                                                           unlabelled)
    if model.is_dir():
        rows = evaluate_bundle(model, dataset, [backend.value] if backend else None, key_from(verify_key))
    else:
        rows = evaluate_checkpoint(meta["checkpoint"], dataset)
    task = get_task(meta["task"])
    table = Table(title=f"{model}: {task.description}")
    baseline = [] if task.classes else ["persistence mse"]  # a forecast is worth something only if it beats it
    for column in ("model", "backend", task.metric, *baseline, "scored", "data"):
        table.add_column(column)
    for row in rows:
        scored = next((v for k, v in row.items() if k.startswith("scored_")), "-")
        value = shown(row['value']) if "value" in row else f"[red]{row['error']}[/]"
        naive = [shown(row['persistence_mse']) if "persistence_mse" in row else "-"] if baseline else []
        table.add_row(row["model"], row["backend"], value, *naive, str(scored), row.get("data", ""))
    table_console().print(table)
    if out is not None:
        write_text_atomic(out / "evaluation.json", json.dumps(rows, indent=1, default=_plain))
        typer.echo(f"wrote {out / 'evaluation.json'}")
    failed = [row["model"] for row in rows if "error" in row]
    if failed:  # a file that could not be scored is a failure, not a table cell to overlook
        raise RnnedgeError(f"{model}: {len(failed)} of {len(rows)} files could not be scored ({', '.join(failed)}; "
                           "the table says why)")


def _model_meta(model: Path) -> dict:
    """What reading `--data` like the training data needs, from a bundle's manifest or a checkpoint."""
    if model.is_dir():
        from rnnedge.bundle import read_manifest

        manifest = read_manifest(model)
        return {"provenance": manifest.provenance.get("training", {}), "channels": manifest.input.channels,
                "sample_rate_hz": manifest.input.sample_rate_hz, "labels": manifest.output.labels,
                "task": manifest.task}
    from rnnedge.training.checkpoint import Checkpoint

    ckpt = Checkpoint.load(model)
    return {"provenance": ckpt.provenance, "channels": ckpt.channels, "sample_rate_hz": ckpt.sample_rate_hz,
            "labels": ckpt.labels, "task": ckpt.config.task, "checkpoint": ckpt}  # loaded once, scored below


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
