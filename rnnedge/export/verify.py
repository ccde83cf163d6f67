"""Parity of an exported file against the torch model on the reference slice of held-out real data.

A trained recurrent model amplifies float32 rounding over thousands of steps (torch fp32 itself drifts from
fp64 by ~3e-5 after 2000 steps of a trained 2x64 LSTM), so conversion error is measured per chunk: each chunk
starts from torch's own state at that point, and outputs and the state after it must match torch. The long
run with the file's own carried state is measured too: against the file's own whole-sequence run where the
file takes any length (ONNX: must be equal), else against torch (reported; it includes that drift).

The bound for each vector (one step's outputs, or the h or c part of one stream's state) is
tolerance * (1 + 0.4 * its magnitude) + 40 * (how far torch fp32 itself is from the same model in float64
there), the second scaled like the first by a tolerance other than 1e-5. The magnitude is the vector's largest
|value|, and for a forecast at least its channel's level (|mean| + std, in the data's units): the graph computes
a forecast as std * z + mean (or + the raw input), so its rounding follows those terms, not their sum (measured:
a Lynx model, mean 1,351 and std 1,479, forecast near 0 where torch and ONNX Runtime were 1.5e-3 apart, 1.56x a
bound sized by the forecast alone). The first term is the fixed target; the second is the model's own float32
noise floor: some trained models amplify rounding so much within one chunk (measured: h off by 3.8e-5 between
torch fp32 and fp64 after 50 steps) that no float32 implementation can hold 1e-5, while a conversion bug is off
by orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnedge.bundle import Parity
from rnnedge.export.runners import FileRunner, stream, windows

FP32_TOLERANCE = 1e-5  # absolute bound on outputs and states, fp32 files
RELATIVE = 0.4  # the bound grows with the vector's magnitude: tolerance * (1 + 0.4 * max|value|), i.e.
# 1e-5 + 4e-6 * magnitude (~32 float32 ulps): a trained LSTM's cell state reaches hundreds, where one ulp is
# ~3e-5 and an absolute 1e-5 cannot hold
NOISE = 40.0  # plus this many times torch fp32's own distance from float64 on the same vector: ONNX Runtime's
# kernels (their own tanh/sigmoid approximations, other summation orders) sit further from float64 than torch's,
# and a trained model amplifies that like rounding (measured: one seed of the bundled tagger needed 9.6x, a GRU
# 2x64 trained 600 epochs on 1,460-step series 20.2x on an AMD box and less on an Intel one; twice the largest,
# while a conversion bug is off by orders of magnitude more)


@dataclass
class Expected:
    """The torch model's results on the reference slice: what every file must reproduce."""

    x: np.ndarray  # [n, time, channels] raw
    y: np.ndarray  # [n, time, outputs] (stream) or [n, outputs] (window)
    states: np.ndarray | None  # stream: [chunks + 1, n, state_size], torch state at every chunk boundary
    chunk: int
    logits: bool
    parts: int = 1  # state parts (h, c) for LSTM
    # The same in float64 (torch fp32's noise floor): per chunk from the fp32 states, and carried all along.
    y_exact: np.ndarray | None = None
    states_exact: np.ndarray | None = None  # [chunks + 1, n, state_size]
    y_carried_exact: np.ndarray | None = None
    levels: np.ndarray | None = None  # [outputs]: the least magnitude each output's rounding follows (forecasts)


def expected_from(reference: FileRunner, x: np.ndarray, state_size: int | None, chunk: int,
                  logits: bool, parts: int = 1, exact: FileRunner | None = None,
                  levels: np.ndarray | None = None) -> Expected:
    """Run the torch reference over x chunk by chunk (state carried), keeping the state at each boundary;
    with `exact` (the model in float64), run that from the same states too. `levels`: see Expected."""
    if state_size is None:
        return Expected(x, windows(reference, x), None, chunk, logits,
                        y_exact=windows(exact, x) if exact else None, levels=levels)
    states = [np.zeros((len(x), state_size), np.float32)]
    ys, ys_exact, states_exact = [], [], [states[0].astype(np.float64)]
    for start in range(0, x.shape[1], chunk):
        piece = x[:, start: start + chunk]
        y, state = stream(reference, piece, states[-1])
        if exact is not None:
            y_exact, state_exact = stream(exact, piece, states[-1])
            ys_exact.append(y_exact)
            states_exact.append(state_exact)
        ys.append(y)
        states.append(state)
    if exact is None:
        return Expected(x, np.concatenate(ys, axis=1), np.stack(states), chunk, logits, parts, levels=levels)
    carried_exact = stream(exact, x, states_exact[0], chunk)[0]
    return Expected(x, np.concatenate(ys, axis=1), np.stack(states), chunk, logits, parts,
                    np.concatenate(ys_exact, axis=1), np.stack(states_exact), carried_exact, levels)


def float32_noise(expected: Expected) -> tuple[float | None, float | None]:
    """(outputs, state): how far torch fp32 is from float64 per chunk on the reference slice."""
    if expected.y_exact is None:
        return None, None
    state = None if expected.states_exact is None else _max_diff(expected.states, expected.states_exact)
    return _max_diff(expected.y, expected.y_exact), state


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max())


def _noise(fp32: np.ndarray, exact: np.ndarray | None) -> np.ndarray | None:
    return None if exact is None else np.abs(fp32 - exact)


def _violation(a: np.ndarray, b: np.ndarray, tolerance: float, parts: int = 1,
               noise: np.ndarray | None = None, levels: np.ndarray | None = None) -> float:
    """> 1 where |a - b| exceeds tolerance * (1 + RELATIVE * magnitude) + NOISE * (tolerance / FP32_TOLERANCE) *
    largest noise in the same vector (one step's outputs, or one part (h or c) of one stream's state); the magnitude
    is the largest |b| there, or of `levels` (one per last-axis value) where larger. NaN is a violation."""
    b = np.asarray(b, np.float64)
    magnitude = np.abs(b) if levels is None else np.maximum(np.abs(b), levels)
    a, b = a.reshape(*a.shape[:-1], parts, -1), b.reshape(*b.shape[:-1], parts, -1)
    magnitude = magnitude.reshape(b.shape)
    scale = tolerance * (1 + RELATIVE * magnitude.max(axis=-1, keepdims=True))
    if noise is not None:  # a tolerance other than the default scales the noise allowance alike
        scale = scale + NOISE * tolerance / FP32_TOLERANCE * noise.reshape(b.shape).max(axis=-1, keepdims=True)
    excess = np.abs(a - b) / scale
    return float("inf") if np.isnan(excess).any() else float(excess.max())


def measure(runner: FileRunner, expected: Expected, tolerance: float | None = None
            ) -> tuple[Parity, list[str]]:
    """The file's Parity, and (when a tolerance is given: fp32 files) what it got wrong."""
    checks: dict[str, float] = {}
    if expected.states is None:
        y = windows(runner, expected.x)
        parity = Parity(samples=len(expected.x) * expected.x.shape[1], max_abs_diff_output=_max_diff(y, expected.y),
                        argmax_agreement=_agreement(y, expected), tolerance=tolerance)
        if tolerance is not None:
            checks["outputs"] = _violation(y, expected.y, tolerance, noise=_noise(expected.y, expected.y_exact),
                                           levels=expected.levels)
        return parity, _failed(checks, tolerance)
    out_diff, state_diff = 0.0, None  # None: no chunk filled the file's fixed length (nothing to compare)
    y_noise = _noise(expected.y, expected.y_exact)
    state_noise = _noise(expected.states, expected.states_exact)
    for k, start in enumerate(range(0, expected.x.shape[1], expected.chunk)):
        window = slice(start, start + expected.chunk)
        y, state = stream(runner, expected.x[:, window], expected.states[k])
        out_diff = max(out_diff, _max_diff(y, expected.y[:, window]))
        if tolerance is not None:
            checks["outputs"] = max(checks.get("outputs", 0.0), _violation(
                y, expected.y[:, window], tolerance, noise=None if y_noise is None else y_noise[:, window],
                levels=expected.levels))
        # A fixed-length file pads a chunk shorter than its length (a slice shorter than the file's T): the
        # outputs before the padding are exact, but the state then includes the padded steps: not comparable.
        if runner.time is not None and y.shape[1] % runner.time:
            continue
        state_diff = max(state_diff or 0.0, _max_diff(state, expected.states[k + 1]))
        if tolerance is not None:
            checks["state"] = max(checks.get("state", 0.0), _violation(
                state, expected.states[k + 1], tolerance, expected.parts,
                None if state_noise is None else state_noise[k + 1]))
    zeros = np.zeros_like(expected.states[0])
    carried = streamed(runner, expected.x, zeros.shape[-1])
    whole = stream(runner, expected.x, zeros)[0] if runner.time is None else expected.y
    if tolerance is not None and runner.time is None:  # noise: torch fp32 vs float64, both carried all along
        checks["step-by-step vs whole sequence"] = _violation(
            carried, whole, tolerance, noise=_noise(expected.y, expected.y_carried_exact), levels=expected.levels)
    parity = Parity(samples=int(np.prod(expected.x.shape[:2])), max_abs_diff_output=out_diff,
                    max_abs_diff_state=state_diff, streaming_max_abs_diff=_max_diff(carried, whole),
                    streamed_max_abs_diff=_max_diff(carried, expected.y),
                    argmax_agreement=_agreement(carried, expected), tolerance=tolerance)
    return parity, _failed(checks, tolerance)


def streamed(runner: FileRunner, x: np.ndarray, state_size: int) -> np.ndarray:
    """Each reference row streamed alone from a zero state, a step at a time (or the file's fixed length): what
    `rnnedge.runtime`'s Stream computes on a device, bit for bit, since the runner is the runtime's own engine."""
    rows = [stream(runner, row[None], np.zeros((1, state_size), np.float32), chunk=1)[0] for row in x]
    return np.concatenate(rows)


def _agreement(y: np.ndarray, expected: Expected) -> float | None:
    return float((y.argmax(-1) == expected.y.argmax(-1)).mean()) if expected.logits else None


def _failed(checks: dict[str, float], tolerance: float | None) -> list[str]:
    return [f"{name} off by {ratio:.3g}x the allowed {tolerance:g} * (1 + {RELATIVE:g} * magnitude)"
            for name, ratio in checks.items() if not ratio <= 1.0]
