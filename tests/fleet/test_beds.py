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
from rnnedge.fleet.beds import BedMonitors, MonitorSettings, check_state
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
    """Each message on a monitor rebuilt from the state captured after the previous one (what a Flink restore
    does, at any message) gives exactly the events of `rnnedge monitor` on the bed alone."""
    rows = with_faults(3, bed_signals(4, 1000)[3])
    expected = monitor_alone(model, rows)
    assert any(r["event"] == "alarm_start" for r in expected) and any(r["event"] == "reset" for r in expected)
    beds = BedMonitors(model, MonitorSettings(attach="upright"))
    state, got, chunked = None, [], 0
    for line in message_lines([rows]):
        message = messages.parse(line, 0.0)[0]
        beds.forget("bed-000")  # no live cache: the state alone carries the bed
        monitor = beds.monitor("bed-000", state)
        samples = messages.samples(message, CHANNELS)
        chunked += not isinstance(samples, list)
        got += monitor.feed_rows(samples) if isinstance(samples, list) else monitor.feed_chunk(*samples)
        state = beds.capture("bed-000", monitor, state)
    beds.forget("bed-000")
    got += list(beds.monitor("bed-000", state).run([]))
    assert [comparable(json.loads(json.dumps(r))) for r in got] == [comparable(r) for r in expected]
    assert state["seq"] == -(-len(rows) // CHUNK) and chunked >= 0.9 * state["seq"]
    beds.close()


def test_state_of_another_model_is_refused(bundle, model, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    other_model = rt.load(other, precision="fp32")
    state = {"version": 2, "model_sha256": "0" * 64}
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
    they expired): a state written more than ttl_s ago gives a new monitor; a fresher one the same monitor."""
    now = [1000.0]
    beds = BedMonitors(model, MonitorSettings(attach="upright"), ttl_s=4.0, clock=lambda: now[0])
    rows = bed_signals(1, 600)[0]
    first = beds.monitor("bed-000", None)
    first.feed_chunk(rows[:300])
    state = beds.capture("bed-000", first, None)
    now[0] += 3.0
    assert beds.monitor("bed-000", state) is first  # within the TTL: the live monitor goes on
    now[0] += 2.0
    fresh = beds.monitor("bed-000", state)
    assert fresh is not first and fresh.steps == 0  # 5 s after the write: expired, a new bed
    assert beds.capture("bed-000", fresh, state)["seq"] == 1
    beds.close()
