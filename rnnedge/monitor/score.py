"""From the tagger's per-step logits to one get-up score in [0, 1] that the alarm thresholds.

score[t] = ema(p(LIE_TO_SIT) + p(LIE_TO_STAND))[t] * lying_gate[t] * (t >= warmup)
  - summing the two get-up classes: the alarm does not care which one it is, and the model often splits its
    belief between them early in the movement;
  - ema: optional exponential smoothing (time constant `smoothing_s`) against one-step spikes;
  - lying_gate: optional, 1 if the model itself said LAYING (p >= lying_min) at some step in the last
    `lying_gate_s` seconds, else 0. A bed exit starts from lying; the gate removes get-up-looking moments
    while sitting or standing (sit-to-lie, sitting down), the main source of false alarms.
  - warmup: the score is 0 for the first `warmup_s` seconds after a (re)start from a zero state: the model's
    outputs are erratic until its state has settled (on validation, most false alarms fell in the first 3 s).
Stateful and causal. `GetUpScore.feed` scores one recording over any number of steps (the operating-point search);
`ScoreRows.step` scores one step of many beds (the ward: one row a bed). Both are this same formula, and
evaluate-alarms checks every time that the search's numbers for the chosen point are the ward's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnedge.data.hapt import GET_UP_LABELS
from rnnedge.monitor.errors import MonitorError, bounded

LYING_LABEL = "LAYING"
_NEVER = -(1 << 62)  # "the model has not said LAYING yet"


@dataclass(frozen=True)
class ScoreConfig:
    smoothing_s: float = 0.0  # EMA time constant; 0 = raw probability
    lying_gate_s: float = 0.0  # 0 = no gate
    lying_min: float = 0.5
    warmup_s: float = 3.0

    def __post_init__(self) -> None:  # bounds: a setting beyond them silences the alarm (a warm-up of 1e9 s)
        bounded("score smoothing_s", self.smoothing_s, 0.0, 60.0)
        bounded("score lying_gate_s", self.lying_gate_s, 0.0, 3600.0)
        bounded("score lying_min", self.lying_min, 0.0, 1.0)
        bounded("score warmup_s", self.warmup_s, 0.0, 600.0)


class GetUpScore:
    def __init__(self, config: ScoreConfig, labels: list[str], sample_rate_hz: float) -> None:
        missing = [n for n in (*GET_UP_LABELS, LYING_LABEL) if n not in labels]
        if missing:
            raise MonitorError(f"the model's output labels lack {', '.join(missing)}: it is not a HAPT-style "
                               f"activity tagger (labels: {', '.join(labels) or 'none'})")
        self.config = config
        self.get_up = [labels.index(n) for n in GET_UP_LABELS]
        self.lying = labels.index(LYING_LABEL)
        # ema step: exact discretization of a first-order low-pass with time constant smoothing_s
        self.alpha = 1.0 - float(np.exp(-1.0 / (config.smoothing_s * sample_rate_hz))) \
            if config.smoothing_s > 0 else 1.0
        self.gate_steps = round(config.lying_gate_s * sample_rate_hz)
        self.warmup_steps = round(config.warmup_s * sample_rate_hz)
        self.rate = sample_rate_hz
        self.reset()

    def reset(self, hold_s: float = 0.0) -> None:
        """Start afresh: no score for the warm-up, or for `hold_s` if longer (after a gap in the data)."""
        self.steps = 0
        self.ema = 0.0
        self.last_lying = _NEVER
        self.hold = max(self.warmup_steps, round(hold_s * self.rate))

    def p_lying(self, logits: np.ndarray) -> float:
        """The model's p(LAYING) for one step's logits (the frame's check when attached lying)."""
        return float(_softmax(logits)[0, self.lying])

    def feed(self, logits: np.ndarray) -> np.ndarray:
        """logits [T, classes] (or [classes]) -> scores [T] float64."""
        p = _softmax(logits)
        raw = p[:, self.get_up].sum(axis=1)
        scores = raw if self.alpha == 1.0 else self._smooth(raw)
        steps = np.arange(self.steps, self.steps + len(p))
        scores = scores * (steps >= self.hold)
        if self.gate_steps:
            lying = np.where(p[:, self.lying] >= self.config.lying_min, steps, _NEVER)
            last = np.maximum(np.maximum.accumulate(lying), self.last_lying)
            scores = scores * (steps - last <= self.gate_steps)
            self.last_lying = int(last[-1]) if len(last) else self.last_lying
        self.steps += len(p)
        return scores

    def _smooth(self, raw: np.ndarray) -> np.ndarray:
        out, m, a = np.empty(len(raw)), self.ema, self.alpha
        for i, v in enumerate(raw.tolist()):  # plain floats: ~10x faster than numpy scalars
            m += a * (v - m)
            out[i] = m
        self.ema = m
        return out

    def state(self) -> dict:
        return {"steps": self.steps, "ema": self.ema, "last_lying": self.last_lying, "hold": self.hold}

    def load_state(self, state: dict) -> None:
        self.steps, self.ema, self.last_lying = int(state["steps"]), float(state["ema"]), int(state["last_lying"])
        self.hold = int(state.get("hold", self.warmup_steps))


class ScoreRows:
    """The score of every bed of a ward, one step at a time: one row a bed."""

    def __init__(self, config: ScoreConfig, labels: list[str], sample_rate_hz: float, capacity: int) -> None:
        one = GetUpScore(config, labels, sample_rate_hz)  # the same checks and constants
        self.get_up, self.lying, self.alpha = one.get_up, one.lying, one.alpha
        self.gate_steps, self.warmup_steps, self.rate, self.config = one.gate_steps, one.warmup_steps, one.rate, config
        self.steps = np.zeros(capacity, np.int64)
        self.ema = np.zeros(capacity)
        self.last_lying = np.full(capacity, _NEVER, np.int64)
        self.hold = np.full(capacity, self.warmup_steps, np.int64)

    def reset(self, row: int, hold_s: float = 0.0) -> None:
        """Start afresh: no score for the warm-up, or for `hold_s` if longer (after a gap in the data)."""
        self.steps[row], self.ema[row], self.last_lying[row] = 0, 0.0, _NEVER
        self.hold[row] = max(self.warmup_steps, round(hold_s * self.rate))

    def move(self, src: int, dst: int) -> None:
        for array in (self.steps, self.ema, self.last_lying, self.hold):
            array[dst] = array[src]

    def step(self, rows: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The beds' class probabilities [k, classes] (softmax) at this step -> their scores [k] float64."""
        raw = p[:, self.get_up].sum(axis=1)
        if self.alpha == 1.0:
            scores = raw
        else:
            scores = self.ema[rows] + self.alpha * (raw - self.ema[rows])
            self.ema[rows] = scores
        steps = self.steps[rows]
        scores = scores * (steps >= self.hold[rows])
        if self.gate_steps:
            last = np.where(p[:, self.lying] >= self.config.lying_min, steps, self.last_lying[rows])
            self.last_lying[rows] = last
            scores = scores * (steps - last <= self.gate_steps)
        self.steps[rows] = steps + 1
        return scores

    def state(self, row: int) -> dict:
        return {"steps": int(self.steps[row]), "ema": float(self.ema[row]), "last_lying": int(self.last_lying[row]),
                "hold": int(self.hold[row])}

    def load_state(self, row: int, state: dict) -> None:
        self.steps[row], self.ema[row] = int(state["steps"]), float(state["ema"])
        self.last_lying[row], self.hold[row] = int(state["last_lying"]), int(state.get("hold", self.warmup_steps))


def softmax(logits: np.ndarray) -> np.ndarray:
    """logits [k, classes] -> probabilities [k, classes], float64 (row by row: a bed's numbers do not depend on
    the others; a row that is not finite gives NaN, quietly: the caller does not use it)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return _softmax(logits)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """logits [T, classes] (or [classes]) -> probabilities [T, classes], float64."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1, np.shape(logits)[-1])
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
