"""Every score the project prints, checked against small cases worked out by hand in the test (not against another
call of the same code): tag accuracy with unlabelled samples, per-class recall and the confusion matrix's axes,
classify on the last step, forecast MSE/MAE (and persistence's) at horizons above 1, and the alarm scorer's windows
and rates."""

from __future__ import annotations

import numpy as np
import pytest

from rnnedge.data.recording import Recording
from rnnedge.monitor.events import Event, score_recording, summarize
from rnnedge.tasks import score

LABELS = ["A", "B", "C"]  # model classes 0, 1, 2 = dataset labels 1, 2, 3 (0: unlabelled)


def logits_for(classes: list[int], n: int = 3) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[classes] * 5.0


def rec(labels: list[int], signals: np.ndarray | None = None) -> Recording:
    x = np.zeros((len(labels), 1), np.float32) if signals is None else signals
    return Recording(x, np.array(labels, np.int64), 1, "r")


def test_tag_accuracy_recall_and_confusion_by_hand():
    # truth (dataset labels):  A  A  B  B  B  C  -  C    (- = 0, unlabelled: never scored)
    # predicted (classes):     A  B  B  B  A  C  B  A
    truth = [1, 1, 2, 2, 2, 3, 0, 3]
    predicted = [0, 1, 1, 1, 0, 2, 1, 0]
    report = score("tag", [logits_for(predicted)], [rec(truth)], LABELS)
    # scored: 7 samples; right: A(1) + B(2) + C(1) = 4
    assert report["scored_samples"] == 7
    assert report["accuracy"] == pytest.approx(4 / 7) and report["value"] == report["accuracy"]
    # rows are the truth, columns the prediction: A->[1,1,0], B->[1,2,0], C->[1,0,1]
    assert report["confusion"] == [[1, 1, 0], [1, 2, 0], [1, 0, 1]]
    # recall of a class: right / its true count (a row), not / predicted count (a column)
    assert report["per_class_recall"] == pytest.approx({"A": 1 / 2, "B": 2 / 3, "C": 1 / 2})


def test_tag_over_several_recordings_pools_samples_not_recordings():
    report = score("tag", [logits_for([0]), logits_for([1, 1, 1])], [rec([1]), rec([2, 2, 1])], LABELS)
    assert report["accuracy"] == pytest.approx(3 / 4)  # per recording it would be (1 + 2/3) / 2


def test_classify_scores_each_series_at_its_last_step():
    # series 1: wrong until the last step; series 2: right until the last step; series 3: a single vector output
    outputs = [logits_for([1, 1, 0]), logits_for([2, 2, 1]), logits_for([2])[0]]
    recordings = [rec([1, 1, 1]), rec([3, 3, 3]), rec([3])]
    report = score("classify", outputs, recordings, LABELS)
    assert report["scored_series"] == 3 and report["accuracy"] == pytest.approx(2 / 3)
    assert report["confusion"] == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert report["per_class_recall"] == pytest.approx({"A": 1.0, "B": 0.0, "C": 0.5})


def test_forecast_mse_and_mae_at_horizon_two_by_hand():
    # one channel x = 0, 1, 2, 3; horizon 2: step t predicts (x[t+1], x[t+2]); steps 0 and 1 have targets
    x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    outputs = np.array([[1.0, 3.0], [2.0, 3.0], [9.0, 9.0], [9.0, 9.0]], np.float32)  # last 2 steps: unscored
    report = score("forecast", [outputs], [rec([0] * 4, x)], [], horizon=2)
    # errors: step 0: (1-1, 3-2) = (0, 1); step 1: (2-2, 3-3) = (0, 0) -> MSE = 1/4, MAE = 1/4
    assert report["scored_samples"] == 2
    assert report["mse"] == pytest.approx(0.25) and report["mae"] == pytest.approx(0.25)
    assert report["value"] == report["mse"] and report["higher_is_better"] is False
    # persistence repeats x[t]: step 0: (0-1, 0-2) = (-1, -2); step 1: (1-2, 1-3) = (-1, -2) -> MSE 10/4, MAE 6/4
    assert report["persistence_mse"] == pytest.approx(2.5) and report["persistence_mae"] == pytest.approx(1.5)



def test_forecasts_from_inside_a_pieces_history_are_not_scored():
    """A later piece of a split in time streams the samples before it (history 2 here) and is scored from its own
    first sample on: x = 0..4, step t predicts x[t+1]; steps 0 and 1 are history, step 4 has no target."""
    x = np.arange(5, dtype=np.float32)[:, None]
    outputs = np.array([[9.0], [9.0], [3.0], [5.0], [9.0]], np.float32)
    piece = Recording(x, np.zeros(5, np.int64), 1, "r[2:5]", history=2)
    report = score("forecast", [outputs], [piece], [], horizon=1)
    assert report["scored_samples"] == 2  # steps 2 and 3: errors 0 and 1
    assert report["mse"] == pytest.approx(0.5) and report["persistence_mse"] == pytest.approx(1.0)


RATE = 50.0


def test_an_alarm_just_inside_and_just_outside_each_window():
    event = Event(onset=1000, end=1200, label="LIE_TO_STAND")  # zone [onset - 1 s, end) = [950, 1200)
    early, late = 1000 - 50, 1000 + 75  # EARLY_S = 1 s, LATE_S = 1.5 s at 50 Hz
    assert score_recording([early], [event], 5000, RATE).delays_s == [-1.0]  # just inside: detected, 1 s early
    assert score_recording([late], [event], 5000, RATE).delays_s == [1.5]  # just inside: detected, 1.5 s late
    too_early = score_recording([early - 1], [event], 5000, RATE)
    assert too_early.delays_s == [None] and too_early.false_alarms == [early - 1]  # before the zone: false
    too_late = score_recording([late + 1], [event], 5000, RATE)
    assert too_late.delays_s == [None] and too_late.false_alarms == [] and too_late.late_alarms == 1  # in the zone


def test_two_alarms_for_one_get_up_count_once_and_the_second_is_late_not_false():
    event = Event(onset=1000, end=1200, label="LIE_TO_SIT")
    result = score_recording([1010, 1060], [event], 5000, RATE)
    assert result.delays_s == [0.2] and result.false_alarms == [] and result.late_alarms == 1


def test_false_alarms_per_hour_use_the_time_outside_the_zones_and_blocked_time_apart():
    event = Event(onset=1000, end=1200, label="LIE_TO_SIT")  # zone [950, 1200): 250 steps
    blocked = np.zeros(180_000, bool)
    blocked[10_000:19_000] = True  # 9,000 steps (180 s) in a sensor fault
    result = score_recording([5000, 100_000], [event], 180_000, RATE, blocked=blocked)
    assert result.other_s == pytest.approx((180_000 - 250 - 9000) / RATE) and result.sensor_check_s == 180.0
    summary = summarize([result])
    assert summary["false_alarms"] == 2 and summary["recall"] == 0.0 and summary["events"] == 1
    assert summary["false_alarms_per_hour"] == pytest.approx(2 / ((180_000 - 250 - 9000) / RATE / 3600))


def test_unlabelled_get_up_alarms_are_neither_detections_nor_false():
    result = score_recording([3000], [], 10_000, RATE, unlabelled=[(3010, 3300)])  # zone starts 1 s before
    assert result.false_alarms == [] and result.unlabelled_alarms == 1
    assert result.other_s == pytest.approx((10_000 - (3300 - 2960)) / RATE)


def test_recall_and_delays_over_recordings():
    events = [Event(100, 200, "LIE_TO_SIT"), Event(2000, 2100, "LIE_TO_STAND")]
    first = score_recording([110], events, 5000, RATE)  # second event missed
    second = score_recording([2000 + 25], [Event(2000, 2100, "LIE_TO_SIT")], 5000, RATE)
    summary = summarize([first, second])
    assert (summary["events"], summary["detected"]) == (3, 2) and summary["recall"] == pytest.approx(2 / 3)
    assert summary["median_delay_s"] == pytest.approx(0.35)  # delays 0.2 s and 0.5 s
