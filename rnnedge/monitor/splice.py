"""`evaluate-alarms --faults`: synthetic sensor faults spliced into the test recordings and streamed through the
monitor itself (its ward: fault detector, frame, score, alarm; every spliced recording a bed), scored per fault
kind.

Each fault is inserted LEAD_S before a recording's first get-up, so the get-up follows the fault's end by LEAD_S:
it shows whether alarms come back once the input is normal again. Faults, at the model's rate:
  table       the sensor off the body, still on a table in a tilted pose for 10 min: gravity on one direction plus
              sensor noise (NOISE), no motion;
  stuck       one channel (the first) frozen at its value for 1 min while the others stay live;
  saturated   the accelerometer's motion x8, clipped at +-2 g, for 1 min (a range too small for the wearer);
  dropout     1 min without a readable value (NaN rows).
Live signal during stuck/saturated comes from later in the same recording (its next minute after the get-up,
wrapped), so no get-up is inside a fault. Per kind: sensor_check delay from the fault's start (min/max over the
recordings), alarms raised while the fault lasted, and the get-up after it detected within [-EARLY_S, +LATE_S]
(its delay: median, max; each recording's in `per_recording`).
"""

from __future__ import annotations

import numpy as np

from rnnedge.data.recording import Recording
from rnnedge.monitor.events import EARLY_S, LATE_S, get_up_events

LEAD_S = 30.0
NOISE = 5e-4  # g and rad/s: a still MEMS sensor's noise
FAULT_S = {"table": 600.0, "stuck": 60.0, "saturated": 60.0, "dropout": 60.0}


def fault_signals(kind: str, live: np.ndarray, acc: list[int], rate: float, rng: np.random.Generator) -> np.ndarray:
    """`kind`'s samples [steps, channels]; `live` is real signal of at least that length (stuck, saturated)."""
    steps, channels = round(FAULT_S[kind] * rate), live.shape[1]
    if kind == "table":
        out = rng.normal(0.0, NOISE, (steps, channels))
        tilt = np.array([0.3, -0.2, 0.93])
        out[:, acc] += tilt / np.linalg.norm(tilt)
        return out.astype(np.float32)
    if kind == "dropout":
        return np.full((steps, channels), np.nan, np.float32)
    out = live[:steps].copy()
    if kind == "stuck":
        out[:, 0] = out[0, 0]
    else:
        out[:, acc] = np.clip(out[:, acc] * 8, -2.0, 2.0)
    return out


def fault_conditions(model, recordings: list[Recording], point, label_names: list[str], attach: str = "upright",
                     seed: int = 0) -> list[dict]:
    """Each fault kind spliced into every recording that has a get-up: all of them the beds of one ward, each from
    a zero state, a second at a time."""
    from rnnedge.monitor.evaluate import quiet
    from rnnedge.monitor.ward import Ward, stream_beds

    channels = list(model.manifest.input.channels)
    acc = [i for i, c in enumerate(channels) if c.lower().startswith("acc")]
    rate, second, rng = model.manifest.input.sample_rate_hz, round(model.manifest.input.sample_rate_hz), \
        np.random.default_rng(seed)
    beds = []  # (kind, recording, where the fault starts and ends, the get-up after it: seconds)
    feeds = {}
    for kind in FAULT_S:
        for rec in recordings:
            events = get_up_events(rec.labels, label_names)
            if not events:
                continue
            onset = events[0].onset
            at = max(0, onset - round(LEAD_S * rate))
            after = np.concatenate([rec.signals] * (2 + round(FAULT_S[kind] * rate) // len(rec)))
            fault = fault_signals(kind, after[onset + round((LATE_S + 60) * rate):], acc, rate, rng)
            signals = np.concatenate([rec.signals[:at], fault, rec.signals[at:]])
            times = np.arange(len(signals)) / rate
            feeds[len(beds)] = [(signals[a: a + second], times[a: a + second]) for a in range(0, len(signals), second)]
            beds.append((kind, rec.name, at / rate, (at + len(fault)) / rate, (onset + len(fault)) / rate))
    with quiet():  # a fault logs a line per event and recording: the rows say it all
        records = stream_beds(Ward(model, point, attach=attach, capacity=max(1, len(beds))), feeds)
    found: dict[str, list[dict]] = {kind: [] for kind in FAULT_S}
    for b, (kind, name, start, end, get_up) in enumerate(beds):
        checks = [r["t"] for r in records[b] if r["event"] == "sensor_check" and r["t"] >= start]
        alarms = [r["t"] for r in records[b] if r["event"] == "alarm_start"]
        hits = [a - get_up for a in alarms if get_up - EARLY_S <= a <= get_up + LATE_S]
        found[kind].append({"recording": name, "check_delay_s": round(checks[0] - start, 2) if checks else None,
                            "alarms_during": sum(start <= a <= end for a in alarms),
                            "get_up_delay_s": round(hits[0], 2) if hits else None})
    return [_summary(kind, rows) for kind, rows in found.items()]


def _summary(kind: str, found: list[dict]) -> dict:
    delays = [f["check_delay_s"] for f in found if f["check_delay_s"] is not None]
    detected = [f["get_up_delay_s"] for f in found if f["get_up_delay_s"] is not None]
    return {"fault": kind, "minutes": FAULT_S[kind] / 60, "recordings": len(found), "sensor_check": len(delays),
            "check_delay_s": [min(delays), max(delays)] if delays else None,
            "alarms_during": sum(f["alarms_during"] for f in found),
            "get_up_after_detected": len(detected),
            "get_up_delay_s": {"median": float(np.median(detected)), "max": max(detected)} if detected else None,
            "per_recording": found}
