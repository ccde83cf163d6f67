"""The ward: the bed-exit monitor's whole step for many beds at once, as array operations over beds.

    from rnnedge.monitor.ward import Ward
    ward = Ward(rt.load("bundle/", precision="int8"))
    ward.add("bed-1"); ward.add("bed-2")
    records = ward.feed({"bed-1": rows, "bed-2": (samples, times)})   # {bed: [record, ...]}, as Monitor's

Every monitor runs through here: `Monitor` is a ward of one bed (monitor.py), `rnnedge evaluate-alarms` streams its
recordings as the beds of a ward (evaluate.py), the Flink operator steps a shard's beds in one ward (fleet).

Each bed has a row in every array (one row a bed: the runtime `Pool`'s rows, score.ScoreRows, alarm.AlarmRows,
faults.FaultRows, frame.FrameRows, and the sensor watch below), so saving or restoring one bed is a slice, and a bed's
numbers never depend on which other beds share the ward. What is not per step stays a small Python object per bed
(`Bed`): the source's clock (sources.Cadence), its rate estimate and resampler, a row waiting on a timestamp jump, and
the counters of sample issues.

A call to `feed` reads each bed's input (rows, or a chunk of samples: `intake`) into runs of model steps ("slots": a
sample and whether its row was flagged), and steps all beds that have a slot to go, together, one slot at a time
(`_step`): frame -> model (one Pool call) -> sensor faults -> score -> alarm -> sensor watch; records are made only
for the beds where something happened. What a row's intake says (late, missing, a gap, a jump) comes between its
bed's steps in the bed's own order, so a bed's records are the same whatever else the ward holds (tests prove it).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator

import numpy as np

from rnnedge.errors import RnnedgeError, brief
from rnnedge.monitor.alarm import AlarmRows
from rnnedge.monitor.errors import MonitorError, bounded
from rnnedge.monitor.faults import FaultRows
from rnnedge.monitor.frame import DEFAULT_ATTACH, FrameRows
from rnnedge.monitor.operating_point import DEFAULT, OperatingPoint, bundle_point
from rnnedge.monitor.score import ScoreRows, softmax
from rnnedge.monitor.sources import (
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
from rnnedge.runtime.snapshot import Snapshot

log = logging.getLogger("rnnedge.monitor")
LOGGED_PER_KIND = 10  # sample issues logged one by one per kind; the rest only counted (summary, sensor_check)
SENSOR_CHECK_S = 3.0  # default sensor_check_s
SENSOR_CHECK_REPEAT_S = 10.0
GAP_WARMUP_S = 10.0  # no alarm this long after a gap in the timestamps (the score's own warm-up if longer)

Slots = tuple[np.ndarray, np.ndarray, np.ndarray]  # samples [T, channels], flagged [T], source rate [T] (NaN: unknown)


class Bed:
    """What a bed keeps outside the arrays: its source's clock and rate, and its counters."""

    def __init__(self, bed_id: Hashable, row: int, rate: float, max_gap_s: float, replay: bool) -> None:
        self.id, self.row = bed_id, row
        self.cadence = Cadence(rate, max_gap_s)
        self.resampler = Resampler(rate, max_gap_s)
        if not replay:  # a live feed goes on after a restart: rows behind the clock are a jump, not a replay
            self.cadence.replayed = None
        self.pending: Row | None = None  # a row whose timestamp jumped, waiting for the next one (sources.py)
        self.dropped = 0  # rows dropped since the last slot was fed (they name their events' ids)
        self.replayed = 0  # rows of a replay dropped since the resume
        self.issues: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()  # the sensor watch's sample issues in the current fault
        self.save_due = False
        self.steady = False  # every interval of the rate estimate within the tolerance (ward._in_step)
        self.out: list[dict] = []  # records of the current feed

    @property
    def steps(self) -> int:
        return self.cadence.last + 1

    def t(self, slot: int) -> float:
        return round(self.cadence.time(slot), 3)

    def record(self, event: str, slot: int, *, key: str | None = None, kind: str | None = None, **fields) -> dict:
        """An event at `slot` (its id names the place: see monitor.py's docstring)."""
        name = f"{event}-{kind}" if kind else event
        return {"event": event, "id": f"{key or slot}:{name}", "t": self.t(slot), **fields}


class Ward:
    def __init__(self, model, point: OperatingPoint | None = None, report_every_s: float = 0.0,
                 max_gap_s: float = 2.0, sensor_check_s: float = SENSOR_CHECK_S, replay: bool = True,
                 attach: str = DEFAULT_ATTACH, capacity: int = 1024, snapshot_every_s: float = 0.0) -> None:
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
        self.point, self.rate, self.capacity = point, manifest.input.sample_rate_hz, capacity
        self.max_gap_s, self.replay = max_gap_s, replay
        self.pool = model.pool(capacity, nan_policy="hold")
        self.model = self.pool.model  # the file that steps: snapshots are bound to it
        channels, labels = list(manifest.input.channels), list(manifest.output.labels)
        self.score = ScoreRows(point.score, labels, self.rate, capacity)
        self.alarm = AlarmRows(point.alarm, self.rate, capacity)
        self.faults = FaultRows(channels, self.rate, capacity)
        self.frame = FrameRows(channels, self.rate, point.frame, attach, capacity) if point.frame else None
        self.p = np.zeros(capacity)  # the latest score
        self.alarms = np.zeros(capacity, np.int64)  # alarms started
        self.watch_bad = np.zeros(capacity, np.int64)  # sample periods without a clean sample
        self.watch_raised = np.zeros(capacity, np.int64)  # sensor_check events in this fault
        self.watch_clean = np.full(capacity, np.nan)  # time of the last clean sample (NaN: none yet)
        self.watch_first = max(1, round(sensor_check_s * self.rate))
        self.watch_repeat = round(SENSOR_CHECK_REPEAT_S * self.rate)
        self.report_every = round(report_every_s * self.rate) if report_every_s > 0 else 0
        self.snapshot_every = round(snapshot_every_s * self.rate) if snapshot_every_s > 0 else 0
        self.on_save: Callable[[Bed], dict] | None = None  # the snapshot writer (Monitor), when snapshots are due
        # evaluate-alarms: (rows, slots, logits, scores, blocked, fresh) at each step (what its point search needs)
        self.tap: Callable[..., None] | None = None
        self.beds: dict[Hashable, Bed] = {}
        self._by_row: list[Bed] = []

    # -- beds ----------------------------------------------------------------------------------------------------
    def add(self, bed_id: Hashable) -> Bed:
        if bed_id in self.beds:
            raise MonitorError(f"bed {brief(bed_id)} is already in the ward")
        if len(self.beds) == self.capacity:
            raise MonitorError(f"the ward is full ({self.capacity} beds)")
        self.pool.add(bed_id)
        bed = Bed(bed_id, self.pool.row(bed_id), self.rate, self.max_gap_s, self.replay)
        self.beds[bed_id] = bed
        self._by_row.append(bed)
        self._clear(bed.row)
        return bed

    def remove(self, bed_id: Hashable) -> None:
        bed = self.bed(bed_id)
        last = len(self._by_row) - 1
        self.pool.remove(bed_id)  # moves its last row into the gap, as below
        moved = self._by_row[last]
        if moved is not bed:
            for part in self._parts():
                part.move(last, bed.row)
            for array in (self.p, self.alarms, self.watch_bad, self.watch_raised, self.watch_clean):
                array[bed.row] = array[last]
            moved.row, self._by_row[bed.row] = bed.row, moved
        self._by_row.pop()
        del self.beds[bed_id]

    def bed(self, bed_id: Hashable) -> Bed:
        try:
            return self.beds[bed_id]
        except (KeyError, TypeError):
            raise MonitorError(f"no bed {brief(bed_id)} in the ward") from None

    def _parts(self) -> list:
        return [self.score, self.alarm, self.faults, *([self.frame] if self.frame else [])]

    def _clear(self, row: int) -> None:
        self.score.reset(row)
        self.alarm.reset(row)
        self.faults.clear(row)
        if self.frame is not None:
            self.frame.clear(row)
        for array, value in ((self.p, 0.0), (self.alarms, 0), (self.watch_bad, 0), (self.watch_raised, 0),
                             (self.watch_clean, np.nan)):
            array[row] = value

    # -- feeding -------------------------------------------------------------------------------------------------
    def feed(self, inputs: dict[Hashable, Iterable[Row] | tuple[np.ndarray, np.ndarray | None]]
             ) -> dict[Hashable, list[dict]]:
        """Each bed's rows (sources.Row) or chunk (samples (T, channels) in raw units, times (T,) or None): the
        records each bed's monitor gives for them, per bed."""
        chunks = {self.bed(bed_id): self._checked(*given) for bed_id, given in inputs.items()
                  if isinstance(given, tuple)}
        in_step = self._in_step(chunks)
        intakes = {}
        for bed_id, given in inputs.items():
            bed = self.bed(bed_id)
            bed.out = []
            intakes[bed] = self._chunk(bed, *chunks[bed], in_step.get(bed)) if bed in chunks else \
                self._rows(bed, given)
        self.run(intakes)
        return {bed.id: bed.out for bed in intakes}

    def _checked(self, values, times) -> tuple[np.ndarray, np.ndarray | None]:
        values = np.asarray(values, np.float32)
        if values.ndim != 2 or values.shape[1] != self.model.channels:
            raise MonitorError(f"feed_chunk: samples of shape {values.shape}, expected (T, {self.model.channels})")
        if times is not None:
            times = np.asarray(times, np.float64)
            if times.shape != (len(values),):
                raise MonitorError(f"feed_chunk: {times.shape} timestamps for {len(values)} samples")
        return values, times

    def run(self, intakes: dict[Bed, Iterator[Slots]]) -> None:
        """Step every bed's intake to its end: beds with slots to go are stepped together, a run at a time."""
        going: dict[Bed, list] = {}  # bed -> [slots, position]
        for bed, intake in intakes.items():
            self._next(bed, intake, going)
        while going:
            beds = sorted(going, key=lambda bed: bed.row)  # pool rows in order: all beds step in place
            length = min(len(going[bed][0][0]) - going[bed][1] for bed in beds)
            pieces = [going[bed] for bed in beds]
            x = np.stack([s[0][at:at + length] for s, at in pieces], axis=1)  # [length, beds, channels]
            flagged = np.stack([s[1][at:at + length] for s, at in pieces], axis=1)
            rates = np.stack([s[2][at:at + length] for s, at in pieces], axis=1)
            rows = np.fromiter((bed.row for bed in beds), np.intp, len(beds))
            first = np.fromiter((bed.cadence.last + 1 for bed in beds), np.int64, len(beds))
            t0 = np.fromiter((bed.cadence.t0 or 0.0 for bed in beds), np.float64, len(beds))
            for j in range(length):
                self._step(beds, rows, x[j], flagged[j], rates[j], first + j, t0)
            for bed in beds:
                bed.cadence.last += length
                bed.dropped = 0
                going[bed][1] += length
                if going[bed][1] == len(going[bed][0][0]):
                    del going[bed]
                    self._next(bed, intakes[bed], going)

    @staticmethod
    def _next(bed: Bed, intake: Iterator[Slots], going: dict) -> None:
        for slots in intake:
            if len(slots[0]):
                going[bed] = [slots, 0]
                return

    # -- intake: a bed's source rows -> slots (the policy of sources.py) ----------------------------------------
    def _rows(self, bed: Bed, rows: Iterable[Row]) -> Iterator[Slots]:
        """Rows as feed_row takes them; each run of clean rows (no problem, values, all timed or all untimed) as one
        chunk."""
        run: list[Row] = []
        for row in [*rows, None]:
            clean = row is not None and row.problem is None and row.values is not None and usable_time(row.t)
            if run and not (clean and (row.t is None) == (run[0].t is None)):
                times = None if run[0].t is None else np.array([r.t for r in run], np.float64)
                values = np.stack([r.values for r in run]).astype(np.float32, copy=False)
                yield from self._chunk(bed, values, times, self._in_step({bed: (values, times)}).get(bed), run)
                run = []
            if clean:
                run.append(row)
            elif row is not None:
                yield from self._row(bed, row)

    def _row(self, bed: Bed, row: Row) -> Iterator[Slots]:
        """The slots one source row causes (after a snapshot that became due with the previous rows)."""
        if bed.save_due:
            bed.out.append(self._save(bed))
        bed.steady = False  # its rate estimate may take intervals beyond the tolerance
        for placed in bed.resampler.feed(row, bed.cadence, hold=bed.pending is not None):
            if bed.pending is not None and not self._dropped(bed, placed):
                yield from self._settle(bed, placed.t is not None and bed.cadence.follows(bed.pending.t, placed.t),
                                        placed.t)
            yield from self._place(bed, placed)

    def flush(self, bed_id: Hashable) -> list[dict]:
        """The end of a bed's source: a row still waiting on a jump is taken as one."""
        bed = self.bed(bed_id)
        bed.out = []
        if bed.pending is not None:
            self.run({bed: self._settle(bed, True)})
        return bed.out

    def _chunk(self, bed: Bed, values: np.ndarray, times: np.ndarray | None, rates: np.ndarray | None,
               rows: list[Row] | None = None) -> Iterator[Slots]:
        """Samples (T, channels) at times (T,) or None: one run of slots straight away if `_in_step` found every row
        taking the next slot (`rates`), else row by row. A run ends where a snapshot becomes due (written before
        the next row, as feed_row does)."""
        if bed.save_due and len(values):
            bed.out.append(self._save(bed))  # as the first row's feed_row would
        if rates is None:
            for row in rows or [Row(t, x) for t, x in zip([None] * len(values) if times is None else times.tolist(),
                                                           values, strict=True)]:
                yield from self._row(bed, row)
            return
        every, at, first = self.snapshot_every if self.on_save else 0, 0, bed.cadence.last + 1
        while at < len(values):
            end = len(values) if not every else min(len(values), (first + at) // every * every + every - first)
            yield values[at:end], np.zeros(end - at, bool), rates[at:end]
            at = end
            if every and (first + at) % every == 0:
                bed.save_due = True
                if at < len(values):
                    bed.out.append(self._save(bed))

    def _in_step(self, chunks: dict[Bed, tuple[np.ndarray, np.ndarray | None]]) -> dict[Bed, np.ndarray]:
        """The beds whose chunk takes the next slots as feed_row would place its rows one by one (no row waiting,
        finite values, each timestamp the next slot, every interval within the rate tolerance: nothing resampled),
        checked for all beds at once, their clock and rate estimate moved on as feed_row would; for each, the
        source's rate where the fault detector reads it (the end of its blocks; NaN elsewhere)."""
        groups: dict[tuple[int, bool], list[Bed]] = {}
        for bed, (values, times) in chunks.items():
            if len(values) and bed.pending is None:
                groups.setdefault((len(values), times is None), []).append(bed)
        found = {}
        for (n, untimed), beds in groups.items():
            values = np.stack([chunks[bed][0] for bed in beds])
            ok = np.isfinite(values).all(axis=(1, 2))
            if untimed:
                found.update({bed: self._rates(bed, bed.resampler.intervals, n, None)
                              for bed, good in zip(beds, ok.tolist(), strict=True) if good})
                continue
            times = np.stack([chunks[bed][1] for bed in beds])
            first = np.fromiter((bed.cadence.last + 1 for bed in beds), np.int64, len(beds))
            t0 = np.fromiter((np.nan if bed.cadence.t0 is None else bed.cadence.t0 for bed in beds), np.float64,
                             len(beds))
            t0 = np.where(np.isnan(t0), times[:, 0] - first / self.rate, t0)  # as place() anchors a first time
            prev = np.fromiter((np.nan if bed.resampler.prev is None else bed.resampler.prev[0] for bed in beds),
                               np.float64, len(beds))
            with np.errstate(invalid="ignore", divide="ignore"):
                gaps = np.diff(times, axis=1, prepend=prev[:, None])  # NaN: no interval before a first row
                ok &= (np.abs(times) <= MAX_TIME_S).all(axis=1)
                ok &= (np.rint((times - t0[:, None]) * self.rate) == first[:, None] + np.arange(n)).all(axis=1)
                ok &= ~((gaps <= 0) | (gaps > self.max_gap_s)).any(axis=1)
                # every interval within the tolerance: so is their median, and no row is resampled
                ok &= ~(np.abs(1.0 / gaps / self.rate - 1) > RATE_TOLERANCE).any(axis=1)
            for i in ok.nonzero()[0].tolist():
                bed = beds[i]
                window = bed.resampler.intervals
                if not bed.steady and any(abs(1.0 / v / self.rate - 1) > RATE_TOLERANCE for v in window):
                    continue
                new = gaps[i].tolist() if bed.resampler.prev is not None else gaps[i, 1:].tolist()
                found[bed] = self._rates(bed, [*window, *new], n, int(bed.resampler.prev is not None))
                bed.cadence.t0, bed.cadence.replayed = float(t0[i]), None
                bed.resampler.prev = (float(times[i, -1]), values[i, -1].tolist())
                bed.resampler.intervals = [*window, *new][-RATE_INTERVALS:]
                bed.steady = True
        return found

    def _rates(self, bed: Bed, window: list[float], n: int, added: int | None) -> np.ndarray:
        """The rate estimate after each of n rows (Resampler.estimate; `window`: the intervals before them, then
        one per timed row after the source's first; `added` None: untimed rows add none), where the fault detector
        reads it: at the end of its blocks."""
        rates = np.full(n, np.nan)
        known = len(window) - (0 if added is None else n - 1 + added)
        for i in ((self.faults.steps[bed.row] + np.arange(1, n + 1)) % self.faults.block == 0).nonzero()[0].tolist():
            end = known + (0 if added is None else i + added)
            rate = median_rate(window[max(0, end - RATE_INTERVALS):end])
            rates[i] = np.nan if rate is None else rate
        return rates

    def _dropped(self, bed: Bed, row: Row) -> bool:
        """Rows with nothing to place: an unusable timestamp, or no values once the source is timed."""
        return not usable_time(row.t) or (row.values is None and bed.cadence.t0 is not None)

    def _place(self, bed: Bed, row: Row) -> Iterator[Slots]:
        if self._dropped(bed, row):
            self._drop(bed, "malformed", f"{row.problem or f'unusable timestamp t={row.t}'}; dropped")
            return
        kind, offset = bed.cadence.place(row.t)
        if kind == JUMP:
            bed.pending = row
            return
        if kind == LATE:
            self._drop(bed, "late", f"t={row.t} is not after the last sample "
                       f"(t={bed.cadence.time(bed.cadence.last):.3f}); dropped")
            return
        slot = bed.cadence.last + 1 + offset
        rate = bed.resampler.estimate
        rate = np.nan if rate is None else rate
        if kind == MISSING:
            self._issue(bed, "missing", slot, f"{offset} sample(s) missing before t={row.t}; held")
            self.watch_bad[bed.row] -= min(bed.dropped, offset)  # those slots' rows were counted when dropped
            yield (np.full((offset, self.model.channels), np.nan, np.float32), np.ones(offset, bool),
                   np.full(offset, rate))
        flagged = row.problem is not None or row.values is None
        if flagged:
            self._issue(bed, "malformed", slot, f"{row.problem or 'no values'}; held")
        values = row.values if row.values is not None else np.full(self.model.channels, np.nan, np.float32)
        yield values[None], np.array([flagged]), np.array([rate])

    def _settle(self, bed: Bed, jumped: bool, next_t: float | None = None) -> Iterator[Slots]:
        """Decide about the waiting row (sources.py, jump): the clock jumped, or its timestamp alone was wrong."""
        row, bed.pending = bed.pending, None
        slot = bed.cadence.last + 1
        moved = row.t - bed.cadence.time(slot)
        if not jumped:
            # a clock in milliseconds: each row 1000x a sample period after the last (t must be in seconds)
            ms = next_t is not None and bed.cadence.follows(row.t / 1000, next_t / 1000)
            self._issue(bed, "timestamp", slot, f"t={row.t} is {moved:+.2f} s off the clock and the next row does "
                        "not follow it; taken as the next sample" +
                        ("; the timestamps look like milliseconds: t must be in seconds" if ms else ""))
            yield from self._place(bed, Row(None, row.values, row.problem, row.line))
            return
        bed.cadence.anchor(row.t)
        if moved > 0:
            # the model keeps its state (it was trained with the state carried from one recording into the next);
            # the score waits GAP_WARMUP_S: after a gap the model meets a wearer in another posture than its state
            # remembers, which reads like a transition (false alarms 3-6 s after gaps, measured, cold state or not)
            self.reset(bed, slot, "gap", f"gap of {moved:.2f} s before t={row.t}: score restarted (no alarm for "
                       f"{GAP_WARMUP_S:g} s), model state kept", keep_model=True, hold_s=GAP_WARMUP_S)
        else:
            bed.issues["resync"] += 1
            reason = f"the clock went back {-moved:.2f} s (t={row.t}): re-anchored, state kept"
            log.warning("resync at t=%.2f s: %s", bed.t(slot), reason)
            bed.out.append(bed.record("resync", slot, reason=reason))
        yield from self._place(bed, row)

    def idle(self, bed_id: Hashable, seconds: float) -> list[dict]:
        """`seconds` of wall time passed without any row (a live source gone quiet): as many sample periods with
        no clean sample, for the sensor watch."""
        bed = self.bed(bed_id)
        bed.out = []
        periods = max(1, round(seconds * self.rate))
        bed.issues["silent_s"] += 1
        bed.kinds["silent_s"] += 1
        bed.dropped += periods  # the slots they stand for may be filled as missing later: counted once
        self._watch([bed], np.array([bed.row]), np.array([bed.cadence.last]), np.array([bed.cadence.t0 or 0.0]),
                    np.array([periods]), f"{bed.cadence.last}+{bed.dropped}")
        return bed.out

    def _drop(self, bed: Bed, kind: str, detail: str) -> None:
        """A row that takes no slot. During a replay (after a resume) it is the source repeating itself: expected,
        so not a sensor fault."""
        last = bed.cadence.last
        if kind == LATE and bed.cadence.replayed is not None:
            bed.replayed += 1
            self._issue(bed, kind, last, detail, f"{last}r{bed.replayed}")
            return
        bed.dropped += 1
        key = f"{last}+{bed.dropped}"
        self._issue(bed, kind, last, detail, key)
        self._watch([bed], np.array([bed.row]), np.array([last]), np.array([bed.cadence.t0 or 0.0]),
                    np.ones(1, np.int64), key)

    def _issue(self, bed: Bed, kind: str, slot: int, detail: str, key: str | None = None) -> None:
        bed.issues[kind] += 1
        bed.kinds[kind] += 1
        if bed.issues[kind] <= LOGGED_PER_KIND:
            more = " (further ones only counted)" if bed.issues[kind] == LOGGED_PER_KIND else ""
            log.warning("%s sample at t=%.2f s: %s%s", kind, bed.t(slot), detail, more)
            bed.out.append(bed.record("sample", slot, key=key, kind=kind, issue=kind, detail=detail))

    # -- the step: one slot of each of `beds` ---------------------------------------------------------------------
    def _step(self, beds: list[Bed], rows: np.ndarray, x: np.ndarray, flagged: np.ndarray, rates: np.ndarray,
              slots: np.ndarray, t0: np.ndarray) -> None:
        """One slot of each of `beds` (their rows, raw samples, flagged rows, source rates, slots, clocks' t0)."""
        raw, frame = x, self.frame  # the fault detector reads the sensor's own axes (a stuck channel stays one)
        if frame is not None:
            x, changes = frame.step(rows, x)
            for i, now in changes:
                bed, slot = beds[i], int(slots[i])
                if now == "calibrated" and not frame.confirm(bed.row):
                    now = "unresolved"
                if now == "calibrated":  # upright: nothing before was in the model's frame: start it afresh
                    self.reset(bed, slot, "calibrated", frame.reason[bed.row], keep_model=frame.attach == "lying")
                elif now == "walking":  # the frame changed: nothing before was in the model's frame
                    self.reset(bed, slot, "calibrated", frame.reason[bed.row])
                elif now == "confirmed":
                    bed.out.append(bed.record("calibrating", slot, kind="confirmed", detail=frame.reason[bed.row]))
                else:
                    log.warning("at t=%.2f s: %s", bed.t(slot), frame.reason[bed.row])
                    bed.out.append(bed.record("calibrating", slot, kind="unresolved", detail=frame.reason[bed.row]))
            for i in ((slots == 0) & ~frame.calibrated[rows] & ~frame.unresolved[rows]).nonzero()[0]:
                beds[i].out.append(beds[i].record("calibrating", 0, detail=frame.waiting))
        logits, held, why = self._model(rows, x)
        fault = np.zeros(len(rows), bool)
        fault[list(why)] = True
        p = softmax(logits)
        for i, reason in why.items():
            self.reset(beds[i], int(slots[i]), "fault", f"{reason}; model state reset")
        if frame is not None:
            awaiting = (frame.awaiting_lying(rows) & ~fault).nonzero()[0]
            if len(awaiting):
                frame.see_lying(rows[awaiting], p[awaiting, self.score.lying])
        held |= fault
        for i in (held & ~flagged & ~fault).nonzero()[0]:
            self._issue(beds[i], "held", int(slots[i]), "the runtime held this sample (a value beyond the sensor's "
                        "range, or one that drove the model's state out of range)")
        # a value the runtime held as beyond the sensor's range is no reading of gravity or motion (faults.py)
        changes = self.faults.step(rows, raw, rates, held & ~flagged & ~fault)
        oks = []
        for i, what, *check in changes:
            if what == "check":
                beds[i].out.append(self._sensor_check(beds[i], int(slots[i]), *check))
            else:
                oks.append(i)
        if why:  # no score from a step the model did not give
            use = (~fault).nonzero()[0]
            self._score([beds[i] for i in use], rows[use], logits[use], p[use], slots[use])
        else:
            self._score(beds, rows, logits, p, slots)
        for i in oks:  # the signal is normal again (faults.py): the score restarts (warm-up again), the model goes on
            bed = beds[i]
            log.warning("sensor ok again at t=%.2f s", bed.t(int(slots[i])))
            self.score.reset(bed.row)
            bed.out.append(bed.record("sensor_ok", int(slots[i]), kind="signal"))
        self._watch(beds, rows, slots, t0, held.astype(np.int64))
        if self.snapshot_every and self.on_save:
            for i in ((slots + 1) % self.snapshot_every == 0).nonzero()[0]:
                beds[i].save_due = True

    def _model(self, rows: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """(logits, held, {position: why}) of one step of the beds; `why` names the beds whose step is not to be
        used: the runtime refused it (its state would not be finite) or its output is not finite."""
        why: dict[int, str] = {}
        try:
            logits = self.pool.step_rows(rows, x)
            held = self.pool.held_mask.copy()
        except RnnedgeError:  # the runtime refused some bed's step: find it, one bed at a time
            logits, held = np.zeros((len(rows), self.model.outputs), np.float32), np.zeros(len(rows), bool)
            for i, row in enumerate(rows):
                try:
                    logits[i], held[i] = self.pool.step_rows(row[None], x[i:i + 1])[0], self.pool.held_mask[0]
                except RnnedgeError as exc:
                    why[i] = str(exc)
        # a float64 sum of float32 values is finite iff every value is
        for i in (~np.isfinite(logits.sum(axis=1, dtype=np.float64))).nonzero()[0].tolist():
            why.setdefault(i, "the model's output is not finite")
        return logits, held, why

    def _score(self, beds: list[Bed], rows: np.ndarray, logits: np.ndarray, p: np.ndarray, slots: np.ndarray
               ) -> None:
        """Score and alarm of the beds whose model step is usable."""
        fresh = self.score.steps[rows] == 0
        scores = self.score.step(rows, p)
        blocked = self.faults.blocking(rows)
        if self.frame is not None:
            blocked = blocked | ~self.frame.calibrated[rows] | self.frame.gated(rows)
        # a sensor fault: no alarm from garbage (an alarm on ends, none starts); or no frame, or one not yet confirmed
        # whose long axis is not rising
        scores[blocked] = 0.0
        self.p[rows] = scores
        if self.tap is not None:
            self.tap(rows, slots, logits, scores, blocked, fresh)
        starts, ends = self.alarm.step(rows, scores)
        for i in ends:
            self._transition(beds[i], int(slots[i]), False, float(scores[i]), int(self.alarm.steps[rows[i]]) - 1)
        for i in starts:
            self._transition(beds[i], int(slots[i]), True, float(scores[i]))
        if self.report_every:
            for i in (slots % self.report_every == 0).nonzero()[0]:
                beds[i].out.append(beds[i].record("probability", int(slots[i]), p=round(float(scores[i]), 4)))

    def _transition(self, bed: Bed, slot: int, start: bool, p: float, step: int = 0) -> None:
        """An alarm start, or an end at alarm step `step` (its duration from the alarm's start)."""
        if start:
            self.alarms[bed.row] += 1
            log.warning("ALARM at t=%.2f s (p=%.3f)", bed.t(slot), p)
            # attached lying, not yet seen upright: the frame is the documented placement gravity cannot yet prove
            provisional = self.frame is not None and self.frame.provisional[bed.row]
            fields = {"frame": "provisional"} if provisional else {}
            bed.out.append(bed.record("alarm_start", slot, p=round(p, 4), **fields))
            return
        duration = (step - int(self.alarm.started[bed.row])) / self.rate
        bed.out.append(bed.record("alarm_end", slot, p=round(p, 4), duration_s=duration))

    def reset(self, bed: Bed, slot: int, kind: str, reason: str, keep_model: bool = False, hold_s: float = 0.0
              ) -> None:
        """Score and alarm restarted (the model too unless `keep_model`), an alarm on ended, at `slot`."""
        row = bed.row
        if self.alarm.active[row]:
            self._transition(bed, slot, False, float(self.p[row]), int(self.alarm.steps[row]))
        if not keep_model:
            self.pool.reset(bed.id)
        self.score.reset(row, hold_s)
        self.alarm.reset(row)
        log.warning("reset at t=%.2f s: %s", bed.t(slot), reason)
        bed.issues[kind] += 1
        bed.out.append(bed.record("reset", slot, kind=kind, reason=reason))

    def _sensor_check(self, bed: Bed, slot: int, fault: str, since_step: int, detail: str) -> dict:
        """A fault seen in the signal (faults.py): alarms are blocked until it is over."""
        since = bed.t(slot - (int(self.faults.steps[bed.row]) - 1 - since_step))
        bed.issues[f"sensor_{fault}"] += 1
        log.warning("sensor check at t=%.2f s: %s since t=%.2f s; no alarms until it is over", bed.t(slot),
                    detail, since)
        return bed.record("sensor_check", slot, kind=fault, fault=fault, since=since, detail=detail)

    def _watch(self, beds: list[Bed], rows: np.ndarray, slots: np.ndarray, t0: np.ndarray, bad: np.ndarray,
               key: str | None = None) -> None:
        """Count sample periods without a clean sample (`bad` more per bed; 0: a clean one); sensor_check while
        that lasts, sensor_ok after."""
        clean = bad == 0
        if clean.any():
            self.watch_clean[rows[clean]] = t0[clean] + slots[clean] / self.rate
            for i in (clean & ((self.watch_raised[rows] > 0) | (self.watch_bad[rows] > 0))).nonzero()[0]:
                bed, row = beds[i], rows[i]
                if self.watch_raised[row]:
                    fault_s = round(int(self.watch_bad[row]) / self.rate, 2)
                    bed.out.append(bed.record("sensor_ok", int(slots[i]), key=key, fault_s=fault_s))
                    log.warning("sensor ok again at t=%.2f s after %.1f s", bed.t(int(slots[i])), fault_s)
                self.watch_bad[row], self.watch_raised[row], bed.kinds = 0, 0, Counter()
        if clean.all():
            return
        self.watch_bad[rows] += bad
        due = ~clean & (self.watch_bad[rows] >= self.watch_first + self.watch_raised[rows] * self.watch_repeat)
        for i in (due).nonzero()[0]:
            bed, row, slot = beds[i], rows[i], int(slots[i])
            self.watch_raised[row] += 1
            fault_s = round(int(self.watch_bad[row]) / self.rate, 2)
            kinds = ", ".join(f"{k} {n}" for k, n in bed.kinds.items()) or "held"
            clean_t = self.watch_clean[row]
            since_t = None if math.isnan(clean_t) else round(float(clean_t), 3)
            since = "the start" if since_t is None else f"t={since_t:.2f}"
            detail = f"no clean sample for {fault_s:.1f} s (since {since}; {kinds}): check the sensor"
            log.warning("sensor check at t=%.2f s: %s", bed.t(slot), detail)
            bed.out.append(bed.record("sensor_check", slot, key=key, fault_s=fault_s, since=since_t,
                                      issues=dict(bed.kinds), detail=detail))

    def _save(self, bed: Bed) -> dict:
        bed.save_due = False
        assert self.on_save is not None
        return self.on_save(bed)

    # -- a bed's state as plain data (snapshots, in-memory states): a slice of every array -----------------------
    def parts(self, bed_id: Hashable) -> dict:
        """Score, alarm, clock, sensor watch, faults, resampler, frame and counters of one bed."""
        bed = self.bed(bed_id)
        row, clean = bed.row, float(self.watch_clean[bed.row])
        frame = self.frame
        return {"score": self.score.state(row), "alarm": self.alarm.state(row), "cadence": bed.cadence.state(),
                "alarms": int(self.alarms[row]), "issues": dict(bed.issues),
                "watch": {"bad": int(self.watch_bad[row]), "raised": int(self.watch_raised[row]),
                          "kinds": dict(bed.kinds), "clean": None if math.isnan(clean) else round(clean, 3)},
                "faults": self.faults.state(row), "resampler": bed.resampler.state(),
                "frame": None if frame is None else frame.state(row),
                "lying_p": [] if frame is None else frame.seen_lying(row)}

    def load_parts(self, bed_id: Hashable, state: dict) -> None:
        bed = self.bed(bed_id)
        row = bed.row
        self.score.load_state(row, state["score"])
        self.alarm.load_state(row, state["alarm"])
        bed.cadence.load_state(state["cadence"])
        watch = state.get("watch", {})
        self.watch_bad[row], self.watch_raised[row] = int(watch.get("bad", 0)), int(watch.get("raised", 0))
        bed.kinds = Counter({str(kind): int(n) for kind, n in watch.get("kinds", {}).items()})
        clean = watch.get("clean")
        self.watch_clean[row] = np.nan if clean is None else float(clean)
        self.faults.load_state(row, state.get("faults", {}))
        bed.resampler.load_state(state.get("resampler", {}))
        bed.steady = False
        if self.frame is not None:
            self.frame.load_state(row, state.get("frame") or {}, state.get("lying_p", []))
        self.alarms[row] = int(state["alarms"])
        bed.issues = Counter({str(kind): int(n) for kind, n in state["issues"].items()})

    def snapshot(self, bed_id: Hashable) -> Snapshot:
        """The bed's runtime stream (hidden state, last good sample, steps)."""
        return self.pool.snapshot(bed_id)

    def restore(self, bed_id: Hashable, snapshot: Snapshot, where: str = "snapshot") -> None:
        self.pool.restore(bed_id, snapshot, where)

    def summary(self, bed_id: Hashable) -> dict:
        bed = self.bed(bed_id)
        return bed.record("summary", bed.cadence.last, steps=bed.steps, alarms=int(self.alarms[bed.row]),
                          alarm_active=bool(self.alarm.active[bed.row]), sample_issues=dict(bed.issues))


def stream_beds(ward: Ward, feeds: dict[Hashable, list[tuple[np.ndarray, np.ndarray | None]]]
                ) -> dict[Hashable, list[dict]]:
    """Each bed's chunks (samples, times) in turn, every bed's i-th chunk in one `feed` (as a gateway delivers a
    ward's messages), then each bed flushed: every bed's records. Beds are added to the ward if new."""
    for bed_id in feeds:
        if bed_id not in ward.beds:
            ward.add(bed_id)
    records: dict[Hashable, list[dict]] = {bed_id: [] for bed_id in feeds}
    for i in range(max((len(chunks) for chunks in feeds.values()), default=0)):
        tick = {bed_id: chunks[i] for bed_id, chunks in feeds.items() if i < len(chunks)}
        for bed_id, out in ward.feed(tick).items():
            records[bed_id] += out
    for bed_id in feeds:
        records[bed_id] += ward.flush(bed_id)
    return records
