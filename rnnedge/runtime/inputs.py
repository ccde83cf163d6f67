"""Input policy: what a stream accepts, and what it does with non-finite samples.

Shape and dtype: samples are real numbers (float or integer arrays, lists, tuples) of shape (channels,)
for one step or (time, channels) for a chunk; anything else raises InputError naming the expected shape.
Masked arrays: masked values count as missing (NaN).
Bad values are non-finite ones (NaN, +-Inf) and, when the bundle records the sensor's valid range per channel
(manifest `input.valid_range`), values outside it (a glitch of 1e26 is finite, yet drives some backends' state
to NaN, or to a finite but wrong state that lasts). What happens to them is chosen per stream (`nan_policy`):
  "raise": InputError; the stream is left untouched (state, step count, last good sample);
  "hold":  each bad channel repeats that channel's last good value (before any: the training mean, a
           neutral input), and the step is flagged (Stream.last_held, Pool.last_held).
A step whose new state is non-finite or out of range (rnnedge.runtime.health) is handled the same way, as if
its whole sample were bad: never carried on, never saved.
"""

from __future__ import annotations

import math
from operator import le

import numpy as np

from rnnedge.errors import InputError

NAN_POLICIES = ("raise", "hold")
_F32 = np.dtype(np.float32)


def check_policy(nan_policy: str) -> str:
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy must be one of {', '.join(NAN_POLICIES)}, got {nan_policy!r}")
    return nan_policy


def positive_int(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def as_samples(value, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """`value` as an array of `shape` (None = any length) with a real dtype; InputError otherwise."""
    if type(value) is np.ndarray and value.dtype is _F32 and value.shape == shape:
        return value  # the hot path: nothing to convert
    dims = ", ".join("T" if n is None else str(n) for n in shape)
    expected = f"({dims},)" if len(shape) == 1 else f"({dims})"
    try:
        array = np.asarray(value) if getattr(value, "mask", None) is None else _unmasked(value)
    except ValueError:
        raise InputError(f"{what}: expected a real array of shape {expected}, got a ragged list") from None
    if array.dtype.kind not in "fiu":
        raise InputError(f"{what}: expected a real array of shape {expected}, got dtype {array.dtype}")
    if array.ndim != len(shape) or any(n not in (None, m) for n, m in zip(shape, array.shape, strict=True)):
        raise InputError(f"{what}: expected shape {expected}, got {tuple(array.shape)}")
    with np.errstate(over="ignore"):  # values beyond float32 become +-inf: the NaN policy handles them
        return array.astype(np.float32)


def _unmasked(value) -> np.ndarray:
    """A masked array's masked values as NaN (missing), so the input policy sees them."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        return array
    return np.where(np.asarray(value.mask, bool), np.float32(np.nan), array.astype(np.float32))


class InputCheck:
    """Which values are bad: non-finite ones, and those outside the sensor's range where the bundle gives it."""

    def __init__(self, valid_range: list[list[float]] | None) -> None:
        self.low = self.high = None
        if valid_range is not None:
            self.low, self.high = (np.array(bound, np.float32) for bound in zip(*valid_range, strict=True))
            self._lows, self._highs = self.low.tolist(), self.high.tolist()  # the same float32 values

    def ok(self, x: np.ndarray) -> bool:
        """True if every value of x (float32, [channels] or [rows, channels]) is good: the hot path."""
        if self.low is None:
            return all_finite(x)
        if x.ndim == 1:  # NaN fails every comparison, so this also refuses non-finite values
            values = x.tolist()
            return all(map(le, self._lows, values)) and all(map(le, values, self._highs))
        return bool(((x >= self.low) & (x <= self.high)).all())

    def bad(self, x: np.ndarray) -> np.ndarray:
        """The mask of bad values."""
        if self.low is None:
            return ~np.isfinite(x)
        return ~((x >= self.low) & (x <= self.high))

    def error(self, what: str, x: np.ndarray) -> InputError:
        rows = x.reshape(-1, x.shape[-1])
        row, channel = np.argwhere(self.bad(rows))[0]
        value, at = rows[row, channel], f"step {row}, channel {channel}" if x.ndim > 1 else f"channel {channel}"
        if np.isfinite(value):
            problem = (f"value {value:g} at {at} is outside the sensor's valid range "
                       f"[{self.low[channel]:g}, {self.high[channel]:g}]")
        else:
            problem = f"non-finite value {value} at {at}"
        return InputError(f"{what}: {problem} (nan_policy='raise'; use nan_policy='hold' to repeat the last "
                          "good value)")


def all_finite(x: np.ndarray) -> bool:
    """For float32 x. A float64 sum of float32 values cannot overflow, so it is finite iff every value is
    (NaN and Inf propagate, Inf - Inf is NaN): one cheap reduction instead of a boolean array."""
    return math.isfinite(sum(x.tolist()) if x.ndim == 1 else x.sum(dtype=np.float64))


def hold(x: np.ndarray, last_good: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Forward-fill the bad values of x [rows, channels] in place, from earlier rows, then from
    `last_good` [channels]; return the mask of rows that held a value."""
    rows = np.arange(len(x))[:, None]
    source = np.maximum.accumulate(np.where(bad, -1, rows), axis=0)  # latest good row per (row, channel)
    x[...] = np.where(source >= 0, x[np.maximum(source, 0), np.arange(x.shape[1])], last_good)
    return bad.any(axis=1)
