"""The alarm state machine: threshold to start, hysteresis to end, refractory period before the next start.

Per step t with score p[t] (the get-up probability, see score.py):
  idle:  an alarm starts at the first step with p >= threshold, unless t < end of the last alarm + refractory;
  alarm: the alarm ends at the first step with p < release (release <= threshold: the hysteresis band keeps
         a score hovering around the threshold from flapping the alarm on and off).
Level-triggered: a score still above the threshold when the refractory period runs out starts a new alarm.

`Alarm.feed` takes any number of steps of one recording and jumps from crossing to crossing (numpy), so a whole
recording costs a few array passes: the validation search runs thousands of operating points. `AlarmRows.step`
takes one step of many beds (the ward): the same rule, checked against the search by evaluate-alarms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnedge.monitor.errors import MonitorError, bounded


@dataclass(frozen=True)
class AlarmConfig:
    threshold: float = 0.5  # start when the score reaches this
    release: float = 0.3  # end when the score falls below this
    refractory_s: float = 5.0  # no new alarm this long after one ends

    def __post_init__(self) -> None:  # the score is a probability: a threshold of 0 or above 1 is no alarm at all
        bounded("alarm threshold", self.threshold, 0.0, 1.0, above=True)
        if self.threshold == 1.0:
            raise MonitorError("alarm threshold must be below 1 (a probability reaches 1 only by rounding)")
        bounded("alarm release", self.release, 0.0, self.threshold)
        bounded("alarm refractory_s", self.refractory_s, 0.0, 3600.0)


@dataclass(frozen=True)
class Transition:
    step: int  # absolute step index (steps since the alarm was created or reset)
    start: bool  # True: alarm starts at this step; False: it ends here (this step is the first one off)


class Alarm:
    def __init__(self, config: AlarmConfig, sample_rate_hz: float) -> None:
        self.config = config
        self.refractory_steps = round(config.refractory_s * sample_rate_hz)
        self.reset()

    def reset(self) -> None:
        self.steps = 0  # steps consumed so far
        self.active = False
        self.started = -1  # step the current (or last) alarm started
        self.blocked_until = 0  # first step at which a new alarm may start

    def feed(self, scores: np.ndarray) -> list[Transition]:
        """Advance over scores [T]; return the alarm starts and ends among them, in order."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        base, n = self.steps, len(scores)
        above = (scores >= self.config.threshold).nonzero()[0]
        below = (scores < self.config.release).nonzero()[0]
        out: list[Transition] = []
        i = 0  # next local step to look at
        while i < n:
            if self.active:
                k = np.searchsorted(below, i)
                if k == len(below):
                    break
                i = int(below[k])
                self.active, self.blocked_until = False, base + i + self.refractory_steps
                out.append(Transition(base + i, start=False))
                i += 1
            else:
                k = np.searchsorted(above, max(i, self.blocked_until - base))
                if k == len(above):
                    break
                i = int(above[k])
                self.active, self.started = True, base + i
                out.append(Transition(base + i, start=True))
                i += 1
        self.steps = base + n
        return out

    def state(self) -> dict:
        return {"steps": self.steps, "active": self.active, "started": self.started,
                "blocked_until": self.blocked_until}

    def load_state(self, state: dict) -> None:
        self.steps, self.active = int(state["steps"]), bool(state["active"])
        self.started, self.blocked_until = int(state["started"]), int(state["blocked_until"])


class AlarmRows:
    """Every bed's alarm, one step at a time: one row a bed (steps, active, started, blocked_until as in Alarm)."""

    def __init__(self, config: AlarmConfig, sample_rate_hz: float, capacity: int) -> None:
        self.config = config
        self.refractory_steps = round(config.refractory_s * sample_rate_hz)
        self.steps = np.zeros(capacity, np.int64)
        self.active = np.zeros(capacity, bool)
        self.started = np.full(capacity, -1, np.int64)
        self.blocked_until = np.zeros(capacity, np.int64)

    def reset(self, row: int) -> None:
        self.steps[row], self.active[row], self.started[row], self.blocked_until[row] = 0, False, -1, 0

    def move(self, src: int, dst: int) -> None:
        for array in (self.steps, self.active, self.started, self.blocked_until):
            array[dst] = array[src]

    def step(self, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The beds' scores [k] at this step -> (positions where an alarm starts, positions where one ends)."""
        steps, active = self.steps[rows], self.active[rows]
        ends = (active & (scores < self.config.release)).nonzero()[0]
        starts = (~active & (scores >= self.config.threshold) & (steps >= self.blocked_until[rows])).nonzero()[0]
        if len(ends):
            self.active[rows[ends]] = False
            self.blocked_until[rows[ends]] = steps[ends] + self.refractory_steps
        if len(starts):
            self.active[rows[starts]], self.started[rows[starts]] = True, steps[starts]
        self.steps[rows] = steps + 1
        return starts, ends

    def state(self, row: int) -> dict:
        return {"steps": int(self.steps[row]), "active": bool(self.active[row]), "started": int(self.started[row]),
                "blocked_until": int(self.blocked_until[row])}

    def load_state(self, row: int, state: dict) -> None:
        self.steps[row], self.active[row] = int(state["steps"]), bool(state["active"])
        self.started[row], self.blocked_until[row] = int(state["started"]), int(state["blocked_until"])


def alarm_intervals(scores: np.ndarray, config: AlarmConfig, sample_rate_hz: float) -> list[tuple[int, int]]:
    """[start, end) step intervals of the alarms over a whole series (an alarm still on ends at len)."""
    transitions = Alarm(config, sample_rate_hz).feed(scores)
    starts = [t.step for t in transitions if t.start]
    ends = [t.step for t in transitions if not t.start] + [len(scores)]
    return list(zip(starts, ends[: len(starts)], strict=True))
