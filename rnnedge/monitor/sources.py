"""Where the monitor's samples come from, and what it does with late, missing and malformed ones.

Sources (`open_source(spec, channels, rate)`), each an iterator of Rows, read lazily (a live feed works):
  "-"                      standard input, one sample per line, as a live sensor would deliver it;
  PATH                     a CSV file;
  "hapt:SUBJECT[:EXP]"     a bundled HAPT recording (the subject's first, or experiment EXP), at 50 Hz.
CSV lines: `t,<channels...>` or `<channels...>` (raw sensor units, the bundle's channel order), with an optional
header naming the columns (then any order; a time column is named t, time or timestamp, in seconds). Blank
lines and lines starting with # are skipped.

The policy (`Cadence`), one model step per sample period (1 / sample rate):
  malformed   a line with the wrong number of fields or an unreadable value: the unreadable values become
              NaN and the runtime's "hold" policy repeats each channel's last good value for that step; a
              line whose timestamp is unreadable is dropped (the next line fills its slot as missing);
  missing     timestamps that skip slots (> 1.5 periods apart): the skipped slots are fed as held samples, so
              the model's clock stays right; a gap longer than `max_gap_s` resets the model, score and alarm
              instead (state that old means nothing), which restarts the warm-up;
  late        a timestamp at or before the last slot fed (out of order, duplicate, or replayed after a resume
              from a snapshot): dropped; a causal stream cannot go back in time.
Without timestamps every line is the next slot. Every such case is logged and counted, never raised.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnedge.monitor.errors import MonitorError

TIME_COLUMNS = ("t", "time", "timestamp")


@dataclass(frozen=True)
class Row:
    t: float | None  # seconds, None = no timestamp
    values: np.ndarray | None  # (channels,) float32, NaN where unreadable; None = nothing usable
    problem: str | None = None  # why the row is (partly) unusable
    line: int = 0


def open_source(spec: str, channels: list[str], sample_rate_hz: float) -> Iterator[Row]:
    if spec.startswith("hapt:"):
        return hapt_rows(spec, channels, sample_rate_hz)
    if spec == "-":
        return csv_rows(iter(sys.stdin.readline, ""), channels)
    path = Path(spec)
    if not path.is_file():
        raise MonitorError(f"{spec}: no such input file (use '-' for standard input or hapt:SUBJECT)")
    return _file_rows(path, channels)


def _file_rows(path: Path, channels: list[str]) -> Iterator[Row]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        yield from csv_rows(handle, channels)


def hapt_rows(spec: str, channels: list[str], sample_rate_hz: float) -> Iterator[Row]:
    from rnnedge.data.hapt import load_hapt

    recording = hapt_recording(spec)
    dataset = load_hapt()
    if dataset.channels != channels or dataset.sample_rate_hz != sample_rate_hz:
        raise MonitorError(f"{spec}: HAPT has channels {dataset.channels} at {dataset.sample_rate_hz} Hz, the "
                           f"model expects {channels} at {sample_rate_hz} Hz")
    for i, values in enumerate(recording.signals):
        yield Row(i / sample_rate_hz, values, line=i + 1)


def hapt_recording(spec: str):
    """The Recording named by 'hapt:SUBJECT[:EXPERIMENT]'."""
    from rnnedge.data.hapt import load_hapt

    parts = spec.removeprefix("hapt:").split(":")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() for p in parts):
        raise MonitorError(f"{spec}: expected hapt:SUBJECT or hapt:SUBJECT:EXPERIMENT (numbers)")
    subject = int(parts[0])
    found = [r for r in load_hapt().recordings if r.subject == subject
             and (len(parts) == 1 or r.name.startswith(f"hapt-exp{int(parts[1]):02d}-"))]
    if not found:
        names = ", ".join(r.name for r in load_hapt().recordings if r.subject == subject) or "none (subjects 1-30)"
        raise MonitorError(f"{spec}: no such HAPT recording (subject {subject} has: {names})")
    return found[0]


def csv_rows(lines: Iterable[str], channels: list[str]) -> Iterator[Row]:
    """Parse lines lazily; the layout (header or not, time column or not) is fixed by the first data line."""
    columns: list[int] | None = None  # field index of each channel
    time_column: int | None = None
    fields_expected = 0
    for number, text in enumerate(lines, start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        fields = [f.strip() for f in text.split(",")]
        if columns is None:
            columns, time_column, is_header = _layout(fields, channels, number)
            fields_expected = len(fields)
            if is_header:
                continue
        if len(fields) != fields_expected:
            yield Row(None, None, f"line {number}: expected {fields_expected} fields, got {len(fields)}", number)
            continue
        t = None
        if time_column is not None:
            t = _number(fields[time_column])
            if not math.isfinite(t):
                yield Row(None, None, f"line {number}: unreadable timestamp {fields[time_column]!r}", number)
                continue
        values = np.array([_number(fields[c]) for c in columns], np.float32)
        bad = [channels[i] for i in np.flatnonzero(~np.isfinite(values))]
        yield Row(t, values, f"line {number}: unreadable or non-finite {', '.join(bad)}" if bad else None, number)


def _layout(fields: list[str], channels: list[str], number: int) -> tuple[list[int], int | None, bool]:
    if all(math.isfinite(_number(f)) for f in fields):  # no header: position decides
        if len(fields) == len(channels):
            return list(range(len(channels))), None, False
        if len(fields) == len(channels) + 1:
            return list(range(1, len(channels) + 1)), 0, False
        raise MonitorError(f"line {number}: {len(fields)} values, expected {len(channels)} "
                           f"({','.join(channels)}) or t plus those")
    names = [f.lower() for f in fields]
    missing = [c for c in channels if c.lower() not in names]
    if missing:
        raise MonitorError(f"line {number}: header lacks column(s) {', '.join(missing)} "
                           f"(expected {','.join(channels)}, optionally t)")
    time_column = next((names.index(n) for n in TIME_COLUMNS if n in names), None)
    return [names.index(c.lower()) for c in channels], time_column, True


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


class Cadence:
    """Maps rows to model steps (slots of 1 / sample rate) following the policy above."""

    def __init__(self, sample_rate_hz: float, max_gap_s: float) -> None:
        self.rate = sample_rate_hz
        self.max_gap = max(1, round(max_gap_s * sample_rate_hz))
        self.t0: float | None = None  # timestamp of slot 0 (timed sources)
        self.last = -1  # last slot fed

    def place(self, t: float | None) -> tuple[int, int]:
        """(slot, skipped slots) for a row at time t; slot <= self.last means late."""
        if t is None:
            return self.last + 1, 0
        if self.t0 is None:
            self.t0 = t - (self.last + 1) / self.rate  # a first timestamp continues an untimed start
        slot = round((t - self.t0) * self.rate)
        return slot, max(0, slot - self.last - 1)

    def time(self, slot: int) -> float:
        return (self.t0 or 0.0) + slot / self.rate

    def state(self) -> dict:
        return {"t0": self.t0, "last": self.last}

    def load_state(self, state: dict) -> None:
        self.t0, self.last = state["t0"], int(state["last"])
