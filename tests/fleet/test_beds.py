"""The fleet's per-bed logic without Flink (main environment, fast): messages, and a monitor rebuilt from its
captured state after every message giving exactly the events of one monitor that never stopped."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.fleet import messages
from rnnedge.fleet.beds import STATE_VERSION, BedWard, MonitorSettings, check_state
from rnnedge.fleet.errors import FleetError
from tests.fleet.conftest import CHUNK, bed_signals, comparable, message_lines, monitor_alone, with_faults
from tests.monitor.conftest import CHANNELS


@pytest.mark.parametrize(("line", "why"), [
    ("not json", "not JSON"), ("[1, 2]", "not a JSON object"), ('{"x": [[1]]}', "'bed' must be"),
    ('{"bed": "", "x": [[1]]}', "'bed' must be"), ('{"bed": "b"}', "'x' must be"),
    ('{"bed": "b", "x": [[1]], "t": [1, 2]}', "'t' must be"), ('{"bed": "z", "x": [[1]]}', "unknown bed"),
])
def test_bad_messages_are_refused_with_a_reason(line, why):
    message, _, reason = messages.parse(line, 0.0, beds=frozenset({"b"}) if "z" in line else None)
    assert message is None and why in reason


def test_samples_become_rows_as_csv_lines_do():
    line = messages.encode("b", np.ones((3, 6)), t=[0.0, 0.02, 0.04])
    message, _, _ = messages.parse(line, 1.0)
    message = message._replace(x=[[1.0] * 6, [1.0] * 5, ["a", None, 1, 1, 1, 1e400]],
                               t=[0.0, "soon", 0.04])
    good, short, bad = messages.rows(message, CHANNELS)
    assert good.problem is None and good.values.tolist() == [1.0] * 6 and good.t == 0.0
    assert short.values is None and "5 values, expected 6" in short.problem
    assert "unusable timestamp" not in bad.problem and "acc-x, acc-y, gyro-z" in bad.problem


def test_rebuilt_from_state_every_message_equals_one_monitor(model):
    """Each message on a bed rebuilt from the state captured after the previous one (what a Flink restore does, at
    any message) gives exactly the events of `rnnedge monitor` on the bed alone."""
    rows = with_faults(3, bed_signals(4, 1000)[3])
    expected = monitor_alone(model, rows)
    assert any(r["event"] == "alarm_start" for r in expected) and any(r["event"] == "reset" for r in expected)
    beds = BedWard(model, MonitorSettings(attach="upright"))
    state, got, chunked = None, [], 0
    for line in message_lines([rows]):
        message = messages.parse(line, 0.0)[0]
        beds.forget("bed-000")  # no live cache: the state alone carries the bed
        beds.ready("bed-000", state)
        samples = messages.samples(message, CHANNELS)
        chunked += not isinstance(samples, list)
        got += beds.feed({"bed-000": samples})["bed-000"]
        state = beds.capture("bed-000", state)
    beds.forget("bed-000")
    beds.ready("bed-000", state)
    got += beds.finish("bed-000")
    assert [comparable(json.loads(json.dumps(r))) for r in got] == [comparable(r) for r in expected]
    assert state["seq"] == -(-len(rows) // CHUNK) and chunked >= 0.9 * state["seq"]


def test_a_ward_of_beds_equals_each_bed_alone(model):
    """Eight beds with faults in one ward, messages interleaved, some beds rebuilt from their state mid-stream and
    the cache smaller than the ward's beds (beds evicted and rebuilt): each bed's events are the monitor's alone."""
    signals = bed_signals(8, 700)
    rows = [with_faults(bed, x) for bed, x in enumerate(signals)]
    beds, states = BedWard(model, MonitorSettings(attach="upright"), cache_size=5), {}
    got: dict[str, list[dict]] = {f"bed-{bed:03d}": [] for bed in range(8)}
    lines = message_lines(rows)
    for i, line in enumerate(lines):
        message = messages.parse(line, 0.0)[0]
        if i % 7 == 3:
            beds.forget(message.bed)
        beds.ready(message.bed, states.get(message.bed))
        got[message.bed] += beds.feed({message.bed: messages.samples(message, CHANNELS)})[message.bed]
        states[message.bed] = beds.capture(message.bed, states.get(message.bed))
    for bed in got:
        beds.ready(bed, states[bed])
        got[bed] += beds.finish(bed)
        expected = monitor_alone(model, rows[int(bed[4:])])
        assert [comparable(json.loads(json.dumps(r))) for r in got[bed]] == [comparable(r) for r in expected], bed


def test_a_block_line_is_each_beds_message(model):
    """A ward gateway's block (base64 float32, t0 + dt) gives each bed the chunk a JSON line per bed gives."""
    x = np.stack(bed_signals(3, 50))[:, :25]
    line = messages.encode_block(["a", "b", "c"], x, t0=[1.0, 2.0, 3.0], dt=0.02, sent=5.0)
    good, bad = messages.parse_line(line, 0.0, beds=frozenset({"a", "c"}))
    assert [m.bed for m in good] == ["a", "c"] and bad == [("b", "unknown bed (not in the allowed list)")]
    values, times = messages.samples(good[1], CHANNELS)
    assert np.array_equal(values, x[2]) and times.tolist() == (3.0 + np.arange(25) * 0.02).tolist()
    assert good[0].sent == 5.0
    for broken in ('{"beds": ["a"], "n": 25, "x": "AAAA"}', '{"beds": ["a", "a"], "n": 1, "x": ""}',
                   '{"beds": "a", "n": 1, "x": ""}', '{"beds": ["a"], "n": 1, "x": "!!"}'):
        good, bad = messages.parse_line(broken, 0.0)
        assert good == [] and bad[0][0] is None and "not a block of beds" in bad[0][1]
    x[1, 3, 2] = np.nan  # an unreadable value: that bed's message goes row by row, as a JSON line's would
    good, _ = messages.parse_line(messages.encode_block(["a", "b", "c"], x), 0.0)
    assert isinstance(messages.samples(good[1], CHANNELS), list) and not isinstance(
        messages.samples(good[0], CHANNELS), list)


def test_state_of_another_model_is_refused(bundle, model, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    other_model = rt.load(other, precision="fp32")
    state = {"version": STATE_VERSION, "model_sha256": "0" * 64}
    with pytest.raises(FleetError, match="another model .* restore with the same bundle"):
        check_state("bed-1", state, other_model.sha256)
    with pytest.raises(FleetError, match="state version"):
        check_state("bed-1", {"version": 99}, model.sha256)


@pytest.mark.parametrize("x", [[[1.0] * 6, [1.0] * 5], [[1.0] * 6, [True] + [1.0] * 5], [[1.0] * 6, ["1"] * 6],
                               [[1.0] * 6, [None] * 6], [[1.0] * 6, [1e39] * 6], [[1.0] * 6, [10**400] * 6]])
def test_a_message_with_an_unreadable_sample_goes_row_by_row(x):
    message = messages.Message("b", None, x, 0.0, None)
    assert isinstance(messages.samples(message, CHANNELS), list)
    assert isinstance(messages.samples(message._replace(x=[[1.0] * 6] * 2, t=[0.0, math.inf]), CHANNELS), list)


def test_a_readable_message_is_one_chunk_of_the_rows_values():
    x, t = [[1, 2.5, -3, 4e-3, 5, 6], [0.1, 0.2, 0.3, 0.4, 0.5, 1e30]], [10, 10.02]
    message = messages.Message("b", t, x, 0.0, None)
    values, times = messages.samples(message, CHANNELS)
    rows = messages.rows(message, CHANNELS)
    assert values.dtype == np.float32 and np.array_equal(values, np.stack([r.values for r in rows]))
    assert times.tolist() == [r.t for r in rows]



def test_a_bed_shard_is_the_same_in_every_process_and_run():
    """crc32, not Python's per-process salted hash(): a restored job must find each bed's state in its shard."""
    assert messages.shard("ward3-12", 128) == 56 and messages.shard("bed-000", 128) == 122


def test_a_state_older_than_the_ttl_is_a_new_bed(model):
    """The job's own TTL check (beside Flink's, whose entries PyFlink's read cache was measured to hand back after
    they expired): a state written more than ttl_s ago gives a new bed; a fresher one the same bed."""
    now = [1000.0]
    beds = BedWard(model, MonitorSettings(attach="upright"), ttl_s=4.0, clock=lambda: now[0])
    rows = bed_signals(1, 600)[0]
    beds.ready("bed-000", None)
    beds.feed({"bed-000": (rows[:300], None)})
    state = beds.capture("bed-000", None)
    now[0] += 3.0
    beds.ready("bed-000", state)
    assert beds.ward.bed("bed-000").steps == 300  # within the TTL: the live bed goes on
    now[0] += 2.0
    beds.ready("bed-000", state)
    assert beds.ward.bed("bed-000").steps == 0  # 5 s after the write: expired, a new bed
    assert beds.capture("bed-000", state)["seq"] == 1
