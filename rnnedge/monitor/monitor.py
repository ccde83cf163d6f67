"""The bed-exit monitor, for embedding in device software: runtime stream -> get-up score -> alarm.

    import rnnedge.runtime as rt
    from rnnedge.monitor import Monitor
    monitor = Monitor(rt.load("bundle/", precision="int8"), snapshot="state/monitor.json")
    for record in monitor.push(sample, t=timestamp):   # each new sample (raw units); t optional
        ...                                             # dicts: alarm_start / alarm_end / sample issues
    monitor.flush()                                     # at the end of a source (a row may wait, sources.py)
    records = monitor.feed_chunk(samples, t=times)      # many samples (T, channels) at once: the same records

Records are JSON-ready dicts (`json_line` writes one as strict JSON), each with "event", "id" and "t":
  alarm_start, alarm_end  the alarm (p: the get-up score); attached lying before the frame is confirmed, an
                          alarm_start says frame "provisional" (the documented placement taken on gravity lying,
                          which cannot tell it from a sensor turned about the lying wearer's gravity: frame.py);
  probability             the score, every `report_every_s`;
  sample                  a late / missing / malformed / timestamp issue with one row (sources.py), or a value
                          the runtime held ("held": beyond the sensor's range); the first LOGGED_PER_KIND of
                          each kind, the rest only counted (summary, sensor_check);
  sensor_check            no clean sample has reached the model for `sensor_check_s` (rows dropped, samples
                          held, or a live source silent: a dead, stuck or garbled sensor, a stuck clock, an
                          unplugged cable), repeated every
                          SENSOR_CHECK_REPEAT_S while it lasts; `sensor_ok` when a clean sample arrives again.
                          Also a fault seen in the signal itself (faults.py: stuck, saturated, gravity, still,
                          rate; with `fault`, `since`, `detail`): no alarm while it lasts, then `sensor_ok`
                          (kind signal) and the score's warm-up again;
  calibrating             with an upright frame in the operating point (frame.py): no alarm until the frame is
                          calibrated at attach time, then a reset (kind calibrated); attached lying, kind
                          unresolved (a frame that cannot be known: no alarms from this sensor) or, once the
                          wearer is seen upright, kind confirmed (alarms no longer need the long axis rising);
  reset                   score and alarm restarted (no alarm for GAP_WARMUP_S) after a gap (kind gap: the model
                          keeps its state, as trained across recordings), or model, score and alarm restarted after a
                          step the runtime refused or whose output was not finite (the state is poisoned: never
                          carried on), or at the frame's calibration;
  resync                  the clock jumped back and was re-anchored (state kept);
  snapshot, snapshot_error, summary.
Ids name the event's place in the stream, "<slot>:<event>[-<kind>]" ("<slot>+<n>" for the n-th row dropped
after that slot, "<slot>r<n>" for a replayed row): the same event gets the same id when a monitor resumed from a
snapshot meets the same rows again, so a consumer drops duplicates by id.

Snapshots (at-least-once): every `snapshot_every_s` of stream time the whole monitor state is saved, at the next
`push`/`feed_row` call, i.e. after the caller has written out the records of every step the snapshot covers: a
process killed at any moment resumes from a snapshot whose steps' events were all delivered. A source that starts
over after a restart (a file: `replay=True`) is then replayed: its rows up to the snapshot are dropped as late,
the steps after it run again and their events come again with the same ids. A live feed (`replay=False`) just
goes on: rows behind the clock after a restart are a clock jump, not a replay. A snapshot is the runtime
stream's hidden state in `<snapshot>.<step>.stream` (rnnedge.runtime's own atomic, model-bound format), then
score, alarm, clock and sensor watch in `<snapshot>` (JSON, atomic) naming that file; stream files it does not
name are removed. A process killed at any point finds a consistent pair, and `Monitor(..., snapshot=path)`
resumes from it. A snapshot that cannot be written is an event (`snapshot_error`), not a stop: the alarm keeps
running.

A Monitor is a ward of one bed (ward.py): the same step, the same records, whether a bed runs alone, in a ward of
thousands or in the fleet. Chunks: `feed_chunk(values, t)` (push's semantics) and `feed_rows(rows)` (feed_row's) give
exactly the records of one call per sample; a clean chunk (finite values, each timestamp the next slot at the model's
rate, no row waiting) skips the per-row intake.

In-memory state (`state()` -> bytes; `Monitor(model, ..., state=bytes)`): the whole monitor, for a host that keeps
it elsewhere (rnnedge.fleet: Flink keyed state), with no files: the runtime stream in its own model-bound bytes
(rnnedge.runtime.snapshot), and unlike a snapshot also what a replay would rebuild (the latest score, rows dropped
since the last slot, a row waiting on a jump, the replay position): the restored monitor goes on exactly as one
that never stopped. A state of another model is refused (MonitorError).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec
import numpy as np

from rnnedge.atomic import check_file_target, write_text_atomic
from rnnedge.errors import RnnedgeError, brief
from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.frame import DEFAULT_ATTACH
from rnnedge.monitor.operating_point import OperatingPoint
from rnnedge.monitor.sources import IDLE_TICK_S, Row
from rnnedge.monitor.ward import SENSOR_CHECK_S, Bed, Ward
from rnnedge.runtime.snapshot import decode_snapshot, encode_snapshot, load_snapshot, save_snapshot

log = logging.getLogger("rnnedge.monitor")
SNAPSHOT_FORMAT = "rnnedge-monitor-snapshot"
SNAPSHOT_VERSION = 3  # 2: the stream's identity and a checksum; 3: the attached-lying frame's rise as a vector
STATE_FORMAT = "rnnedge-monitor-state"


class Monitor:
    def __init__(self, model, point: OperatingPoint | None = None, snapshot: str | Path | None = None,
                 snapshot_every_s: float = 60.0, report_every_s: float = 0.0, max_gap_s: float = 2.0,
                 sensor_check_s: float = SENSOR_CHECK_S, replay: bool = True, state: bytes | None = None,
                 attach: str = DEFAULT_ATTACH, stream_id: str = "") -> None:
        self.ward = Ward(model, point, report_every_s, max_gap_s, sensor_check_s, replay, attach, capacity=1,
                         snapshot_every_s=snapshot_every_s)
        self.model, self.point = self.ward.model, self.ward.point
        self.stream_id = str(stream_id)  # whose snapshot: a bed's must never resume another's
        self.bed: Bed = self.ward.add(self.stream_id)
        self.snapshot = Path(snapshot) if snapshot else None
        self.stream_file: Path | None = None
        if self.snapshot:
            check_file_target(self.snapshot, "--snapshot", MonitorError)
            self._lock = _hold_lock(self.snapshot)  # one live monitor per snapshot path, released when it ends
            self.ward.on_save = lambda bed: self.save()
        if state is not None and self.snapshot:
            raise MonitorError("resume from a snapshot file or from an in-memory state, not both")
        self.resumed = state is not None or bool(self.snapshot and self.snapshot.exists())
        if self.resumed and state is None:
            self._resume()
        if not replay:  # a live feed goes on after a restart: rows behind the clock are a jump, not a replay
            self.bed.cadence.replayed = None
        if state is not None:
            self._restore(state)

    def close(self) -> None:
        """Release the snapshot path (its lock) for another monitor; the process ending does too."""
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            os.close(lock)

    def __del__(self) -> None:
        self.close()

    @property
    def steps(self) -> int:
        return self.bed.steps

    @property
    def pending(self) -> Row | None:
        return self.bed.pending

    @property
    def issues(self) -> dict[str, int]:
        return self.bed.issues

    @property
    def alarm_active(self) -> bool:
        return bool(self.ward.alarm.active[self.bed.row])

    def push(self, values, t: float | None = None) -> list[dict]:
        """One sample (channels,) in raw units (NaN = unreadable), at time t in seconds (None: the next slot)."""
        return self.feed_row(Row(t, None if values is None else np.asarray(values, np.float32)))

    def feed_row(self, row: Row) -> list[dict]:
        """The records one source row causes (after a snapshot that became due with the previous rows)."""
        return self.ward.feed({self.stream_id: [row]})[self.stream_id]

    def feed_chunk(self, values, t=None) -> list[dict]:
        """Samples (T, channels) in raw units at times t (T,) in seconds (None: each the next slot): the records of
        push(values[i], t[i]) for each i."""
        values = np.asarray(values, np.float32)
        return self.ward.feed({self.stream_id: (values, None if t is None else np.asarray(t, np.float64))}
                              )[self.stream_id]

    def feed_rows(self, rows: Iterable[Row]) -> list[dict]:
        """The records of feed_row(row) for each row."""
        return self.ward.feed({self.stream_id: rows})[self.stream_id]

    def flush(self) -> list[dict]:
        """The end of the source: a row still waiting on a jump is taken as one."""
        return self.ward.flush(self.stream_id)

    def idle(self, seconds: float) -> list[dict]:
        """`seconds` of wall time passed without any row (a live source gone quiet): the sensor watch counts them."""
        return self.ward.idle(self.stream_id, seconds)

    def run(self, rows: Iterable[Row | None]) -> Iterator[dict]:
        """Feed a whole source; yields records as they happen, then a summary. A live source yields None for each
        IDLE_TICK_S of wall time without a row (sources.watched)."""
        for row in rows:
            yield from self.idle(IDLE_TICK_S) if row is None else self.feed_row(row)
        yield from self.flush()
        if self.snapshot:
            yield self.save()
        yield self.ward.summary(self.stream_id)

    def save(self) -> dict:
        """Snapshot the whole monitor now (see the module docstring); returns the snapshot record."""
        assert self.snapshot is not None
        bed = self.bed
        bed.save_due = False
        stream_file = self.snapshot.with_name(f"{self.snapshot.name}.{self.steps}.stream")
        state = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "model_sha256": self.model.sha256,
                 "stream_id": self.stream_id, "stream": stream_file.name, **self.ward.parts(self.stream_id)}
        try:
            save_snapshot(stream_file, self.model.sha256, self.ward.snapshot(self.stream_id))
            state["checksum"] = snapshot_checksum(state)
            write_text_atomic(self.snapshot, json.dumps(state, allow_nan=False) + "\n")
        except (OSError, ValueError, RnnedgeError) as exc:
            error = f"{self.snapshot}: cannot save the snapshot ({getattr(exc, 'strerror', None) or exc})"
            log.error("%s", error)
            return bed.record("snapshot_error", bed.cadence.last, path=str(self.snapshot), error=error)
        self.stream_file = stream_file
        # the previous stream file, and any a kill left between writing one and naming it
        for old in self.snapshot.parent.glob(f"{glob.escape(self.snapshot.name)}.*.stream"):
            if old.name != stream_file.name and old.is_file():  # best effort: a leftover costs disk, not an alarm
                with contextlib.suppress(OSError):
                    old.unlink(missing_ok=True)
        return bed.record("snapshot", bed.cadence.last, path=str(self.snapshot))

    def _resume(self) -> None:
        assert self.snapshot is not None
        try:
            state = json.loads(self.snapshot.read_text(encoding="utf-8"), parse_constant=_no_constant)
            if state.get("format") != SNAPSHOT_FORMAT or state.get("version") != SNAPSHOT_VERSION:
                raise MonitorError(f"{self.snapshot}: not a monitor snapshot of this rnnedge (format/version "
                                   f"{state.get('version')!r:.10}, this rnnedge reads {SNAPSHOT_VERSION}); delete it "
                                   "to start afresh")
            if state.get("checksum") != snapshot_checksum(state):
                raise MonitorError(f"{self.snapshot}: checksum mismatch (edited or damaged); delete it to start "
                                   "afresh")
            if state["model_sha256"] != self.model.sha256:
                raise MonitorError(f"{self.snapshot}: snapshot of another model; delete it to start afresh")
            if state["stream_id"] != self.stream_id:
                raise MonitorError(f"{self.snapshot}: snapshot of stream {brief(state['stream_id'])}, this monitor "
                                   f"is {brief(self.stream_id)}: each bed needs its own snapshot path")
            self.stream_file = self.snapshot.with_name(state["stream"])
            self.ward.load_parts(self.stream_id, state)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError,
                ValueError, OverflowError) as exc:
            raise MonitorError(f"{self.snapshot}: unreadable monitor snapshot ({exc})") from None
        model = self.model
        self.ward.restore(self.stream_id, load_snapshot(self.stream_file, model.sha256, model.state_size,
                                                        model.channels), str(self.stream_file))
        log.info("resumed from %s at step %d", self.snapshot, self.steps)

    def state(self) -> bytes:
        """The whole monitor now, in memory (see the module docstring): `Monitor(model, ..., state=...)` goes on
        from it exactly. Bytes (msgpack): a copy that later steps cannot change, whoever holds it."""
        return encode_state(self.ward, self.stream_id)

    def _restore(self, data: bytes) -> None:
        restore_state(self.ward, self.stream_id, data)


def encode_state(ward: Ward, bed_id) -> bytes:
    """One bed of a ward, in memory (Monitor.state): its runtime stream in its own model-bound bytes, every part,
    and what a replay would rebuild (the latest score, rows dropped since the last slot, a row waiting on a jump,
    the replay position)."""
    bed, sha = ward.bed(bed_id), ward.model.sha256
    pending = bed.pending
    return msgspec.msgpack.encode({
        "format": STATE_FORMAT, "version": SNAPSHOT_VERSION, "model_sha256": sha,
        "stream": encode_snapshot(sha, ward.snapshot(bed_id), "monitor state"), **ward.parts(bed_id),
        "p": float(ward.p[bed.row]), "dropped": bed.dropped, "replayed": bed.cadence.replayed,
        "pending": None if pending is None else [pending.t, None if pending.values is None else
                                                 pending.values.tolist(), pending.problem, pending.line]})


def restore_state(ward: Ward, bed_id, data: bytes) -> None:
    """A bed of the ward back to `encode_state`'s bytes (MonitorError for another model's state, or garbage)."""
    bed, model = ward.bed(bed_id), ward.model
    try:
        state = msgspec.msgpack.decode(data)
        known = (STATE_FORMAT, SNAPSHOT_VERSION)
        if not isinstance(state, dict) or (state.get("format"), state.get("version")) != known:
            raise MonitorError("not an rnnedge monitor state (format/version)")
        if state["model_sha256"] != model.sha256:
            raise MonitorError(f"monitor state of another model (sha256 {str(state['model_sha256'])[:12]}..., "
                               f"this model is {model.sha256[:12]}...): its hidden state means nothing here")
        ward.restore(bed_id, decode_snapshot(state["stream"], model.sha256, model.state_size, model.channels,
                                             "monitor state"), "monitor state")
        ward.load_parts(bed_id, state)
        replayed = state["replayed"]
        bed.cadence.replayed = None if replayed is None else int(replayed)
        ward.p[bed.row], bed.dropped = float(state["p"]), int(state["dropped"])
        pending = state["pending"]
        if pending is not None:
            t, values, problem, line = pending
            bed.pending = Row(None if t is None else float(t), None if values is None else
                              np.asarray(values, np.float32), None if problem is None else str(problem), int(line))
    except (msgspec.DecodeError, AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise MonitorError(f"unreadable monitor state ({str(exc)[:200]})") from None


def json_line(record: dict) -> str:
    """A record as one line of strict JSON: a non-finite number becomes null, its key listed in "non_finite"."""
    bad = [key for key, value in record.items() if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        record = {**{key: None if key in bad else value for key, value in record.items()}, "non_finite": bad}
    return json.dumps(record, allow_nan=False)


def _hold_lock(snapshot: Path) -> int:
    """An exclusive lock on `<snapshot>.lock` for as long as this process lives (the kernel releases it when the
    process ends, killed or not): a second monitor given the same path is refused."""
    path = snapshot.with_name(snapshot.name + ".lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise MonitorError(f"{path}: cannot open the snapshot's lock ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise MonitorError(f"{snapshot}: in use by another live monitor (its lock {path} is held); give each "
                           "monitor its own --snapshot") from None
    return fd


def snapshot_checksum(state: dict) -> str:
    """sha256 of the snapshot's content (all but the checksum itself), keys sorted."""
    body = json.dumps({k: v for k, v in state.items() if k != "checksum"}, sort_keys=True, allow_nan=False)
    return hashlib.sha256(body.encode()).hexdigest()


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a snapshot may hold")
