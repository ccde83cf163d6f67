"""Sensor faults read from the stream itself: causal, one block statistic per second, array operations over the
beds of a ward per sample (one row a bed: ward.py), all state in a snapshot (the monitor's `faults`).

Each fault is decided at the end of a 1 s block (BLOCK_S) of the samples the model is fed (raw units). Samples
with an unreadable or non-finite value, and those the runtime held (beyond the sensor's range: a 0.2 s glitch of
1e30 must not read as a wrong gravity for 10 s), are left out of the statistics (the monitor's sensor watch reports
them); a block without any decides nothing. Thresholds, set from all 61
HAPT recordings (a waist-worn phone, 50 Hz), where none of them fires (tests/monitor/test_sensor_faults.py):
  stuck       a channel exactly constant (max == min, same value) for STUCK_S = 3 s. Longest run of identical
              consecutive values in HAPT: 14 samples (0.28 s);
  saturated   an accelerometer channel at |a| >= SATURATION_G = 1.95 g in at least half of the samples of
              SATURATION_S = 2 consecutive seconds (pinned at the +-2 g rail). HAPT reaches +-2 g in short walking
              peaks only (0.07% of samples above 1.9 g);
  gravity     the mean of |a| over the last GRAVITY_S = 10 s outside GRAVITY_RANGE = [0.75, 1.35] g (a wrong
              range setting, a broken axis, units that are not g). HAPT: 0.99-1.18 g;
  still       no motion at all, every accelerometer channel's 1 s standard deviation below STILL_ACC_G = 2 mg and
              every gyroscope channel's below STILL_GYRO = 2 mrad/s, for STILL_S = 20 s: the sensor lies on a table
              or a charger. A body never gets there (breathing): HAPT's stillest second while lying is 3.3 mg /
              3.2 mrad/s. A real sensor's own noise floor must be checked against these on a table before use;
  range       at least RANGE_SHARE of the samples of the last RANGE_S = 10 s held by the runtime as beyond the
              sensor's range (units that are not g and rad/s: a gyroscope in deg/s, m/s^2), naming the channel
              furthest out. HAPT: none held;
  rate        the source's sample rate (median of the last timestamp intervals, sources.Resampler) outside
              RATE_RANGE = [0.4, 4] x the model's rate (20-200 Hz at 50 Hz). Inside it, the monitor resamples the
              source to the model's rate by its timestamps.
The checks on accelerometer and gyroscope channels apply when the model has three of each (named acc-* and
gyro-*, in g and rad/s); stuck and rate apply to any model.
A fault raises one `sensor_check` (what, since when) when it starts; while any fault lasts, and CLEAR_S = 3 s after
the last one ends, the get-up score is held at 0 (no alarm from garbage); then `sensor_ok`, and the score restarts
(warm-up). The model keeps its state: restarting it from zero while the wearer lies lost the next get-up (1 of 18
with a stuck channel, the long-stream model), while carrying it on lost none of 72 (4 faults x 18 test
recordings, a get-up 30 s after each fault; issue 14's note).
Detection delay: stuck 3-4 s, saturated 2-3 s, gravity 10-11 s, still 20-21 s, rate after RATE_INTERVALS samples.
"""

from __future__ import annotations

import numpy as np

BLOCK_S = 1.0
STUCK_S = 3.0
SATURATION_G = 1.95
SATURATION_S = 2.0
GRAVITY_S = 10.0
GRAVITY_RANGE = (0.75, 1.35)
STILL_ACC_G = 0.002
STILL_GYRO = 0.002
STILL_S = 20.0
RATE_RANGE = (0.4, 4.0)
CLEAR_S = 3.0
RANGE_S = 10.0
RANGE_SHARE = 0.2


def _triple(channels: list[str], prefix: str) -> list[int] | None:
    found = [i for i, c in enumerate(channels) if c.lower().startswith(prefix)]
    return found if len(found) == 3 else None


def _push(ring: np.ndarray, count: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """Append values to each row's window (oldest first, the newest last), keeping its last ring.shape[1]."""
    ring[rows, :-1] = ring[rows, 1:]
    ring[rows, -1] = values
    count[rows] = np.minimum(count[rows] + 1, ring.shape[1])


def _window(ring: np.ndarray, count: int, row: int) -> list:
    return ring[row, ring.shape[1] - count:].tolist()


class FaultRows:
    """The detector for every bed of a ward: one row a bed, each statistic an array over beds."""

    def __init__(self, channels: list[str], sample_rate_hz: float, capacity: int) -> None:
        self.channels, self.rate = list(channels), sample_rate_hz
        self.block = max(1, round(BLOCK_S * sample_rate_hz))
        self.acc, self.gyro = _triple(channels, "acc"), _triple(channels, "gyro")
        blocks = [max(1, round(s / BLOCK_S)) for s in (STUCK_S, SATURATION_S, GRAVITY_S, STILL_S, RANGE_S)]
        self.stuck_blocks, self.saturated_blocks, self.gravity_blocks, self.still_blocks, self.range_blocks = blocks
        self.clear_steps = round(CLEAR_S * sample_rate_hz)
        n, c = capacity, len(channels)
        self.steps = np.zeros(n, np.int64)
        self.buffer = np.zeros((n, self.block, c))  # the current block's samples (finite, not held), float64
        self.fill = np.zeros(n, np.int64)
        self.held = np.zeros(n, np.int64)  # samples of the current block the runtime held
        self.worst = np.zeros(n)  # the held value furthest from 0 in it ...
        self.worst_channel = np.full(n, -1, np.int64)  # ... and its channel
        self.held_blocks = np.zeros((n, self.range_blocks), np.int64)  # held samples in each of the last blocks
        self.held_count = np.zeros(n, np.int64)
        self.constant = np.full((n, c), np.nan)  # value of each channel's constant run (NaN: none)
        self.constant_blocks = np.zeros((n, c), np.int64)
        self.saturated_run = np.zeros(n, np.int64)
        self.still_run = np.zeros(n, np.int64)
        self.gravity = np.zeros((n, self.gravity_blocks))  # mean |a| of the last gravity_blocks blocks
        self.gravity_count = np.zeros(n, np.int64)
        self.source_rate = np.full(n, np.nan)  # NaN: not known yet
        self.active: list[dict[str, list]] = [{} for _ in range(n)]  # per bed: fault -> [since step, detail]
        self.any_active = np.zeros(n, bool)
        self.raised = np.zeros(n, bool)  # a fault was reported and sensor_ok not yet: no alarm (blocking)
        self.quiet = np.zeros(n, np.int64)  # steps since the last fault ended

    def clear(self, row: int) -> None:
        for name in ("steps", "fill", "held", "worst", "held_blocks", "held_count", "constant_blocks",
                     "saturated_run", "still_run", "gravity", "gravity_count", "quiet"):
            getattr(self, name)[row] = 0
        self.worst_channel[row] = -1
        self.constant[row] = self.source_rate[row] = np.nan
        self.active[row], self.any_active[row], self.raised[row] = {}, False, False

    def move(self, src: int, dst: int) -> None:
        """Row src becomes row dst (a ward keeps its beds packed)."""
        for name in ("steps", "buffer", "fill", "held", "worst", "worst_channel", "held_blocks", "held_count",
                     "constant", "constant_blocks", "saturated_run", "still_run", "gravity", "gravity_count",
                     "source_rate", "any_active", "raised", "quiet"):
            array = getattr(self, name)
            array[dst] = array[src]
        self.active[dst] = self.active[src]

    def step(self, rows: np.ndarray, values: np.ndarray, source_rate: np.ndarray, held: np.ndarray) -> list[tuple]:
        """One model step of the beds in `rows`: their samples [k, channels] (raw units, NaN = unreadable), the
        sources' rates [k] (NaN: unknown), whether the runtime held each as out of range [k]. Returns what changed,
        in the beds' order: (position in rows, "check", fault, since_step, detail) for each fault that starts,
        (position, "ok") when a bed's faults are all over."""
        finite = np.isfinite(values).all(axis=1)
        for i in (held & finite).nonzero()[0]:  # rare: a value beyond the sensor's range
            row, sample = rows[i], values[i].tolist()
            self.held[row] += 1
            worst = max((float(self.worst[row]), int(self.worst_channel[row])),
                        max((abs(v), c) for c, v in enumerate(sample)))
            self.worst[row], self.worst_channel[row] = worst
        put = rows[finite & ~held]  # unreadable samples are the sensor watch's
        self.buffer[put, self.fill[put]] = values[finite & ~held]
        self.fill[put] += 1
        self.steps[rows] += 1
        self.source_rate[rows] = source_rate
        changes: list[tuple] = []
        ends = (self.steps[rows] % self.block == 0).nonzero()[0]
        if len(ends):
            changes = self._decide(rows[ends], ends)
        calm = (self.raised[rows] & ~self.any_active[rows]).nonzero()[0]
        if len(calm):
            self.quiet[rows[calm]] += 1
            for i in calm[self.quiet[rows[calm]] >= self.clear_steps]:
                self.raised[rows[i]], self.quiet[rows[i]] = False, 0
                changes.append((int(i), "ok"))
        return changes  # a bed's checks come before its ok

    def blocking(self, rows: np.ndarray) -> np.ndarray:
        """No get-up alarm now: a fault lasts, or ended less than CLEAR_S ago."""
        return self.raised[rows]

    def _decide(self, rows: np.ndarray, where: np.ndarray) -> list[tuple]:
        _push(self.held_blocks, self.held_count, rows, self.held[rows])
        share = self.held_blocks[rows].sum(axis=1) / (self.held_count[rows] * self.block)
        worst = list(zip(self.worst[rows].tolist(), self.worst_channel[rows].tolist(), strict=True))
        self.held[rows] = 0
        ranged = share >= RANGE_SHARE
        found: dict[int, dict[str, tuple[int, str]]] = {}
        for fill in np.unique(self.fill[rows]):
            group = ((self.fill[rows] == fill) & (fill > 0)).nonzero()[0]
            if len(group):
                self._block_faults(rows[group], group, self.buffer[rows[group], :fill], found)
        decided = (self.fill[rows] > 0) | ranged  # a block without any usable sample decides nothing
        self.fill[rows] = 0
        changes = []
        for i in (decided & (ranged | self.any_active[rows] | np.isin(np.arange(len(rows)),
                                                                                    list(found)))).nonzero()[0]:
            row, faults = int(rows[i]), found.get(int(i), {})
            if ranged[i]:
                value, channel = worst[i]  # the worst value of the fault so far, not only of this block
                name = self.channels[channel] if channel >= 0 else "a channel"
                blocks = int(self.held_count[row])
                faults["range"] = (int(self.steps[row]) - blocks * self.block,
                                   f"{share[i]:.0%} of the last {blocks * BLOCK_S:g} s beyond the sensor's range "
                                   f"({name} reached {value:.3g}): units other than g and rad/s?")
            active = self.active[row]
            new = [(int(where[i]), "check", fault, since, detail) for fault, (since, detail) in faults.items()
                   if fault not in active]
            self.active[row] = {fault: list(active.get(fault, [since, detail])) for fault, (since, detail) in
                                faults.items()}
            self.any_active[row] = bool(faults)
            if new:
                self.raised[row], self.quiet[row] = True, 0
            changes += new
        keep = decided & ranged
        self.worst[rows[decided & ~keep]], self.worst_channel[rows[decided & ~keep]] = 0.0, -1
        return changes

    def _block_faults(self, rows: np.ndarray, group: np.ndarray, x: np.ndarray, found: dict) -> None:
        """Block statistics of beds `rows` (positions `group` in the deciding beds), x [beds, samples, channels]."""
        def fault(i: int, name: str, since, detail: str) -> None:
            found.setdefault(int(group[i]), {})[name] = (int(since), detail)

        start = self.steps[rows] - self.block  # first step of this block
        low, high = x.min(axis=1), x.max(axis=1)
        flat = low == high
        run = np.where(flat & (self.constant[rows] == low), self.constant_blocks[rows] + 1, flat.astype(np.int64))
        self.constant_blocks[rows], self.constant[rows] = run, np.where(flat, low, np.nan)
        for i, c in zip(*np.nonzero(run >= self.stuck_blocks), strict=True):  # the last channel names it
            fault(i, "stuck", start[i] - (run[i, c] - 1) * self.block, f"{self.channels[c]} stuck at {low[i, c]:g}")
        if self.acc is not None:
            acc = x[:, :, self.acc]
            pinned = np.any(np.abs(acc) >= SATURATION_G, axis=2).mean(axis=1) >= 0.5
            self.saturated_run[rows] = np.where(pinned, self.saturated_run[rows] + 1, 0)
            for i in (self.saturated_run[rows] >= self.saturated_blocks).nonzero()[0]:
                fault(i, "saturated", start[i] - (self.saturated_run[rows[i]] - 1) * self.block,
                      f"accelerometer pinned at |a| >= {SATURATION_G} g")
            _push(self.gravity, self.gravity_count, rows, np.linalg.norm(acc, axis=2).mean(axis=1))
            g = self.gravity[rows].sum(axis=1) / self.gravity_count[rows]
            off = (self.gravity_count[rows] == self.gravity_blocks) & ~((GRAVITY_RANGE[0] <= g) &
                                                                         (g <= GRAVITY_RANGE[1]))
            for i in (off).nonzero()[0]:
                fault(i, "gravity", start[i] - (self.gravity_blocks - 1) * self.block,
                      f"mean |a| {g[i]:.2f} g over {GRAVITY_S:g} s, outside {list(GRAVITY_RANGE)} g")
            if self.gyro is not None:
                still = (acc.std(axis=1).max(axis=1) < STILL_ACC_G) & \
                    (x[:, :, self.gyro].std(axis=1).max(axis=1) < STILL_GYRO)
                self.still_run[rows] = np.where(still, self.still_run[rows] + 1, 0)
                for i in (self.still_run[rows] >= self.still_blocks).nonzero()[0]:
                    fault(i, "still", start[i] - (self.still_run[rows[i]] - 1) * self.block,
                          f"no motion for {self.still_run[rows[i]] * BLOCK_S:g} s (off the body?)")
        rate = self.source_rate[rows]
        with np.errstate(invalid="ignore"):
            off = ~np.isnan(rate) & ~((RATE_RANGE[0] <= rate / self.rate) & (rate / self.rate <= RATE_RANGE[1]))
        for i in (off).nonzero()[0]:
            fault(i, "rate", start[i], f"source at {rate[i]:.1f} Hz, the model runs at {self.rate:g} Hz")

    def state(self, row: int) -> dict:
        """One bed's detector as plain data (snapshots, in-memory states)."""
        nan_none = lambda xs: [None if v != v else v for v in xs]  # noqa: E731
        return {"steps": int(self.steps[row]), "buffer": self.buffer[row, :self.fill[row]].tolist(),
                "constant": nan_none(self.constant[row].tolist()),
                "constant_blocks": self.constant_blocks[row].tolist(), "saturated_run": int(self.saturated_run[row]),
                "still_run": int(self.still_run[row]),
                "gravity": _window(self.gravity, int(self.gravity_count[row]), row),
                "active": {k: list(v) for k, v in self.active[row].items()}, "raised": bool(self.raised[row]),
                "quiet": int(self.quiet[row]), "held": int(self.held[row]),
                "held_worst": [float(self.worst[row]), int(self.worst_channel[row])],
                "held_blocks": _window(self.held_blocks, int(self.held_count[row]), row)}

    def load_state(self, row: int, state: dict) -> None:
        self.clear(row)
        if not state:  # a snapshot from before fault detection: start watching afresh
            return
        channels = len(self.channels)
        constant = [np.nan if v is None else float(v) for v in state["constant"]]
        if len(constant) != channels or len(state["constant_blocks"]) != channels:
            raise ValueError("fault detector state for another channel count")
        buffer = np.asarray(state["buffer"], np.float64).reshape(-1, channels)
        if len(buffer) > self.block:
            raise ValueError("fault detector state with a block longer than this model's")
        self.steps[row], self.fill[row] = int(state["steps"]), len(buffer)
        self.buffer[row, :len(buffer)] = buffer
        self.constant[row], self.constant_blocks[row] = constant, [int(n) for n in state["constant_blocks"]]
        self.saturated_run[row], self.still_run[row] = int(state["saturated_run"]), int(state["still_run"])
        for ring, count, values in ((self.gravity, self.gravity_count, state["gravity"]),
                                    (self.held_blocks, self.held_count, state.get("held_blocks", []))):
            values = [float(v) for v in values][-ring.shape[1]:]
            ring[row] = 0
            ring[row, ring.shape[1] - len(values):] = values
            count[row] = len(values)
        self.active[row] = {str(k): [int(v[0]), str(v[1])] for k, v in state["active"].items()}
        self.any_active[row] = bool(self.active[row])
        self.raised[row], self.quiet[row] = bool(state["raised"]), int(state["quiet"])
        self.held[row] = int(state.get("held", 0))
        worst = state.get("held_worst", [0.0, -1])
        self.worst[row], self.worst_channel[row] = float(worst[0]), int(worst[1])


def blocked_mask(channels: list[str], sample_rate_hz: float, signals: np.ndarray) -> np.ndarray:
    """Per step of a whole recording, True where the live monitor blocks alarms for a sensor fault (one bed)."""
    faults, row = FaultRows(channels, sample_rate_hz, 1), np.zeros(1, np.intp)
    out, rate, clean = np.zeros(len(signals), bool), np.full(1, np.nan), np.zeros(1, bool)
    for i, sample in enumerate(np.asarray(signals, np.float32)):
        faults.step(row, sample[None], rate, clean)
        out[i] = faults.raised[0]
    return out
