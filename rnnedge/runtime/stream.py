"""One stream: a sensor feed with its own hidden state, advanced a sample or a chunk at a time.

The state lives in two pre-bound buffers that alternate: each call reads one and writes the other, so
carrying the state from call to call copies nothing. Buffers are per time length; a chunk is split into the
lengths the backend runs (ONNX Runtime: any, pieces of at most MAX_PIECE; LiteRT: the file lengths, largest
first, then single steps), which gives the same outputs as stepping because the state carries across pieces.

After each call the new state is checked (rnnedge.runtime.health) before the stream adopts it: a bad one is
dropped (the other buffer still holds the previous state) and the step is handled by the input policy, as if
its sample were bad. A call that raises (a bad input under "raise", KeyboardInterrupt) leaves the stream as
it was before it: state, step count and last good sample stay consistent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnnedge.errors import BundleError, InputError, SnapshotError
from rnnedge.runtime.inputs import as_samples, check_policy, hold
from rnnedge.runtime.snapshot import Snapshot, load_snapshot, save_snapshot

if TYPE_CHECKING:
    from rnnedge.runtime.model import Model

MAX_PIECE = 256  # ONNX Runtime: longer pieces gain nothing per step and cost buffer memory
MAX_BUFFERED_LENGTHS = 8  # time lengths whose buffers a stream keeps (beyond single steps)


class Stream:
    """Create with `model.stream()`. Not for concurrent use from several threads (use a Pool for that)."""

    def __init__(self, model: Model, resume: str | Path | Snapshot | None = None, nan_policy: str = "raise") -> None:
        self.model = model
        self.nan_policy = check_policy(nan_policy)
        self._sample_shape = (model.channels,)
        self._chunk_shape = (None, model.channels)
        self._states = np.zeros((2, 1, model.state_size), np.float32)
        self._current = 0  # which of the two state buffers holds the state
        self._pieces = {}  # time length -> (x [1, T, C], y [1, T, O], (call A->B, call B->A))
        self._x, self._y, self._step_calls = self._buffers(1)
        self._sample, self._output = self._x[0, 0], self._y[0, 0]  # x also keeps the last good sample
        self._previous = np.zeros_like(self._sample)  # the last good sample before this step's
        self._state_ok = tuple(model.state_check.bind(self._states[i, 0]) for i in (0, 1))
        self.reset()
        if isinstance(resume, Snapshot):
            self.restore(resume)
        elif resume is not None:
            self.restore(load_snapshot(resume, model.sha256, model.state_size, model.channels), str(resume))

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
        inputs = self.model.inputs
        self._previous[...] = self._sample
        if inputs.ok(sample):
            self._sample[...] = sample
            held = False
        elif self.nan_policy == "raise":
            raise inputs.error("Stream.step", sample)
        else:
            good = ~inputs.bad(sample)
            self._sample[good] = sample[good]
            held = True
        held |= self._advance("Stream.step")
        self.last_held = _HELD if held else _CLEAN
        return self._output.copy()

    def _advance(self, what: str) -> bool:
        """One step on the sample in self._sample (self._previous: the one before). If the new state is bad,
        "raise" raises InputError and "hold" re-runs the step on the previous sample. Returns: held?"""
        current = self._current
        self._step_calls[current]()
        held = False
        if not self._state_ok[current ^ 1]():
            bad = self._sample.copy()
            self._sample[...] = self._previous
            if self.nan_policy == "raise":
                raise InputError(f"{what}: sample {np.array2string(bad, precision=3, threshold=8)} drove the "
                                 "state non-finite or out of range; the stream keeps its state (nan_policy='raise'; "
                                 "use nan_policy='hold' to repeat the last good sample)")
            self._step_calls[current]()
            if not self._state_ok[current ^ 1]():
                raise BundleError(f"{self.model.bundle}: the model gives a non-finite or out-of-range state on a "
                                  "good sample; the model file or its backend is faulty")
            held = True
        self._current, self.steps = current ^ 1, self.steps + 1  # one statement: an interrupt cannot split it
        return held

    def feed(self, chunk) -> np.ndarray:
        """chunk (T, channels) in raw units, any T -> outputs (T, outputs) float32."""
        chunk = as_samples(chunk, self._chunk_shape, "Stream.feed")
        inputs = self.model.inputs
        held = np.zeros(len(chunk), bool)
        if not inputs.ok(chunk):
            if self.nan_policy == "raise":
                raise inputs.error("Stream.feed", chunk)
            chunk = chunk.copy()
            held = hold(chunk, self._sample, inputs.bad(chunk))
        out = np.empty((len(chunk), self.model.outputs), np.float32)
        before = self.state, self._sample.copy(), self.steps
        try:
            start = 0
            for time_len in self._split(len(chunk)):
                x, y, calls = self._buffers(time_len)
                self._previous[...] = self._sample
                x[0] = chunk[start:start + time_len]
                current = self._current
                calls[current]()
                if self._state_ok[current ^ 1]():
                    out[start:start + time_len] = y[0]
                    self._sample[...] = x[0, -1]
                    self._current, self.steps = current ^ 1, self.steps + time_len
                else:  # some step of this piece went bad: replay it step by step to find which, from its start
                    self._sample[...] = self._previous
                    for t in range(start, start + time_len):
                        self._previous[...] = self._sample
                        self._sample[...] = chunk[t]
                        held[t] |= self._advance(f"Stream.feed (step {t})")
                        out[t] = self._output
                start += time_len
        except BaseException:
            self._states[self._current, 0], self._sample[...], self.steps = before
            raise
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
        self.last_held = _CLEAN  # per step of the last call: True where a bad value or a bad state was held

    @property
    def state(self) -> np.ndarray:
        """A copy of the hidden state [state_size] (layout: rnnedge.bundle.StateSpec)."""
        return self._states[self._current, 0].copy()

    def snapshot(self) -> Snapshot:
        """The state, last good sample and step count, in memory (a copy): restore() goes back to it;
        rnnedge.runtime.snapshot.encode_snapshot makes it bytes bound to this model."""
        return Snapshot(self.state, self._sample.copy(), self.steps)

    def restore(self, snapshot: Snapshot, where: str = "snapshot") -> None:
        """Back to a snapshot of this model's streams (snapshot() / a decoded file). SnapshotError (the stream
        then starts afresh) for a state of another shape, non-finite or out of this model's range."""
        state, last_good = np.asarray(snapshot.state), np.asarray(snapshot.last_good)
        if state.shape != (self.model.state_size,) or last_good.shape != self._sample.shape:
            self.reset()
            raise SnapshotError(f"{where}: a state of shape {state.shape} and a sample of {last_good.shape}; this "
                                f"model has ({self.model.state_size},) and {self._sample.shape}")
        self._states[self._current, 0] = state
        if not (np.isfinite(last_good).all() and self._state_ok[self._current]()):
            self.reset()
            raise SnapshotError(f"{where}: the snapshot's state is out of range for this model; refusing it")
        self._sample[...] = last_good
        self.steps = int(snapshot.steps)

    def save(self, path: str | Path) -> Path:
        """Write the state atomically, bound to this model file (resume with model.stream(resume=path)).
        SnapshotError (with the path) if it cannot be written."""
        return save_snapshot(path, self.model.sha256, Snapshot(self.state, self._sample.copy(), self.steps))


_CLEAN, _HELD = np.zeros(1, bool), np.ones(1, bool)
_CLEAN.flags.writeable = _HELD.flags.writeable = False
