"""The beds one Flink task slot serves: a live `Monitor` per bed, in front of the state Flink keeps for it.

Flink's keyed state is the truth (it is what checkpoints, savepoints and rescaling carry); the live monitors
are a cache of it (LRU, `cache_size` beds), so a bed costs no rebuild per message. Each bed's state is a
`BedState` dict (plain data, pickled by Flink): the model's sha256, a sequence number, and the monitor's own
snapshot (rnnedge.monitor: the runtime stream's file with hidden state, last good sample and step count, and the
JSON with score, alarm, clock, sensor watch and counters), plus what a monitor snapshot leaves out because a
monitor resumed from a file replays its source (the latest score, rows dropped since the last slot, a row
waiting on a timestamp jump). Flink restores the source to exactly the checkpoint's offset, so nothing is
replayed: the monitor resumes with replay=False.

The monitor snapshots through files; they go to a scratch folder in memory (/dev/shm where there is one),
one folder per bed, and are read back as bytes. A cached monitor whose sequence number differs from its state's
(the state was restored, or expired by TTL) is rebuilt from the state.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.digest import sha256_bytes
from rnnedge.fleet.errors import FleetError
from rnnedge.monitor import DEFAULT, Monitor, OperatingPoint
from rnnedge.monitor.sources import Row

STATE_VERSION = 1
SNAPSHOT_NAME = "monitor.json"

BedState = dict[str, Any]


@dataclass(frozen=True)
class MonitorSettings:
    """What every bed's monitor is built with (the `rnnedge monitor` options)."""
    point: OperatingPoint = field(default_factory=lambda: DEFAULT)
    report_every_s: float = 0.0
    max_gap_s: float = 2.0
    sensor_check_s: float = 3.0


class BedMonitors:
    def __init__(self, model, settings: MonitorSettings, cache_size: int = 8192, scratch: str | None = None) -> None:
        self.model, self.settings, self.cache_size = model, settings, max(1, cache_size)
        base = scratch or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
        self.scratch = Path(tempfile.mkdtemp(prefix="rnnedge-fleet-", dir=base))
        self.live: OrderedDict[str, tuple[int, Monitor]] = OrderedDict()

    def monitor(self, bed: str, state: BedState | None) -> Monitor:
        """The bed's monitor at `state` (None: a new bed, or one whose state expired)."""
        seq = 0 if state is None else state["seq"]
        cached = self.live.get(bed)
        if cached is not None and cached[0] == seq:
            self.live.move_to_end(bed)
            return cached[1]
        monitor = self._build(bed, state)
        self.live[bed] = (seq, monitor)
        if len(self.live) > self.cache_size:
            self.live.popitem(last=False)
        return monitor

    def capture(self, bed: str, monitor: Monitor, state: BedState | None) -> BedState:
        """The bed's state after the records fed since `state` (the next sequence number)."""
        record = monitor.save()
        if record["event"] != "snapshot":  # the scratch folder is full or gone: the state cannot be kept
            raise FleetError(f"bed {bed}: cannot capture the monitor state ({record.get('error')})")
        seq = (0 if state is None else state["seq"]) + 1
        pending = monitor.pending
        new = {"version": STATE_VERSION, "model_sha256": self.model.sha256, "seq": seq,
               "snapshot": monitor.snapshot.read_bytes(), "stream_name": monitor.stream_file.name,
               "stream": monitor.stream_file.read_bytes(), "p": monitor.p, "dropped": monitor.dropped,
               "pending": None if pending is None else
               [pending.t, None if pending.values is None else pending.values.tolist(), pending.problem,
                pending.line]}
        self.live[bed] = (seq, monitor)
        return new

    def forget(self, bed: str) -> None:
        self.live.pop(bed, None)

    def close(self) -> None:
        self.live.clear()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _build(self, bed: str, state: BedState | None) -> Monitor:
        folder = self.scratch / sha256_bytes(bed.encode("utf-8"))[:32]
        shutil.rmtree(folder, ignore_errors=True)  # another state of this bed, or a stale one
        folder.mkdir(parents=True)
        path = folder / SNAPSHOT_NAME
        if state is not None:
            check_state(bed, state, self.model.sha256)
            path.write_bytes(state["snapshot"])
            (folder / state["stream_name"]).write_bytes(state["stream"])
        s = self.settings
        monitor = Monitor(self.model, s.point, snapshot=path, snapshot_every_s=0.0, report_every_s=s.report_every_s,
                          max_gap_s=s.max_gap_s, sensor_check_s=s.sensor_check_s, replay=False)
        if state is not None:
            monitor.p, monitor.dropped = float(state["p"]), int(state["dropped"])
            if state["pending"] is not None:
                t, values, problem, line = state["pending"]
                monitor.pending = Row(t, None if values is None else np.asarray(values, np.float32), problem, line)
        return monitor


def check_state(bed: str, state: BedState, model_sha256: str) -> None:
    """Refuse a bed state this job cannot continue: another version, or another model's hidden state."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        version = state.get("version") if isinstance(state, dict) else type(state).__name__
        raise FleetError(f"bed {bed}: fleet state version {version!r:.20} in the checkpoint/savepoint, this "
                         f"rnnedge reads {STATE_VERSION}; start without --restore")
    if state["model_sha256"] != model_sha256:
        raise FleetError(f"bed {bed}: the checkpoint/savepoint holds state of another model (sha256 "
                         f"{state['model_sha256'][:12]}..., this job runs {model_sha256[:12]}...): its hidden "
                         "state means nothing here; restore with the same bundle, or start without --restore")

