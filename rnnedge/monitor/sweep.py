"""`evaluate-alarms --sweep`: the test subjects as if the sensor were worn in other orientations or ran at other
sample rates, scored with the operating point chosen on the (unrotated, model-rate) validation subjects.

Orientations: the 24 axis-aligned ones (every signed permutation with determinant +1: the sensor turned in steps
of 90 degrees) and N random 3D rotations (uniform, seeded). A rotation R turns both sensor triplets (acc-*,
gyro-*): x' = R x; gravity and the motion rotate with it, as for a sensor clipped on at another angle.
Rates: each recording resampled to the sensor rate (linear interpolation at the new sample times: a 25 Hz sensor
sees every other sample, a 100 Hz one the interpolated signal), then brought back to the model's rate the way the
monitor does it (sources.Resampler + Cadence, row by row, from timestamps).
Lead time: from the alarm that detected a get-up to the end of its labelled transition, and to the person being
on their feet (the first STANDING or walking label within ON_FEET_S after the onset); positive = the alarm came
first.
"""

from __future__ import annotations

import itertools

import numpy as np

from rnnedge.monitor.sources import LATE, MISSING, Cadence, Resampler, Row

ON_FEET_LABELS = ("STANDING", "WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS")
ON_FEET_S = 60.0


def axis_rotations() -> list[tuple[str, np.ndarray]]:
    """The 24 proper rotations that map axes onto axes, named by where the sensor's x, y, z end up."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            r = np.zeros((3, 3))
            for i, (p, s) in enumerate(zip(perm, signs, strict=True)):
                r[p, i] = s
            if np.linalg.det(r) > 0:
                name = ",".join(f"{'+' if s > 0 else '-'}{'xyz'[p]}" for p, s in zip(perm, signs, strict=True))
                out.append((f"axes {name}", r))
    return out


def random_rotations(n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """n rotations uniform on SO(3) (QR of a Gaussian matrix, signs fixed), reproducible from the seed."""
    rng, out = np.random.default_rng(seed), []
    for i in range(n):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        out.append((f"random {seed}:{i}", q))
    return out


def triplets(channels: list[str]) -> list[list[int]]:
    """Column indices of each (x, y, z) sensor triplet: acc-x/y/z, gyro-x/y/z."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(channels):
        head, _, axis = c.lower().rpartition("-")
        if axis in ("x", "y", "z"):
            groups.setdefault(head, [-1, -1, -1])["xyz".index(axis)] = i
    return [g for g in groups.values() if min(g) >= 0]


def rotate(signals: np.ndarray, rotation: np.ndarray, channels: list[str]) -> np.ndarray:
    return rotate_groups(signals, rotation, [np.asarray(g, np.intp) for g in triplets(channels)])


def rotate_groups(signals: np.ndarray, rotation: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """signals [T, C] with each triplet's columns (index arrays) turned by `rotation` (in float64)."""
    out = np.array(signals, np.float32, copy=True)
    for group in groups:
        out[:, group] = (signals[:, group].astype(np.float64) @ rotation.T).astype(np.float32)
    return out


def at_rate(signals: np.ndarray, model_rate: float, sensor_rate: float, max_gap_s: float = 2.0) -> np.ndarray:
    """What the monitor feeds the model when the recording comes from a sensor at `sensor_rate`."""
    t = np.arange(len(signals)) / model_rate
    ts = np.arange(0, t[-1], 1 / sensor_rate)
    xs = np.stack([np.interp(ts, t, signals[:, c]) for c in range(signals.shape[1])], axis=1).astype(np.float32)
    cadence, resampler, fed = Cadence(model_rate, max_gap_s), Resampler(model_rate, max_gap_s), []
    for ti, x in zip(ts.tolist(), xs, strict=True):
        for row in resampler.feed(Row(ti, x), cadence):
            kind, offset = cadence.place(row.t)
            if kind == LATE:
                continue
            if kind == MISSING:  # held, as the runtime does
                fed += [fed[-1]] * offset
            fed.append(row.values)
            cadence.last += 1 + offset
    return np.asarray(fed, np.float32)


def on_feet(labels: np.ndarray, label_names: list[str], onset: int, rate: float) -> int | None:
    """The first step after `onset` labelled standing or walking (within ON_FEET_S), or None."""
    codes = [label_names.index(n) for n in ON_FEET_LABELS]
    window = labels[onset: onset + round(ON_FEET_S * rate)]
    hits = np.flatnonzero(np.isin(window, codes))
    return onset + int(hits[0]) if len(hits) else None
