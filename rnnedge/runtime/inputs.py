"""Input policy: what a stream accepts, and what it does with non-finite samples.

Shape and dtype: samples are real numbers (float or integer arrays, lists, tuples) of shape (channels,)
for one step or (time, channels) for a chunk; anything else raises InputError naming the expected shape.
Non-finite values (NaN, +-Inf), chosen per stream with `nan_policy`:
  "raise": InputError; the stream is left untouched (state, step count, last good sample);
  "hold":  each bad channel repeats that channel's last finite value (before any: the training mean, a
           neutral input), and the step is flagged (Stream.last_held, Pool.last_held).
"""

from __future__ import annotations

import math

import numpy as np

from rnnedge.errors import InputError

NAN_POLICIES = ("raise", "hold")
_F32 = np.dtype(np.float32)


def check_policy(nan_policy: str) -> str:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {', '.join(NAN_POLICIES)}, got {nan_policy!r}")
    return nan_policy


def as_samples(value, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """`value` as an array of `shape` (None = any length) with a real dtype; InputError otherwise."""
    if type(value) is np.ndarray and value.dtype is _F32 and value.shape == shape:
        return value  # the hot path: nothing to convert
    dims = ", ".join("T" if n is None else str(n) for n in shape)
    expected = f"({dims},)" if len(shape) == 1 else f"({dims})"
    try:
        array = np.asarray(value)
    except ValueError:
        raise InputError(f"{what}: expected a real array of shape {expected}, got a ragged list") from None
    if array.dtype.kind not in "fiu":
        raise InputError(f"{what}: expected a real array of shape {expected}, got dtype {array.dtype}")
    if array.ndim != len(shape) or any(n not in (None, m) for n, m in zip(shape, array.shape, strict=True)):
        raise InputError(f"{what}: expected shape {expected}, got {tuple(array.shape)}")
    with np.errstate(over="ignore"):  # values beyond float32 become +-inf: the NaN policy handles them
        return array.astype(np.float32)


def all_finite(x: np.ndarray) -> bool:
    """For float32 x. A float64 sum of float32 values cannot overflow, so it is finite iff every value is
    (NaN and Inf propagate, Inf - Inf is NaN): one cheap reduction instead of a boolean array."""
    return math.isfinite(sum(x.tolist()) if x.ndim == 1 else x.sum(dtype=np.float64))


def hold(x: np.ndarray, last_good: np.ndarray) -> np.ndarray:
    """Forward-fill the non-finite values of x [rows, channels] in place, from earlier rows, then from
    `last_good` [channels]; return the mask of rows that held a value."""
    bad = ~np.isfinite(x)
    rows = np.arange(len(x))[:, None]
    source = np.maximum.accumulate(np.where(bad, -1, rows), axis=0)  # latest good row per (row, channel)
    x[...] = np.where(source >= 0, x[np.maximum(source, 0), np.arange(x.shape[1])], last_good)
    return bad.any(axis=1)


def non_finite_error(what: str, x: np.ndarray) -> InputError:
    row, channel = np.argwhere(~np.isfinite(x.reshape(-1, x.shape[-1])))[0]
    at = f"step {row}, channel {channel}" if x.ndim > 1 else f"channel {channel}"
    return InputError(f"{what}: non-finite value {x.reshape(-1, x.shape[-1])[row, channel]} at {at} "
                      "(nan_policy='raise'; use nan_policy='hold' to repeat the last good value)")
