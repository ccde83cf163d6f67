"""Scoring alarms against ground truth: get-up events, detections, delays, false alarms per hour.

Definitions (the numbers in every report mean exactly this):
  event      the onset of a maximal run of LIE_TO_SIT / LIE_TO_STAND labels in a recording;
  detected   an alarm STARTS within [onset - EARLY_S, onset + LATE_S]; each alarm detects at most one
             event (the earliest alarm in the window counts); delay = alarm start - onset (negative = early);
  get-up zone [onset - EARLY_S, end of the get-up run): alarms starting here that detect nothing (a second
             alarm, or one later than LATE_S) are `late_alarms`, reported but not counted as false;
  unlabelled get-up  an unlabelled stretch that follows LAYING and is followed by an upright label (SITTING,
             STANDING, walking, SIT_TO_STAND, STAND_TO_SIT): the person got up in it, but HAPT's annotators
             left the transition unmarked (2 of 3 alarms outside labelled get-ups on validation). Its zone is
             [start - EARLY_S, end); alarms starting there are `unlabelled_get_up_alarms`, neither detections
             (there is no onset to time) nor false alarms;
  false alarm an alarm starting outside every get-up zone, labelled or not;
  other hours all streamed time outside the get-up zones, other unlabelled stretches included (a device sees
             them), in hours: the false-alarm rate's denominator. Time the monitor spends in a sensor fault
             (faults.py: alarms blocked) is not in it: it is counted apart, as sensor_check hours.
EARLY_S: HAPT's hand-marked onsets can trail the first movement (the model fires up to ~1 s before them on
validation); an alarm more than 1 s early is not credited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnnedge.data.hapt import GET_UP_LABELS

EARLY_S = 1.0
LATE_S = 1.5
UPRIGHT_LABELS = ("SITTING", "STANDING", "WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SIT_TO_STAND",
                  "STAND_TO_SIT")


@dataclass(frozen=True)
class Event:
    onset: int  # step
    end: int  # first step after the get-up run
    label: str


@dataclass(frozen=True)
class RecordingScore:
    delays_s: list[float | None]  # per event: detection delay, None = missed
    false_alarms: list[int]  # start steps of false alarms
    late_alarms: int
    other_s: float
    unlabelled_alarms: int = 0  # alarms in unlabelled get-up zones
    sensor_check_s: float = 0.0  # time in a sensor fault (alarms blocked), outside the get-up zones


def get_up_events(labels: np.ndarray, label_names: list[str]) -> list[Event]:
    codes = [label_names.index(n) for n in GET_UP_LABELS]
    inside = np.isin(labels, codes).astype(np.int8)
    edges = np.diff(np.concatenate([[0], inside, [0]]))
    return [Event(int(a), int(b), label_names[labels[a]])
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)]


def unlabelled_get_ups(labels: np.ndarray, label_names: list[str]) -> list[tuple[int, int]]:
    """(start, end) steps of unlabelled stretches between LAYING and an upright label (see the definitions)."""
    starts = np.flatnonzero(np.diff(labels, prepend=-1))  # where each run of equal labels starts
    runs = [(int(a), int(b), label_names[labels[a]])
            for a, b in zip(starts, [*starts[1:], len(labels)], strict=True)]
    return [(a, b) for (_, _, before), (a, b, _), (_, _, after) in zip(runs, runs[1:], runs[2:], strict=False)
            if labels[a] == 0 and before == "LAYING" and after in UPRIGHT_LABELS]


def score_recording(starts: list[int], events: list[Event], steps: int, sample_rate_hz: float,
                    early_s: float = EARLY_S, late_s: float = LATE_S,
                    unlabelled: Sequence[tuple[int, int]] = (), blocked: np.ndarray | None = None) -> RecordingScore:
    early, late = round(early_s * sample_rate_hz), round(late_s * sample_rate_hz)
    used: set[int] = set()
    delays: list[float | None] = []
    for event in events:
        hit = next((s for s in starts if event.onset - early <= s <= event.onset + late and s not in used), None)
        if hit is not None:
            used.add(hit)
        delays.append(None if hit is None else (hit - event.onset) / sample_rate_hz)
    zones = [(max(0, e.onset - early), e.end) for e in events]
    unlabelled_zones = [(max(0, a - early), b) for a, b in unlabelled]
    in_zone = [s for s in starts if any(a <= s < b for a, b in zones)]
    in_unlabelled = [s for s in starts if s not in in_zone and any(a <= s < b for a, b in unlabelled_zones)]
    zone = _mask([*zones, *unlabelled_zones], steps)
    fault_steps = 0 if blocked is None else int(np.count_nonzero(blocked[:steps] & ~zone))
    other = steps - int(np.count_nonzero(zone)) - fault_steps
    return RecordingScore(delays, [s for s in starts if s not in in_zone and s not in in_unlabelled],
                          len([s for s in in_zone if s not in used]), other / sample_rate_hz,
                          len(in_unlabelled), fault_steps / sample_rate_hz)


def _mask(zones: list[tuple[int, int]], steps: int) -> np.ndarray:
    mask = np.zeros(steps, bool)
    for a, b in zones:
        mask[a:b] = True
    return mask


def summarize(scores: list[RecordingScore]) -> dict:
    delays = [d for s in scores for d in s.delays_s]
    hit = np.array([d for d in delays if d is not None])
    false_alarms = sum(len(s.false_alarms) for s in scores)
    hours = sum(s.other_s for s in scores) / 3600
    return {
        "events": len(delays), "detected": len(hit), "recall": len(hit) / max(1, len(delays)),
        "median_delay_s": float(np.median(hit)) if len(hit) else None,
        "p90_delay_s": float(np.percentile(hit, 90)) if len(hit) else None,
        "false_alarms": false_alarms, "other_hours": hours, "false_alarms_per_hour": false_alarms / max(hours, 1e-9),
        "late_alarms": sum(s.late_alarms for s in scores),
        "unlabelled_get_up_alarms": sum(s.unlabelled_alarms for s in scores),
        "sensor_check_hours": sum(s.sensor_check_s for s in scores) / 3600,
    }
