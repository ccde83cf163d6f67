"""Sensor faults read from the stream itself: causal, one block statistic per second, a few list operations per
sample, all state in a snapshot (the monitor's `faults`).

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

import math

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


class FaultDetector:
    def __init__(self, channels: list[str], sample_rate_hz: float) -> None:
        self.channels, self.rate = list(channels), sample_rate_hz
        self.block = max(1, round(BLOCK_S * sample_rate_hz))
        self.acc, self.gyro = _triple(channels, "acc"), _triple(channels, "gyro")
        blocks = [max(1, round(s / BLOCK_S)) for s in (STUCK_S, SATURATION_S, GRAVITY_S, STILL_S, RANGE_S)]
        self.stuck_blocks, self.saturated_blocks, self.gravity_blocks, self.still_blocks, self.range_blocks = blocks
        self.clear_steps = round(CLEAR_S * sample_rate_hz)
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.buffer: list[list[float]] = []  # the current block's samples
        self.held = 0  # samples of the current block the runtime held
        self.held_worst: tuple[float, int] = (0.0, -1)  # the held value furthest from 0 in it, and its channel
        self.held_blocks: list[int] = []  # held samples in each of the last range_blocks blocks
        self.constant: list[float | None] = [None] * len(self.channels)  # value of each channel's constant run
        self.constant_blocks = [0] * len(self.channels)
        self.saturated_run = 0
        self.still_run = 0
        self.gravity: list[float] = []  # mean |a| of the last gravity_blocks blocks
        self.source_rate: float | None = None
        self.active: dict[str, list] = {}  # fault -> [since step, detail]
        self.raised = False  # a fault was reported and sensor_ok not yet
        self.quiet = 0  # steps since the last fault ended

    @property
    def blocking(self) -> bool:
        """No get-up alarm now: a fault lasts, or ended less than CLEAR_S ago."""
        return self.raised

    def step(self, values: np.ndarray, source_rate: float | None = None, held: bool = False) -> list[tuple]:
        """One model step's sample (raw units, NaN = unreadable; `held`: the runtime held it as out of range).
        Returns what changed: ("check", fault, since_step, detail) for each fault that starts, ("ok", faults_s)
        when all are over."""
        sample = np.asarray(values, np.float32).tolist()
        finite = all(math.isfinite(v) for v in sample)
        if held and finite:
            self.held += 1
            self.held_worst = max(self.held_worst, max((abs(v), c) for c, v in enumerate(sample)))
        elif finite:  # unreadable samples are the sensor watch's
            self.buffer.append(sample)
        self.steps += 1
        self.source_rate = source_rate
        changes: list[tuple] = []
        if self.steps % self.block == 0:
            changes = self._decide()
        if self.raised and not self.active:
            self.quiet += 1
            if self.quiet >= self.clear_steps:
                self.raised, self.quiet = False, 0
                changes.append(("ok",))
        return changes

    def _decide(self) -> list[tuple]:
        self.held_blocks = [*self.held_blocks, self.held][-self.range_blocks:]
        share = sum(self.held_blocks) / (len(self.held_blocks) * self.block)
        worst, self.held = self.held_worst, 0
        if not self.buffer and share < RANGE_SHARE:
            return []
        found = self._block_faults(np.asarray(self.buffer, np.float64)) if self.buffer else {}
        if share >= RANGE_SHARE:
            self.held_worst = worst  # the worst value of the fault so far, not only of this block
            name = self.channels[worst[1]] if worst[1] >= 0 else "a channel"
            found["range"] = (self.steps - len(self.held_blocks) * self.block,
                              f"{share:.0%} of the last {len(self.held_blocks) * BLOCK_S:g} s beyond the sensor's "
                              f"range ({name} reached {worst[0]:.3g}): units other than g and rad/s?")
        else:
            self.held_worst = (0.0, -1)
        self.buffer = []
        changes = [("check", fault, since, detail) for fault, (since, detail) in found.items()
                   if fault not in self.active]
        self.active = {fault: list(self.active.get(fault, [since, detail])) for fault, (since, detail) in
                       found.items()}
        if changes:
            self.raised, self.quiet = True, 0
        return changes

    def _block_faults(self, x: np.ndarray) -> dict[str, tuple[int, str]]:
        faults: dict[str, tuple[int, str]] = {}
        start = self.steps - self.block  # first step of this block
        low, high = x.min(axis=0), x.max(axis=0)
        for c, name in enumerate(self.channels):
            flat = low[c] == high[c]
            run = self.constant_blocks[c] + 1 if flat and self.constant[c] == low[c] else int(flat)
            self.constant_blocks[c], self.constant[c] = run, float(low[c]) if flat else None
            if run >= self.stuck_blocks:
                faults["stuck"] = (start - (run - 1) * self.block, f"{name} stuck at {low[c]:g}")
        if self.acc is not None:
            acc = x[:, self.acc]
            pinned = np.mean(np.any(np.abs(acc) >= SATURATION_G, axis=1)) >= 0.5
            self.saturated_run = self.saturated_run + 1 if pinned else 0
            if self.saturated_run >= self.saturated_blocks:
                faults["saturated"] = (start - (self.saturated_run - 1) * self.block,
                                       f"accelerometer pinned at |a| >= {SATURATION_G} g")
            self.gravity = [*self.gravity, float(np.linalg.norm(acc, axis=1).mean())][-self.gravity_blocks:]
            g = sum(self.gravity) / len(self.gravity)
            if len(self.gravity) == self.gravity_blocks and not GRAVITY_RANGE[0] <= g <= GRAVITY_RANGE[1]:
                faults["gravity"] = (start - (self.gravity_blocks - 1) * self.block,
                                     f"mean |a| {g:.2f} g over {GRAVITY_S:g} s, outside {list(GRAVITY_RANGE)} g")
            if self.gyro is not None:
                still = acc.std(axis=0).max() < STILL_ACC_G and x[:, self.gyro].std(axis=0).max() < STILL_GYRO
                self.still_run = self.still_run + 1 if still else 0
                if self.still_run >= self.still_blocks:
                    faults["still"] = (start - (self.still_run - 1) * self.block,
                                       f"no motion for {self.still_run * BLOCK_S:g} s (off the body?)")
        rate = self.source_rate
        if rate is not None and not RATE_RANGE[0] <= rate / self.rate <= RATE_RANGE[1]:
            faults["rate"] = (start, f"source at {rate:.1f} Hz, the model runs at {self.rate:g} Hz")
        return faults

    def mask(self, signals: np.ndarray) -> np.ndarray:
        """Offline (evaluate-alarms): per step of a whole recording, True where the live monitor blocks alarms."""
        out = np.zeros(len(signals), bool)
        for i, sample in enumerate(np.asarray(signals, np.float32)):
            self.step(sample)
            out[i] = self.blocking
        return out

    def state(self) -> dict:
        return {"steps": self.steps, "buffer": self.buffer, "constant": self.constant,
                "constant_blocks": self.constant_blocks, "saturated_run": self.saturated_run,
                "still_run": self.still_run, "gravity": self.gravity, "active": self.active,
                "raised": self.raised, "quiet": self.quiet, "held": self.held,
                "held_worst": list(self.held_worst), "held_blocks": self.held_blocks}

    def load_state(self, state: dict) -> None:
        self.reset()
        if not state:  # a snapshot from before fault detection: start watching afresh
            return
        floats = lambda xs: [None if v is None else float(v) for v in xs]  # noqa: E731
        self.steps, self.buffer = int(state["steps"]), [[float(v) for v in row] for row in state["buffer"]]
        self.constant, self.constant_blocks = floats(state["constant"]), [int(n) for n in state["constant_blocks"]]
        self.saturated_run, self.still_run = int(state["saturated_run"]), int(state["still_run"])
        self.gravity = floats(state["gravity"])
        self.active = {str(k): [int(v[0]), str(v[1])] for k, v in state["active"].items()}
        self.raised, self.quiet = bool(state["raised"]), int(state["quiet"])
        self.held, self.held_blocks = int(state.get("held", 0)), [int(n) for n in state.get("held_blocks", [])]
        worst = state.get("held_worst", [0.0, -1])
        self.held_worst = (float(worst[0]), int(worst[1]))
        if len(self.constant) != len(self.channels) or len(self.constant_blocks) != len(self.channels):
            raise ValueError("fault detector state for another channel count")
