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
The assumption (documented, measured in issue 14's note): the wearer is upright (standing or sitting) and still
for a few seconds after the sensor is attached, as in every HAPT recording. Attached while lying, the frame is
wrong by the angle between lying and upright: re-attach (a new monitor) while the patient sits up.
"""

from __future__ import annotations

import numpy as np

from rnnedge.monitor.sweep import rotate_groups, triplets

BLOCK_S = 1.0
CALIBRATION_S = 3.0
STILL_STD_G = 0.03
GRAVITY_TOLERANCE_G = 0.1


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
    def __init__(self, channels: list[str], sample_rate_hz: float, up: list[float]) -> None:
        self.groups = triplets(channels)
        self._columns = [np.asarray(g, np.intp) for g in self.groups]  # index arrays: cheaper per step than lists
        self.acc = next((g for g, c in zip(self.groups, [channels[g[0]] for g in self.groups], strict=True)
                         if c.lower().startswith("acc")), None)
        if self.acc is None:
            raise ValueError(f"an upright frame needs acc-x/y/z channels, the model has {channels}")
        self.up = np.asarray(up, np.float64) / np.linalg.norm(up)
        self.block = max(1, round(BLOCK_S * sample_rate_hz))
        self.need = max(1, round(CALIBRATION_S / BLOCK_S))
        self.reset()

    def reset(self) -> None:
        self.buffer: list[list[float]] = []
        self.means: list[list[float]] = []  # consecutive still blocks' mean acceleration
        self.rotation: np.ndarray | None = None

    @property
    def calibrated(self) -> bool:
        return self.rotation is not None

    def step(self, values: np.ndarray) -> tuple[np.ndarray, bool]:
        """One raw sample -> (the sample in the model's frame, whether calibration happened at this sample)."""
        if self.rotation is not None:
            return self.apply(values[None])[0], False
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
                upright = np.mean(self.means, axis=0)
                self.rotation = rotation_onto(upright / np.linalg.norm(upright), self.up)
                return self.apply(values[None])[0], True
        return values, False

    def apply(self, signals: np.ndarray) -> np.ndarray:
        """Rotate every sensor triplet of signals [T, C] into the model's frame (once calibrated)."""
        return rotate_groups(signals, self.rotation, self._columns)

    def calibrate(self, signals: np.ndarray) -> int | None:
        """Offline: step through a recording until calibrated; the step it happened at, or None."""
        for i, sample in enumerate(np.asarray(signals, np.float32)):
            if self.step(sample)[1]:
                return i
        return None

    def state(self) -> dict:
        return {"buffer": self.buffer, "means": self.means,
                "rotation": None if self.rotation is None else self.rotation.tolist()}

    def load_state(self, state: dict) -> None:
        self.reset()
        self.buffer = [[float(v) for v in row] for row in state.get("buffer", [])]
        self.means = [[float(v) for v in row] for row in state.get("means", [])]
        rotation = state.get("rotation")
        self.rotation = None if rotation is None else np.asarray(rotation, np.float64).reshape(3, 3)
