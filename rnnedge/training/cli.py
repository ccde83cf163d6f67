"""`rnnedge train` and `rnnedge data`: defaults train the bundled per-step activity tagger; any CSV/NPZ data
set trains the same way, with its train / validation / test recordings recorded in the checkpoint."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path

import typer

from rnnedge.atomic import write_text_atomic
from rnnedge.console import table_console
from rnnedge.data.source import BUNDLED
from rnnedge.errors import RnnedgeError
from rnnedge.tasks import TASKS, shown
from rnnedge.training.config import CELLS, GATED, TrainConfig, variant_name

# typer lists an Enum's values in --help and refuses others with the list
VARIANTS = (*CELLS, *(variant_name(cell, change=True) for cell in CELLS),
            *(variant_name(cell, slow=True) for cell in GATED))
Cell = Enum("Cell", {name: name for name in VARIANTS}, type=str)
TaskName = Enum("TaskName", {name: name for name in TASKS}, type=str)
Nonlinearity = Enum("Nonlinearity", {"tanh": "tanh", "relu": "relu"}, type=str)

DEFAULT_RUN_DIR = Path("artifacts/train")

DATA_HELP = f"'{BUNDLED}' (the bundled recordings), a CSV file or folder (one file per recording) or an NPZ."
CSV_OPTIONS = {
    "channels": typer.Option(None, help="CSV: channel columns, comma-separated."),
    "label_column": typer.Option(None, help="CSV: label column (any values; 0 is a label like any other)."),
    "sample_rate": typer.Option(None, help="CSV: sample rate in Hz."),
    "unlabelled": typer.Option(None, help="CSV: the label value that marks unlabelled rows (empty cells always "
                                          "do); unlabelled samples are streamed through but never scored."),
}


def train_command(
    data: str = typer.Option(BUNDLED, help=DATA_HELP),
    val: str | None = typer.Option(None, help="Validation: another CSV file/folder, or comma-separated recording "
                                   "indices of --data (default: the data set's own split, else every fifth)."),
    test: str | None = typer.Option(None, help="Test: another CSV file/folder, read like --data; scored after "
                                    "training and found again by `rnnedge export` and `rnnedge evaluate`."),
    out: Path = typer.Option(DEFAULT_RUN_DIR, help="Run folder: model.pt, metrics.json, training_curve.png."),
    cell: Cell | None = typer.Option(None, show_default=False, help="The recurrent cell [default: lstm; "
                                     "classify: an lstm and a gru, each with its gates' time scales spread over "
                                     "octaves and (+slow) most of them slow, the best on validation kept; forecast: an "
                                     "lstm with and without the change since the last sample as input (lstm+change), "
                                     "the better kept]."),
    hidden: int | None = typer.Option(None, min=1, show_default=False, help="Hidden units per layer [default: "
                                      "64]."),
    layers: int | None = typer.Option(None, min=1, max=4, show_default=False, help="Stacked recurrent layers "
                                      "[default: sized to the data: 2 from 100,000 training samples, else 1]."),
    members: int | None = typer.Option(None, min=1, max=8, show_default=False, help="Models trained from "
                                       "different seeds and folded into one that computes their mean (a wider "
                                       "model: hidden x members units) [default: 4 below 2,000 training "
                                       "samples, 2 below 100,000, else 1; 1 for bidirectional models]."),
    task: TaskName = typer.Option("tag", help="tag (a label per step) | classify (a label per series; streams the "
                                  "class of the series so far) | forecast (next values, in the data's units)"),
    bidirectional: bool = typer.Option(False, help="classify only (needs the whole series: window files, no "
                                       "streaming)."),
    horizon: int = typer.Option(1, min=1, help="forecast: values predicted per step."),
    residual: bool = typer.Option(True, help="forecast: predict the change from the latest value (persistence "
                                  "plus what the model learns; it extrapolates beyond the training range); "
                                  "--no-residual: the values themselves."),
    epochs: int | None = typer.Option(None, min=1, show_default=False, help="[default: sized to the data: 60, or "
                                      "enough for 3,000 optimizer steps]"),
    chunk_len: int | None = typer.Option(None, min=2, show_default=False, help="Truncated-BPTT chunk length in "
                                         "samples [default: 250, or the median recording's length if shorter]."),
    lanes: int | None = typer.Option(None, min=1, show_default=False, help="Parallel recordings (tag/forecast) or "
                                     "series per batch (classify) [default: sized to the data, at most 16]."),
    window_len: int = typer.Option(TrainConfig.window_len, min=0, help="classify: use each series' last N samples "
                                   "(0 = the whole series, any length); where labels change within recordings, "
                                   "random windows of N (default 128)."),
    lr: float = typer.Option(TrainConfig.lr, min=0.0),
    dropout: float = typer.Option(0.1, min=0.0, max=0.9),
    patience: int | None = typer.Option(None, min=1, show_default=False, help="Early stopping: epochs without "
                                        "improvement [default: 15, or enough for 1,000 optimizer steps]."),
    rotate_deg: float | None = typer.Option(
        None, min=0.0, max=180.0, show_default=False,
        help="Augment: rotate 3-axis sensors (channels named *-x/-y/-z) by a random angle up to this about x, per "
             "recording. Default: the data set's own (180 for the bundled waist-worn IMU), else 0."),
    carry_state: bool = typer.Option(
        TrainConfig.carry_state, help="tag/forecast: stream each lane's recordings back to back without zeroing "
        "the state between them (long streams, e.g. an all-night monitor); --no-carry-state zeroes it per recording."),
    spread_limit: float | None = typer.Option(None, min=0.0, show_default=False, help="A channel whose std over "
                                              "all training samples is above this many times the median "
                                              "recording's is centred on the median recording and scaled by the "
                                              "geometric mean of the two stds (a few huge recordings no longer "
                                              "drown the rest); 0: by all samples [default: 10]."),
    class_weight_power: float = typer.Option(TrainConfig.class_weight_power, min=0.0, max=2.0, help="Classes "
                                             "weigh (1 / frequency) ** this in the loss (0: all alike)."),
    average_epochs: float = typer.Option(TrainConfig.average_epochs, min=0.0, max=100.0, help="The model validated "
                                         "and kept is a moving average of the weights over about this many epochs "
                                         "(0: the weights of the last step)."),
    state_penalty: float = typer.Option(TrainConfig.state_penalty, min=0.0, help="Loss weight of mean(state^2) at "
                                        "chunk ends (bounds the state over long streams)."),
    speed: float | None = typer.Option(
        None, min=0.0, max=1.0, show_default=False,
        help="Augment by playing each training recording (classify: series) up to (1 + this) times faster or slower. "
             "Default: the data set's own (0.25 for the bundled recordings), else 0."),
    jitter: float | None = typer.Option(
        None, min=0.0, max=1.0, show_default=False,
        help="classify: augment by adding Gaussian noise of this std (in normalized units) to every training sample "
             "[default: 0]."),
    shift: float | None = typer.Option(
        None, min=0.0, max=10.0, show_default=False,
        help="tag/forecast: augment by moving each training recording's level by a random offset up to this (in "
             "normalized units) [default: 0]."),
    final_fit: bool | None = typer.Option(
        None, show_default=False, help="Train the kept model again on the training and validation data together, "
        "each member for the epochs its validated run kept [default: classify below 100,000 training samples with "
        "a --test split; never without one: validation is then what export and evaluate score]."),
    max_minutes: float = typer.Option(0.0, min=0.0, help="Stop after this many minutes (0 = no limit)."),
    threads: int = typer.Option(TrainConfig.threads, min=0, help="torch threads (0 = torch's default; small "
                                "recurrent models train fastest on 1-2, and more on a busy machine cost 20-50x)."),
    seed: int = typer.Option(TrainConfig.seed),
    channels: str | None = CSV_OPTIONS["channels"],
    label_column: str | None = CSV_OPTIONS["label_column"],
    sample_rate: float | None = CSV_OPTIONS["sample_rate"],
    unlabelled: str | None = CSV_OPTIONS["unlabelled"],
) -> None:
    """Train a recurrent model and save a checkpoint that records its data splits."""
    from rnnedge.training.prepare import prepared
    from rnnedge.training.scoring import report
    from rnnedge.training.train import train_cells

    run = prepared(data, val, test, channels, label_column, sample_rate, unlabelled, cell and Cell(cell).value,
                    TaskName(task).value, bidirectional, horizon, dropout,
                    {"lanes": lanes, "chunk_len": chunk_len, "hidden": hidden, "layers": layers, "epochs": epochs,
                     "patience": patience, "members": members, "spread_limit": spread_limit, "rotate_deg": rotate_deg,
                     "speed": speed, "jitter": jitter, "shift": shift, "final_fit": final_fit}, window_len, residual)
    recipe, part, model_config = run.recipe, run.part, run.model
    config = run.train_config(window_len=window_len, lr=lr, seed=seed, max_minutes=max_minutes, threads=threads,
                              carry_state=carry_state, state_penalty=state_penalty, average_epochs=average_epochs,
                              class_weight_power=class_weight_power)
    writable_run_folder(out)  # before minutes of training, not after
    typer.echo(recipe.describe(), err=True)
    result = train_cells(part["train"], part["val"], model_config, config, recipe.cells, out, run.record,
                         recipe.members, recipe.final_fit)
    kept = result.checkpoint.provenance
    epoch = f"best epoch {result.best_epoch}: " if result.best_epoch else ""
    refitted = " (before the final fit on training + validation)" if "final_fit" in kept else ""
    typer.echo(f"{epoch}validation {kept['val_metric']} {shown(kept['val_score'])}{refitted}")
    metric = kept["val_metric"]
    if "test" in part:
        test_report = report(result.checkpoint.build_model(), part["test"].recordings,
                             result.checkpoint.normalization, result.checkpoint.labels, window_len or None)
        write_text_atomic(out / "test_report.json", json.dumps(test_report, indent=1))
        print_confusion(test_report)
        typer.echo(f"test ({len(part['test'].recordings)} recordings): {metric} {shown(test_report['value'])}"
                   f"{_against_persistence(test_report)}")
    typer.echo(f"checkpoint: {out / 'model.pt'}")


def _against_persistence(test: dict) -> str:
    """A forecast's baseline beside its score: a forecast that does not beat repeating the latest value is worth
    nothing, and says so."""
    if "persistence_mse" not in test:
        return ""
    beaten = "" if test["value"] < test["persistence_mse"] else ": not beaten, no better than the latest value"
    return f" (persistence {shown(test['persistence_mse'])}{beaten})"


def print_confusion(test: dict) -> None:
    """Rows = true class, columns = predicted, as % of the row."""
    from rich.table import Table

    if "confusion" not in test:
        return
    table = Table(title="test confusion: % of each true class (rows) predicted as column", show_lines=False)
    table.add_column("true class")
    for number in range(1, len(test["labels"]) + 1):
        table.add_column(str(number), justify="right")
    for number, (name, row) in enumerate(zip(test["labels"], test["confusion"], strict=True), start=1):
        total = max(1, sum(row))
        table.add_row(f"{number} {name}", *[f"{100 * v / total:.0f}" for v in row])
    table_console().print(table)


def data_command(
    data: str = typer.Argument(BUNDLED, help=DATA_HELP),
    channels: str | None = CSV_OPTIONS["channels"],
    label_column: str | None = CSV_OPTIONS["label_column"],
    sample_rate: float | None = CSV_OPTIONS["sample_rate"],
    unlabelled: str | None = CSV_OPTIONS["unlabelled"],
) -> None:
    """Describe a data set: recordings, channels, labels and their counts, and its own splits if it has them."""
    import numpy as np

    from rnnedge.data.source import DataSource

    dataset = DataSource.parse(data, channels, label_column, sample_rate, unlabelled).load()
    hours = dataset.num_samples / dataset.sample_rate_hz / 3600
    lengths = [len(r) for r in dataset.recordings]
    typer.echo(f"source {dataset.source}: {len(dataset.recordings)} recordings of {min(lengths)}-{max(lengths)} "
               f"samples, {dataset.num_samples} samples ({hours:.2f} h) at {dataset.sample_rate_hz:g} Hz")
    typer.echo(f"channels: {', '.join(dataset.channels)}")
    counts = np.bincount(np.concatenate([r.labels for r in dataset.recordings]), minlength=len(dataset.label_names))
    for name, n in zip(dataset.label_names, counts, strict=True):
        typer.echo(f"  {name:<20} {n:>9}")
    for split, subjects in dataset.meta.get("subject_splits", {}).items():
        typer.echo(f"{split:<5} subjects: {', '.join(map(str, subjects))}")


def import_torch_command(
    state_dict: Path = typer.Argument(..., help="File written by torch.save(model.state_dict())."),
    out: Path = typer.Option(Path("artifacts/imported/model.pt"),
                             help="Checkpoint to write (what `rnnedge export` takes)."),
    channels: str | None = typer.Option(None, help="Input channel names in the model's input order, "
                                        "comma-separated."),
    sample_rate: float | None = typer.Option(None, help="Sample rate of the inputs in Hz."),
    task: TaskName | None = typer.Option(None, help="tag (default: an output per step) | classify | forecast."),
    labels: str | None = typer.Option(None, help="Class names in the head's output order, comma-separated "
                                      "(default class0, class1, ...)."),
    nonlinearity: Nonlinearity | None = typer.Option(None, help="nn.RNN only: tanh (default) or relu (a "
                                                     "state_dict does not say)."),
    horizon: int | None = typer.Option(None, min=1, help="forecast: values predicted per channel and step."),
    window_len: int | None = typer.Option(None, min=1, help="classify: the window length it was trained on "
                                          "(default: whole series)."),
    normalization: str | None = typer.Option(None, help="'none' (default: the model takes the raw inputs it was "
                                             "trained on) or a JSON file {\"mean\": [...], \"std\": [...]}."),
    spec: Path | None = typer.Option(None, help="JSON file with any of channels, sample_rate_hz, task, labels, "
                                     "normalization, nonlinearity, horizon, window_len; options given here "
                                     "override it."),
) -> None:
    """Turn a recurrent model trained in plain PyTorch (nn.LSTM/GRU/RNN + nn.Linear) into an rnnedge checkpoint."""
    from dataclasses import replace

    from rnnedge.errors import DataError
    from rnnedge.training.import_torch import ImportSpec, import_file, load_normalization, read_json

    values = read_json(spec) if spec is not None else {}
    given = {"channels": channels, "sample_rate_hz": sample_rate, "task": task and task.value, "labels": labels,
             "nonlinearity": nonlinearity and nonlinearity.value, "horizon": horizon, "window_len": window_len}
    values |= {k: v for k, v in given.items() if v is not None}
    if normalization is not None:
        values.pop("normalization", None)
    if values.get("channels") is None or values.get("sample_rate_hz") is None:
        raise DataError("import-torch needs --channels and --sample-rate (or channels and sample_rate_hz in --spec)")
    import_spec = ImportSpec.from_dict(values, str(spec) if spec is not None else "command line")
    if normalization is not None:
        import_spec = replace(import_spec, normalization=load_normalization(normalization))
    checkpoint = import_file(state_dict, import_spec)
    written = checkpoint.save(out)
    c, found = checkpoint.config, checkpoint.provenance["imported"]
    shape = f"{c.num_layers}x{c.hidden_size}" + (" bidirectional" if c.bidirectional else "")
    outputs = f"{c.output_size} {'classes' if TASKS[c.task].classes else 'forecast values'}"
    typer.echo(f"found {c.cell} {shape} ({found['rnn'] or 'top level'}) + head {found['head']}: {c.input_size} "
               f"inputs ({','.join(checkpoint.channels)}), {outputs}, task {c.task}; wrote {written}; it records no "
               f"data: export it with `rnnedge export {written} --data HELD_OUT_DATA`")


def writable_run_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RnnedgeError(f"{out}: cannot use it as the run folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RnnedgeError(f"{out}: the run folder is not writable")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("data")(data_command)
    app.command("import-torch")(import_torch_command)
