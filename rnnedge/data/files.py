"""Users' own recordings: one CSV (or NPZ) file per recording.

Every problem is a DataError whose message names the file and, where it applies, the row and column,
because the person fixing it has the file open in a spreadsheet.

An empty cell in a channel column is a missing sample (a sensor that skipped a reading, a logger's blank): its
value is held from the channel's last reading (the first reading for blanks at the start), and the sample is
marked in `Recording.missing`: its label is unlabelled (never trained on or scored), and no forecast is trained or
scored against it. The runtime streams what it is given; the monitor holds a missing sample the same way
(monitor/sources.py).
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnedge.data.recording import UNLABELED, Dataset, Recording
from rnnedge.errors import DataError

MISSING_HINT = " (a missing sample is an empty cell)"  # R writes NA, pandas can write nan: both refused, not guessed
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _decode(path: Path) -> str:
    """The file's text: UTF-8 with or without a byte-order mark; anything else is one DataError line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror})") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: the file is UTF-16 text; save it as UTF-8 CSV")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                        "save the file as UTF-8 CSV") from None


def _read_csv(
    path: Path, channels: Sequence[str], label_column: str | None,
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Signals (T, C), NaN where a cell is empty, and, with a label column, (row number, stripped label) per
    data row."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise DataError(f"{path}: empty file (expected a header row naming the columns)")
        header = [h.strip() for h in header]
        wanted = list(channels) + ([label_column] if label_column else [])
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; header has {', '.join(header)}")
        doubled = [c for c in wanted if header.count(c) > 1]
        if doubled:
            raise DataError(f"{path}: column(s) {', '.join(doubled)} appear more than once in the header")
        index = [header.index(c) for c in channels]
        label_index = header.index(label_column) if label_column else None
        rows: list[list[float]] = []
        labels: list[tuple[int, str]] = []
        for row_number, row in enumerate(reader, start=2):  # row 1 is the header
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: row {row_number} has {len(row)} cells, header has {len(header)}")
            values = []
            for name, i in zip(channels, index, strict=True):
                if not row[i].strip():
                    values.append(math.nan)  # a missing sample (see the module's docstring)
                    continue
                try:
                    value = float(row[i])
                except ValueError:
                    raise DataError(f"{path}: row {row_number}, column {name}: not a number: {row[i]!r}"
                                    f"{MISSING_HINT}") from None
                if not math.isfinite(value):
                    raise DataError(f"{path}: row {row_number}, column {name}: non-finite value {row[i]!r}"
                                    f"{MISSING_HINT}")
                if abs(value) > FLOAT32_MAX:  # it would become inf in the float32 the model reads
                    raise DataError(f"{path}: row {row_number}, column {name}: {row[i]!r} is beyond float32's "
                                    f"range (+-{FLOAT32_MAX:.3g})")
                values.append(value)
            rows.append(values)
            if label_index is not None:
                labels.append((row_number, row[label_index].strip()))
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return np.asarray(rows, dtype=np.float32), labels


def held(path: Path, signals: np.ndarray, channels: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Missing samples (NaN) filled with the channel's last reading (its first, before any), and the rows that
    had one missing (None if none)."""
    blank = np.isnan(signals)
    if not blank.any():
        return signals, None
    empty = [c for c, gone in zip(channels, blank.all(axis=0), strict=True) if gone]
    if empty:
        raise DataError(f"{path}: column(s) {', '.join(empty)} have no values (every cell empty)")
    rows = np.arange(len(signals))[:, None]
    last = np.maximum.accumulate(np.where(blank, 0, rows), axis=0)  # row of each channel's last reading
    first = blank.argmin(axis=0)
    last = np.where(np.maximum.accumulate(~blank, axis=0), last, first)
    return np.take_along_axis(signals, last, axis=0), blank.any(axis=1)


def _csv_files(paths: str | Path | Sequence[str | Path]) -> list[tuple[Path, str]]:
    """(file, recording name) for each CSV: a folder stands for the .csv files directly in it, in name order.

    The name is the file's path relative to the folder that holds every file given (the stem for a single file),
    so files with the same name in different folders stay distinct.
    """
    entries = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not entries:
        raise DataError("no CSV files given")
    files: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
            if not found:
                raise DataError(f"{entry}: no .csv files in this folder")
            files += found
        elif entry.is_file():
            files.append(entry)
        else:
            raise DataError(f"{entry}: no such file or folder")
    absolute = [p.absolute() for p in files]
    if len(set(absolute)) < len(absolute):
        twice = next(p for p in files if absolute.count(p.absolute()) > 1)
        raise DataError(f"{twice}: given more than once")
    if len(entries) == 1 and len(files) == 1 and not entries[0].is_dir():
        return [(files[0], files[0].stem)]
    root = Path(os.path.commonpath([p.parent for p in absolute]))
    return [(p, a.relative_to(root).as_posix()) for p, a in zip(files, absolute, strict=True)]


def _name(value: str, what: str) -> str:
    """A column name as given on a command line (`--channels "a, b"`): surrounding spaces are not part of it."""
    name = value.strip()
    if not name:
        raise DataError(f"empty {what} name in {value!r}")
    return name


def _class_order(names: set[str]) -> list[str]:
    """Class names in sorted order: numerically when every name is a number ('2' before '10'), else as text."""
    try:
        keys = {n: float(n) for n in names}
    except ValueError:
        return sorted(names)
    if not all(math.isfinite(k) for k in keys.values()):
        return sorted(names)
    return sorted(names, key=lambda n: (keys[n], n))


def load_csv(
    paths: str | Path | Sequence[str | Path],
    channels: Sequence[str],
    sample_rate_hz: float,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    unlabelled: str | None = None,
) -> Dataset:
    """Load CSV recordings, one per file (a folder stands for the .csv files in it).

    Every label value is a class, `0` included, matched by its name. A row is unlabelled (index UNLABELED = 0,
    streamed through but never trained on or scored) only when its label cell is empty or equals `unlabelled`.
    Without `label_names` the classes are the labels found, sorted (numerically when all are numbers), at
    indices 1..K after an 'UNLABELED' placeholder. `label_names` fixes the set instead (index 0 is the
    placeholder, never matched), e.g. the training split's `Dataset.label_names` when loading its test split;
    a label not in it is a DataError naming file, row and column. Names are stripped of surrounding spaces.
    """
    if not 0 < sample_rate_hz < math.inf:
        raise DataError(f"sample rate must be a positive number of Hz, got {sample_rate_hz}")
    channels = [_name(c, "channel") for c in channels]
    if not channels:
        raise DataError("no channel columns given")
    if len(set(channels)) < len(channels):
        raise DataError(f"a channel is named more than once: {', '.join(channels)}")
    if label_column is not None:
        label_column = _name(label_column, "label column")
        if label_column in channels:
            raise DataError(f"column {label_column} is both a channel and the label column")
    unlabelled_values = {"", unlabelled.strip()} if unlabelled is not None else {""}
    loaded = [(file, name, *_read_csv(file, channels, label_column)) for file, name in _csv_files(paths)]
    if label_names is None:
        found = {lab for *_, labs in loaded for _, lab in labs} - unlabelled_values
        placeholder = "UNLABELED"
        while placeholder in found:  # a user class may carry the placeholder's name; it stays a class
            placeholder = f"_{placeholder}"
        label_names = [placeholder, *_class_order(found)]
    label_names = list(label_names)
    if not label_names:
        raise DataError("label_names must start with the unlabelled placeholder at index 0")
    classes = label_names[UNLABELED + 1:]
    if len(set(classes)) < len(classes):
        raise DataError(f"a label name appears more than once: {', '.join(classes)}")
    lookup = {name: i for i, name in enumerate(label_names) if i != UNLABELED}
    known = ", ".join(classes[:20]) + (f", ... ({len(classes)} in all)" if len(classes) > 20 else "") or "none"
    recordings = []
    for file, name, raw_signals, raw_labels in loaded:
        signals, missing = held(file, raw_signals, channels)
        labels = np.full(len(signals), UNLABELED, np.int64)
        for offset, (row_number, lab) in enumerate(raw_labels):
            if lab in unlabelled_values:
                continue
            if lab not in lookup:
                raise DataError(f"{file}: row {row_number}, column {label_column}: unknown label {lab!r} "
                                f"(labels: {known})")
            labels[offset] = lookup[lab]
        if missing is not None:
            labels[missing] = UNLABELED
        recordings.append(Recording(signals, labels, subject=0, name=name, missing=missing))
    return Dataset(recordings, channels, label_names, float(sample_rate_hz), source="csv")


def load_npz(path: str | Path) -> Dataset:
    """Load an NPZ with `signals` (T, C) and optional `labels` (T,), `channels`, `label_names`,
    `sample_rate_hz`, `offsets` (recording boundaries, like the bundled HAPT file)."""
    file = Path(path)
    try:
        npz = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: not a readable NPZ file ({exc})") from None
    with npz:
        if "signals" not in npz.files:
            raise DataError(f"{file}: missing array 'signals'; found {', '.join(npz.files) or 'nothing'}")
        signals = np.asarray(npz["signals"], dtype=np.float32)
        if signals.ndim != 2 or len(signals) == 0:
            raise DataError(f"{file}: 'signals' must be a non-empty (time, channels) array, got {signals.shape}")
        if "scale" in npz.files:
            signals = signals * npz["scale"].astype(np.float32)
        bad = np.argwhere(~np.isfinite(signals))
        if len(bad):
            row, col = bad[0]
            raise DataError(f"{file}: signals row {row}, column {col}: non-finite value")
        labels = np.asarray(npz["labels"], np.int64) if "labels" in npz.files else np.zeros(len(signals), np.int64)
        if labels.shape != (len(signals),):
            raise DataError(f"{file}: 'labels' has shape {labels.shape}, expected ({len(signals)},)")
        channels = [str(c) for c in npz["channels"]] if "channels" in npz.files else [
            f"ch{i}" for i in range(signals.shape[1])]
        names = [str(n) for n in npz["label_names"]] if "label_names" in npz.files else [
            "UNLABELED", *[str(i) for i in range(1, int(labels.max(initial=0)) + 1)]]
        rate = float(npz["sample_rate_hz"]) if "sample_rate_hz" in npz.files else None
        offsets = npz["offsets"] if "offsets" in npz.files else np.array([0, len(signals)])
        subjects = npz["subject"] if "subject" in npz.files else np.zeros(len(offsets) - 1, int)
    if rate is None:
        raise DataError(f"{file}: missing 'sample_rate_hz'")
    if len(channels) != signals.shape[1]:
        raise DataError(f"{file}: {len(channels)} channel names for {signals.shape[1]} signal columns")
    recordings = [Recording(signals[a:b], labels[a:b], int(s), f"{file.stem}-{i}")
                  for i, (a, b, s) in enumerate(zip(offsets[:-1], offsets[1:], subjects, strict=True))]
    return Dataset(recordings, channels, names, rate, source=f"npz:{file.name}")
