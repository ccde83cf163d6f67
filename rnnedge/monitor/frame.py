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
from rnnedge.monitor.sweep import triplets

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


WAITING = {"upright": "waiting for the wearer to be upright and still for a few seconds: no alarm until then",
           "lying": "waiting for a few seconds of stillness lying (attached lying): no alarm until then"}
_ELSEWHERE = ("not the documented placement, and lying the frame cannot be known; no alarms from this sensor: "
              "re-attach it in the documented placement, or while the wearer sits up (--attach upright)")


class FrameRows:
    """Every bed's frame: its rotation once calibrated, the stillness seen while calibrating; one row a bed."""

    def __init__(self, channels: list[str], sample_rate_hz: float, up: list[float], attach: str,
                 capacity: int) -> None:
        if attach not in ATTACH_POSTURES:
            raise MonitorError(f"attach {attach!r}: expected one of {', '.join(ATTACH_POSTURES)}")
        self.attach = attach
        self.groups = triplets(channels)
        self.acc = next((g for g in self.groups if channels[g[0]].lower().startswith("acc")), None)
        if self.acc is None:
            raise MonitorError("the operating point has an upright frame, which needs acc-x/y/z channels; the model "
                               f"has {channels}")
        self.up = np.asarray(up, np.float64) / np.linalg.norm(up)
        self.block = max(1, round(BLOCK_S * sample_rate_hz))
        self.need = max(1, round(CALIBRATION_S / BLOCK_S))
        n = capacity
        self.rotation = np.zeros((n, 3, 3))
        self.calibrated = np.zeros(n, bool)
        self.unresolved = np.zeros(n, bool)  # attached lying outside the documented placement: never calibrates
        self.buffer = np.zeros((n, self.block, 3))  # this block's finite accelerometer samples
        self.fill = np.zeros(n, np.int64)
        self.means = np.zeros((n, self.need, 3))  # consecutive still blocks' mean acceleration (newest last)
        self.still = np.zeros(n, np.int64)
        self.lying_p = np.zeros((n, self.window))  # attached lying: the model's p(LAYING) over the still window
        self.lying_count = np.zeros(n, np.int64)
        self.reason = [""] * n  # what the latest calibration or refusal saw, in words (the monitor's events)

    @property
    def window(self) -> int:
        """Steps of stillness a calibration looks at."""
        return self.block * self.need

    @property
    def waiting(self) -> str:
        return WAITING[self.attach]

    def clear(self, row: int) -> None:
        for array in (self.rotation, self.calibrated, self.unresolved, self.fill, self.still, self.lying_count):
            array[row] = 0
        self.reason[row] = ""

    def move(self, src: int, dst: int) -> None:
        for array in (self.rotation, self.calibrated, self.unresolved, self.buffer, self.fill, self.means,
                      self.still, self.lying_p, self.lying_count):
            array[dst] = array[src]
        self.reason[dst] = self.reason[src]

    def step(self, rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Raw samples [k, channels] of beds `rows` -> (the samples in the model's frame, [(position, "calibrated"
        or "unresolved")] for beds where that happened at this sample)."""
        done = self.calibrated[rows]
        out = values
        if done.any():
            out = values.copy()
            out[done] = self.apply(values[done], self.rotation[rows[done]])
        waiting = (~done & ~self.unresolved[rows]).nonzero()[0]
        if not len(waiting):
            return out, []
        acc = values[waiting][:, self.acc].astype(np.float64)
        use = np.isfinite(acc).all(axis=1)
        at, acc = rows[waiting[use]], acc[use]
        self.buffer[at, self.fill[at]] = acc
        self.fill[at] += 1
        full = self.fill[at] >= self.block
        events: list[tuple[int, str]] = []
        if full.any():
            beds, where = at[full], waiting[use][full]
            block = self.buffer[beds]
            self.fill[beds] = 0
            mean, spread = block.mean(axis=1), block.std(axis=1)
            # still, at ~1 g, and alive: a real accelerometer at rest still shows noise; one that repeats the
            # same value for a whole block is stuck (faults.py) and its reading is no direction to trust
            still = (spread.max(axis=1) < STILL_STD_G) & (spread.min(axis=1) > 0) & \
                (np.abs(np.linalg.norm(mean, axis=1) - 1) < GRAVITY_TOLERANCE_G)
            self.means[beds[still], :-1] = self.means[beds[still], 1:]
            self.means[beds[still], -1] = mean[still]
            self.still[beds] = np.where(still, np.minimum(self.still[beds] + 1, self.need), 0)
            for bed, i in zip(beds[self.still[beds] == self.need].tolist(), where[self.still[beds] == self.need],
                              strict=True):
                now = self._resolve(bed, self.means[bed].mean(axis=0))
                if now == "calibrated" and self.attach == "upright":
                    out = out if out is not values else values.copy()
                    out[i] = self.apply(values[i][None], self.rotation[bed][None])[0]
                events.append((int(i), now))
        return out, events

    def _resolve(self, row: int, gravity: np.ndarray) -> str:
        direction = gravity / np.linalg.norm(gravity)
        shown = np.round(direction, 3).tolist()
        if self.attach == "upright":
            self.rotation[row], self.calibrated[row] = rotation_onto(direction, self.up), True
            self.reason[row] = f"upright frame calibrated on gravity {shown}: alarms armed"
            return "calibrated"
        off = abs(90.0 - float(np.degrees(np.arccos(np.clip(np.dot(direction, self.up), -1, 1)))))
        if off <= LYING_TOLERANCE_DEG:
            self.rotation[row], self.calibrated[row] = np.eye(3), True
            self.reason[row] = (f"attached lying, gravity {shown} across the model's long axis ({off:.0f} deg from "
                                "perpendicular): the documented placement, frame as placed; alarms armed")
            return "calibrated"
        self.unresolved[row] = True
        self.reason[row] = (f"attached lying, gravity {shown} is {off:.0f} deg from perpendicular to the model's "
                            f"long axis (more than {LYING_TOLERANCE_DEG:g}): {_ELSEWHERE}")
        return "unresolved"

    def awaiting_lying(self, rows: np.ndarray) -> np.ndarray:
        """Attached lying and not yet decided: the model's p(LAYING) is what `confirm` will read."""
        if self.attach != "lying":
            return np.zeros(len(rows), bool)
        return ~self.calibrated[rows] & ~self.unresolved[rows]

    def see_lying(self, rows: np.ndarray, p_lying: np.ndarray) -> None:
        """The model's p(LAYING) at this step for beds awaiting a lying calibration (the still window's)."""
        self.lying_p[rows, :-1] = self.lying_p[rows, 1:]
        self.lying_p[rows, -1] = p_lying
        self.lying_count[rows] = np.minimum(self.lying_count[rows] + 1, self.window)

    def confirm(self, row: int) -> bool:
        """Attached lying, just calibrated as placed: keep it if the model saw the wearer lying (mean p(LAYING) over
        the still window, the sensor as placed), else the frame is unresolved for good (False)."""
        seen = self.lying_p[row, self.window - self.lying_count[row]:]
        p_lying = float(seen.mean()) if len(seen) else 0.0
        if self.attach != "lying" or p_lying >= LYING_MIN_P:
            return True
        self.calibrated[row], self.unresolved[row] = False, True
        self.reason[row] = (f"attached lying, but the model, fed the sensor as placed, does not see the wearer lying "
                            f"(mean p(LAYING) {p_lying:.2f} < {LYING_MIN_P:g}): {_ELSEWHERE}")
        return False

    def apply(self, signals: np.ndarray, rotations: np.ndarray) -> np.ndarray:
        """Rotate every sensor triplet of signals [k, C] by each row's rotation [k, 3, 3] (float64, then float32):
        element by element, so a bed's numbers do not depend on how many beds share the call."""
        out = np.array(signals, np.float32, copy=True)
        for group in self.groups:
            x = signals[:, group].astype(np.float64)
            for axis in range(3):
                r = rotations[:, axis]
                out[:, group[axis]] = r[:, 0] * x[:, 0] + r[:, 1] * x[:, 1] + r[:, 2] * x[:, 2]
        return out

    def state(self, row: int) -> dict:
        return {"buffer": self.buffer[row, :self.fill[row]].tolist(),
                "means": self.means[row, self.need - self.still[row]:].tolist(),
                "unresolved": bool(self.unresolved[row]), "reason": self.reason[row],
                "rotation": self.rotation[row].tolist() if self.calibrated[row] else None}

    def seen_lying(self, row: int) -> list[float]:
        return self.lying_p[row, self.window - self.lying_count[row]:].tolist()

    def load_state(self, row: int, state: dict, lying_p: list) -> None:
        self.clear(row)
        buffer = np.asarray(state.get("buffer", []), np.float64).reshape(-1, 3)[-self.block:]
        means = np.asarray(state.get("means", []), np.float64).reshape(-1, 3)[-self.need:]
        self.buffer[row, :len(buffer)], self.fill[row] = buffer, len(buffer)
        self.means[row, self.need - len(means):], self.still[row] = means, len(means)
        self.unresolved[row], self.reason[row] = bool(state.get("unresolved", False)), str(state.get("reason", ""))
        rotation = state.get("rotation")
        if rotation is not None:
            self.rotation[row], self.calibrated[row] = np.asarray(rotation, np.float64).reshape(3, 3), True
        seen = [float(p) for p in lying_p][-self.window:]
        self.lying_p[row, self.window - len(seen):], self.lying_count[row] = seen, len(seen)
