"""Chunks and in-memory state: `feed_rows` / `feed_chunk` give exactly the records of one call per sample (same
events, times, ids, scores), at several chunk sizes, on a real recording (HAPT test subject 2, 160 s, two get-ups)
with field faults; a clean chunk really skips the per-row intake; `state()` bytes continue a
monitor exactly, and a state of another model, or garbage, is refused with a typed one-line error."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from rnnedge.errors import SnapshotError
from rnnedge.monitor import DEFAULT, Monitor, MonitorError, OperatingPoint
from rnnedge.monitor.sources import Row, csv_rows
from tests.monitor.conftest import CHANNELS

SIZES = [2, 7, 25, 50, 64]
RATE = 50.0


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def spied(monitor: Monitor) -> list[int]:
    """The lengths of the runs of slots the monitor's intake hands its ward (ward.py: a clean chunk is one run, a row
    taken one by one counts 1)."""
    calls: list[int] = []
    chunk, row = monitor.ward._chunk, monitor.ward._row

    def runs(bed, values, times, rates, rows=None):
        for slots in chunk(bed, values, times, rates, rows):
            calls.append(len(slots[0]) if len(slots[0]) > 1 else 1)
            yield slots

    monitor.ward._chunk = runs
    monitor.ward._row = lambda bed, one: (calls.append(1), (yield from row(bed, one)))[1]
    return calls


def faulty_rows(signals: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """(t, values) at 50 Hz with faults: NaN rows, a 0.3 s hole, two rows swapped, a 6 s stuck channel (a
    sensor_check, then sensor_ok), a 5 s forward jump (reset) landing on a chunk edge, a clock step back
    (resync); the get-ups (~103 s, ~148 s) after them."""
    x = signals.astype(np.float32).copy()
    t = np.arange(len(x)) / RATE
    x[500, 2] = np.nan
    x[1200:1203] = np.nan
    x[2000:2300, 4] = x[2000, 4]  # stuck gyro-y for 6 s
    t[3000:] += 5.0
    t[3600:] -= 3.0
    rows = [(float(a), b) for a, b in zip(t, x, strict=True)]
    del rows[2600:2615]
    rows[2800], rows[2801] = rows[2801], rows[2800]
    return rows


def csv_of(rows: list[tuple[float, np.ndarray]]) -> list[Row]:
    lines = [",".join(["t", *CHANNELS])] + [",".join([repr(t), *map(repr, x.tolist())]) for t, x in rows]
    return list(csv_rows(lines, CHANNELS))


def comparable(records: list[dict]) -> list[dict]:
    """Snapshot records name their file (a folder per run): the rest must be identical."""
    return [{k: v for k, v in r.items() if k != "path"} for r in records]


def one_by_one(model, rows: list[Row], **options) -> list[dict]:
    monitor = Monitor(model, **options)
    return comparable([r for row in rows for r in monitor.feed_row(row)] + monitor.flush())


@pytest.fixture(scope="module")
def rows(recording) -> list[Row]:
    return csv_of(faulty_rows(recording.signals))


@pytest.fixture(scope="module")
def expected(model, rows) -> list[dict]:
    records = one_by_one(model, rows, report_every_s=1.0)
    kinds = {r["id"].split(":")[1] for r in records}  # the event and its kind
    assert {"sample-malformed", "sample-missing", "sample-late", "sensor_check-stuck", "sensor_ok-signal",
            "reset-gap", "resync", "probability"} <= kinds, kinds
    assert len([r for r in records if r["event"] == "alarm_start"]) == 2
    return records


@pytest.mark.parametrize("size", SIZES)
def test_rows_in_chunks_equal_rows_one_by_one(model, rows, expected, size):
    monitor = Monitor(model, report_every_s=1.0)
    calls = spied(monitor)
    got = [r for chunk in chunks(rows, size) for r in monitor.feed_rows(chunk)] + monitor.flush()
    assert comparable(got) == expected
    assert sum(n for n in calls if n > 1) >= 0.8 * len(rows)  # most rows in chunk calls, not steps


@pytest.mark.parametrize("size", [7, 25])
def test_snapshots_fall_due_as_with_rows_one_by_one(model, rows, size, tmp_path):
    options = {"snapshot_every_s": 3.0, "report_every_s": 0.5}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    expected = one_by_one(model, rows, snapshot=tmp_path / "a" / "m.json", **options)
    assert sum(r["event"] == "snapshot" for r in expected) > 40
    monitor = Monitor(model, snapshot=tmp_path / "b" / "m.json", **options)
    got = [r for chunk in chunks(rows, size) for r in monitor.feed_rows(chunk)] + monitor.flush()
    assert comparable(got) == expected


@pytest.mark.parametrize("timed", [True, False])
@pytest.mark.parametrize("size", [25, 64])
def test_feed_chunk_equals_push(model, recording, timed, size):
    """push's semantics: a NaN value is held by the runtime (a "held" issue), not a malformed row."""
    rows = faulty_rows(recording.signals)
    t = np.array([r[0] for r in rows]) if timed else None
    x = np.stack([r[1] for r in rows])
    x[4000, 0] = 1e30  # finite, beyond the sensor's range: the runtime holds it, the chunk goes step by step
    reference = Monitor(model)
    expected = [r for i in range(len(x)) for r in reference.push(x[i], None if t is None else t[i])]
    assert any(r.get("issue") == "held" for r in expected)
    monitor = Monitor(model)
    got = [r for i in range(0, len(x), size)
           for r in monitor.feed_chunk(x[i:i + size], None if t is None else t[i:i + size])]
    assert got == expected


def test_upright_frame_calibrating_then_calibrated(model, recording):
    point = OperatingPoint(DEFAULT.score, DEFAULT.alarm, frame=[-0.98, 0.1, 0.15])
    rows = csv_of([(i / RATE, x) for i, x in enumerate(recording.signals.astype(np.float32))])
    expected = one_by_one(model, rows, point=point, attach="upright")
    assert any(r["id"].endswith("reset-calibrated") for r in expected)
    monitor = Monitor(model, point=point, attach="upright")
    calls = spied(monitor)
    assert comparable([r for chunk in chunks(rows, 25) for r in monitor.feed_rows(chunk)]) == expected
    assert sum(n for n in calls if n > 1) >= 0.8 * len(rows)


def test_a_source_at_100_hz_is_resampled_as_one_by_one(model, recording):
    x = np.repeat(recording.signals[:3000].astype(np.float32), 2, axis=0)
    rows = csv_of([(i / 100.0, v) for i, v in enumerate(x)])
    expected = one_by_one(model, rows)
    monitor = Monitor(model)
    assert comparable([r for chunk in chunks(rows, 50) for r in monitor.feed_rows(chunk)]) == expected


def test_state_bytes_continue_exactly(model, rows, expected):
    """A monitor rebuilt from state() after every chunk of 25 (the first of 11: a chunk then ends on the forward
    jump's row, which waits for the next one) is the monitor that never stopped."""
    monitor, got, waited = Monitor(model, report_every_s=1.0), [], 0
    for chunk in [rows[:11], *chunks(rows[11:], 25)]:
        got += monitor.feed_rows(chunk)
        waited += monitor.pending is not None
        monitor = Monitor(model, report_every_s=1.0, replay=False, state=monitor.state())
    got += monitor.flush()
    assert waited and got == expected
    summary = list(monitor.run([]))[-1]
    assert summary["steps"] == monitor.steps and summary["alarms"] == 2


def test_state_of_another_model_or_garbage_is_refused(model, recording):
    monitor = Monitor(model)
    monitor.feed_chunk(recording.signals[:100])
    state = msgspec.msgpack.decode(monitor.state())
    with pytest.raises(MonitorError, match=r"^monitor state of another model \(sha256 000000000000\.\.\., this"):
        Monitor(model, state=msgspec.msgpack.encode({**state, "model_sha256": "0" * 64}))
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        Monitor(model, state=msgspec.msgpack.encode({**state, "stream": state["stream"][:-70] + b"0" * 70}))
    for garbage in (b"", b"\x93\x01\x02\x03", msgspec.msgpack.encode({**state, "score": "x"})):
        with pytest.raises(MonitorError, match="monitor state") as error:
            Monitor(model, state=garbage)
        assert "\n" not in str(error.value)
    with pytest.raises(MonitorError, match="not both"):
        Monitor(model, snapshot="/tmp/never-written.json", state=monitor.state())


def test_stream_snapshot_restores_and_refuses_another_shape(model, recording):
    stream = model.stream()
    stream.feed(recording.signals[:50])
    before = stream.snapshot()
    expected = stream.feed(recording.signals[50:80])
    stream.restore(before)
    assert np.array_equal(stream.feed(recording.signals[50:80]), expected)
    assert np.array_equal(model.stream(resume=before).feed(recording.signals[50:80]), expected)
    with pytest.raises(SnapshotError, match="shape"):
        stream.restore(before._replace(state=before.state[:-1]))
    with pytest.raises(SnapshotError, match="out of range"):
        stream.restore(before._replace(state=np.full_like(before.state, math.inf)))
