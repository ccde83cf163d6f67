"""Sensor faults seen in the signal (rnnedge/monitor/faults.py) and other sample rates (sources.Resampler), spliced
into a real recording (HAPT test subject 2: get-ups at 102.8 s and 147.4 s) and streamed through the monitor on
the real runtime: a sensor_check within 30 s of each fault, no alarm while it lasts, sensor_ok and both get-ups
alarmed after it; a resumed monitor continues bit-identically through a fault."""

from __future__ import annotations

import numpy as np
import pytest

from rnnedge.data.hapt import hapt_recording, load_hapt
from rnnedge.monitor import Monitor
from rnnedge.monitor.events import get_up_events
from rnnedge.monitor.faults import blocked_mask
from rnnedge.monitor.sources import csv_rows
from tests.monitor.conftest import CHANNELS, TRACE

SPLICE = 2500  # the fault starts at 50 s, 53 s before the first get-up
RATE = 50.0


@pytest.fixture(scope="module")
def real():
    r = hapt_recording(TRACE)
    onsets = [e.onset for e in get_up_events(r.labels, load_hapt().label_names)]
    return r.signals, onsets


def lines_of(t: np.ndarray, x: np.ndarray) -> list[str]:
    return [",".join(["t", *CHANNELS])] + [",".join([f"{ti:.4f}", *(repr(float(v)) for v in row)])
                                           for ti, row in zip(t, x, strict=True)]


def spliced(real, fault: np.ndarray) -> tuple[list[str], list[float], float]:
    """CSV lines: 50 s of the recording, the fault, then the recording on to 160 s (both get-ups); the get-up
    onsets and the fault's end, in stream seconds."""
    signals, onsets = real
    x = np.concatenate([signals[:SPLICE], fault, signals[SPLICE:8000]])
    return lines_of(np.arange(len(x)) / RATE, x), [(o + len(fault)) / RATE for o in onsets], \
        (SPLICE + len(fault)) / RATE


def stream(model, lines, **options) -> list[dict]:
    return list(Monitor(model, **options).run(csv_rows(lines, CHANNELS)))


def check_fault(records, onsets, end, fault: str | None) -> None:
    begin = SPLICE / RATE
    checks = [r for r in records if r["event"] == "sensor_check" and (fault is None or r.get("fault") == fault)]
    assert checks and begin <= checks[0]["t"] <= begin + 30, checks[:1]
    assert not [r for r in records if r["event"] == "alarm_start" and begin <= r["t"] <= end + 1]
    starts = [r["t"] for r in records if r["event"] == "alarm_start"]
    for onset in onsets:  # normal alarms again after the fault (the first get-up is 53 s after it)
        assert any(onset - 1.0 <= s <= onset + 1.5 for s in starts), (onset, starts)
    if fault is not None:
        ok = [r for r in records if r["event"] == "sensor_ok" and r["t"] >= end]
        assert ok and ok[0]["t"] <= end + 15


def test_sensor_on_a_table_for_ten_minutes(model, real):
    rng = np.random.default_rng(0)
    gravity = np.array([0.3, -0.2, 0.93]) / np.linalg.norm([0.3, -0.2, 0.93])
    table = np.concatenate([gravity + rng.normal(0, 5e-4, (30000, 3)), rng.normal(0, 5e-4, (30000, 3))], axis=1)
    lines, onsets, end = spliced(real, table.astype(np.float32))
    check_fault(stream(model, lines), onsets, end, "still")


@pytest.mark.parametrize("fault", ["stuck", "saturated", "gravity"])
def test_stuck_saturated_or_wrong_gravity(model, real, fault):
    later = real[0][8000:11000].copy()  # one minute from later in the recording
    if fault == "stuck":
        later[:, 0] = later[0, 0]
    elif fault == "saturated":
        later[:, :3] = np.clip(later[:, :3] * 8, -2.0, 2.0)
    else:
        later[:, :3] *= 0.5
    lines, onsets, end = spliced(real, later)
    check_fault(stream(model, lines), onsets, end, fault)


def test_one_minute_dropout(model, real):
    lines, onsets, end = spliced(real, np.full((3000, 6), np.nan, np.float32))
    lines = [line.replace("nan", "") for line in lines]  # the logger writes empty values
    records = stream(model, lines)
    check_fault(records, onsets, end, None)


def test_a_rate_far_from_the_model_is_a_fault_and_25_or_100_hz_are_resampled(model, real):
    signals, onsets = real
    x, t = signals[:8000], np.arange(8000) / RATE
    slow = np.r_[0:SPLICE, SPLICE:SPLICE + 3000:10, SPLICE + 3000:8000]  # 5 Hz for a minute
    records = stream(model, lines_of(t[slow], x[slow]))
    checks = [r for r in records if r["event"] == "sensor_check" and r.get("fault") == "rate"]
    assert checks and SPLICE / RATE <= checks[0]["t"] <= SPLICE / RATE + 30 and "5.0 Hz" in checks[0]["detail"]
    for rate in (25.0, 100.0):
        tr = np.arange(0, 160, 1 / rate)
        xr = np.stack([np.interp(tr, t, x[:, c]) for c in range(6)], axis=1).astype(np.float32)
        records = stream(model, lines_of(tr, xr))
        assert not [r for r in records if r["event"] == "sensor_check"]
        starts = [r["t"] for r in records if r["event"] == "alarm_start"]
        assert all(any(o / RATE - 1 <= s <= o / RATE + 1.5 for s in starts) for o in onsets), (rate, starts)


def test_resume_is_bit_identical_through_a_fault_and_resampling(model, real, tmp_path):
    signals, _ = real
    later = signals[8000:11000].copy()
    later[:, 1] = later[0, 1]
    lines = spliced(real, later)[0]
    t = np.arange(0, 60, 1 / 25)  # and a 25 Hz stretch: the resampler's state too
    lines += [",".join([f"{160 + 60 + ti:.4f}", *(repr(float(v)) for v in signals[8000 + int(ti * RATE)])])
              for ti in t]
    reference = stream(model, lines)
    for stop in (2500 + 1530, 11000 + 2000, len(lines) - 700):  # mid-fault, after it, in the 25 Hz stretch
        snap = tmp_path / f"m{stop}.json"
        first = Monitor(model, snapshot=snap, snapshot_every_s=7.0)
        for row in list(csv_rows(lines[:stop], CHANNELS)):
            first.feed_row(row)
        first.close()  # killed: its lock on the snapshot path goes with it
        resumed = Monitor(model, snapshot=snap)
        at = resumed.bed.cadence.time(resumed.bed.cadence.last)
        tail = [r for r in resumed.run(csv_rows(lines, CHANNELS)) if r["t"] > at and r["event"] != "snapshot"]
        expected = [r for r in reference if r["t"] > at]
        assert [r for r in tail if r["event"] not in ("sample", "summary")] == \
            [r for r in expected if r["event"] not in ("sample", "summary")]


@pytest.mark.slow
def test_no_fault_anywhere_in_hapt():
    data = load_hapt()
    assert all(not blocked_mask(data.channels, RATE, r.signals).any() for r in data.recordings)
