"""`evaluate-alarms` gaps: each test subject's recordings streamed back to back through the monitor itself (its
ward: each subject one bed), the clock jumping GAP_S between recordings as a sensor that was off for a while: what
`rnnedge monitor` meets on a CSV of a shift. Scored per recording as everywhere else (events.py), plus the false
alarms that start within AFTER_S after a gap (a cold or stale state's alarms: the target is none).
Time before the frame is calibrated is counted in the false-alarm denominator here (no alarm can start in it).
"""

from __future__ import annotations

from itertools import groupby

import numpy as np

from rnnedge.data.recording import Recording
from rnnedge.monitor.events import get_up_events, score_recording, summarize, unlabelled_get_ups

GAP_S = 120.0
AFTER_S = 30.0


def gap_clock(lengths: list[int], rate: float) -> np.ndarray:
    """Timestamps of recordings of these lengths back to back, the clock jumping GAP_S between them."""
    times, t0 = [], 0.0
    for n in lengths:
        times.append(t0 + np.arange(n) / rate)
        t0 = float(times[-1][-1]) + GAP_S if n else t0
    return np.concatenate(times) if times else np.zeros(0)


def gap_condition(model, recordings: list[Recording], point, label_names: list[str], attach: str) -> dict:
    from rnnedge.monitor.evaluate import quiet
    from rnnedge.monitor.ward import Ward, stream_beds

    rate, second = model.manifest.input.sample_rate_hz, round(model.manifest.input.sample_rate_hz)
    subjects = [list(group) for _, group in groupby(recordings, key=lambda r: r.subject)]
    feeds, starts = {}, []  # each subject one bed: its recordings back to back, a second at a time
    for s, recs in enumerate(subjects):
        clock = gap_clock([len(r) for r in recs], rate)
        firsts = np.cumsum([0] + [len(r) for r in recs[:-1]])
        chunks = []
        for rec, first in zip(recs, firsts, strict=True):
            times = clock[first: first + len(rec)]
            chunks += [(rec.signals[a: a + second], times[a: a + second]) for a in range(0, len(rec), second)]
        feeds[s], starts = chunks, [*starts, clock[firsts].tolist()]
    with quiet():  # a reset per gap would log a line each: the report says it
        records = stream_beds(Ward(model, point, attach=attach, capacity=max(1, len(subjects))), feeds)
    per, after_gap, gaps = [], [], 0
    for s, recs in enumerate(subjects):
        alarms = [r["t"] for r in records[s] if r["event"] == "alarm_start"]
        for i, (rec, start) in enumerate(zip(recs, starts[s], strict=True)):
            steps = [round((t - start) * rate) for t in alarms if start <= t < start + len(rec) / rate]
            score = score_recording(steps, get_up_events(rec.labels, label_names), len(rec), rate,
                                    unlabelled=unlabelled_get_ups(rec.labels, label_names))
            per.append(score)
            if i:  # the recording after a gap
                gaps += 1
                after_gap += [{"recording": rec.name, "t_after_gap_s": s / rate} for s in score.false_alarms
                              if s < AFTER_S * rate]
    return {"condition": f"gaps of {GAP_S:g} s between recordings", "attach": attach, "gaps": gaps,
            **summarize(per), "false_alarms_after_gap": len(after_gap), "after_gap_s": AFTER_S,
            "false_alarms_after_gap_detail": after_gap}
