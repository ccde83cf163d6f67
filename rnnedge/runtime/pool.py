"""A pool: many independent streams (say, one per bed sensor) advanced together, one backend call per tick.

Each stream owns one row of the pool's buffers; rows stay packed (removing a stream moves the last row into
its place), so a tick that advances every stream runs on the buffers where they lie. A tick that advances
only some gathers their rows into a scratch batch and scatters the new states back: never more rows than
were asked for, and no other stream's state is touched. Every public method takes the pool's lock: any
number of threads may add, remove, step, or `submit` samples that a consumer thread turns into ticks.

Queued samples are bounded per stream (`max_pending`). When a producer outruns the ticks, overflow=
"drop_oldest" drops that stream's oldest queued sample and counts it in `dropped[id]` (a live feed wants its
newest data, and the count makes the gap visible); overflow="raise" refuses the new sample with InputError
(back-pressure). Bad values and bad new states are handled per stream as in a Stream (rnnedge.runtime.inputs):
under "raise" the whole tick is refused and no stream moves; under "hold" only the affected streams hold.
"""

from __future__ import annotations

from _thread import RLock  # not threading: 0.2 MB of the device's memory for one lock class
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from rnnedge.errors import BundleError, InputError, PoolError, UnknownStreamError, brief
from rnnedge.runtime.inputs import as_samples, check_policy, positive_int
from rnnedge.runtime.snapshot import Snapshot

if TYPE_CHECKING:
    from rnnedge.runtime.model import Model

MAX_BOUND_SIZES = 16  # batch sizes whose bindings the pool keeps
OVERFLOW = ("drop_oldest", "raise")


class Pool:
    def __init__(self, model: Model, capacity: int = 1024, nan_policy: str = "raise", max_pending: int = 256,
                 overflow: str = "drop_oldest") -> None:
        capacity, self.max_pending = positive_int(capacity, "capacity"), positive_int(max_pending, "max_pending")
        if overflow not in OVERFLOW:
            raise InputError(f"overflow must be one of {', '.join(OVERFLOW)}, got {overflow!r}")
        self.model, self.capacity, self.nan_policy, self.overflow = model, capacity, check_policy(nan_policy), overflow
        c, o, s = model.channels, model.outputs, model.state_size
        self._x = np.zeros((capacity, 1, c), np.float32)  # each row also keeps its last good sample
        self._y = np.zeros((capacity, 1, o), np.float32)
        self._states = np.zeros((2, capacity, s), np.float32)  # alternating, as in Stream
        self._current = 0
        self._steps = np.zeros(capacity, np.int64)  # steps since each stream started (its snapshots)
        self._scratch = (np.zeros_like(self._x), np.zeros_like(self._y), np.zeros_like(self._states))
        self._calls = {}  # (kind, batch size) -> bound calls
        self._rows: dict[Hashable, int] = {}
        self._ids: list[Hashable] = []
        self._pending: dict[Hashable, deque] = {}
        self._lock = RLock()
        self.last_held: list[Hashable] = []  # ids whose sample (or new state) was bad and held, last tick
        self.held_mask = np.zeros(0, bool)  # the same, per sample of the last tick's batch
        self.dropped: dict[Hashable, int] = {}  # queued samples dropped per stream (overflow="drop_oldest")

    # -- membership ----------------------------------------------------------------------------------------
    def add(self, stream_id: Hashable) -> None:
        if not isinstance(stream_id, Hashable):
            raise PoolError(f"a stream id must be hashable (a str or an int), got {type(stream_id).__name__}")
        with self._lock:
            if stream_id in self._rows:
                raise PoolError(f"stream {stream_id!r} is already in the pool")
            if len(self._ids) == self.capacity:
                raise PoolError(f"pool is full (capacity {self.capacity})")
            self._rows[stream_id] = len(self._ids)
            self._ids.append(stream_id)
            self._clear(self._rows[stream_id])

    def remove(self, stream_id: Hashable) -> None:
        with self._lock:
            row, last = self._row(stream_id), len(self._ids) - 1
            moved = self._ids[last]
            self._x[row] = self._x[last]
            self._states[self._current, row] = self._states[self._current, last]
            self._steps[row] = self._steps[last]
            self._ids[row], self._rows[moved] = moved, row
            del self._rows[stream_id], self._ids[last]
            self._pending.pop(stream_id, None)
            self.dropped.pop(stream_id, None)

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

    def row(self, stream_id: Hashable) -> int:
        """The stream's row: its place in `step_rows` and `step_array` (changed only by `remove`)."""
        with self._lock:
            return self._row(stream_id)

    def snapshot(self, stream_id: Hashable) -> Snapshot:
        """One stream's state, last good sample and step count (a copy), as Stream.snapshot gives them."""
        with self._lock:
            row = self._row(stream_id)
            return Snapshot(self._states[self._current, row].copy(), self._x[row, 0].copy(), int(self._steps[row]))

    def restore(self, stream_id: Hashable, snapshot: Snapshot, where: str = "snapshot") -> None:
        """One stream back to a snapshot of this model's streams (Stream.restore's checks: SnapshotError, the
        stream then starts afresh)."""
        with self._lock:
            row = self._row(stream_id)
            stream = self.model.stream()  # the checks of one stream, on a copy
            stream.restore(snapshot, where)
            self._states[self._current, row], self._x[row, 0] = stream.state, snapshot.last_good
            self._steps[row] = int(snapshot.steps)

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

    def step_rows(self, rows: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """Advance the streams at pool rows `rows` (distinct; see `row`): (k, channels) -> (k, outputs). Which
        samples were held: `held_mask`."""
        with self._lock:
            batch = as_samples(batch, (len(rows), self.model.channels), "Pool.step_rows")
            rows = np.asarray(rows, np.intp)
            if len(rows) and (rows.min() < 0 or rows.max() >= len(self._ids)):
                raise UnknownStreamError(f"Pool.step_rows: rows beyond the pool's {len(self._ids)} streams")
            in_order = len(rows) == len(self._ids) and bool((rows == np.arange(len(rows))).all())
            return self._advance(None if in_order else rows, batch)

    def step_array(self, batch: np.ndarray) -> np.ndarray:
        """The fast path: advance every stream, rows in `ids` order: (len, channels) -> (len, outputs)."""
        with self._lock:
            batch = as_samples(batch, (len(self._ids), self.model.channels), "Pool.step_array")
            return self._advance(None, batch)

    def submit(self, stream_id: Hashable, sample) -> None:
        """Queue one sample for the next `tick` (safe from any thread; errors surface here). At most
        `max_pending` per stream: see the module's docstring for what `overflow` does beyond."""
        what = f"Pool.submit[{stream_id!r}]"
        sample = np.array(as_samples(sample, (self.model.channels,), what))  # a copy: callers reuse buffers
        if self.nan_policy == "raise" and not self.model.inputs.ok(sample):
            raise self.model.inputs.error(what, sample)
        with self._lock:
            self._row(stream_id)
            queue = self._pending.get(stream_id)
            if queue is None:
                queue = self._pending[stream_id] = deque(maxlen=self.max_pending)
            if len(queue) == self.max_pending:
                if self.overflow == "raise":
                    raise InputError(f"{what}: {self.max_pending} samples already queued (max_pending); tick "
                                     "more often, or allow more")
                self.dropped[stream_id] = self.dropped.get(stream_id, 0) + 1
            queue.append(sample)  # a full deque drops its oldest

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
        except (KeyError, TypeError):
            raise UnknownStreamError(f"no stream {brief(stream_id)} in the pool") from None

    def _clear(self, row: int) -> None:
        self._states[self._current, row] = 0.0
        self._steps[row] = 0
        self._x[row, 0] = self.model.mean

    def _advance(self, rows: np.ndarray | None, batch: np.ndarray) -> np.ndarray:
        """rows: the distinct pool rows of the batch's samples (None: all rows, in order)."""
        n = len(self._ids)
        if len(batch) == 0:
            return np.empty((0, self.model.outputs), np.float32)
        self.last_held = []
        self.held_mask = np.zeros(len(batch), bool)
        inputs = self.model.inputs
        if not inputs.ok(batch):
            bad = inputs.bad(batch)
            held = np.flatnonzero(bad.any(axis=1))
            self.held_mask[held] = True
            if self.nan_policy == "raise":
                stream_id = self._ids[held[0] if rows is None else rows[held[0]]]
                raise inputs.error(f"Pool.step[{stream_id!r}]", batch[held[0]])
            batch = np.where(bad, self._x[rows if rows is not None else slice(n), 0], batch)
            self.last_held = [self._ids[r] for r in (rows[held] if rows is not None else held)]
        check = self.model.state_check.bad_rows
        if rows is None or len(rows) == n:  # every stream: run in place
            where = slice(n) if rows is None else rows
            previous = self._x[:n, 0].copy()  # last good samples, pool row order
            self._x[where, 0] = batch
            current = self._current
            self._bound("all", n)[current]()
            if len(bad := check(self._states[current ^ 1, :n])):
                self._repair(bad, bad, previous[bad], self._states[current, bad], self._y[:n, 0],
                             self._states[current ^ 1, :n], restore=(slice(n), previous))
            self._current ^= 1
            self._steps[where] += 1
            return self._y[where, 0].copy()
        k = len(rows)  # some streams: gather, run, scatter
        x, y, states = self._scratch
        previous = self._x[rows, 0].copy()
        self._x[rows, 0] = batch
        x[:k] = self._x[rows]
        states[0, :k] = self._states[self._current, rows]
        self._bound("some", k)()
        out, new = y[:k, 0].copy(), states[1, :k]
        if len(bad := check(new)):
            new = new.copy()  # the scratch buffers serve the re-run
            self._repair(bad, rows[bad], previous[bad], self._states[self._current, rows[bad]], out, new,
                         restore=(rows, previous))
        self._states[self._current, rows] = new
        self._steps[rows] += 1
        return out

    def _repair(self, at: np.ndarray, rows: np.ndarray, previous: np.ndarray, old_states: np.ndarray,
                out: np.ndarray, new: np.ndarray, restore: tuple) -> None:
        """Bad new states at positions `at` of out/new (pool rows `rows`): refuse the tick ("raise": restore
        the last good samples, self._x[restore[0], 0] = restore[1]) or re-run those rows on their previous
        sample from their old state ("hold")."""
        ids = [self._ids[r] for r in rows]
        if self.nan_policy == "raise":
            self._x[restore[0], 0] = restore[1]
            raise InputError(f"Pool.step[{ids[0]!r}]: its sample drove the state non-finite or out of range; the "
                             "tick did not happen (nan_policy='raise'; use nan_policy='hold' to repeat the last good "
                             "sample)")
        x, y, states = self._scratch
        m = len(rows)
        x[:m, 0], states[0, :m] = previous, old_states
        self._bound("some", m)()
        if len(self.model.state_check.bad_rows(states[1, :m])):
            raise BundleError(f"{self.model.bundle}: the model gives a non-finite or out-of-range state on a "
                              "good sample; the model file or its backend is faulty")
        out[at], new[at], self._x[rows, 0] = y[:m, 0], states[1, :m], previous
        self.held_mask[at] = True
        self.last_held = list(dict.fromkeys([*self.last_held, *ids]))

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
