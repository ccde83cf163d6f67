"""The beds one Flink task slot serves: rows of one ward (rnnedge.monitor.ward), in front of the state Flink keeps
for each bed.

Flink's keyed state is the truth (it is what checkpoints, savepoints and rescaling carry); the ward's rows are a
cache of it (LRU, `cache_size` beds), so a bed costs no rebuild per message, and every bed of an element is stepped
in the same ward calls. Each bed's state is a `BedState` dict (plain data, pickled by Flink): the state version, the
model's sha256, a sequence number, its write time (`at`, wall clock: the TTL check), and the bed's monitor state
(rnnedge.monitor.monitor.encode_state: msgpack bytes with the runtime stream's model-bound snapshot and every part
of the bed's row): nothing touches a file per message. Flink restores the source to exactly the checkpoint's
offset, so nothing is replayed: the ward runs with replay=False. A cached bed whose sequence number differs from its
state's (the state was restored, or expired by TTL) is rebuilt from the state.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnedge.fleet.errors import FleetError
from rnnedge.monitor import DEFAULT, OperatingPoint
from rnnedge.monitor.frame import DEFAULT_ATTACH
from rnnedge.monitor.monitor import encode_state, restore_state
from rnnedge.monitor.sources import Row
from rnnedge.monitor.ward import Ward

STATE_VERSION = 4  # 4: the lying frame's rise a vector; 3: a ward row's state (2: a Monitor's; 1: snapshot bytes)

BedState = dict[str, Any]


@dataclass(frozen=True)
class MonitorSettings:
    """What every bed's monitor is built with (the `rnnedge monitor` options)."""
    point: OperatingPoint = field(default_factory=lambda: DEFAULT)
    report_every_s: float = 0.0
    max_gap_s: float = 2.0
    sensor_check_s: float = 3.0
    attach: str = DEFAULT_ATTACH


class BedWard:
    def __init__(self, model, settings: MonitorSettings, cache_size: int = 8192, ttl_s: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache_size, self.ttl_s, self.clock = max(1, cache_size), ttl_s, clock
        s = settings
        self.ward = Ward(model, s.point, report_every_s=s.report_every_s, max_gap_s=s.max_gap_s,
                         sensor_check_s=s.sensor_check_s, replay=False, attach=s.attach, capacity=self.cache_size)
        self.model = self.ward.model
        self.live: OrderedDict[str, int] = OrderedDict()  # bed -> the sequence number its row is at

    def expired(self, state: BedState | None) -> bool:
        """Written more than `ttl_s` ago (wall clock, as Flink's processing-time TTL): PyFlink's Python-side
        map-state read cache was measured to hand back entries its TTL had expired, so the job checks too."""
        return bool(self.ttl_s and state is not None and self.clock() - state.get("at", self.clock()) > self.ttl_s)

    def ready(self, bed: str, state: BedState | None) -> None:
        """The bed's row at `state` (None: a new bed, or one whose state expired)."""
        if self.expired(state):
            state = None
        seq = 0 if state is None else state["seq"]
        if self.live.get(bed) == seq:
            self.live.move_to_end(bed)
            return
        if state is not None:
            check_state(bed, state, self.model.sha256)
        if bed in self.live:
            self.forget(bed)
        elif len(self.live) == self.cache_size:
            self.forget(next(iter(self.live)))
        self.ward.add(bed)
        self.live[bed] = seq
        if state is not None:
            restore_state(self.ward, bed, state["monitor"])

    def feed(self, inputs: dict[str, list[Row] | tuple[np.ndarray, np.ndarray | None]]) -> dict[str, list[dict]]:
        """Every bed's rows or chunk (beds made `ready` first), in one pass of the ward: each bed's records."""
        return self.ward.feed(inputs)

    def finish(self, bed: str) -> list[dict]:
        """The end of a bounded input for the bed: a row waiting on a jump, then its summary."""
        return [*self.ward.flush(bed), self.ward.summary(bed)]

    def capture(self, bed: str, state: BedState | None) -> BedState:
        """The bed's state after what was fed since `state` (the next sequence number)."""
        seq = (0 if state is None or self.expired(state) else state["seq"]) + 1
        self.live[bed] = seq
        return {"version": STATE_VERSION, "model_sha256": self.model.sha256, "seq": seq,
                "monitor": encode_state(self.ward, bed), "at": self.clock()}

    def forget(self, bed: str) -> None:
        if self.live.pop(bed, None) is not None:
            self.ward.remove(bed)


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
