"""TFLite Micro's fixed-point rules in numpy, where the host must compute what a microcontroller computes: the
multiplier of a real scale (QuantizeMultiplier) and the int16 requantization that carries an integer-only file's
state from one call to the next (state_out's scale -> state's). rnnedge/export/cgen.py writes the same rules in C."""

from __future__ import annotations

import math

import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767


def round_away(x: float) -> int:
    """TfLiteRound (std::round): halves away from zero (Python's round() goes to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: (multiplier with its fixed point at bit 31, shift; negative is a right shift)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def carry_params(state_out_scale: float, state_scale: float) -> tuple[int, int]:
    """The (multiplier, shift) of QUANTIZE int16 -> int16 from state_out's scale to state's (float32 scales,
    divided in double, as its Prepare does)."""
    return quantize_multiplier(float(np.float32(state_out_scale)) / float(np.float32(state_scale)))


def carry_state(state_out: np.ndarray, params: tuple[int, int]) -> np.ndarray:
    """state_out (its own scale) -> the next call's state (the `state` input's scale): TFLite Micro's Requantize
    (MultiplyByQuantizedMultiplier, int32, double rounding), what the generated step does before it returns."""
    multiplier, shift = params
    x = state_out.astype(np.int64)
    left, right = max(shift, 0), max(-shift, 0)
    x = x << left
    ab = x * multiplier
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = _trunc_div(ab + nudge, 1 << 31)  # C's division truncates toward zero
    mask = (1 << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    out = (high >> right) + (remainder > threshold)
    return np.clip(out, INT16_MIN, INT16_MAX).astype(np.int16)


def _trunc_div(a: np.ndarray, b: int) -> np.ndarray:
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)
