"""The beds one Flink task slot serves: a live `Monitor` per bed, in front of the state Flink keeps for it.

Flink's keyed state is the truth (it is what checkpoints, savepoints and rescaling carry); the live monitors
are a cache of it (LRU, `cache_size` beds), so a bed costs no rebuild per message. Each bed's state is a
`BedState` dict (plain data, pickled by Flink): the state version, the model's sha256, a sequence number, its
write time (`at`, wall clock: the TTL check), and the monitor's in-memory state (`Monitor.state()`: msgpack bytes
with the runtime stream's model-bound snapshot, score, alarm, clock, sensor watch, faults, counters, the latest
score, rows dropped since the last slot and a row waiting on a timestamp jump): nothing touches a file per
message. Flink restores the source to exactly the checkpoint's
offset, so nothing is replayed: the monitor goes on with replay=False. A cached monitor whose sequence number
differs from its state's (the state was restored, or expired by TTL) is rebuilt from the state.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rnnedge.fleet.errors import FleetError
from rnnedge.monitor import DEFAULT, Monitor, OperatingPoint
from rnnedge.monitor.frame import DEFAULT_ATTACH

STATE_VERSION = 2  # 2: the monitor's in-memory state (1: its snapshot files' bytes)

BedState = dict[str, Any]


@dataclass(frozen=True)
class MonitorSettings:
    """What every bed's monitor is built with (the `rnnedge monitor` options)."""
    point: OperatingPoint = field(default_factory=lambda: DEFAULT)
    report_every_s: float = 0.0
    max_gap_s: float = 2.0
    sensor_check_s: float = 3.0
    attach: str = DEFAULT_ATTACH


class BedMonitors:
    def __init__(self, model, settings: MonitorSettings, cache_size: int = 8192, ttl_s: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.model, self.settings, self.cache_size = model, settings, max(1, cache_size)
        self.ttl_s, self.clock = ttl_s, clock
        self.live: OrderedDict[str, tuple[int, Monitor]] = OrderedDict()

    def expired(self, state: BedState | None) -> bool:
        """Written more than `ttl_s` ago (wall clock, as Flink's processing-time TTL): PyFlink's Python-side
        map-state read cache was measured to hand back entries its TTL had expired, so the job checks too."""
        return bool(self.ttl_s and state is not None and self.clock() - state.get("at", self.clock()) > self.ttl_s)

    def monitor(self, bed: str, state: BedState | None) -> Monitor:
        """The bed's monitor at `state` (None: a new bed, or one whose state expired)."""
        if self.expired(state):
            state = None
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
        seq = (0 if state is None or self.expired(state) else state["seq"]) + 1
        self.live[bed] = (seq, monitor)
        return {"version": STATE_VERSION, "model_sha256": self.model.sha256, "seq": seq, "monitor": monitor.state(),
                "at": self.clock()}

    def forget(self, bed: str) -> None:
        self.live.pop(bed, None)

    def close(self) -> None:
        self.live.clear()

    def _build(self, bed: str, state: BedState | None) -> Monitor:
        if state is not None:
            check_state(bed, state, self.model.sha256)
        s = self.settings
        return Monitor(self.model, s.point, snapshot_every_s=0.0, report_every_s=s.report_every_s,
                       max_gap_s=s.max_gap_s, sensor_check_s=s.sensor_check_s, replay=False, attach=s.attach,
                       state=None if state is None else state["monitor"])


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

