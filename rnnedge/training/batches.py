"""Batches for stateful truncated BPTT.

Recordings are packed end to end into `lanes` parallel streams, each recording padded to a whole number of
chunks so that every recording starts on a chunk boundary. The trainer carries each lane's state from one
chunk to the next (detached) and zeroes it exactly where a new recording starts: training sees the same
state regime as streaming inference, and no state leaks from one recording into the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rnnedge.data.recording import Normalization, Recording
from rnnedge.tasks import TASKS, tag_targets


@dataclass
class Chunk:
    x: np.ndarray  # [lanes, chunk, channels] normalized
    target: np.ndarray  # [lanes, chunk] class ids (tag) or [lanes, chunk, outputs] values (forecast)
    mask: np.ndarray  # [lanes, chunk] bool: real samples (not padding)
    reset: np.ndarray  # [lanes] bool: a new recording starts at this chunk


def vector_groups(channels: list[str]) -> list[list[int]]:
    """Channel triples that form one 3-axis sensor (names ending -x, -y, -z), e.g. acc and gyro."""
    return [[i, i + 1, i + 2] for i in range(len(channels) - 2)
            if [c[-2:] for c in channels[i: i + 3]] == ["-x", "-y", "-z"]]


def rotate(signals: np.ndarray, groups: list[list[int]], degrees: float) -> np.ndarray:
    """Rotate every 3-axis sensor by the same angle about its x axis (the body's long axis for a waist-worn
    device): the same movement seen with the device worn at another angle, or the person lying on a side."""
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    out = signals.copy()
    for _, y, z in groups:
        out[:, y] = cos * signals[:, y] - sin * signals[:, z]
        out[:, z] = sin * signals[:, y] + cos * signals[:, z]
    return out


def stretch(signals: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The recording played `factor` times as fast (linear interpolation), and for each new sample the old one it
    falls on (whose label and missing mark it takes): the same movements done faster or slower, as another wearer
    does them."""
    steps = max(2, round(len(signals) / factor))
    at = np.minimum(np.arange(steps) * factor, len(signals) - 1)
    out = np.stack([np.interp(at, np.arange(len(signals)), signals[:, c]) for c in range(signals.shape[1])], axis=1)
    return out.astype(signals.dtype), np.floor(at).astype(int)


def speed_factor(rng: np.random.Generator, speed: float) -> float:
    """A playing speed drawn log-uniformly from [1 / (1 + speed), 1 + speed]."""
    return float(np.exp(rng.uniform(-1, 1) * np.log1p(speed)))


def stateful_chunks(recordings: list[Recording], norm: Normalization, task: str, lanes: int, chunk_len: int,
                    rng: np.random.Generator, horizon: int = 1, rotate_deg: float = 0.0,
                    groups: list[list[int]] | None = None, carry_state: bool = False,
                    speed: float = 0.0, shift: float = 0.0) -> Iterator[Chunk]:
    """One epoch of chunks over all recordings, in a random packing (random order and start offset), each
    recording rotated by a random angle in [-rotate_deg, rotate_deg] when augmentation is on. `carry_state`:
    a lane's state is zeroed only where the lane starts, so it streams its recordings back to back."""
    spec = TASKS[task]
    order = rng.permutation(len(recordings))
    lanes = max(1, min(lanes, len(recordings)))
    lane_items: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(lanes)]
    lane_len = np.zeros(lanes, int)
    for i in order:
        rec = recordings[i]
        start = int(rng.integers(0, min(chunk_len, max(1, len(rec) // 4))))  # vary chunk boundaries
        signals, labels = rec.signals[start:], rec.labels[start:]
        missing = None if rec.missing is None else rec.missing[start:]
        if speed:
            signals, source = stretch(signals, speed_factor(rng, speed))
            labels, missing = labels[source], None if missing is None else missing[source]
        if rotate_deg and groups:
            signals = rotate(signals, groups, rng.uniform(-rotate_deg, rotate_deg))
        x = norm.apply(signals)
        if shift:
            x = x + rng.uniform(-shift, shift, (1, x.shape[1])).astype(x.dtype)
        target, valid = spec.targets(x, labels, horizon, missing)
        lane = int(np.argmin(lane_len))
        lane_items[lane].append((x, target, valid))
        lane_len[lane] += -(-len(x) // chunk_len) * chunk_len
    total = int(lane_len.max())
    channels = recordings[0].signals.shape[1]
    xs = np.zeros((lanes, total, channels), np.float32)
    targets = spec.no_targets((lanes, total), channels, horizon)
    mask = np.zeros((lanes, total), bool)
    resets = np.zeros((lanes, total // chunk_len), bool)
    for lane, items in enumerate(lane_items):
        pos = 0
        for x, target, valid in items:
            xs[lane, pos: pos + len(x)] = x
            targets[lane, pos: pos + len(x)] = target
            mask[lane, pos: pos + len(x)] = valid
            resets[lane, pos // chunk_len] = pos == 0 or not carry_state
            pos += -(-len(x) // chunk_len) * chunk_len
    for c in range(total // chunk_len):
        window = slice(c * chunk_len, (c + 1) * chunk_len)
        yield Chunk(xs[:, window], targets[:, window], mask[:, window], resets[:, c])


def series_batches(series: list[Recording], norm: Normalization, batch: int, rng: np.random.Generator,
                   equal_lengths: bool, speed: float = 0.0,
                   jitter: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Classify: every series once, in random batches: x [batch, time, channels] normalized, class ids [batch] and
    each series' length [batch]. A one-way model's output at a series' last step does not depend on what follows,
    so series of any lengths share a batch, padded at the end (a set of 105 lengths among 428 series trained on
    batches of one or two before); `equal_lengths` (a bidirectional model, whose backward direction must see only
    the series) groups series of one length instead. Augmentation, drawn afresh each epoch: each series played up
    to (1 + `speed`) times faster or slower (`stretch`), and Gaussian noise of std `jitter` (normalized units)
    added to every sample."""
    samples = [(augmented(rec.signals, norm, rng, speed, jitter), int(rec.labels[-1])) for rec in series]
    groups: dict[int, list[int]] = {}
    for index, (x, _) in enumerate(samples):
        groups.setdefault(len(x) if equal_lengths else 0, []).append(index)
    batches = []
    for group in groups.values():
        order = rng.permutation(group)
        batches += [order[start: start + batch] for start in range(0, len(order), batch)]
    for index in rng.permutation(len(batches)):
        members = [samples[i] for i in batches[index]]
        lengths = np.array([len(x) for x, _ in members])
        x = np.zeros((len(members), lengths.max(), members[0][0].shape[1]), np.float32)
        for row, (signals, _) in enumerate(members):
            x[row, : len(signals)] = signals
        yield x, tag_targets(np.array([label for _, label in members])), lengths


def augmented(signals: np.ndarray, norm: Normalization, rng: np.random.Generator, speed: float,
              jitter: float) -> np.ndarray:
    """One series normalized, stretched in time by a log-uniform factor in [1 / (1 + speed), 1 + speed] and with
    noise of std `jitter` added (either 0: not done)."""
    if speed:
        signals, _ = stretch(signals, speed_factor(rng, speed))
    x = norm.apply(signals)
    if jitter:
        x = x + rng.normal(0.0, jitter, x.shape).astype(x.dtype)
    return x
