"""Is a new recurrent state usable? Checked after every backend call, so that a state gone bad is caught at
the step that produced it (then handled by the input policy, see rnnedge.runtime.inputs), never carried on.

A state is bad if any value is non-finite or beyond ~1.8e19 (float32 squares overflow there: no model state
gets anywhere near), or, for cells whose hidden state is tanh-bounded (LSTM: h = o * tanh(c); GRU: a convex mix
of tanh values; RNN tanh), if the h part's squared sum exceeds its size, which no |h| <= 1 can. One BLAS dot
per part does it: ~0.35 us each for a 128-float part, where np.isfinite(state).all() costs 1.3 us. (The output is a
linear head of the new h, so a good state means a finite output.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnedge.bundle import StateSpec

TANH_BOUNDED = ("lstm", "gru", "rnn_tanh")
_NO_BOUND = float(np.finfo(np.float32).max)  # a float32 dot that overflowed is inf, which fails `<=`
_SLACK = 1.01  # float32 rounding, quantized states


class StateCheck:
    def __init__(self, spec: StateSpec, cell: object) -> None:
        width = (spec.size - spec.previous) // max(len(spec.parts), 1)
        bounded = cell in TANH_BOUNDED
        self.parts = [(slice(i * width, (i + 1) * width), width * _SLACK if bounded and part == "h" else _NO_BOUND)
                      for i, part in enumerate(spec.parts)]
        if spec.previous:  # a forecast's last sample and seen flags: finite is all they must be
            self.parts.append((slice(spec.size - spec.previous, spec.size), _NO_BOUND))

    def bind(self, state: np.ndarray) -> Callable[[], bool]:
        """A check of this 1-D state buffer (views made once: slicing would cost as much as the dot)."""
        checks = [(state[where], limit) for where, limit in self.parts]
        if len(checks) == 1:  # bound methods and unrolled parts: np.dot(h, h) costs 1.7x h.dot(h)
            (h, h_limit), = checks
            h_dot = h.dot
            return lambda: h_dot(h) <= h_limit
        if len(checks) == 2:
            (h, h_limit), (c, c_limit) = checks
            h_dot, c_dot = h.dot, c.dot
            return lambda: h_dot(h) <= h_limit and c_dot(c) <= c_limit
        return lambda: all(part.dot(part) <= limit for part, limit in checks)

    def bad_rows(self, states: np.ndarray) -> np.ndarray:
        """Indices of the bad rows of states [rows, state_size] (empty if none)."""
        bad = np.zeros(len(states), bool)
        for where, limit in self.parts:
            if limit != _NO_BOUND:
                part = states[:, where]
                bad |= ~(np.einsum("ij,ij->i", part, part) <= limit)
        flat = states.reshape(-1)
        if not np.dot(flat, flat) <= _NO_BOUND:  # one dot clears every row's finiteness (the common case)
            bad |= ~(np.einsum("ij,ij->i", states, states) <= _NO_BOUND)
        return np.flatnonzero(bad)
