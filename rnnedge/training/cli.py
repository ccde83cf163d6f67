"""`rnnedge train` and `rnnedge data`: defaults train the HAPT per-step activity tagger."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rnnedge.atomic import write_text_atomic
from rnnedge.data.hapt import GET_UP_LABELS
from rnnedge.errors import DataError, RnnedgeError
from rnnedge.training.config import TrainConfig

DEFAULT_RUN_DIR = Path("artifacts/train")


def _load_dataset(data: str, channels: str | None, label_column: str | None, sample_rate: float | None):
    from rnnedge.data import load_csv, load_hapt, load_npz

    if data == "hapt":
        return load_hapt()
    paths = sorted(Path(data).glob("*.csv")) if Path(data).is_dir() else [Path(data)]
    if not paths or not all(p.exists() for p in paths):
        raise DataError(f"{data}: no such file or folder of CSV files")
    if paths[0].suffix == ".npz":
        return load_npz(paths[0])
    if not channels or not sample_rate:
        raise DataError("CSV data needs --channels (comma-separated column names) and --sample-rate")
    return load_csv(paths, channels.split(","), sample_rate, label_column)


def train_command(
    data: str = typer.Option("hapt", help="'hapt' (bundled), a CSV file/folder (one file per recording) or an NPZ."),
    out: Path = typer.Option(DEFAULT_RUN_DIR, help="Run folder: model.pt, metrics.json, training_curve.png."),
    cell: str = typer.Option("lstm", help="rnn_tanh | rnn_relu | lstm | gru"),
    hidden: int = typer.Option(64, min=1, help="Hidden units per layer."),
    layers: int = typer.Option(2, min=1, max=4, help="Stacked recurrent layers."),
    task: str = typer.Option("tag", help="tag (label per step, streaming) | classify (window) | forecast"),
    bidirectional: bool = typer.Option(False, help="Window tasks only (needs the future)."),
    horizon: int = typer.Option(1, min=1, help="forecast: values predicted per step."),
    epochs: int = typer.Option(TrainConfig.epochs, min=1),
    chunk_len: int = typer.Option(TrainConfig.chunk_len, min=2, help="Truncated-BPTT chunk length in samples."),
    lanes: int = typer.Option(TrainConfig.batch_size, min=1,
                              help="Parallel recordings (stateful) or windows per batch."),
    window_len: int = typer.Option(TrainConfig.window_len, min=2, help="classify: window length in samples."),
    lr: float = typer.Option(TrainConfig.lr, min=0.0),
    dropout: float = typer.Option(0.1, min=0.0, max=0.9),
    patience: int = typer.Option(TrainConfig.patience, min=1),
    rotate_deg: float | None = typer.Option(
        None, min=0.0, max=180.0, show_default=False,
        help="Augment: rotate 3-axis sensors (channels named *-x/-y/-z) by a random angle up to this about x, per "
             "recording. Default: 180 for hapt (x runs along the wearer's body, so this covers lying on the back, "
             "either side or front), 0 for other data."),
    max_minutes: float = typer.Option(0.0, min=0.0, help="Stop after this many minutes (0 = no limit)."),
    seed: int = typer.Option(TrainConfig.seed),
    channels: str | None = typer.Option(None, help="CSV: channel columns, comma-separated."),
    label_column: str | None = typer.Option(None, help="CSV: label column."),
    sample_rate: float | None = typer.Option(None, help="CSV: sample rate in Hz."),
    val_recordings: str | None = typer.Option(None, help="Non-HAPT data: comma-separated recording indices "
                                              "for validation (default: every fifth recording)."),
) -> None:
    """Train a recurrent model with stateful truncated BPTT and save a checkpoint."""
    from rnnedge.data.hapt import HAPT_SPLITS
    from rnnedge.training.config import ModelConfig
    from rnnedge.training.evaluate import report
    from rnnedge.training.train import train

    dataset = _load_dataset(data, channels, label_column, sample_rate)
    if rotate_deg is None:
        rotate_deg = 180.0 if data == "hapt" else 0.0
    if data == "hapt":
        train_set, val_set = dataset.subset(HAPT_SPLITS["train"]), dataset.subset(HAPT_SPLITS["val"])
    else:
        train_set, val_set = _split_user_data(dataset, val_recordings)
    outputs = len(dataset.label_names) - 1 if task != "forecast" else len(dataset.channels) * horizon
    try:
        model_config = ModelConfig(cell=cell, input_size=len(dataset.channels), hidden_size=hidden, num_layers=layers,
                                   output_size=outputs, dropout=dropout, bidirectional=bidirectional, task=task,
                                   horizon=horizon)
    except ValueError as exc:
        raise RnnedgeError(str(exc)) from None
    config = TrainConfig(epochs=epochs, chunk_len=chunk_len, batch_size=lanes, window_len=window_len, lr=lr,
                         patience=patience, seed=seed, max_minutes=max_minutes, rotate_deg=rotate_deg)
    result = train(train_set, val_set, model_config, config, out_dir=out)
    best = result.history[result.best_epoch - 1]
    typer.echo(f"best epoch {result.best_epoch}: validation {best['val_accuracy']:.4f}")
    if data == "hapt":
        test = report(result.checkpoint.build_model(), dataset.subset(HAPT_SPLITS["test"]).recordings,
                      result.checkpoint.normalization, result.checkpoint.labels, window_len)
        write_text_atomic(out / "test_report.json", json.dumps(test, indent=1))
        print_confusion(test)
        typer.echo(f"test subjects {HAPT_SPLITS['test']}: accuracy {test['accuracy']:.4f} "
                   f"({test.get('scored_samples', test.get('windows'))} scored)")
    typer.echo(f"checkpoint: {out / 'model.pt'}")


def print_confusion(test: dict) -> None:
    """Rows = true class, columns = predicted, as % of the row; the get-up classes are the bed-exit events."""
    from rich.console import Console
    from rich.table import Table

    if "confusion" not in test:
        return
    table = Table(title="test confusion: % of each true class (rows) predicted as column", show_lines=False)
    table.add_column("true class")
    for number in range(1, len(test["labels"]) + 1):
        table.add_column(str(number), justify="right")
    for number, (name, row) in enumerate(zip(test["labels"], test["confusion"], strict=True), start=1):
        total = max(1, sum(row))
        style = "bold yellow" if name in GET_UP_LABELS else None
        table.add_row(f"{number} {name}", *[f"{100 * v / total:.0f}" for v in row], style=style)
    Console(width=120).print(table)


def _split_user_data(dataset, val_recordings: str | None):
    from rnnedge.data.recording import Dataset

    count = len(dataset.recordings)
    if count < 2:
        raise DataError("need at least two recordings (one for validation)")
    try:
        val_index = {int(i) for i in val_recordings.split(",")} if val_recordings else set(range(4, count, 5))
    except ValueError:
        raise DataError(f"--val-recordings must be comma-separated integers, got {val_recordings!r}") from None
    val_index = val_index or {count - 1}
    parts = ([r for i, r in enumerate(dataset.recordings) if i not in val_index],
             [r for i, r in enumerate(dataset.recordings) if i in val_index])
    if not all(parts):
        raise DataError("validation split leaves no training or no validation recordings")
    return tuple(Dataset(p, dataset.channels, dataset.label_names, dataset.sample_rate_hz, dataset.source)
                 for p in parts)


def data_command(
    data: str = typer.Argument("hapt", help="'hapt' or a CSV/NPZ path."),
    channels: str | None = typer.Option(None), label_column: str | None = typer.Option(None),
    sample_rate: float | None = typer.Option(None),
) -> None:
    """Describe a data set: recordings, subjects, channels, labels and their counts."""
    import numpy as np

    from rnnedge.data.hapt import HAPT_SPLITS

    dataset = _load_dataset(data, channels, label_column, sample_rate)
    hours = dataset.num_samples / dataset.sample_rate_hz / 3600
    typer.echo(f"source {dataset.source}: {len(dataset.recordings)} recordings, {dataset.num_samples} samples "
               f"({hours:.2f} h) at {dataset.sample_rate_hz:g} Hz")
    typer.echo(f"channels: {', '.join(dataset.channels)}")
    counts = np.bincount(np.concatenate([r.labels for r in dataset.recordings]), minlength=len(dataset.label_names))
    for name, n in zip(dataset.label_names, counts, strict=True):
        typer.echo(f"  {name:<20} {n:>9}")
    if data == "hapt":
        for split, subjects in HAPT_SPLITS.items():
            typer.echo(f"{split:<5} subjects: {', '.join(map(str, subjects))}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("data")(data_command)
