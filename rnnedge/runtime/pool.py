"""A pool: many independent streams (say, one per bed sensor) advanced together, one backend call per tick.

Each stream owns one row of the pool's buffers; rows stay packed (removing a stream moves the last row into
its place), so a tick that advances every stream runs on the buffers where they lie. A tick that advances
only some gathers their rows into a scratch batch and scatters the new states back: never more rows than
were asked for, and no other stream's state is touched. Every public method takes the pool's lock: any
number of threads may add, remove, step, or `submit` samples that a consumer thread turns into ticks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from rnnedge.runtime.inputs import all_finite, as_samples, check_policy, non_finite_error

if TYPE_CHECKING:
    from rnnedge.runtime.model import Model

MAX_BOUND_SIZES = 16  # batch sizes whose bindings the pool keeps


class Pool:
    def __init__(self, model: Model, capacity: int = 1024, nan_policy: str = "raise") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.model, self.capacity, self.nan_policy = model, capacity, check_policy(nan_policy)
        c, o, s = model.channels, model.outputs, model.state_size
        self._x = np.zeros((capacity, 1, c), np.float32)  # each row also keeps its last good sample
        self._y = np.zeros((capacity, 1, o), np.float32)
        self._states = np.zeros((2, capacity, s), np.float32)  # alternating, as in Stream
        self._current = 0
        self._scratch = (np.zeros_like(self._x), np.zeros_like(self._y), np.zeros_like(self._states))
        self._calls = {}  # (kind, batch size) -> bound calls
        self._rows: dict[Hashable, int] = {}
        self._ids: list[Hashable] = []
        self._pending: dict[Hashable, deque] = {}
        self._lock = threading.RLock()
        self.last_held: list[Hashable] = []  # ids whose sample had a non-finite value held, last tick

    # -- membership ----------------------------------------------------------------------------------------
    def add(self, stream_id: Hashable) -> None:
        with self._lock:
            if stream_id in self._rows:
                raise ValueError(f"stream {stream_id!r} is already in the pool")
            if len(self._ids) == self.capacity:
                raise ValueError(f"pool is full (capacity {self.capacity})")
            self._rows[stream_id] = len(self._ids)
            self._ids.append(stream_id)
            self._clear(self._rows[stream_id])

    def remove(self, stream_id: Hashable) -> None:
        with self._lock:
            row, last = self._row(stream_id), len(self._ids) - 1
            moved = self._ids[last]
            self._x[row] = self._x[last]
            self._states[self._current, row] = self._states[self._current, last]
            self._ids[row], self._rows[moved] = moved, row
            del self._rows[stream_id], self._ids[last]
            self._pending.pop(stream_id, None)

    def reset(self, stream_id: Hashable) -> None:
        with self._lock:
            self._clear(self._row(stream_id))

    @property
    def ids(self) -> list[Hashable]:
        """Stream ids in row order: the order of `step_array`'s rows (changed only by `remove`)."""
        with self._lock:
            return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, stream_id: Hashable) -> bool:
        return stream_id in self._rows

    def state(self, stream_id: Hashable) -> np.ndarray:
        with self._lock:
            return self._states[self._current, self._row(stream_id)].copy()

    # -- ticks ---------------------------------------------------------------------------------------------
    def step(self, samples: dict[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        """Advance the given streams one step: {id: sample (channels,)} -> {id: outputs (outputs,)}."""
        ids = list(samples)
        batch = np.empty((len(ids), self.model.channels), np.float32)
        for i, (stream_id, sample) in enumerate(samples.items()):
            batch[i] = as_samples(sample, (self.model.channels,), f"Pool.step[{stream_id!r}]")
        with self._lock:
            rows = np.fromiter((self._row(i) for i in ids), np.intp, len(ids))
            return dict(zip(ids, self._advance(rows, batch), strict=True))

    def step_array(self, batch: np.ndarray) -> np.ndarray:
        """The fast path: advance every stream, rows in `ids` order: (len, channels) -> (len, outputs)."""
        with self._lock:
            batch = as_samples(batch, (len(self._ids), self.model.channels), "Pool.step_array")
            return self._advance(None, batch)

    def submit(self, stream_id: Hashable, sample) -> None:
        """Queue one sample for the next `tick` (safe from any thread; errors surface here)."""
        sample = as_samples(sample, (self.model.channels,), f"Pool.submit[{stream_id!r}]")
        if self.nan_policy == "raise" and not all_finite(sample):
            raise non_finite_error(f"Pool.submit[{stream_id!r}]", sample)
        with self._lock:
            self._row(stream_id)
            self._pending.setdefault(stream_id, deque()).append(sample)

    def tick(self) -> dict[Hashable, np.ndarray]:
        """One step for every stream with a queued sample (its oldest), in one backend call."""
        with self._lock:
            ready = {stream_id: queue.popleft() for stream_id, queue in self._pending.items()}
            self._pending = {stream_id: queue for stream_id, queue in self._pending.items() if queue}
            return self.step(ready)

    # -- internals -----------------------------------------------------------------------------------------
    def _row(self, stream_id: Hashable) -> int:
        try:
            return self._rows[stream_id]
        except KeyError:
            raise KeyError(f"no stream {stream_id!r} in the pool") from None

    def _clear(self, row: int) -> None:
        self._states[self._current, row] = 0.0
        self._x[row, 0] = self.model.mean

    def _advance(self, rows: np.ndarray | None, batch: np.ndarray) -> np.ndarray:
        """rows: the distinct pool rows of the batch's samples (None: all rows, in order)."""
        n = len(self._ids)
        if len(batch) == 0:
            return np.empty((0, self.model.outputs), np.float32)
        self.last_held = []
        if not all_finite(batch):
            if self.nan_policy == "raise":
                row = int(np.flatnonzero(~np.isfinite(batch).all(axis=1))[0])
                stream_id = self._ids[row if rows is None else rows[row]]
                raise non_finite_error(f"Pool.step[{stream_id!r}]", batch[row])
            last_good = self._x[rows if rows is not None else slice(n), 0]
            bad = ~np.isfinite(batch)
            batch = np.where(bad, last_good, batch)
            held = np.flatnonzero(bad.any(axis=1))
            self.last_held = [self._ids[r] for r in (rows[held] if rows is not None else held)]
        if rows is None or len(rows) == n:  # every stream: run in place
            where = slice(n) if rows is None else rows
            self._x[where, 0] = batch
            self._bound("all", n)[self._current]()
            self._current ^= 1
            return self._y[where, 0].copy()
        k = len(rows)  # some streams: gather, run, scatter
        x, y, states = self._scratch
        self._x[rows, 0] = batch
        x[:k] = self._x[rows]
        states[0, :k] = self._states[self._current, rows]
        self._bound("some", k)()
        self._states[self._current, rows] = states[1, :k]
        return y[:k, 0].copy()

    def _bound(self, kind: str, n: int):
        if (kind, n) not in self._calls:
            if len(self._calls) >= MAX_BOUND_SIZES:
                self._calls.clear()
            bind = self.model.engine.bind
            if kind == "all":
                x, y, (a, b) = self._x[:n], self._y[:n], self._states[:, :n]
                self._calls[kind, n] = (bind(x, a, y, b), bind(x, b, y, a))
            else:
                x, y, states = self._scratch
                self._calls[kind, n] = bind(x[:n], states[0, :n], y[:n], states[1, :n])
        return self._calls[kind, n]
