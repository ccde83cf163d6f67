"""The alarm state machine, step by step: threshold, hysteresis, refractory, chunking."""

from __future__ import annotations

import numpy as np
import pytest

from rnnedge.monitor.alarm import Alarm, AlarmConfig, alarm_intervals
from rnnedge.monitor.errors import MonitorError

RATE = 10.0  # 10 Hz: refractory_s=0.5 is 5 steps


def run(scores, threshold=0.5, release=0.3, refractory_s=0.0):
    return alarm_intervals(np.asarray(scores, float), AlarmConfig(threshold, release, refractory_s), RATE)


def test_starts_at_threshold_inclusive_and_ends_below_release():
    assert run([0.1, 0.49, 0.5, 0.6, 0.2, 0.1]) == [(2, 4)]


def test_hysteresis_keeps_alarm_on_between_release_and_threshold():
    # 0.4 and 0.3 are inside the band [release, threshold): still on; 0.29 ends it
    assert run([0.6, 0.4, 0.3, 0.45, 0.29, 0.1]) == [(0, 4)]


def test_without_hysteresis_a_hovering_score_flaps():
    assert run([0.6, 0.4, 0.6, 0.4], release=0.5) == [(0, 1), (2, 3)]


def test_refractory_blocks_new_starts_then_level_triggers():
    scores = [0.9, 0.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.0]
    # ends at step 1; refractory 5 steps blocks starts at 1..5; still above at 6 -> new alarm at 6
    assert run(scores, refractory_s=0.5) == [(0, 1), (6, 8)]
    assert run(scores, refractory_s=0.0) == [(0, 1), (2, 8)]


def test_alarm_still_on_at_the_end_and_never_on():
    assert run([0.0, 0.7, 0.8]) == [(1, 3)]
    assert run([0.0, 0.49, 0.1]) == []
    assert run([]) == []


def test_threshold_edges():
    assert run([0.99, 0.999, 0.0], threshold=0.999, release=0.5) == [(1, 2)]
    assert run([0.0, 0.0], threshold=1e-9, release=0.0) == []


@pytest.mark.parametrize(("settings", "message"), [
    ((0.5, 0.6, 0.0), "release must be in"),  # above the threshold
    ((0.5, 0.3, -1.0), "refractory_s must be in"),
    ((1.5, 0.3, 5.0), "threshold must be in"),  # a probability never reaches it: no alarm ever
    ((1.0, 0.3, 5.0), "threshold must be below 1"),
    ((0.0, 0.0, 5.0), "threshold must be in"),  # an alarm from the first step on
    ((float("nan"), 0.3, 5.0), "threshold must be in"),
    ((0.9, 0.3, 1e400), "refractory_s must be in"),
    ((0.9, 0.3, float("inf")), "refractory_s must be in"),
    (("0.9", 0.3, 5.0), "threshold must be a number"),
    ((True, 0.3, 5.0), "threshold must be a number"),
])
def test_settings_that_would_silence_the_alarm_are_refused(settings, message):
    with pytest.raises(MonitorError, match=message):
        AlarmConfig(*settings)


def test_chunked_and_step_by_step_equal_whole_series_and_state_round_trips():
    rng = np.random.default_rng(0)
    scores = np.clip(np.cumsum(rng.normal(0, 0.15, 3000)) % 1.3, 0, 1)
    config = AlarmConfig(0.7, 0.4, 0.8)
    whole = Alarm(config, RATE).feed(scores)
    assert len(whole) > 20
    stepped, alarm = [], Alarm(config, RATE)
    for i, s in enumerate(scores):
        if i % 97 == 0:  # restore from saved state now and then, as a resumed monitor does
            state, alarm = alarm.state(), Alarm(config, RATE)
            alarm.load_state(state)
        stepped += alarm.feed(np.array([s]))
    chunked, alarm = [], Alarm(config, RATE)
    for chunk in np.array_split(scores, 37):
        chunked += alarm.feed(chunk)
    assert stepped == whole == chunked
