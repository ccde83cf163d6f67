"""The placement, rate and fault sweeps of evaluate-alarms (monitor/sweep.py, splice.py) and the scoring they add."""

from __future__ import annotations

import numpy as np
import pytest

from rnnedge.monitor.events import Event, score_recording, summarize
from rnnedge.monitor.sweep import at_rate, axis_rotations, on_feet, random_rotations, rotate
from tests.monitor.conftest import CHANNELS


def test_rotations_are_proper_and_distinct():
    axes = axis_rotations()
    assert len(axes) == 24 and len({r.tobytes() for _, r in axes}) == 24 and len({n for n, _ in axes}) == 24
    for _, r in axes + random_rotations(20, seed=3):
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    assert np.array_equal(random_rotations(2, 5)[1][1], random_rotations(2, 5)[1][1])


def test_rotation_turns_both_triplets_and_keeps_magnitudes(recording):
    x = recording.signals[:500]
    r = dict(axis_rotations())["axes +x,-y,-z"]  # upside down about x
    y = rotate(x, r, CHANNELS)
    assert np.allclose(y[:, [0, 3]], x[:, [0, 3]]) and np.allclose(y[:, [1, 2, 4, 5]], -x[:, [1, 2, 4, 5]])
    q = random_rotations(1, 0)[0][1]
    z = rotate(x, q, CHANNELS)
    assert np.allclose(np.linalg.norm(z[:, :3], axis=1), np.linalg.norm(x[:, :3], axis=1), atol=1e-5)


def test_other_rates_come_back_to_the_model_rate_by_timestamps(recording):
    x = recording.signals[:3000]
    for hz in (25.0, 100.0):
        y = at_rate(x, 50.0, hz)
        assert abs(len(y) - len(x)) <= 2
        n = min(len(x), len(y))
        assert np.abs(y[100:n] - x[100:n]).mean() < 0.02  # interpolation error, in g and rad/s


def test_sensor_check_time_is_counted_apart_and_lead_to_feet():
    blocked = np.zeros(1000, bool)
    blocked[500:800] = True
    score = score_recording([101], [Event(100, 150, "LIE_TO_SIT")], 1000, 50.0, blocked=blocked)
    assert score.sensor_check_s == 6.0 and score.other_s == (1000 - 50 - 50 - 300) / 50
    assert summarize([score])["sensor_check_hours"] == 6.0 / 3600
    labels = np.zeros(4000, np.int64)
    labels[200:300] = 5  # STANDING (HAPT label index)
    names = ["UNLABELED", "WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING"]
    assert on_feet(labels, names, 100, 50.0) == 200 and on_feet(labels, names, 400, 50.0) is None


def test_sweep_scores_every_condition_worst_first_and_plots(model, recording, tmp_path):
    from rnnedge.monitor import DEFAULT
    from rnnedge.monitor.evaluate import sweep_conditions
    from rnnedge.monitor.plot import plot_sweep

    rows = sweep_conditions(model, [recording], DEFAULT, {"random": 1, "seed": 0, "rates": [25.0]})
    assert len(rows) == 24 + 1 + 1 and [m["recall"] for m in rows] == sorted(m["recall"] for m in rows)
    upright = {m["condition"]: m for m in rows}
    assert upright["axes +x,+y,+z"]["recall"] == 1.0 and upright["rate 25 Hz"]["recall"] == 1.0
    assert upright["axes +x,+y,+z"]["lead_to_transition_end_s"]["n"] == 2
    assert plot_sweep(rows, tmp_path / "p.png") and (tmp_path / "p.png").stat().st_size > 10_000


def test_long_stream_without_reset(model, recording):
    from rnnedge.data.hapt import load_hapt
    from rnnedge.monitor import DEFAULT
    from rnnedge.monitor.evaluate import long_stream
    from rnnedge.monitor.events import get_up_events

    long = long_stream(model, [recording], DEFAULT, hours=0.1)  # one wearer: the recording repeated, cut to 0.1 h
    labels = np.tile(recording.labels, 1 + 18000 // len(recording))[:18000]
    assert long["wearers"] == 1 and long["hours"] == pytest.approx(0.1)
    assert long["alarms"]["events"] == len(get_up_events(labels, load_hapt().label_names)) >= 4
    assert 0.5 < long["per_sample_accuracy"] <= 1 and len(long["max_abs_state_by_hour"]) == 1
    assert long["alarms"]["false_alarms"] == 0  # none at the seams (the clock jumps there, state kept)


@pytest.mark.slow
def test_faults_spliced_before_a_get_up_are_checked_and_the_get_up_still_alarms(model, recording):
    """evaluate-alarms --faults on one recording (the default point, with its frame): each fault raises a
    sensor_check within 30 s, no alarm while it lasts, and the get-up 30 s after it is detected."""
    from rnnedge.data.hapt import load_hapt
    from rnnedge.monitor import DEFAULT
    from rnnedge.monitor.splice import FAULT_S, fault_conditions

    rows = fault_conditions(model, [recording], DEFAULT, load_hapt().label_names)
    assert [r["fault"] for r in rows] == list(FAULT_S)
    for row in rows:
        assert row["recordings"] == row["sensor_check"] == row["get_up_after_detected"] == 1, row
        assert row["check_delay_s"][1] <= 30.0 and row["alarms_during"] == 0, row
