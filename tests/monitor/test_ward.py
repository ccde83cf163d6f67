"""One engine for a bed and a ward (rnnedge/monitor/ward.py): 1,040 beds of real HAPT test recordings around
get-ups, with staggered starts, beds leaving early, gaps, clock steps back, unreadable values and mid-stream resumes
from state bytes, all in one ward; every bed's events (every field) are those of `Monitor` on that bed alone."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rnnedge.monitor import DEFAULT, Monitor, MonitorError
from rnnedge.monitor.monitor import encode_state, restore_state
from rnnedge.monitor.ward import Ward
from tests.fleet.conftest import bed_signals

BEDS = 1040
CHUNK = 25
RATE = 50.0
ALONE = [*range(0, BEDS, 25), *range(7, BEDS, 100)]  # the beds also run alone (every condition among them)


def bed_feed(bed: int, signals: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The bed's messages (samples, times) of CHUNK samples: a start shifted by the bed (joins late), and by bed
    kind: a 40 s gap, the clock stepping back 3 s, NaN values, a message cut short."""
    x, t = signals.copy(), (bed % 13) * 0.37 + np.arange(len(signals)) / RATE
    kind = bed % 4
    if kind == 1:
        t[1300:] += 40.0
    elif kind == 2:
        t[1600:] -= 3.0
    elif kind == 3:
        x[1210:1230, 1] = np.nan
    chunks = [(x[a:a + CHUNK], t[a:a + CHUNK]) for a in range(0, len(x), CHUNK)]
    if kind == 3:
        chunks[30] = (chunks[30][0][:7], chunks[30][1][:7])
    return chunks


@pytest.fixture(scope="module")
def feeds():
    signals = bed_signals(BEDS, 1500)
    return {bed: bed_feed(bed, signals[bed]) for bed in range(BEDS)}


def ward_records(model, feeds: dict) -> dict[int, list[dict]]:
    """All beds in one ward: bed b joins at tick b % 40, beds 7 mod 50 leave 40 ticks before the end, and every
    tick 5 % of the beds are taken out and put back from their state bytes (a resume)."""
    ward = Ward(model, DEFAULT, attach="upright", capacity=BEDS)
    out: dict[int, list[dict]] = {bed: [] for bed in feeds}
    ticks = max(len(chunks) for chunks in feeds.values()) + 40
    for tick in range(ticks):
        now = {}
        for bed, chunks in feeds.items():
            i = tick - bed % 40
            if 0 <= i < len(chunks) - (40 if bed % 50 == 7 else 0):
                if i == 0:
                    ward.add(bed)
                now[bed] = chunks[i]
        for bed, records in ward.feed(now).items():
            out[bed] += records
        for bed in [b for b in now if (b + tick) % 20 == 0]:
            state = encode_state(ward, bed)
            ward.remove(bed)
            ward.add(bed)
            restore_state(ward, bed, state)
    for bed in feeds:
        out[bed] += ward.flush(bed)
    return out


def alone(model, chunks) -> list[dict]:
    monitor = Monitor(model, DEFAULT, attach="upright")
    return [r for values, times in chunks for r in monitor.feed_chunk(values, times)] + monitor.flush()


@pytest.mark.slow
def test_every_bed_of_a_ward_of_a_thousand_is_the_bed_alone(model, feeds):
    logging.getLogger("rnnedge.monitor").setLevel(logging.ERROR)
    try:
        got = ward_records(model, feeds)
        for bed in ALONE:
            chunks = feeds[bed][:len(feeds[bed]) - (40 if bed % 50 == 7 else 0)]
            assert got[bed] == alone(model, chunks), bed
    finally:
        logging.getLogger("rnnedge.monitor").setLevel(logging.NOTSET)
    events = {r["event"] for bed in ALONE for r in got[bed]}
    assert {"alarm_start", "alarm_end", "reset", "resync", "sample", "calibrating"} <= events
    assert sum(r["event"] == "alarm_start" for records in got.values() for r in records) >= BEDS // 2


def test_a_bed_state_is_a_slice_and_a_bed_cannot_join_twice(model, feeds):
    ward = Ward(model, DEFAULT, attach="upright", capacity=3)
    for bed in (0, 1, 2):
        ward.add(bed)
    ward.feed({bed: feeds[bed][0] for bed in (0, 1, 2)})
    state = encode_state(ward, 1)
    ward.remove(0)  # bed 2 moves into row 0: bed 1's state is unchanged
    assert encode_state(ward, 1) == state and ward.bed(2).row == 0
    with pytest.raises(MonitorError, match="already in the ward"):
        ward.add(1)
    ward.add(3)
    with pytest.raises(MonitorError, match="full"):
        ward.add(4)
    with pytest.raises(MonitorError, match="no bed"):
        ward.feed({9: feeds[0][0]})
