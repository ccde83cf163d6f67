"""The bed-exit monitor, for embedding in device software: runtime stream -> get-up score -> alarm.

    import rnnedge.runtime as rt
    from rnnedge.monitor import Monitor
    monitor = Monitor(rt.load("bundle/", precision="int8"), snapshot="state/monitor.json")
    for record in monitor.push(sample, t=timestamp):   # each new sample (raw units); t optional
        ...                                             # dicts: alarm_start / alarm_end / sample issues

Records are JSON-ready dicts with "event" in: alarm_start, alarm_end, probability (every `report_every_s`),
sample (a late/missing/malformed sample, see sources.py), reset (after a long gap), snapshot.
Snapshots: every `snapshot_every_s` of stream time the whole monitor state is saved: the runtime stream's
hidden state in `<snapshot>.<step>.stream` (rnnedge.runtime's own atomic, model-bound format), then score,
alarm and clock in `<snapshot>` (JSON, atomic) naming that file, then the older stream file is removed. A
process killed at any point finds a consistent pair, and `Monitor(..., snapshot=path)` resumes from it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from rnnedge.atomic import write_text_atomic
from rnnedge.monitor.alarm import Alarm
from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.operating_point import DEFAULT, OperatingPoint
from rnnedge.monitor.score import GetUpScore
from rnnedge.monitor.sources import Cadence, Row

log = logging.getLogger("rnnedge.monitor")
SNAPSHOT_FORMAT = "rnnedge-monitor-snapshot"
LOGGED_PER_KIND = 10  # sample issues logged one by one per kind; the rest only counted (summary)


class Monitor:
    def __init__(self, model, point: OperatingPoint = DEFAULT, snapshot: str | Path | None = None,
                 snapshot_every_s: float = 60.0, report_every_s: float = 0.0, max_gap_s: float = 2.0) -> None:
        manifest = model.manifest
        self.model, self.point = model, point
        self.rate = manifest.input.sample_rate_hz
        self.score = GetUpScore(point.score, list(manifest.output.labels), self.rate)
        self.alarm = Alarm(point.alarm, self.rate)
        self.cadence = Cadence(self.rate, max_gap_s)
        self.snapshot = Path(snapshot) if snapshot else None
        self.snapshot_every = round(snapshot_every_s * self.rate) if snapshot_every_s > 0 else 0
        self.report_every = round(report_every_s * self.rate) if report_every_s > 0 else 0
        self.issues: Counter[str] = Counter()
        self.alarms = 0
        self.p = 0.0  # the latest score
        self.stream_file: Path | None = None
        self.stream = self._resume() if self.snapshot and self.snapshot.exists() else model.stream(nan_policy="hold")

    @property
    def steps(self) -> int:
        return self.cadence.last + 1

    def push(self, values, t: float | None = None) -> list[dict]:
        """One sample (channels,) in raw units (NaN = unreadable), at time t in seconds (None: the next slot)."""
        return self.feed_row(Row(t, None if values is None else np.asarray(values, np.float32)))

    def feed_row(self, row: Row) -> list[dict]:
        records: list[dict] = []
        if row.values is None and self.cadence.t0 is not None:  # timed source, no usable time: drop
            return self._issue(records, "malformed", self.cadence.last + 1, f"{row.problem}; dropped")
        slot, skipped = self.cadence.place(row.t)
        if slot <= self.cadence.last:
            return self._issue(records, "late", slot, f"t={row.t} is not after the last sample "
                               f"(t={self.cadence.time(self.cadence.last):.3f}); dropped")
        if skipped > self.cadence.max_gap:
            records += self._reset(slot, f"gap of {skipped / self.rate:.2f} s before t={row.t}")
        elif skipped:
            self._issue(records, "missing", slot, f"{skipped} sample(s) missing before t={row.t}; held")
            records += self._steps(np.full((skipped, self.model.channels), np.nan, np.float32))
        if row.problem or row.values is None:
            self._issue(records, "malformed", slot, f"{row.problem or 'no values'}; held")
        values = row.values if row.values is not None else np.full(self.model.channels, np.nan, np.float32)
        return records + self._steps(values[None])

    def run(self, rows: Iterable[Row]) -> Iterator[dict]:
        """Feed a whole source; yields records as they happen, then a summary."""
        for row in rows:
            yield from self.feed_row(row)
        if self.snapshot:
            yield self.save()
        yield {"event": "summary", "t": self._t(self.cadence.last), "steps": self.steps, "alarms": self.alarms,
               "alarm_active": self.alarm.active, "sample_issues": dict(self.issues)}

    def _steps(self, samples: np.ndarray) -> list[dict]:
        records: list[dict] = []
        for sample in samples:  # one runtime step per sample: what a live device does
            first = self.cadence.last + 1
            scores = self.score.feed(self.stream.step(sample))
            self.p = float(scores[-1])
            self.cadence.last = first
            for change in self.alarm.feed(scores):
                records.append(self._transition(change.start, change.step))
            if self.report_every and first % self.report_every == 0:
                records.append({"event": "probability", "t": self._t(first), "p": round(self.p, 4)})
            if self.snapshot and self.snapshot_every and (first + 1) % self.snapshot_every == 0:
                records.append(self.save())
        return records

    def _transition(self, start: bool, step: int) -> dict:
        # alarm steps count from the alarm's creation; the cadence clock may have been reset since
        slot = step - self.alarm.steps + self.cadence.last + 1
        if start:
            self.alarms += 1
            log.warning("ALARM at t=%.2f s (p=%.3f)", self._t(slot), self.p)
            return {"event": "alarm_start", "t": self._t(slot), "p": round(self.p, 4)}
        duration = (step - self.alarm.started) / self.rate
        return {"event": "alarm_end", "t": self._t(slot), "p": round(self.p, 4), "duration_s": duration}

    def _reset(self, slot: int, reason: str) -> list[dict]:
        records = [self._transition(False, self.alarm.steps)] if self.alarm.active else []
        self.stream.reset()
        self.score.reset()
        self.alarm.reset()
        self.cadence.last = slot - 1
        log.warning("reset at t=%.2f s: %s", self._t(slot), reason)
        self.issues["gap"] += 1
        return [*records, {"event": "reset", "t": self._t(slot), "reason": reason}]

    def _issue(self, records: list[dict], kind: str, slot: int, detail: str) -> list[dict]:
        self.issues[kind] += 1
        if self.issues[kind] <= LOGGED_PER_KIND:
            more = " (further ones only counted)" if self.issues[kind] == LOGGED_PER_KIND else ""
            log.warning("%s sample at t=%.2f s: %s%s", kind, self._t(slot), detail, more)
            records.append({"event": "sample", "t": self._t(slot), "issue": kind, "detail": detail})
        return records

    def _t(self, slot: int) -> float:
        return round(self.cadence.time(slot), 3)

    def save(self) -> dict:
        """Snapshot the whole monitor now (see the module docstring); returns the snapshot record."""
        assert self.snapshot is not None
        previous = self.stream_file
        self.stream_file = self.snapshot.with_name(f"{self.snapshot.name}.{self.steps}.stream")
        self.stream.save(self.stream_file)
        state = {"format": SNAPSHOT_FORMAT, "version": 1, "model_sha256": self.model.sha256,
                 "stream": self.stream_file.name, "score": self.score.state(), "alarm": self.alarm.state(),
                 "cadence": self.cadence.state(), "alarms": self.alarms, "issues": dict(self.issues)}
        write_text_atomic(self.snapshot, json.dumps(state) + "\n")
        if previous is not None and previous != self.stream_file:
            previous.unlink(missing_ok=True)
        return {"event": "snapshot", "t": self._t(self.cadence.last), "path": str(self.snapshot)}

    def _resume(self):
        assert self.snapshot is not None
        try:
            state = json.loads(self.snapshot.read_text(encoding="utf-8"))
            if state.get("format") != SNAPSHOT_FORMAT or state.get("version") != 1:
                raise MonitorError(f"{self.snapshot}: not a monitor snapshot (format/version)")
            if state["model_sha256"] != self.model.sha256:
                raise MonitorError(f"{self.snapshot}: snapshot of another model; delete it to start afresh")
            self.stream_file = self.snapshot.with_name(state["stream"])
            self.score.load_state(state["score"])
            self.alarm.load_state(state["alarm"])
            self.cadence.load_state(state["cadence"])
            self.alarms, self.issues = int(state["alarms"]), Counter(state["issues"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError,
                ValueError) as exc:
            raise MonitorError(f"{self.snapshot}: unreadable monitor snapshot ({exc})") from None
        log.info("resumed from %s at step %d", self.snapshot, self.steps)
        return self.model.stream(resume=self.stream_file, nan_policy="hold")
