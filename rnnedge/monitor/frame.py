"""The upright frame: an attach-time calibration that turns a sensor clipped on in any orientation into the frame
the model was trained in, causally, in the monitor (torch-free, in its snapshot).

The model knows "upright" as the direction gravity had in its training data while people stood (`up`, a unit vector
in sensor axes, kept in the operating point: `OperatingPoint.frame`). At attach time the monitor waits for the
first CALIBRATION_S of stillness with |a| near 1 g (every accelerometer channel's 1 s standard deviation below
STILL_STD_G but not zero: a bit-constant channel is stuck; | |mean a| - 1 g | below GRAVITY_TOLERANCE_G), takes
gravity's direction then as the wearer's upright axis, and from then on rotates both sensor triplets by the
smallest rotation that maps it onto `up`. What that leaves unknown is a rotation about the upright (long) axis,
which the model is trained to ignore (rotation augmentation about x). Until calibrated, no alarm is raised
(`calibrating`); at calibration, a `calibrated` event and a fresh model state (nothing before it was in the model's
frame).
The posture at attach time is the caller's to say (`attach`, ATTACH_POSTURES):
- "upright": the wearer stands or sits still for a few seconds after the sensor is attached (as in every HAPT
  recording): that gravity is the upright axis, as above.
- "lying" (how a bed-exit sensor is put on a patient in bed): lying, gravity tells the frame only when the sensor is
  in the documented placement (the training data's: its long axis along the body's, `up`). Then gravity at attach
  lies across `up` (within LYING_TOLERANCE_DEG of perpendicular, on the back or either side), the frame is the
  sensor's own (no rotation), and if the model itself, fed the sensor as placed, said LAYING over those seconds
  (mean p >= LYING_MIN_P: `confirm`), alarms are armed. Gravity alone cannot tell a sensor turned about the body's
  front-back axis from the documented one; the model's own view of the posture can. In any other placement the
  wearer's long axis cannot be known from gravity while they lie (turning over and sitting up change it alike), so
  the frame stays unresolved: an `unresolved` event says so, and no alarm is ever raised from it (re-attach in the
  documented placement, or while the wearer sits up with attach "upright"). What passes both checks in another
  placement (a sensor upside down along the body: gravity across the axis, and lying looks alike) is taken as
  placed: the README gives what each orientation costs, measured."""

from __future__ import annotations

import numpy as np

from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.sweep import rotate_groups, triplets

BLOCK_S = 1.0
CALIBRATION_S = 3.0
STILL_STD_G = 0.03
GRAVITY_TOLERANCE_G = 0.1
ATTACH_POSTURES = ("lying", "upright")
DEFAULT_ATTACH = "lying"  # a bed-exit sensor is put on a patient in bed
LYING_TOLERANCE_DEG = 45.0  # attached lying: gravity this close to perpendicular to `up` is the documented placement
LYING_MIN_P = 0.5  # attached lying: the model's mean p(LAYING) over the still seconds, in the frame as placed


def rotation_onto(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector u onto unit vector v (3x3)."""
    axis, cos = np.cross(u, v), float(np.dot(u, v))
    if cos < -1 + 1e-9:  # opposite: half a turn about any axis perpendicular to u
        other = np.eye(3)[int(np.argmin(np.abs(u)))]
        axis = np.cross(u, other) / np.linalg.norm(np.cross(u, other))
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + k + k @ k / (1 + cos)


class UprightFrame:
    def __init__(self, channels: list[str], sample_rate_hz: float, up: list[float], attach: str = "upright") -> None:
        if attach not in ATTACH_POSTURES:
            raise MonitorError(f"attach {attach!r}: expected one of {', '.join(ATTACH_POSTURES)}")
        self.attach = attach
        self.groups = triplets(channels)
        self._columns = [np.asarray(g, np.intp) for g in self.groups]  # index arrays: cheaper per step than lists
        self.acc = next((g for g, c in zip(self.groups, [channels[g[0]] for g in self.groups], strict=True)
                         if c.lower().startswith("acc")), None)
        if self.acc is None:
            raise MonitorError("the operating point has an upright frame, which needs acc-x/y/z channels; the model "
                               f"has {channels}")
        self.up = np.asarray(up, np.float64) / np.linalg.norm(up)
        self.block = max(1, round(BLOCK_S * sample_rate_hz))
        self.need = max(1, round(CALIBRATION_S / BLOCK_S))
        self.reset()

    def reset(self) -> None:
        self.buffer: list[list[float]] = []
        self.means: list[list[float]] = []  # consecutive still blocks' mean acceleration
        self.rotation: np.ndarray | None = None
        self.unresolved = False  # attached lying outside the documented placement: never calibrates
        self.reason = ""  # what the latest calibration or refusal saw, in words (the monitor's events)

    @property
    def calibrated(self) -> bool:
        return self.rotation is not None

    @property
    def waiting(self) -> str:
        return ("waiting for the wearer to be upright and still for a few seconds: no alarm until then"
                if self.attach == "upright" else
                "waiting for a few seconds of stillness lying (attached lying): no alarm until then")

    def step(self, values: np.ndarray) -> tuple[np.ndarray, str | None]:
        """One raw sample -> (the sample in the model's frame, "calibrated" or "unresolved" if that happened at this
        sample, else None)."""
        if self.rotation is not None:
            return self.apply(values[None])[0], None
        if self.unresolved:
            return values, None
        acc = np.asarray(values, np.float64)[self.acc].tolist()
        if all(v == v for v in acc):
            self.buffer.append(acc)
        if len(self.buffer) >= self.block:
            block = np.asarray(self.buffer)
            self.buffer = []
            mean = block.mean(axis=0)
            spread = block.std(axis=0)
            # still, at ~1 g, and alive: a real accelerometer at rest still shows noise; one that repeats the
            # same value for a whole block is stuck (faults.py) and its reading is no direction to trust
            still = (spread.max() < STILL_STD_G and spread.min() > 0
                     and abs(np.linalg.norm(mean) - 1) < GRAVITY_TOLERANCE_G)
            self.means = [*self.means, mean.tolist()][-self.need:] if still else []
            if len(self.means) == self.need:
                return self._resolve(values, np.mean(self.means, axis=0))
        return values, None

    def _resolve(self, values: np.ndarray, gravity: np.ndarray) -> tuple[np.ndarray, str]:
        direction = gravity / np.linalg.norm(gravity)
        shown = np.round(direction, 3).tolist()
        if self.attach == "upright":
            self.rotation = rotation_onto(direction, self.up)
            self.reason = f"upright frame calibrated on gravity {shown}: alarms armed"
            return self.apply(values[None])[0], "calibrated"
        off = abs(90.0 - float(np.degrees(np.arccos(np.clip(np.dot(direction, self.up), -1, 1)))))
        if off <= LYING_TOLERANCE_DEG:
            self.rotation = np.eye(3)
            self.reason = (f"attached lying, gravity {shown} across the model's long axis ({off:.0f} deg from "
                           "perpendicular): the documented placement, frame as placed; alarms armed")
            return values, "calibrated"
        self.unresolved = True
        self.reason = (f"attached lying, gravity {shown} is {off:.0f} deg from perpendicular to the model's long "
                       f"axis (more than {LYING_TOLERANCE_DEG:g}): not the documented placement, and lying the "
                       "frame cannot be known; no alarms from this sensor: re-attach it in the documented placement, "
                       "or while the wearer sits up (--attach upright)")
        return values, "unresolved"

    @property
    def awaiting_lying(self) -> bool:
        """Attached lying and not yet decided: the model's p(LAYING) is what `confirm` will read."""
        return self.attach == "lying" and self.rotation is None and not self.unresolved

    @property
    def window(self) -> int:
        """Steps of stillness a calibration looks at."""
        return self.block * self.need

    def confirm(self, p_lying: float) -> bool:
        """Attached lying, just calibrated as placed: keep it if the model saw the wearer lying (mean p(LAYING) over
        the still window, the sensor as placed), else the frame is unresolved for good (False)."""
        if self.attach != "lying" or p_lying >= LYING_MIN_P:
            return True
        self.rotation, self.unresolved = None, True
        self.reason = (f"attached lying, but the model, fed the sensor as placed, does not see the wearer lying "
                       f"(mean p(LAYING) {p_lying:.2f} < {LYING_MIN_P:g}): not the documented placement, and lying the "
                       "frame cannot be known; no alarms from this sensor: re-attach it in the documented placement, "
                       "or while the wearer sits up (--attach upright)")
        return False

    def apply(self, signals: np.ndarray) -> np.ndarray:
        """Rotate every sensor triplet of signals [T, C] into the model's frame (once calibrated)."""
        return rotate_groups(signals, self.rotation, self._columns)

    def calibrate(self, signals: np.ndarray) -> int | None:
        """Offline: step through a recording until calibrated; the step it happened at, or None."""
        for i, sample in enumerate(np.asarray(signals, np.float32)):
            if self.step(sample)[1] == "calibrated":
                return i
            if self.unresolved:
                break
        return None

    def state(self) -> dict:
        return {"buffer": self.buffer, "means": self.means, "unresolved": self.unresolved, "reason": self.reason,
                "rotation": None if self.rotation is None else self.rotation.tolist()}

    def load_state(self, state: dict) -> None:
        self.reset()
        self.buffer = [[float(v) for v in row] for row in state.get("buffer", [])]
        self.means = [[float(v) for v in row] for row in state.get("means", [])]
        self.unresolved, self.reason = bool(state.get("unresolved", False)), str(state.get("reason", ""))
        rotation = state.get("rotation")
        self.rotation = None if rotation is None else np.asarray(rotation, np.float64).reshape(3, 3)
