"""Users' own recordings: one CSV (or NPZ) file per recording.

Every problem is a DataError whose message names the file and, where it applies, the row and column,
because the person fixing it has the file open in a spreadsheet.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnedge.data.recording import Dataset, Recording
from rnnedge.errors import DataError


def _read_csv(path: Path, channels: Sequence[str], label_column: str | None) -> tuple[np.ndarray, list[str]]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise DataError(f"{path}: empty file (expected a header row naming the columns)")
        header = [h.strip() for h in header]
        wanted = list(channels) + ([label_column] if label_column else [])
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; header has {', '.join(header)}")
        index = [header.index(c) for c in channels]
        label_index = header.index(label_column) if label_column else None
        rows: list[list[float]] = []
        labels: list[str] = []
        for row_number, row in enumerate(reader, start=2):  # row 1 is the header
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: row {row_number} has {len(row)} cells, header has {len(header)}")
            values = []
            for name, i in zip(channels, index, strict=True):
                try:
                    value = float(row[i])
                except ValueError:
                    raise DataError(f"{path}: row {row_number}, column {name}: not a number: {row[i]!r}") from None
                if not math.isfinite(value):
                    raise DataError(f"{path}: row {row_number}, column {name}: non-finite value {row[i]!r}")
                values.append(value)
            rows.append(values)
            if label_index is not None:
                labels.append(row[label_index].strip())
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return np.asarray(rows, dtype=np.float32), labels


def load_csv(
    paths: Sequence[str | Path],
    channels: Sequence[str],
    sample_rate_hz: float,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
) -> Dataset:
    """Load CSV recordings (one per file). Labels may be names or integer ids; '' means unlabelled (0).

    `label_names` fixes the label set (index 0 must be the 'unlabelled' name); otherwise it is
    ['UNLABELED', *sorted names found].
    """
    if not paths:
        raise DataError("no CSV files given")
    if sample_rate_hz <= 0:
        raise DataError(f"sample rate must be positive, got {sample_rate_hz}")
    loaded = [(Path(p), *_read_csv(Path(p), channels, label_column)) for p in paths]
    if label_names is None:
        found = sorted({lab for _, _, labs in loaded for lab in labs if lab and lab != "0"})
        label_names = ["UNLABELED", *found]
    lookup = {name: i for i, name in enumerate(label_names)}
    recordings = []
    for file, signals, raw_labels in loaded:
        labels = np.zeros(len(signals), np.int64)
        for row_offset, lab in enumerate(raw_labels):
            if lab in ("", "0"):
                continue
            if lab in lookup:
                labels[row_offset] = lookup[lab]
            elif lab.isdigit() and int(lab) < len(label_names):
                labels[row_offset] = int(lab)
            else:
                raise DataError(f"{file}: row {row_offset + 2}, column {label_column}: unknown label {lab!r}")
        recordings.append(Recording(signals, labels, subject=0, name=file.stem))
    return Dataset(recordings, list(channels), list(label_names), float(sample_rate_hz), source="csv")


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
