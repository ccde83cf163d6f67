"""Where the monitor's samples come from, and what it does with late, missing and malformed ones.

Sources (`open_source(spec, channels, rate)`), each an iterator of Rows, read lazily (a live feed works):
  "-"                      standard input, one sample per line, as a live sensor would deliver it;
  PATH                     a CSV file;
  "hapt:SUBJECT[:EXP]"     a bundled HAPT recording (the subject's first, or experiment EXP), at 50 Hz.
CSV lines: `t,<channels...>` or `<channels...>` (raw sensor units, the bundle's channel order). A header naming
the columns may come first (then any order and extra columns; a time column is named t, time or timestamp, in
seconds). Without one, the layout (time column or not) is fixed by the first LAYOUT_AGREE lines with the same
number of fields (channels, or channels + 1), never by one line: a fragment read when attaching to a live feed
mid-line, or a garbled first line, cannot fix it; the lines read until then are parsed with the layout once it is
fixed. Blank lines and lines starting with # are skipped; bytes that are not UTF-8 are unreadable values.

The policy (`Cadence`, applied by the Monitor), one model step ("slot") per sample period (1 / sample rate):
  malformed   a line with an unreadable value: unreadable values become NaN and the runtime's "hold" policy
              repeats each channel's last good value for that step. A line with the wrong number of fields, or
              whose timestamp is unusable (unreadable, non-finite, or |t| > MAX_TIME_S), is dropped (the next
              line fills its slot as missing);
  missing     timestamps that skip up to `max_gap_s` worth of slots: the skipped slots are fed as held samples,
              so the model's clock stays right;
  late        a timestamp at most `max_gap_s` behind the next slot (out of order, duplicate, a small clock step
              back): dropped, a causal stream cannot go back in time. After a resume from a snapshot, on a source
              that starts over (a file; not a live feed: Monitor(replay=False)), rows up to the snapshot's last
              slot whose timestamps advance are a replay of the source: late too;
  jump        a timestamp further off, forward or back (t=1e9 in a recording, an NTP step, a clock reset): the
              row waits for the next one. If the next row follows it (within `max_gap_s`), the clock jumped and
              is re-anchored so that the row takes the next slot, and nothing after it is dropped: forward, it is
              a gap (longer than `max_gap_s`: what the model, score and alarm hold is too old to mean anything,
              so they are reset, which restarts the warm-up; `reset` event); back, the data ran on and only the
              clock moved (`resync` event, state kept). Otherwise the row's timestamp alone was wrong: it is
              ignored and the row takes the next slot (`timestamp` issue). A source that ends on a waiting row
              takes it as a jump.
  silent      a live source (stdin, a pipe, a device) with no line at all: read by a thread (`watched`), it
              yields None for each IDLE_TICK_S of wall time without a row, counted as that many sample periods
              without a clean sample (`silent_s`), since no row brings stream time.
Without timestamps every line is the next slot. Every case is logged and counted, never raised; a fault that
lasts is also reported while it lasts (the Monitor's sensor_check events).
"""

from __future__ import annotations

import math
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import BinaryIO, NamedTuple

import numpy as np

from rnnedge.monitor.errors import MonitorError

TIME_COLUMNS = ("t", "time", "timestamp")
LAYOUT_AGREE = 3  # lines with the same field count that fix a header-less layout
LAYOUT_WAIT = 25  # lines held back at most while it is not fixed (0.5 s at 50 Hz); older ones are malformed
MAX_TIME_S = 1e12  # |t| beyond this is unusable: no clock reads it, and float64 could not resolve a sample period
MAX_LINE_BYTES = 1 << 16  # a longer "line" is garbage: read in pieces, each malformed, never all into memory
IDLE_TICK_S = 1.0  # a live source that stays silent this long (wall time) yields None: see `watched`


@dataclass(frozen=True)
class Row:
    t: float | None  # seconds (maybe unusable: sources.usable_time), None = no timestamp
    values: np.ndarray | None  # (channels,) float32, NaN where unreadable; None = nothing usable
    problem: str | None = None  # why the row is (partly) unusable
    line: int = 0


def open_source(spec: str, channels: list[str], sample_rate_hz: float) -> Iterator[Row]:
    if spec.startswith("hapt:"):
        return hapt_rows(spec, channels, sample_rate_hz)
    if spec == "-":
        if sys.stdin is None:
            raise MonitorError("standard input is closed (use a CSV file or hapt:SUBJECT)")
        return _read_rows(sys.stdin.buffer, "standard input", channels)
    path = Path(spec)
    if not path.exists():
        raise MonitorError(f"{spec}: no such input file (use '-' for standard input or hapt:SUBJECT)")
    return _file_rows(path, channels)


def watched(rows: Iterator[Row]) -> Iterator[Row | None]:
    """A live source's rows as they come, and None for each IDLE_TICK_S of wall time in which none came (a
    reader thread blocks on the source), so that a silent sensor is noticed while it is silent."""
    queue: Queue = Queue(maxsize=4096)
    end = object()

    def pump() -> None:
        try:
            for row in rows:
                queue.put(row)
            queue.put(end)
        except Exception as exc:  # re-raised in the consumer's thread
            queue.put(exc)

    threading.Thread(target=pump, name="rnnedge-monitor-input", daemon=True).start()
    while True:
        try:
            item = queue.get(timeout=IDLE_TICK_S)
        except Empty:
            yield None
            continue
        if item is end:
            return
        if isinstance(item, Exception):
            raise item
        yield item


def _file_rows(path: Path, channels: list[str]) -> Iterator[Row]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the with below; only the opening error is caught)
    except OSError as exc:
        raise MonitorError(f"{path}: cannot read the input ({exc.strerror or exc})") from None
    with handle:
        yield from _read_rows(handle, str(path), channels)


def _read_rows(handle: BinaryIO, name: str, channels: list[str]) -> Iterator[Row]:
    """Lines of at most MAX_LINE_BYTES (a longer one is cut into malformed pieces), decoded leniently."""
    lines = _lines(iter(lambda: handle.readline(MAX_LINE_BYTES), b""))
    try:
        yield from csv_rows((line.decode("utf-8", errors="replace") for line in lines), channels)
    except OSError as exc:
        raise MonitorError(f"{name}: cannot read the input ({exc.strerror or exc})") from None


def _lines(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Lines ended by \n, \r\n or a lone \r (old Mac files, some loggers: read as one 64 KB "line" each, they were
    all malformed and nothing was monitored), from readline's pieces."""
    carry = b""
    for piece in pieces:
        if b"\r" not in piece and not carry:
            yield piece
            continue
        parts = (carry + piece).replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        carry = parts.pop()  # after the last line end: the start of the next line
        yield from (part + b"\n" for part in parts)
        if len(carry) > MAX_LINE_BYTES:  # no line end in sight: garbage, cut as readline cuts it
            yield carry
            carry = b""
    if carry:
        yield carry


def hapt_rows(spec: str, channels: list[str], sample_rate_hz: float) -> Iterator[Row]:
    from rnnedge.data.hapt import hapt_recording, load_hapt

    recording = hapt_recording(spec)
    dataset = load_hapt()
    if dataset.channels != channels or dataset.sample_rate_hz != sample_rate_hz:
        raise MonitorError(f"{spec}: HAPT has channels {dataset.channels} at {dataset.sample_rate_hz} Hz, the "
                           f"model expects {channels} at {sample_rate_hz} Hz")
    for i, values in enumerate(recording.signals):
        yield Row(i / sample_rate_hz, values, line=i + 1)


def demo_signals() -> np.ndarray:
    """A real recording with get-ups (bundled subject 2), float32 raw units: load for benchmarks."""
    from rnnedge.data.hapt import hapt_recording

    return hapt_recording("hapt:2:3").signals.astype(np.float32)


class Layout(NamedTuple):
    fields: int  # fields per line
    columns: list[int]  # field index of each channel
    time: int | None  # field index of the timestamp


def csv_rows(lines: Iterable[str], channels: list[str]) -> Iterator[Row]:
    """Parse lines lazily (a live feed works); the layout is fixed by a header or by agreeing lines (see above)."""
    layout: Layout | None = None
    waiting: list[tuple[int, list[str]]] = []  # data lines read while the layout is not fixed
    first = True
    for number, text in enumerate(lines, start=1):
        text = text.strip().lstrip("\ufeff") if first else text.strip()  # a byte-order mark opens some files
        if not text or text.startswith("#"):
            continue
        fields = [f.strip() for f in text.split(",")]
        if first and _is_header(fields, channels):
            layout = _header_layout(fields, channels, number)
        else:
            waiting.append((number, fields))
        first = False
        layout = layout or _agreed_layout(waiting, channels, LAYOUT_AGREE)
        if layout is None and len(waiting) > LAYOUT_WAIT:
            number, fields = waiting.pop(0)
            yield _row(number, fields, None, channels)
        if layout is not None:
            yield from (_row(n, f, layout, channels) for n, f in waiting)
            waiting.clear()
    layout = layout or _agreed_layout(waiting, channels, 1)  # a source shorter than LAYOUT_AGREE lines
    yield from (_row(n, f, layout, channels) for n, f in waiting)


def _row(number: int, fields: list[str], layout: Layout | None, channels: list[str]) -> Row:
    if layout is None or len(fields) != layout.fields:
        expected = f"{layout.fields}" if layout else f"{len(channels)} ({','.join(channels)}) or t plus those"
        return Row(None, None, f"line {number}: {len(fields)} fields, expected {expected}", number)
    t = None if layout.time is None else _number(fields[layout.time])
    with np.errstate(over="ignore"):  # beyond float32: +-inf, unreadable like any non-finite value
        values = np.array([_number(fields[c]) for c in layout.columns], np.float32)
    if not usable_time(t):
        return Row(t, values, f"line {number}: unusable timestamp {fields[layout.time]!r}", number)
    bad = [channels[i] for i in np.flatnonzero(~np.isfinite(values))]
    return Row(t, values, f"line {number}: unreadable or non-finite {', '.join(bad)}" if bad else None, number)


def _is_header(fields: list[str], channels: list[str]) -> bool:
    """No field is a number and one names a column: a header (a line of garbage is data, and malformed)."""
    names = {c.lower() for c in channels} | set(TIME_COLUMNS)
    return not any(_is_number(f) for f in fields) and any(f.lower() in names for f in fields)


def _header_layout(fields: list[str], channels: list[str], number: int) -> Layout:
    names = [f.lower() for f in fields]
    missing = [c for c in channels if c.lower() not in names]
    if missing:
        raise MonitorError(f"line {number}: header lacks column(s) {', '.join(missing)} "
                           f"(expected {','.join(channels)}, optionally t)")
    time_column = next((names.index(n) for n in TIME_COLUMNS if n in names), None)
    return Layout(len(fields), [names.index(c.lower()) for c in channels], time_column)


def _agreed_layout(waiting: list[tuple[int, list[str]]], channels: list[str], needed: int) -> Layout | None:
    """The first field count (channels, or t + channels) that `needed` of the waiting lines have."""
    counts = Counter(len(f) for _, f in waiting if len(f) in (len(channels), len(channels) + 1))
    agreed = next((n for n, count in counts.items() if count >= needed), None)
    if agreed is None:
        return None
    timed = agreed > len(channels)
    return Layout(agreed, list(range(int(timed), len(channels) + int(timed))), 0 if timed else None)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def usable_time(t: float | None) -> bool:
    """None (untimed) or a timestamp the clock can use."""
    return t is None or (math.isfinite(t) and abs(t) <= MAX_TIME_S)


NEXT, MISSING, LATE, JUMP = "next", "missing", "late", "jump"


class Cadence:
    """Maps timestamps to slots (model steps of 1 / sample rate) following the policy above."""

    def __init__(self, sample_rate_hz: float, max_gap_s: float) -> None:
        self.rate = sample_rate_hz
        self.max_gap = max(1, round(max_gap_s * sample_rate_hz))
        self.t0: float | None = None  # timestamp of slot 0 (timed sources); re-anchored at each jump
        self.last = -1  # last slot fed
        self.replayed: int | None = None  # after a resume: the latest slot of the source's replay so far

    def place(self, t: float | None) -> tuple[str, int]:
        """(NEXT | MISSING | LATE | JUMP, slots from the next slot) for a row at time t (usable_time(t))."""
        if t is None:
            return NEXT, 0
        if self.t0 is None:
            self.anchor(t)  # a first timestamp continues an untimed start
        offset = round((t - self.t0) * self.rate) - self.last - 1  # |t|, |t0| <= ~MAX_TIME_S: finite
        if offset >= 0:
            self.replayed = None
            return (JUMP if offset > self.max_gap else MISSING if offset else NEXT), offset
        slot = self.last + 1 + offset
        if self.replayed is not None and slot >= max(0, self.replayed - self.max_gap):
            self.replayed = max(self.replayed, slot)
            return LATE, offset
        return (LATE if offset > -self.max_gap - 1 else JUMP), offset

    def follows(self, t: float, t_next: float) -> bool:
        """Does a row at t_next continue a clock on which a row at t took the last slot?"""
        return 0 < round((t_next - t) * self.rate) <= self.max_gap + 1

    def anchor(self, t: float) -> None:
        """Re-read the clock so that time t is the next slot."""
        self.t0 = t - (self.last + 1) / self.rate

    def time(self, slot: int) -> float:
        return (self.t0 or 0.0) + slot / self.rate

    def state(self) -> dict:
        return {"t0": self.t0, "last": self.last}

    def load_state(self, state: dict) -> None:
        t0, last = state["t0"], state["last"]
        if not (t0 is None or (type(t0) in (int, float) and usable_time(t0))) or type(last) is not int or last < -1:
            raise ValueError(f"invalid clock t0={t0!r}, last={last!r}")
        self.t0, self.last, self.replayed = t0, last, -1


RATE_INTERVALS = 16  # timestamp intervals the source's rate is estimated from (their median)
RATE_TOLERANCE = 0.1  # a source within 10% of the model's rate is placed by the Cadence as it is


def median_rate(intervals: list[float]) -> float | None:
    """1 / the median of the last RATE_INTERVALS intervals (s), or None before there are that many."""
    if len(intervals) < RATE_INTERVALS:
        return None
    return 1.0 / sorted(intervals[-RATE_INTERVALS:])[RATE_INTERVALS // 2]


class Resampler:
    """A timed source at another rate than the model's (25 Hz, 100 Hz...) brought to the model's slots by linear
    interpolation between consecutive rows, by their timestamps. Only while the estimated rate (median of the last
    RATE_INTERVALS intervals) is off by more than RATE_TOLERANCE: a source at the model's rate passes unchanged.
    Rows it cannot place (untimed, flagged, going back, after a gap) pass unchanged to the Cadence's policy."""

    def __init__(self, sample_rate_hz: float, max_gap_s: float) -> None:
        self.rate, self.max_gap = sample_rate_hz, max_gap_s
        self.prev: tuple[float, list[float]] | None = None  # the last clean timed row
        self.intervals: list[float] = []

    @property
    def estimate(self) -> float | None:
        """The source's rate in Hz, once RATE_INTERVALS intervals were seen."""
        return median_rate(self.intervals)

    def feed(self, row: Row, cadence: Cadence, hold: bool = False) -> list[Row]:
        """The rows to place for this one (`hold`: pass it unchanged, e.g. while a jump is being settled)."""
        if row.t is None or not usable_time(row.t) or row.values is None or row.problem is not None:
            return [row]
        prev, self.prev = self.prev, (row.t, row.values.tolist())
        if prev is None:
            return [row]
        dt = row.t - prev[0]
        if dt <= 0:
            self.prev = prev  # late or going back: the Cadence drops or re-anchors it
            return [row]
        if dt <= self.max_gap:
            self.intervals = [*self.intervals, dt][-RATE_INTERVALS:]
        estimate = self.estimate
        if hold or dt > self.max_gap or cadence.t0 is None or estimate is None or \
                abs(estimate / self.rate - 1) <= RATE_TOLERANCE:
            return [row]
        out = []
        t0, v0 = prev
        v1 = row.values.astype(np.float64)
        while len(out) <= self.max_gap * self.rate:
            ts = cadence.time(cadence.last + 1 + len(out))
            if ts > row.t:
                break
            w = min(1.0, max(0.0, (ts - t0) / dt))
            out.append(Row(ts, (np.asarray(v0) + w * (v1 - np.asarray(v0))).astype(np.float32), None, row.line))
        return out

    def state(self) -> dict:
        return {"prev": None if self.prev is None else [self.prev[0], self.prev[1]], "intervals": self.intervals}

    def load_state(self, state: dict) -> None:
        prev = state.get("prev")
        self.prev = None if prev is None else (float(prev[0]), [float(v) for v in prev[1]])
        self.intervals = [float(v) for v in state.get("intervals", [])][-RATE_INTERVALS:]
