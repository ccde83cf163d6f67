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
  in the documented placement (the training data's: its long axis along the body's, `up`). Then gravity at attach lies
  across `up` (within LYING_TOLERANCE_DEG of perpendicular, on the back or either side), the frame is the sensor's own
  (no rotation), and if the model itself, fed the sensor as placed, said LAYING over those seconds (mean p >=
  LYING_MIN_P: `confirm`), the frame is taken as placed, *provisionally*. Lying, gravity cannot tell the documented
  placement from a sensor turned about the body's front-back axis (upside down along the body, or across it): every
  lying posture puts gravity across the long axis whichever way it points. So until the wearer is seen upright, an
  alarm needs what only the documented placement shows at a get-up: the sensor's long axis rising (the acceleration
  along `up`, smoothed over LEVEL_S, at least RISE_G above its level while lying still; the lying level follows the
  bed's head raised or lowered), and rising along itself rather than sideways (the rise across both `up` and the lying
  gravity at most tan(ACROSS_DEG) of the rise along `up`). A sensor turned the other way sees its long axis fall or
  stay level as the wearer sits up, and raises nothing; one turned by an angle about the lying gravity sees its long
  axis rise and its lateral axis rise in the ratio of that angle's tangent. The frame is confirmed (`confirmed` event,
  alarms ungated) after CALIBRATION_S still with gravity within UPRIGHT_DEG of `up`; still with gravity pointing down
  the long axis (more than LYING_TOLERANCE_DEG below perpendicular, which no lying or upright wearer shows in the
  documented placement) it is wrong: unresolved. In any other placement the wearer's long axis cannot be known from
  gravity while they lie (turning over and sitting up change it alike), so the frame is unresolved: an `unresolved`
  event says so, and no alarm is raised from it. Walking settles any of these: GAIT_BLOCKS blocks in a row whose |a|
  repeats like steps (`_walking`) put gravity along the wearer's long axis, which confirms the frame as placed or
  calibrates it as an upright attach would ("walking"; or re-attach in the documented placement, or while the wearer
  sits up with attach "upright")."""

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
RISE_G = 0.25  # provisional frame: an alarm needs the acceleration along `up` this far above the lying level (~15 deg)
LEVEL_S = 0.2  # provisional frame: time constant of the smoothed acceleration along `up`
ACROSS_DEG = 35.0  # provisional frame: ... rising no further sideways than this (validation: 30 and 20 lost get-ups)
UPRIGHT_DEG = 30.0  # provisional frame: confirmed when still with gravity this close to `up`
GAIT_WINDOW_S = 3.0  # walking: |a| over this long repeats itself (steps) ...
GAIT_LAGS_S = (0.35, 1.2)  # ... with its strongest period in this range (a step or a stride, not a tremor) ...
GAIT_MIN_R = 0.5  # ... this strongly (autocorrelation) ...
GAIT_MIN_STD_G = 0.1  # ... and moves this much
GAIT_BLOCKS = 3  # consecutive walking blocks that resolve an attached-lying frame (their mean is gravity upright)


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
_ELSEWHERE = ("not the documented placement, and lying the frame cannot be known; no alarms from this sensor until "
              "the wearer walks (the frame is then taken from gravity while walking): re-attach it in the documented "
              "placement, or while the wearer sits up (--attach upright)")


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
        self.unresolved = np.zeros(n, bool)  # attached lying outside the documented placement: only a walk resolves it
        self.provisional = np.zeros(n, bool)  # attached lying, taken as placed until the wearer is seen upright
        self.level = np.zeros((n, 3))  # provisional: smoothed acceleration (g)
        self.lying_level = np.zeros((n, 3))  # provisional: gravity while last lying still (g)
        self.smoothing = 1.0 - float(np.exp(-1.0 / (LEVEL_S * sample_rate_hz)))
        self.lags = np.arange(max(1, round(0.1 * sample_rate_hz)), round(GAIT_LAGS_S[1] * sample_rate_hz) + 1)
        self.magnitude = np.zeros((n, self.block * max(1, round(GAIT_WINDOW_S / BLOCK_S))))  # |a|, newest last
        self.seen = np.zeros(n, np.int64)  # samples in `magnitude`
        self.gait = np.zeros(n, np.int64)  # consecutive walking blocks
        self.moving = np.zeros((n, GAIT_BLOCKS, 3))  # their mean acceleration (newest last)
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
        for array in (self.rotation, self.calibrated, self.unresolved, self.provisional, self.level,
                      self.lying_level, self.fill, self.still, self.lying_count, self.seen, self.gait):
            array[row] = 0
        self.reason[row] = ""

    def move(self, src: int, dst: int) -> None:
        for array in (self.rotation, self.calibrated, self.unresolved, self.provisional, self.level,
                      self.lying_level, self.buffer, self.fill, self.means, self.still, self.lying_p,
                      self.lying_count, self.magnitude, self.seen, self.gait, self.moving):
            array[dst] = array[src]
        self.reason[dst] = self.reason[src]

    def step(self, rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Raw samples [k, channels] of beds `rows` -> (the samples in the model's frame, [(position, "calibrated",
        "confirmed", "unresolved" or "walking")] for beds where that happened at this sample)."""
        done = self.calibrated[rows]
        out = values
        if done.any():
            out = values.copy()
            out[done] = self.apply(values[done], self.rotation[rows[done]])
        # every frame not yet settled: waiting, provisional, or (attached lying only) unresolved until a walk
        watched = (~done | self.provisional[rows]).nonzero()[0]
        if not len(watched):
            return out, []
        acc = values[watched][:, self.acc].astype(np.float64)
        use = np.isfinite(acc).all(axis=1)
        at, acc = rows[watched[use]], acc[use]
        self.level[at] += self.smoothing * (acc - self.level[at]) * self.provisional[at][:, None]
        self.buffer[at, self.fill[at]] = acc
        self.fill[at] += 1
        full = self.fill[at] >= self.block
        events: list[tuple[int, str]] = []
        if not full.any():
            return out, events
        beds, where = at[full], watched[use][full]
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
        walked = self._walking(beds, block, mean) if self.attach == "lying" else np.zeros(len(beds), bool)
        for bed, i, walk in zip(beds.tolist(), where.tolist(), walked.tolist(), strict=True):
            if walk:
                now = self._walked(bed)
            elif self.still[bed] == self.need and not self.unresolved[bed]:
                gravity = self.means[bed].mean(axis=0)
                now = self._check(bed, gravity) if self.provisional[bed] else self._resolve(bed, gravity)
            else:
                continue
            if now == "walking" or (now == "calibrated" and self.attach == "upright"):
                out = out if out is not values else values.copy()
                out[i] = self.apply(values[i][None], self.rotation[bed][None])[0]
            if now:
                events.append((i, now))
        return out, events

    def _walking(self, beds: np.ndarray, block: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """Each bed's latest GAIT_WINDOW_S of |a| (this block appended) repeats like steps: GAIT_BLOCKS such blocks
        in a row resolve the frame (measured on HAPT's training subjects, 3 s windows: 91 % of walking windows,
        none lying, sitting or standing)."""
        size = self.block
        self.magnitude[beds, :-size] = self.magnitude[beds, size:]
        self.magnitude[beds, -size:] = np.linalg.norm(block, axis=2)
        self.seen[beds] = np.minimum(self.seen[beds] + size, self.magnitude.shape[1])
        self.moving[beds, :-1] = self.moving[beds, 1:]
        self.moving[beds, -1] = mean
        x = self.magnitude[beds] - self.magnitude[beds].mean(axis=1, keepdims=True)
        n, energy = x.shape[1], (x * x).sum(axis=1)
        r = np.stack([(x[:, :-k] * x[:, k:]).sum(axis=1) * n / (n - k) for k in self.lags], axis=1)
        r /= np.maximum(energy, 1e-12)[:, None]
        period = self.lags[np.argmax(r, axis=1)] / self.block * BLOCK_S
        walking = (self.seen[beds] == n) & (np.sqrt(energy / n) >= GAIT_MIN_STD_G) & (r.max(axis=1) >= GAIT_MIN_R) \
            & (period >= GAIT_LAGS_S[0])
        self.gait[beds] = np.where(walking, np.minimum(self.gait[beds] + 1, GAIT_BLOCKS), 0)
        return self.gait[beds] == GAIT_BLOCKS

    def _walked(self, row: int) -> str:
        """Attached lying, a frame not yet resolved, and the wearer walks: their mean acceleration over the walking
        blocks is gravity, along their long axis: the frame as placed is confirmed if it points along `up`, else
        it is calibrated on it as an upright attach would be ("walking": the model starts afresh)."""
        gravity = self.moving[row].mean(axis=0)
        direction = gravity / np.linalg.norm(gravity)
        shown = np.round(direction, 3).tolist()
        if self.provisional[row] and float(np.dot(direction, self.up)) >= np.cos(np.radians(UPRIGHT_DEG)):
            return self._confirmed(row, "walking", shown)
        self.rotation[row] = rotation_onto(direction, self.up)
        self.calibrated[row], self.provisional[row], self.unresolved[row] = True, False, False
        self.reason[row] = (f"attached lying, the frame resolved when the wearer walked: gravity {shown} taken as "
                            "upright (as an upright attach); alarms armed")
        return "walking"

    def _check(self, row: int, gravity: np.ndarray) -> str:
        """A provisional frame, still for CALIBRATION_S: confirm it (upright along `up`), follow the lying level
        (the bed's head raised or lowered), or find it wrong (the long axis pointing down)."""
        direction = gravity / np.linalg.norm(gravity)
        along, shown = float(np.dot(direction, self.up)), np.round(direction, 3).tolist()
        if along >= np.cos(np.radians(UPRIGHT_DEG)):
            return self._confirmed(row, "upright", shown)
        if along < -np.sin(np.radians(LYING_TOLERANCE_DEG)):
            self.provisional[row], self.calibrated[row], self.unresolved[row] = False, False, True
            self.reason[row] = (f"still with gravity {shown}: the sensor's long axis points down, so it was not "
                                f"put on in the documented placement; {_ELSEWHERE}")
            return "unresolved"
        if abs(along) <= np.sin(np.radians(LYING_TOLERANCE_DEG)):
            self.lying_level[row] = direction
        return ""

    def _confirmed(self, row: int, seen: str, shown: list[float]) -> str:
        self.provisional[row] = False
        self.reason[row] = (f"wearer {seen}, gravity {shown} within {UPRIGHT_DEG:g} deg of the model's long axis: "
                            "the documented placement confirmed, alarms no longer need the long axis rising")
        return "confirmed"

    def gated(self, rows: np.ndarray) -> np.ndarray:
        """Beds whose alarm waits: a provisional frame (attached lying, not yet seen upright) whose acceleration has
        not risen RISE_G along `up` above its lying level, or has moved more than ACROSS_DEG toward the axis across
        both (a sensor turned about the lying wearer's gravity sees a sit-up there)."""
        rise = self.level[rows] - self.lying_level[rows]
        along = rise @ self.up
        across = np.cross(self.up, self.lying_level[rows])
        across /= np.maximum(np.linalg.norm(across, axis=1, keepdims=True), 1e-12)
        sideways = np.abs((rise * across).sum(axis=1))
        return self.provisional[rows] & ((along < RISE_G) | (sideways > np.tan(np.radians(ACROSS_DEG)) * along))

    def _resolve(self, row: int, gravity: np.ndarray) -> str:
        direction = gravity / np.linalg.norm(gravity)
        shown = np.round(direction, 3).tolist()
        if self.attach == "upright":
            self.rotation[row], self.calibrated[row] = rotation_onto(direction, self.up), True
            self.reason[row] = f"upright frame calibrated on gravity {shown}: alarms armed"
            return "calibrated"
        off = abs(90.0 - float(np.degrees(np.arccos(np.clip(np.dot(direction, self.up), -1, 1)))))
        if off <= LYING_TOLERANCE_DEG:
            self.rotation[row], self.calibrated[row], self.provisional[row] = np.eye(3), True, True
            self.level[row] = self.lying_level[row] = direction
            self.reason[row] = (f"attached lying, gravity {shown} across the model's long axis ({off:.0f} deg from "
                                "perpendicular): taken as the documented placement, frame as placed; alarms armed, "
                                "each needing the long axis to rise (a sit-up) until the wearer is seen upright")
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
        self.calibrated[row], self.unresolved[row], self.provisional[row] = False, True, False
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
                "provisional": bool(self.provisional[row]), "level": self.level[row].tolist(),
                "lying_level": self.lying_level[row].tolist(),
                "magnitude": self.magnitude[row, self.magnitude.shape[1] - self.seen[row]:].tolist(),
                "gait": int(self.gait[row]), "moving": self.moving[row].tolist(),
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
        self.provisional[row] = bool(state.get("provisional", False))
        self.level[row] = np.asarray(state.get("level", np.zeros(3)), np.float64).reshape(3)
        self.lying_level[row] = np.asarray(state.get("lying_level", np.zeros(3)), np.float64).reshape(3)
        magnitude = np.asarray(state.get("magnitude", []), np.float64)[-self.magnitude.shape[1]:]
        self.magnitude[row, self.magnitude.shape[1] - len(magnitude):], self.seen[row] = magnitude, len(magnitude)
        self.gait[row] = int(state.get("gait", 0))
        self.moving[row] = np.asarray(state.get("moving", np.zeros((GAIT_BLOCKS, 3))), np.float64).reshape(-1, 3)
        rotation = state.get("rotation")
        if rotation is not None:
            self.rotation[row], self.calibrated[row] = np.asarray(rotation, np.float64).reshape(3, 3), True
        seen = [float(p) for p in lying_p][-self.window:]
        self.lying_p[row, self.window - len(seen):], self.lying_count[row] = seen, len(seen)
