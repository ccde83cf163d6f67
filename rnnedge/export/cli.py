"""`rnnedge export CHECKPOINT --out DIR`: build, quantize and verify a bundle, then print what it holds."""

from __future__ import annotations

from pathlib import Path

import typer

from rnnedge.console import table_console

DEFAULT_BUNDLE = Path("artifacts/bundle")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def export_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by `rnnedge train` or `rnnedge import-torch`."),
    out: Path = typer.Option(DEFAULT_BUNDLE, help="Bundle folder to write (replaced atomically if it exists)."),
    formats: str = typer.Option("onnx,tflite", help="Comma-separated: onnx, tflite."),
    precisions: str = typer.Option("fp32,int8,fp16", help="Comma-separated: fp32, int8, fp16, int8_static "
                                   "(int8 also tries TFLite static int8; fp32 is always built), a16w8, a8w8 "
                                   "(integer-only TFLite for microcontrollers, with C sources and the measured "
                                   "TFLite Micro arena)."),
    chunk_len: int = typer.Option(50, min=1, help="Fixed chunk length of the TFLite stream files (besides T=1; "
                                  "1 = T=1 files only, the smallest bundle)."),
    data: str | None = typer.Option(None, help="Held-out data (a CSV file/folder or NPZ, read like the training "
                                    "data). Default: the test (else validation) split recorded in the checkpoint."),
    tolerance: float | None = typer.Option(None, min=0.0, show_default=False, help="fp32 parity bound: |file - torch| "
                                           "<= tolerance * (1 + 0.4 * |value|) + 3 x the model's own float32 noise "
                                           "(default 1e-5)."),
    label_column: str | None = typer.Option(None, help="--data CSVs: label column, if not the training data's "
                                            "(imported models)."),
    unlabelled: str | None = typer.Option(None, help="--data CSVs: label value marking unlabelled rows."),
    sign: Path | None = typer.Option(None, help="Key file (>= 16 bytes): sign the manifest (manifest.sig, "
                                     "HMAC-SHA256); devices then load with rt.load(..., verify_key=key)."),
) -> None:
    """Export a checkpoint to ONNX and TFLite (fp32, int8, fp16), verified against torch on held-out data."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from rnnedge.bundle import read_key
    from rnnedge.data.source import read_like_training
    from rnnedge.export.build import export_bundle
    from rnnedge.export.verify import FP32_TOLERANCE
    from rnnedge.training.checkpoint import Checkpoint

    console = table_console()
    ckpt = Checkpoint.load(checkpoint)
    key = read_key(sign) if sign is not None else None
    eval_data = None if data is None else read_like_training(
        ckpt.provenance, data, ckpt.channels, ckpt.sample_rate_hz, ckpt.labels, label_column, unlabelled)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("loading", total=None)

        def progress(message: str, done: int, total: int) -> None:
            bar.update(task, description=message, completed=done, total=total)

        manifest = export_bundle(checkpoint, out, _split(formats), _split(precisions), chunk_len,
                                 eval_data=eval_data, progress=progress,
                                 tolerance=FP32_TOLERANCE if tolerance is None else tolerance, sign_key=key)
    _print_table(console, manifest, out)


def _print_table(console, manifest, out: Path) -> None:
    from rich.table import Table

    evaluation = manifest.evaluation
    metric = evaluation.metric
    # A header line, not the table's title: a title wraps to the table's width and splits the data's name.
    console.print(f"{out}: {manifest.name}, torch {metric} {evaluation.torch_score:.4g} on {evaluation.data}",
                  soft_wrap=True, highlight=False)
    table = Table()
    for column in ("format", "precision", "graph", "T", "size", "max abs diff vs torch: y / state",
                   "argmax agree", metric, "status"):
        table.add_column(column, justify="left" if column in ("format", "precision", "graph", "status") else "right")
    for f in manifest.files:
        p = f.parity
        parity = f"{p.max_abs_diff_output:.1e}" + (f" / {p.max_abs_diff_state:.1e}"
                                                    if p.max_abs_diff_state is not None else "")
        table.add_row(f.format, f.precision, f.graph, str(f.chunk_len or "any"), f"{f.size_bytes / 1024:.1f} KB",
                      parity, f"{p.argmax_agreement:.4f}" if p.argmax_agreement is not None else "-",
                      f"{f.score:.4g}" if f.score is not None else "-",
                      "[green]verified[/]" if p.tolerance is not None else "[green]shipped[/]")
    for r in manifest.rejected:
        table.add_row(r.format, r.precision, "", "", "", "", "", f"{r.score:.4g}" if r.score is not None
                      else "-", f"[red]rejected[/]: {r.reason}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("export")(export_command)
