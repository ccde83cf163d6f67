"""The get-up score (sum, smoothing, warm-up, lying gate) and event scoring on real HAPT labels."""

from __future__ import annotations

import numpy as np
import pytest

from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.events import EARLY_S, LATE_S, get_up_events, score_recording, summarize
from rnnedge.monitor.score import GetUpScore, ScoreConfig

LABELS = ["WALKING", "LAYING", "LIE_TO_SIT", "LIE_TO_STAND"]
RATE = 10.0


def logits(rows: list[list[float]]) -> np.ndarray:
    """Logits whose softmax is exactly the given probabilities."""
    return np.log(np.asarray(rows, float))


def test_score_sums_both_get_up_classes():
    score = GetUpScore(ScoreConfig(warmup_s=0), LABELS, RATE)
    np.testing.assert_allclose(score.feed(logits([[0.1, 0.5, 0.2, 0.2], [0.7, 0.1, 0.1, 0.1]])), [0.4, 0.2])


def test_warmup_zeroes_the_first_seconds():
    score = GetUpScore(ScoreConfig(warmup_s=0.3), LABELS, RATE)
    assert score.feed(logits([[0.01, 0.01, 0.49, 0.49]] * 5)).tolist() == pytest.approx([0, 0, 0, 0.98, 0.98])


def test_lying_gate_needs_recent_laying():
    score = GetUpScore(ScoreConfig(lying_gate_s=0.2, warmup_s=0), LABELS, RATE)
    up, lie, walk = [0.05, 0.05, 0.45, 0.45], [0.05, 0.85, 0.05, 0.05], [0.9, 0.05, 0.025, 0.025]
    out = score.feed(logits([up, lie, up, up, up, walk, up]))
    # open at the lying step and 2 steps after it, shut before any lying and once it is older
    assert (out > 0).tolist() == [False, True, True, True, False, False, False]


def test_smoothing_step_by_step_equals_chunked_and_resumes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    config = ScoreConfig(smoothing_s=0.3, lying_gate_s=1.0, warmup_s=0.5)
    whole = GetUpScore(config, LABELS, RATE).feed(x)
    score = GetUpScore(config, LABELS, RATE)
    parts = [score.feed(x[:77])]
    resumed = GetUpScore(config, LABELS, RATE)
    resumed.load_state(score.state())
    parts += [resumed.feed(row) for row in x[77:]]
    assert np.array_equal(np.concatenate(parts), whole)
    assert whole[:5].max() == 0 and whole.max() > 0


def test_a_model_without_get_up_labels_is_refused():
    with pytest.raises(MonitorError, match="LIE_TO_SIT"):
        GetUpScore(ScoreConfig(), ["WALKING", "LAYING"], RATE)


def test_events_on_real_hapt_labels(hapt):
    recording = next(r for r in hapt.recordings if r.subject == 2)
    events = get_up_events(recording.labels, hapt.label_names)
    assert [e.label for e in events] == ["LIE_TO_SIT", "LIE_TO_STAND"]
    assert all(hapt.label_names[recording.labels[e.onset - 1]] == "LAYING" for e in events)


def test_matching_window_zones_and_denominator():
    from rnnedge.monitor.events import Event

    rate, early, late = 50.0, round(EARLY_S * 50), round(LATE_S * 50)
    events = [Event(1000, 1200, "LIE_TO_SIT"), Event(5000, 5200, "LIE_TO_STAND")]
    starts = [1000 - early, 1100, 5000 + late + 1, 8000]  # on time (earliest allowed), duplicate, too late, false
    result = score_recording(starts, events, 10000, rate)
    assert result.delays_s == [-EARLY_S, None]
    assert result.false_alarms == [8000] and result.late_alarms == 2
    assert result.other_s == pytest.approx((10000 - 2 * (200 + early)) / rate)
    summary = summarize([result])
    assert summary["recall"] == 0.5 and summary["false_alarms"] == 1
    assert summary["false_alarms_per_hour"] == pytest.approx(3600 / result.other_s)
    assert score_recording([1000 + late], events, 10000, rate).delays_s == [LATE_S, None]  # inclusive end


def test_unlabelled_get_ups_are_neither_detections_nor_false_alarms(hapt):
    from rnnedge.monitor.events import unlabelled_get_ups

    names = ["UNLABELED", "LAYING", "SITTING", "STANDING"]
    labels = np.array([0] * 10 + [1] * 50 + [0] * 20 + [2] * 50 + [0] * 20 + [1] * 50 + [0] * 20 + [1] * 30)
    assert unlabelled_get_ups(labels, names) == [(60, 80)]  # lying -> gap -> sitting; not lying -> gap -> lying
    rate, early = 10.0, round(EARLY_S * 10)
    result = score_recording([55, 75, 150], [], len(labels), rate, unlabelled=[(60, 80)])
    assert result.unlabelled_alarms == 2 and result.false_alarms == [150]
    assert result.other_s == pytest.approx((len(labels) - (20 + early)) / rate)
    assert summarize([result])["unlabelled_get_up_alarms"] == 2
    # on the real labels, only subject 28 (validation) has such stretches: the test subjects' scores are unchanged
    found = {r.subject for r in hapt.recordings if unlabelled_get_ups(r.labels, hapt.label_names)}
    assert found == {28}
