"""The bed-exit monitor, for embedding in device software: runtime stream -> get-up score -> alarm.

    import rnnedge.runtime as rt
    from rnnedge.monitor import Monitor
    monitor = Monitor(rt.load("bundle/", precision="int8"), snapshot="state/monitor.json")
    for record in monitor.push(sample, t=timestamp):   # each new sample (raw units); t optional
        ...                                             # dicts: alarm_start / alarm_end / sample issues
    monitor.flush()                                     # at the end of a source (a row may wait, sources.py)
    records = monitor.feed_chunk(samples, t=times)      # many samples (T, channels) at once: the same records

Records are JSON-ready dicts (`json_line` writes one as strict JSON), each with "event", "id" and "t":
  alarm_start, alarm_end  the alarm (p: the get-up score);
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
                          calibrated at attach time, then a reset (kind calibrated);
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

Chunks: `feed_chunk(values, t)` (push's semantics) and `feed_rows(rows)` (feed_row's) give exactly the records of
one call per sample, and run a clean chunk (finite values, each timestamp the next slot at the model's rate, no row
waiting, a calibrated frame or none, the runtime holding nothing) with ONE runtime call (`Stream.feed`, bit-equal
to steps) and array passes for score and alarm; the per-sample fault detector and the events in each step's order.
A chunk that is not clean runs sample by sample (correctness first; the runtime is rolled back first).

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
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec
import numpy as np

from rnnedge.atomic import check_file_target, write_text_atomic
from rnnedge.errors import RnnedgeError
from rnnedge.monitor.alarm import Alarm
from rnnedge.monitor.errors import MonitorError, bounded
from rnnedge.monitor.faults import FaultDetector
from rnnedge.monitor.frame import DEFAULT_ATTACH, UprightFrame
from rnnedge.monitor.operating_point import DEFAULT, OperatingPoint, bundle_point
from rnnedge.monitor.score import GetUpScore
from rnnedge.monitor.sources import (
    IDLE_TICK_S,
    JUMP,
    LATE,
    MAX_TIME_S,
    MISSING,
    RATE_INTERVALS,
    RATE_TOLERANCE,
    Cadence,
    Resampler,
    Row,
    median_rate,
    usable_time,
)
from rnnedge.runtime.snapshot import decode_snapshot, encode_snapshot

log = logging.getLogger("rnnedge.monitor")
SNAPSHOT_FORMAT = "rnnedge-monitor-snapshot"
SNAPSHOT_VERSION = 2  # 2: the stream's identity and a checksum
STATE_FORMAT = "rnnedge-monitor-state"
LOGGED_PER_KIND = 10  # sample issues logged one by one per kind; the rest only counted (summary, sensor_check)
SENSOR_CHECK_S = 3.0  # default sensor_check_s
SENSOR_CHECK_REPEAT_S = 10.0
GAP_WARMUP_S = 10.0  # no alarm this long after a gap in the timestamps (the score's own warm-up if longer)


class Monitor:
    def __init__(self, model, point: OperatingPoint | None = None, snapshot: str | Path | None = None,
                 snapshot_every_s: float = 60.0, report_every_s: float = 0.0, max_gap_s: float = 2.0,
                 sensor_check_s: float = SENSOR_CHECK_S, replay: bool = True, state: bytes | None = None,
                 attach: str = DEFAULT_ATTACH, stream_id: str = "") -> None:
        manifest = model.manifest
        # bounded here too (the CLI bounds its options): an infinite gap or check delay would switch the watch off
        bounded("snapshot_every_s", snapshot_every_s, 0.0, 86400.0)
        bounded("report_every_s", report_every_s, 0.0, 86400.0)
        bounded("max_gap_s", max_gap_s, 0.0, 3600.0, above=True)
        bounded("sensor_check_s", sensor_check_s, 0.0, 3600.0, above=True)
        if point is None:  # the bundle's own point (operating_point.py); DEFAULT is the documented fallback
            point = bundle_point(model)
            if point is None:
                log.warning("%s has no operating point: using the default model's (run rnnedge evaluate-alarms)",
                            model.bundle)
                point = DEFAULT
        self.model, self.point = model, point
        self.rate = manifest.input.sample_rate_hz
        self.score = GetUpScore(point.score, list(manifest.output.labels), self.rate)
        self.alarm = Alarm(point.alarm, self.rate)
        self.cadence = Cadence(self.rate, max_gap_s)
        self.watch = SensorWatch(max(1, round(sensor_check_s * self.rate)), round(SENSOR_CHECK_REPEAT_S * self.rate))
        self.faults = FaultDetector(list(manifest.input.channels), self.rate)
        self.resampler = Resampler(self.rate, max_gap_s)
        # the point's upright frame (frame.py): no alarm until it is calibrated at attach time
        self.frame = (UprightFrame(list(manifest.input.channels), self.rate, point.frame, attach) if point.frame
                      else None)
        # attached lying: p(LAYING) of the steps the frame's calibration looks at (frame.confirm)
        self.lying_p: deque[float] = deque(maxlen=self.frame.window if self.frame else 1)
        self.snapshot = Path(snapshot) if snapshot else None
        self.stream_id = str(stream_id)  # whose snapshot: a bed's must never resume another's
        self.snapshot_every = round(snapshot_every_s * self.rate) if snapshot_every_s > 0 else 0
        self.report_every = round(report_every_s * self.rate) if report_every_s > 0 else 0
        self.issues: Counter[str] = Counter()
        self.alarms = 0
        self.p = 0.0  # the latest score
        self.pending: Row | None = None  # a row whose timestamp jumped, waiting for the next one (sources.py)
        self.dropped = 0  # rows dropped since the last slot was fed (they name their events' ids)
        self.replayed = 0  # rows of a replay dropped since the resume
        self.save_due = False
        self.stream_file: Path | None = None
        if self.snapshot:
            check_file_target(self.snapshot, "--snapshot", MonitorError)
            self._lock = _hold_lock(self.snapshot)  # one live monitor per snapshot path, released when it ends
        if state is not None and self.snapshot:
            raise MonitorError("resume from a snapshot file or from an in-memory state, not both")
        self.resumed = state is not None or bool(self.snapshot and self.snapshot.exists())
        self.stream = self._resume() if self.resumed and state is None else model.stream(nan_policy="hold")
        if not replay:  # a live feed goes on after a restart: rows behind the clock are a jump, not a replay
            self.cadence.replayed = None
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
        return self.cadence.last + 1

    def push(self, values, t: float | None = None) -> list[dict]:
        """One sample (channels,) in raw units (NaN = unreadable), at time t in seconds (None: the next slot)."""
        return self.feed_row(Row(t, None if values is None else np.asarray(values, np.float32)))

    def feed_row(self, row: Row) -> list[dict]:
        """The records one source row causes (after a snapshot that became due with the previous rows)."""
        records = [self.save()] if self.save_due else []
        for placed in self.resampler.feed(row, self.cadence, hold=self.pending is not None):
            if self.pending is not None and not self._dropped(placed):
                records += self._settle(placed.t is not None and self.cadence.follows(self.pending.t, placed.t),
                                        placed.t)
            records += self._place(placed)
        return records

    def flush(self) -> list[dict]:
        """The end of the source: a row still waiting on a jump is taken as one."""
        return self._settle(True) if self.pending is not None else []

    def feed_chunk(self, values, t=None) -> list[dict]:
        """Samples (T, channels) in raw units at times t (T,) in seconds (None: each the next slot): the records of
        push(values[i], t[i]) for each i, in one runtime call when the chunk is clean (module docstring)."""
        values = np.asarray(values, np.float32)
        if values.ndim != 2 or values.shape[1] != self.model.channels:
            raise MonitorError(f"feed_chunk: samples of shape {values.shape}, expected (T, {self.model.channels})")
        times = None if t is None else np.asarray(t, np.float64)
        if times is not None and times.shape != (len(values),):
            raise MonitorError(f"feed_chunk: {times.shape} timestamps for {len(values)} samples")
        return self._chunk(values, times, None)

    def feed_rows(self, rows: Iterable[Row]) -> list[dict]:
        """The records of feed_row(row) for each row; each run of clean rows (no problem, values, all timed or all
        untimed) as one chunk."""
        records: list[dict] = []
        run: list[Row] = []
        for row in [*rows, None]:
            clean = row is not None and row.problem is None and row.values is not None and usable_time(row.t)
            if run and not (clean and (row.t is None) == (run[0].t is None)):
                times = None if run[0].t is None else np.array([r.t for r in run], np.float64)
                records += self._chunk(np.stack([r.values for r in run]).astype(np.float32, copy=False), times, run)
                run = []
            if clean:
                run.append(row)
            elif row is not None:
                records += self.feed_row(row)
        return records

    def run(self, rows: Iterable[Row | None]) -> Iterator[dict]:
        """Feed a whole source; yields records as they happen, then a summary. A live source yields None for each
        IDLE_TICK_S of wall time without a row (sources.watched)."""
        for row in rows:
            yield from self.idle(IDLE_TICK_S) if row is None else self.feed_row(row)
        yield from self.flush()
        if self.snapshot:
            yield self.save()
        yield self._record("summary", self.cadence.last, steps=self.steps, alarms=self.alarms,
                           alarm_active=self.alarm.active, sample_issues=dict(self.issues))

    def idle(self, seconds: float) -> list[dict]:
        """`seconds` of wall time passed without any row (a live source gone quiet): as many sample periods with
        no clean sample, for the sensor watch."""
        periods = max(1, round(seconds * self.rate))
        self.issues["silent_s"] += 1
        self.watch.kinds["silent_s"] += 1
        self.dropped += periods  # the slots they stand for may be filled as missing later: counted once
        return self._watch(self.cadence.last, periods, f"{self.cadence.last}+{self.dropped}")

    def _dropped(self, row: Row) -> bool:
        """Rows with nothing to place: an unusable timestamp, or no values once the source is timed."""
        return not usable_time(row.t) or (row.values is None and self.cadence.t0 is not None)

    def _place(self, row: Row) -> list[dict]:
        if self._dropped(row):
            return self._drop("malformed", f"{row.problem or f'unusable timestamp t={row.t}'}; dropped")
        kind, offset = self.cadence.place(row.t)
        if kind == JUMP:
            self.pending = row
            return []
        if kind == LATE:
            return self._drop("late", f"t={row.t} is not after the last sample "
                              f"(t={self.cadence.time(self.cadence.last):.3f}); dropped")
        records: list[dict] = []
        slot = self.cadence.last + 1 + offset
        if kind == MISSING:
            self._issue(records, "missing", slot, f"{offset} sample(s) missing before t={row.t}; held")
            self.watch.bad -= min(self.dropped, offset)  # those slots' rows were counted when dropped
            records += self._steps(np.full((offset, self.model.channels), np.nan, np.float32), flagged=True)
        flagged = row.problem is not None or row.values is None
        if flagged:
            self._issue(records, "malformed", slot, f"{row.problem or 'no values'}; held")
        values = row.values if row.values is not None else np.full(self.model.channels, np.nan, np.float32)
        return records + self._steps(values[None], flagged)

    def _settle(self, jumped: bool, next_t: float | None = None) -> list[dict]:
        """Decide about the waiting row (sources.py, jump): the clock jumped, or its timestamp alone was wrong."""
        row, self.pending = self.pending, None
        slot = self.cadence.last + 1
        moved = row.t - self.cadence.time(slot)
        if not jumped:
            # a clock in milliseconds: each row 1000x a sample period after the last (t must be in seconds)
            ms = next_t is not None and self.cadence.follows(row.t / 1000, next_t / 1000)
            records = self._issue([], "timestamp", slot, f"t={row.t} is {moved:+.2f} s off the clock and the next "
                                  "row does not follow it; taken as the next sample" +
                                  ("; the timestamps look like milliseconds: t must be in seconds" if ms else ""))
            return records + self._place(Row(None, row.values, row.problem, row.line))
        self.cadence.anchor(row.t)
        if moved > 0:
            # the model keeps its state (it was trained with the state carried from one recording into the next);
            # the score waits GAP_WARMUP_S: after a gap the model meets a wearer in another posture than its state
            # remembers, which reads like a transition (false alarms 3-6 s after gaps, measured, cold state or not)
            records = self._reset(slot, "gap", f"gap of {moved:.2f} s before t={row.t}: score restarted (no alarm "
                                  f"for {GAP_WARMUP_S:g} s), model state kept", keep_model=True, hold_s=GAP_WARMUP_S)
        else:
            self.issues["resync"] += 1
            reason = f"the clock went back {-moved:.2f} s (t={row.t}): re-anchored, state kept"
            log.warning("resync at t=%.2f s: %s", self._t(slot), reason)
            records = [self._record("resync", slot, reason=reason)]
        return records + self._place(row)

    def _steps(self, samples: np.ndarray, flagged: bool) -> list[dict]:
        records: list[dict] = []
        for sample in samples:  # one runtime step per sample: what a live device does
            slot = self.cadence.last + 1
            raw = sample  # the fault detector reads the sensor's own axes (a stuck channel stays one channel)
            if self.frame is not None:
                sample, now = self.frame.step(sample)
                lying = self.frame.attach == "lying"
                if now == "calibrated" and not self.frame.confirm(float(np.mean(self.lying_p or [0.0]))):
                    now = "unresolved"
                if now == "calibrated":  # upright: nothing before was in the model's frame: start it afresh
                    records += self._reset(slot, "calibrated", self.frame.reason, keep_model=lying)
                elif now == "unresolved":
                    log.warning("at t=%.2f s: %s", self._t(slot), self.frame.reason)
                    records.append(self._record("calibrating", slot, kind="unresolved", detail=self.frame.reason))
                elif slot == 0 and not self.frame.calibrated:
                    records.append(self._calibrating())
            try:
                logits = self.stream.step(sample)
                # a float64 sum of float32 values is finite iff every value is (no rnnedge.runtime import here)
                fault = None if math.isfinite(sum(logits.tolist())) else "the model's output is not finite"
            except RnnedgeError as exc:  # the runtime refused the step (its state would not be finite)
                fault = str(exc)
            if fault:
                records += self._reset(slot, "fault", f"{fault}; model state reset")
            if self.frame is not None and self.frame.awaiting_lying and not fault:
                self.lying_p.append(self.score.p_lying(logits))
            self.cadence.last, self.dropped = slot, 0
            held = fault is not None or bool(np.any(self.stream.last_held))
            if held and not flagged and not fault:
                self._issue(records, "held", slot, "the runtime held this sample (a value beyond the sensor's "
                            "range, or one that drove the model's state out of range)")
            # a value the runtime held as beyond the sensor's range is no reading of gravity or motion (faults.py)
            changes = self.faults.step(raw, self.resampler.estimate, held and not flagged and not fault)
            records += [self._sensor_check(slot, *change[1:]) for change in changes if change[0] == "check"]
            if not fault:
                records += self._score(slot, logits)
            if any(change[0] == "ok" for change in changes):
                records += self._sensor_ok(slot)
            records += self._watch(slot, int(held))
            if self.snapshot and self.snapshot_every and (slot + 1) % self.snapshot_every == 0:
                self.save_due = True
        return records

    def _chunk(self, values: np.ndarray, times: np.ndarray | None, rows: list[Row] | None) -> list[dict]:
        """Clean rows (no problem, values of the right shape): in one pass if _fast can, else row by row."""
        records = [self.save()] if self.save_due and len(values) else []  # as the first row's feed_row would
        fast = self._fast(values, times)
        if fast is not None:
            return records + fast
        if rows is None:
            rows = [Row(t, x) for t, x in zip([None] * len(values) if times is None else times.tolist(), values,
                                               strict=True)]
        for row in rows:
            records += self.feed_row(row)
        return records

    def _fast(self, values: np.ndarray, times: np.ndarray | None) -> list[dict] | None:
        """Exactly what feed_row would do for each row, or None (nothing changed) where this pass cannot be exact:
        a row waiting on a jump, a sensor watch that must say sensor_ok, a non-finite value, a timestamp that is not
        the next slot, a source being resampled, a snapshot due before the last row, the frame calibrating in the
        chunk, or a step the runtime held, refused or gave a non-finite output for."""
        n, first = len(values), self.cadence.last + 1
        frame, cadence, resampler = self.frame, self.cadence, self.resampler
        if not n or self.pending is not None or self.watch.raised or not np.isfinite(values).all():
            return None
        every = self.snapshot_every if self.snapshot else 0
        if every and (first + n - 1) // every > first // every:  # due after a row that is not the last
            return None
        # the rate estimate's intervals (Resampler.feed): those before, then one per timed row after the first
        # row ever seen; row i has added the first i + `added` of the chunk's
        window, known, added = resampler.intervals, len(resampler.intervals), 0
        if times is not None:
            if not (np.abs(times) <= MAX_TIME_S).all():
                return None
            t0 = cadence.t0 if cadence.t0 is not None else float(times[0]) - first / self.rate  # as place() anchors
            if not (np.rint((times - t0) * self.rate) == np.arange(first, first + n)).all():
                return None  # a row missing, late or jumping: the policy decides row by row
            added = int(resampler.prev is not None)
            gaps = np.diff(times, prepend=times[:0] if resampler.prev is None else [resampler.prev[0]])
            if ((gaps <= 0) | (gaps > resampler.max_gap)).any():
                return None
            window = [*window, *gaps.tolist()]
            # every interval within the tolerance: so is their median, and no row is resampled
            if (np.abs(1.0 / np.asarray(window) / self.rate - 1) > RATE_TOLERANCE).any():
                return None
        calibrating = frame is not None and not frame.calibrated
        if calibrating:  # it only watches for stillness (the model gets the raw samples), unless it calibrates
            saved = {**frame.state(), "buffer": list(frame.buffer)}  # its buffer grows in place
            if any(frame.step(sample)[1] for sample in values):  # a reset in mid-chunk: row by row
                frame.load_state(saved)
                return None
        stream = self.stream
        before = stream.snapshot()
        try:
            logits = stream.feed(values if frame is None or calibrating else frame.apply(values))  # bit-equal to steps
        except RnnedgeError:  # the stream is as before: row by row finds the step
            if calibrating:
                frame.load_state(saved)
            return None
        if stream.last_held.any() or not np.isfinite(logits).all():
            stream.restore(before)
            if calibrating:
                frame.load_state(saved)
            return None
        # from here on the pass is committed: the same state changes as the rows one by one
        if calibrating and frame.awaiting_lying:
            self.lying_p.extend(self.score.p_lying(row) for row in logits)
        if times is not None:
            cadence.t0, cadence.replayed = t0, None
            resampler.prev = (float(times[-1]), values[-1].tolist())
            resampler.intervals = window[-RATE_INTERVALS:]
        cadence.last, self.dropped = first + n - 1, 0
        events: list[tuple[int, int, dict]] = []  # (row, order within its step, record)
        if calibrating and first == 0:
            events.append((0, -1, self._calibrating()))
        blocking, oks = np.zeros(n, bool), []
        for i in range(n):
            # the fault detector reads the rate estimate after this row (Resampler.estimate)
            end = known + (0 if times is None else i + added)
            estimate = median_rate(window[max(0, end - RATE_INTERVALS):end])
            for change in self.faults.step(values[i], estimate):
                if change[0] == "check":
                    events.append((i, 0, self._sensor_check(first + i, *change[1:])))
                else:
                    oks.append(i)
            blocking[i] = self.faults.blocking
        scores, start = np.empty(n), 0
        for end in sorted({*oks, n - 1}):  # sensor_ok restarts the score after its step's score
            scores[start:end + 1] = self.score.feed(logits[start:end + 1])
            if end in oks:
                events.append((end, 3, self._sensor_ok(first + end)[0]))
            start = end + 1
        scores[blocking | calibrating] = 0.0  # a sensor fault: no alarm from garbage; or not calibrated yet
        self.p = float(scores[-1])
        step0, started = self.alarm.steps, self.alarm.started
        for change in self.alarm.feed(scores):
            i = change.step - step0
            events.append((i, 1, self._transition(change.start, change.step, float(scores[i]), started)))
            started = change.step if change.start else started
        if self.report_every:
            for slot in range(-(-first // self.report_every) * self.report_every, first + n, self.report_every):
                events.append((slot - first, 2, self._record("probability", slot, p=round(float(scores[slot - first]),
                                                                                            4))))
        self._watch(first + n - 1, 0)  # every step clean (watch.raised is False: no sensor_ok to say)
        if every and (first + n) % every == 0:
            self.save_due = True
        events.sort(key=lambda event: event[:2])
        return [record for _, _, record in events]

    def _calibrating(self) -> dict:
        return self._record("calibrating", 0, detail=self.frame.waiting)

    def _sensor_check(self, slot: int, fault: str, since_step: int, detail: str) -> dict:
        """A fault seen in the signal (faults.py): alarms are blocked until it is over."""
        since = self._t(slot - (self.faults.steps - 1 - since_step))
        self.issues[f"sensor_{fault}"] += 1
        log.warning("sensor check at t=%.2f s: %s since t=%.2f s; no alarms until it is over", self._t(slot),
                    detail, since)
        return self._record("sensor_check", slot, kind=fault, fault=fault, since=since, detail=detail)

    def _sensor_ok(self, slot: int) -> list[dict]:
        """The signal is normal again: the score restarts (its smoothing held the faulty input; warm-up again); the
        model keeps its state: restarted from zero mid-night it would not know the wearer lies (measured: a get-up
        24 s after such a restart was missed), and normal input brings a bounded state back within seconds."""
        log.warning("sensor ok again at t=%.2f s", self._t(slot))
        self.score.reset()
        return [self._record("sensor_ok", slot, kind="signal")]

    def _score(self, slot: int, logits: np.ndarray) -> list[dict]:
        scores = self.score.feed(logits)
        if self.faults.blocking or (self.frame is not None and not self.frame.calibrated):
            # a sensor fault: no alarm from garbage (an alarm on ends, none starts); or not calibrated yet
            scores = np.zeros_like(scores)
        self.p = float(scores[-1])
        records = [self._transition(change.start, change.step, self.p) for change in self.alarm.feed(scores)]
        if self.report_every and slot % self.report_every == 0:
            records.append(self._record("probability", slot, p=round(self.p, 4)))
        return records

    def _transition(self, start: bool, step: int, p: float, started: int | None = None) -> dict:
        """An alarm start or end at alarm step `step` (score p there; an end's alarm started at `started`, default
        the alarm's latest start)."""
        # alarm steps count from the alarm's creation; the cadence clock may have been reset since
        slot = step - self.alarm.steps + self.cadence.last + 1
        if start:
            self.alarms += 1
            log.warning("ALARM at t=%.2f s (p=%.3f)", self._t(slot), p)
            return self._record("alarm_start", slot, p=round(p, 4))
        duration = (step - (self.alarm.started if started is None else started)) / self.rate
        return self._record("alarm_end", slot, p=round(p, 4), duration_s=duration)

    def _reset(self, slot: int, kind: str, reason: str, keep_model: bool = False, hold_s: float = 0.0) -> list[dict]:
        records = [self._transition(False, self.alarm.steps, self.p)] if self.alarm.active else []
        if not keep_model:
            self.stream.reset()
        self.score.reset(hold_s)
        self.alarm.reset()
        log.warning("reset at t=%.2f s: %s", self._t(slot), reason)
        self.issues[kind] += 1
        return [*records, self._record("reset", slot, kind=kind, reason=reason)]

    def _drop(self, kind: str, detail: str) -> list[dict]:
        """A row that takes no slot. During a replay (after a resume) it is the source repeating itself: expected,
        so not a sensor fault."""
        if kind == LATE and self.cadence.replayed is not None:
            self.replayed += 1
            return self._issue([], kind, self.cadence.last, detail, f"{self.cadence.last}r{self.replayed}")
        self.dropped += 1
        key = f"{self.cadence.last}+{self.dropped}"
        return self._issue([], kind, self.cadence.last, detail, key) + self._watch(self.cadence.last, 1, key)

    def _watch(self, slot: int, bad: int, key: str | None = None) -> list[dict]:
        """Count sample periods without a clean sample (`bad` more; 0: a clean one); sensor_check while that
        lasts, sensor_ok after."""
        watch = self.watch
        if not bad:
            watch.clean = self._t(slot)
            if not watch.raised:
                if watch.bad:
                    watch.bad, watch.kinds = 0, Counter()
                return []
            record = self._record("sensor_ok", slot, key=key, fault_s=round(watch.bad / self.rate, 2))
            log.warning("sensor ok again at t=%.2f s after %.1f s", self._t(slot), watch.bad / self.rate)
            watch.bad, watch.raised, watch.kinds = 0, 0, Counter()
            return [record]
        watch.bad += bad
        if watch.bad < watch.first + watch.raised * watch.repeat:
            return []
        watch.raised += 1
        fault_s = round(watch.bad / self.rate, 2)
        kinds = ", ".join(f"{k} {n}" for k, n in watch.kinds.items()) or "held"
        since = "the start" if watch.clean is None else f"t={watch.clean:.2f}"
        detail = f"no clean sample for {fault_s:.1f} s (since {since}; {kinds}): check the sensor"
        log.warning("sensor check at t=%.2f s: %s", self._t(slot), detail)
        return [self._record("sensor_check", slot, key=key, fault_s=fault_s, since=watch.clean,
                             issues=dict(watch.kinds), detail=detail)]

    def _issue(self, records: list[dict], kind: str, slot: int, detail: str, key: str | None = None) -> list[dict]:
        self.issues[kind] += 1
        self.watch.kinds[kind] += 1
        if self.issues[kind] <= LOGGED_PER_KIND:
            more = " (further ones only counted)" if self.issues[kind] == LOGGED_PER_KIND else ""
            log.warning("%s sample at t=%.2f s: %s%s", kind, self._t(slot), detail, more)
            records.append(self._record("sample", slot, key=key, kind=kind, issue=kind, detail=detail))
        return records

    def _record(self, event: str, slot: int, *, key: str | None = None, kind: str | None = None, **fields) -> dict:
        """An event at `slot` (its id names the place: see the module docstring)."""
        name = f"{event}-{kind}" if kind else event
        return {"event": event, "id": f"{key or slot}:{name}", "t": self._t(slot), **fields}

    def _t(self, slot: int) -> float:
        return round(self.cadence.time(slot), 3)

    def save(self) -> dict:
        """Snapshot the whole monitor now (see the module docstring); returns the snapshot record."""
        assert self.snapshot is not None
        self.save_due = False
        stream_file = self.snapshot.with_name(f"{self.snapshot.name}.{self.steps}.stream")
        state = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "model_sha256": self.model.sha256,
                 "stream_id": self.stream_id, "stream": stream_file.name, **self._parts()}
        try:
            self.stream.save(stream_file)
            state["checksum"] = snapshot_checksum(state)
            write_text_atomic(self.snapshot, json.dumps(state, allow_nan=False) + "\n")
        except (OSError, ValueError, RnnedgeError) as exc:
            error = f"{self.snapshot}: cannot save the snapshot ({getattr(exc, 'strerror', None) or exc})"
            log.error("%s", error)
            return self._record("snapshot_error", self.cadence.last, path=str(self.snapshot), error=error)
        self.stream_file = stream_file
        # the previous stream file, and any a kill left between writing one and naming it
        for old in self.snapshot.parent.glob(f"{glob.escape(self.snapshot.name)}.*.stream"):
            if old.name != stream_file.name and old.is_file():  # best effort: a leftover costs disk, not an alarm
                with contextlib.suppress(OSError):
                    old.unlink(missing_ok=True)
        return self._record("snapshot", self.cadence.last, path=str(self.snapshot))

    def _resume(self):
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
                raise MonitorError(f"{self.snapshot}: snapshot of stream {state['stream_id']!r:.80}, this monitor "
                                   f"is {self.stream_id!r:.80}: each bed needs its own snapshot path")
            self.stream_file = self.snapshot.with_name(state["stream"])
            self._load_parts(state)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError,
                ValueError, OverflowError) as exc:
            raise MonitorError(f"{self.snapshot}: unreadable monitor snapshot ({exc})") from None
        log.info("resumed from %s at step %d", self.snapshot, self.steps)
        return self.model.stream(resume=self.stream_file, nan_policy="hold")

    def _parts(self) -> dict:
        """Score, alarm, clock, sensor watch, faults, resampler, frame and counters: in snapshots and states."""
        return {"score": self.score.state(), "alarm": self.alarm.state(), "cadence": self.cadence.state(),
                "alarms": self.alarms, "issues": dict(self.issues), "watch": self.watch.state(),
                "faults": self.faults.state(), "resampler": self.resampler.state(),
                "frame": None if self.frame is None else self.frame.state(), "lying_p": list(self.lying_p)}

    def _load_parts(self, state: dict) -> None:
        self.score.load_state(state["score"])
        self.alarm.load_state(state["alarm"])
        self.cadence.load_state(state["cadence"])
        self.watch.load_state(state.get("watch", {}))
        self.faults.load_state(state.get("faults", {}))
        self.resampler.load_state(state.get("resampler", {}))
        if self.frame is not None:
            self.frame.load_state(state.get("frame") or {})
        self.lying_p = deque((float(p) for p in state.get("lying_p", [])), maxlen=self.lying_p.maxlen)
        self.alarms = int(state["alarms"])
        self.issues = Counter({str(kind): int(n) for kind, n in state["issues"].items()})

    def state(self) -> bytes:
        """The whole monitor now, in memory (see the module docstring): `Monitor(model, ..., state=...)` goes on
        from it exactly. Bytes (msgpack): a copy that later steps cannot change, whoever holds it."""
        pending = self.pending
        return msgspec.msgpack.encode({
            "format": STATE_FORMAT, "version": 1, "model_sha256": self.model.sha256,
            "stream": encode_snapshot(self.model.sha256, self.stream.snapshot(), "monitor state"), **self._parts(),
            "p": self.p, "dropped": self.dropped, "replayed": self.cadence.replayed,
            "pending": None if pending is None else [pending.t, None if pending.values is None else
                                                     pending.values.tolist(), pending.problem, pending.line]})

    def _restore(self, data: bytes) -> None:
        try:
            state = msgspec.msgpack.decode(data)
            if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != 1:
                raise MonitorError("not an rnnedge monitor state (format/version)")
            if state["model_sha256"] != self.model.sha256:
                raise MonitorError(f"monitor state of another model (sha256 {str(state['model_sha256'])[:12]}..., "
                                   f"this model is {self.model.sha256[:12]}...): its hidden state means nothing here")
            model = self.model
            self.stream.restore(decode_snapshot(state["stream"], model.sha256, model.state_size, model.channels,
                                                "monitor state"), "monitor state")
            self._load_parts(state)
            replayed = state["replayed"]
            self.cadence.replayed = None if replayed is None else int(replayed)
            self.p, self.dropped = float(state["p"]), int(state["dropped"])
            pending = state["pending"]
            if pending is not None:
                t, values, problem, line = pending
                self.pending = Row(None if t is None else float(t),
                                   None if values is None else np.asarray(values, np.float32),
                                   None if problem is None else str(problem), int(line))
        except (msgspec.DecodeError, AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise MonitorError(f"unreadable monitor state ({str(exc)[:200]})") from None


class SensorWatch:
    """Sample periods (held slots, dropped rows) since the last clean sample, and the sensor_checks raised."""

    def __init__(self, first: int, repeat: int) -> None:
        self.first, self.repeat = first, repeat  # in sample periods
        self.bad = 0
        self.raised = 0  # sensor_check events in this fault
        self.kinds: Counter[str] = Counter()  # sample issues in this fault
        self.clean: float | None = None  # time of the last clean sample

    def state(self) -> dict:
        return {"bad": self.bad, "raised": self.raised, "kinds": dict(self.kinds), "clean": self.clean}

    def load_state(self, state: dict) -> None:
        self.bad, self.raised = int(state.get("bad", 0)), int(state.get("raised", 0))
        self.kinds = Counter({str(kind): int(n) for kind, n in state.get("kinds", {}).items()})
        clean = state.get("clean")
        self.clean = None if clean is None else float(clean)


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
