"""Parity of an exported file against the torch model on the reference slice of held-out real data.

A trained recurrent model amplifies float32 rounding over thousands of steps (torch fp32 itself drifts from
fp64 by ~3e-5 after 2000 steps of a trained 2x64 LSTM), so conversion error is measured per chunk: each chunk
starts from torch's own state at that point, and outputs and the state after it must match torch. The long
run with the file's own carried state is measured too: against the file's own whole-sequence run where the
file takes any length (ONNX: must be equal), else against torch (reported; it includes that drift).
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


@dataclass
class Expected:
    """The torch model's results on the reference slice: what every file must reproduce."""

    x: np.ndarray  # [n, time, channels] raw
    y: np.ndarray  # [n, time, outputs] (stream) or [n, outputs] (window)
    states: np.ndarray | None  # stream: [chunks + 1, n, state_size], torch state at every chunk boundary
    chunk: int
    logits: bool
    parts: int = 1  # state parts (h, c) for LSTM


def expected_from(reference: FileRunner, x: np.ndarray, state_size: int | None, chunk: int,
                  logits: bool, parts: int = 1) -> Expected:
    """Run the torch reference over x chunk by chunk (state carried), keeping the state at each boundary."""
    if state_size is None:
        return Expected(x, windows(reference, x), None, chunk, logits)
    states = [np.zeros((len(x), state_size), np.float32)]
    ys = []
    for start in range(0, x.shape[1], chunk):
        y, state = stream(reference, x[:, start: start + chunk], states[-1])
        ys.append(y)
        states.append(state)
    return Expected(x, np.concatenate(ys, axis=1), np.stack(states), chunk, logits, parts)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max())


def _violation(a: np.ndarray, b: np.ndarray, tolerance: float, parts: int = 1) -> float:
    """> 1 where |a - b| exceeds tolerance * (1 + RELATIVE * largest |b| in the same vector: one step's
    outputs, or one part (h or c) of one stream's state). NaN counts as a violation."""
    a, b = a.reshape(*a.shape[:-1], parts, -1), b.reshape(*b.shape[:-1], parts, -1).astype(np.float64)
    scale = tolerance * (1 + RELATIVE * np.abs(b).max(axis=-1, keepdims=True))
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
            checks["outputs"] = _violation(y, expected.y, tolerance)
        return parity, _failed(checks, tolerance)
    out_diff = state_diff = 0.0
    for k, start in enumerate(range(0, expected.x.shape[1], expected.chunk)):
        window = slice(start, start + expected.chunk)
        y, state = stream(runner, expected.x[:, window], expected.states[k])
        out_diff = max(out_diff, _max_diff(y, expected.y[:, window]))
        state_diff = max(state_diff, _max_diff(state, expected.states[k + 1]))
        if tolerance is not None:
            checks["outputs"] = max(checks.get("outputs", 0.0), _violation(y, expected.y[:, window], tolerance))
            checks["state"] = max(checks.get("state", 0.0), _violation(state, expected.states[k + 1], tolerance,
                                                                expected.parts))
    zeros = np.zeros_like(expected.states[0])
    carried, _ = stream(runner, expected.x, zeros, chunk=1)  # single steps, or the file's fixed length
    whole = stream(runner, expected.x, zeros)[0] if runner.time is None else expected.y
    if tolerance is not None and runner.time is None:
        checks["step-by-step vs whole sequence"] = _violation(carried, whole, tolerance)
    parity = Parity(samples=int(np.prod(expected.x.shape[:2])), max_abs_diff_output=out_diff,
                    max_abs_diff_state=state_diff, streaming_max_abs_diff=_max_diff(carried, whole),
                    argmax_agreement=_agreement(carried, expected), tolerance=tolerance)
    return parity, _failed(checks, tolerance)


def _agreement(y: np.ndarray, expected: Expected) -> float | None:
    return float((y.argmax(-1) == expected.y.argmax(-1)).mean()) if expected.logits else None


def _failed(checks: dict[str, float], tolerance: float | None) -> list[str]:
    return [f"{name} off by {ratio:.3g}x the allowed {tolerance:g} * (1 + {RELATIVE:g} * magnitude)"
            for name, ratio in checks.items() if not ratio <= 1.0]
