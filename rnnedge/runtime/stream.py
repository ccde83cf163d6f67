"""One stream: a sensor feed with its own hidden state, advanced a sample or a chunk at a time.

The state lives in two pre-bound buffers that alternate: each call reads one and writes the other, so
carrying the state from call to call copies nothing. Buffers are per time length; a chunk is split into the
lengths the backend runs (ONNX Runtime: any, pieces of at most MAX_PIECE; LiteRT: the file lengths, largest
first, then single steps), which gives the same outputs as stepping because the state carries across pieces.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnnedge.runtime.inputs import all_finite, as_samples, check_policy, hold, non_finite_error
from rnnedge.runtime.snapshot import Snapshot, load_snapshot, save_snapshot

if TYPE_CHECKING:
    from rnnedge.runtime.model import Model

MAX_PIECE = 256  # ONNX Runtime: longer pieces gain nothing per step and cost buffer memory
MAX_BUFFERED_LENGTHS = 8  # time lengths whose buffers a stream keeps (beyond single steps)


class Stream:
    """Create with `model.stream()`. Not for concurrent use from several threads (use a Pool for that)."""

    def __init__(self, model: Model, resume: str | Path | None = None, nan_policy: str = "raise") -> None:
        self.model = model
        self.nan_policy = check_policy(nan_policy)
        self._sample_shape = (model.channels,)
        self._chunk_shape = (None, model.channels)
        self._states = np.zeros((2, 1, model.state_size), np.float32)
        self._current = 0  # which of the two state buffers holds the state
        self._pieces = {}  # time length -> (x [1, T, C], y [1, T, O], (call A->B, call B->A))
        self._x, self._y, self._step_calls = self._buffers(1)
        self._sample, self._output = self._x[0, 0], self._y[0, 0]  # x also keeps the last good sample
        self.reset()
        if resume is not None:
            snapshot = load_snapshot(resume, model.sha256, model.state_size, model.channels)
            self._states[self._current, 0] = snapshot.state
            self._sample[...] = snapshot.last_good
            self.steps = snapshot.steps

    def _buffers(self, time_len: int):
        if time_len not in self._pieces:
            if len(self._pieces) > MAX_BUFFERED_LENGTHS:
                self._pieces = {1: self._pieces[1]}
            x = np.zeros((1, time_len, self.model.channels), np.float32)
            y = np.zeros((1, time_len, self.model.outputs), np.float32)
            (a, b), bind = self._states, self.model.engine.bind
            self._pieces[time_len] = (x, y, (bind(x, a, y, b), bind(x, b, y, a)))
        return self._pieces[time_len]

    def step(self, sample) -> np.ndarray:
        """sample (channels,) in raw units -> outputs (outputs,) float32."""
        sample = as_samples(sample, self._sample_shape, "Stream.step")
        if all_finite(sample):
            self._sample[...] = sample
            self.last_held = _CLEAN
        elif self.nan_policy == "raise":
            raise non_finite_error("Stream.step", sample)
        else:
            good = np.isfinite(sample)
            self._sample[good] = sample[good]
            self.last_held = _HELD
        self._step_calls[self._current]()
        self._current ^= 1
        self.steps += 1
        return self._output.copy()

    def feed(self, chunk) -> np.ndarray:
        """chunk (T, channels) in raw units, any T -> outputs (T, outputs) float32."""
        chunk = as_samples(chunk, self._chunk_shape, "Stream.feed")
        held = np.zeros(len(chunk), bool)
        if not all_finite(chunk):
            if self.nan_policy == "raise":
                raise non_finite_error("Stream.feed", chunk)
            chunk = chunk.copy()
            held = hold(chunk, self._sample)
        out = np.empty((len(chunk), self.model.outputs), np.float32)
        start = 0
        for time_len in self._split(len(chunk)):
            x, y, calls = self._buffers(time_len)
            x[0] = chunk[start:start + time_len]
            calls[self._current]()
            self._current ^= 1
            out[start:start + time_len] = y[0]
            start += time_len
        if len(chunk):
            self._sample[...] = chunk[-1]
        self.steps += len(chunk)
        self.last_held = held
        return out

    def _split(self, n: int) -> list[int]:
        lengths = self.model.engine.chunk_lens or (MAX_PIECE,)
        pieces = []
        for time_len in sorted(lengths, reverse=True):
            pieces += [time_len] * ((n - sum(pieces)) // time_len)
        rest = n - sum(pieces)
        return pieces + [rest] if rest else pieces  # only any-length backends leave a rest

    def reset(self) -> None:
        """Back to the initial state, as if new."""
        self._states[...] = 0.0
        self._sample[...] = self.model.mean
        self.steps = 0  # time steps since the start (or since the snapshot's stream started)
        self.last_held = _CLEAN  # per step of the last call: True where a non-finite value was held

    @property
    def state(self) -> np.ndarray:
        """A copy of the hidden state [state_size] (layout: rnnedge.bundle.StateSpec)."""
        return self._states[self._current, 0].copy()

    def save(self, path: str | Path) -> Path:
        """Write the state atomically, bound to this model file (resume with model.stream(resume=path))."""
        return save_snapshot(path, self.model.sha256, Snapshot(self.state, self._sample.copy(), self.steps))


_CLEAN, _HELD = np.zeros(1, bool), np.ones(1, bool)
_CLEAN.flags.writeable = _HELD.flags.writeable = False
