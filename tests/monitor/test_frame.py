"""The upright frame (rnnedge/monitor/frame.py): a sensor clipped on in any orientation, calibrated at attach time
in the monitor, alarms like the upright sensor; offline scoring and the live monitor agree; resume is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnedge.data.hapt import hapt_recording, load_hapt
from rnnedge.monitor import DEFAULT, Monitor, MonitorError, OperatingPoint
from rnnedge.monitor.evaluate import streamed, upright
from rnnedge.monitor.events import get_up_events
from rnnedge.monitor.frame import rotation_onto
from rnnedge.monitor.sweep import axis_rotations, random_rotations, rotate
from tests.monitor.conftest import CHANNELS, TRACE


@pytest.fixture(scope="module")
def point():
    return OperatingPoint(DEFAULT.score, DEFAULT.alarm, {}, upright())


def test_rotation_onto():
    rng = np.random.default_rng(0)
    for _ in range(20):
        u, v = (w / np.linalg.norm(w) for w in rng.normal(size=(2, 3)))
        for target in (v, -u, u):
            r = rotation_onto(u, target)
            assert np.allclose(r @ u, target) and np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1)


def test_frame_travels_in_the_operating_point(point, tmp_path):
    assert OperatingPoint.load(point.save(tmp_path / "p.json")) == point
    (tmp_path / "bad.json").write_text(json.dumps({**json.loads((tmp_path / "p.json").read_text()), "frame": [9]}))
    with pytest.raises(MonitorError, match="frame"):
        OperatingPoint.load(tmp_path / "bad.json")


@pytest.mark.parametrize("turn", ["axes -x,-y,+z", "random"])
def test_any_orientation_alarms_at_the_get_ups_live_as_offline(model, recording, point, turn):
    r = random_rotations(1, 7)[0][1] if turn == "random" else dict(axis_rotations())[turn]
    moved = type(recording)(rotate(recording.signals, r, CHANNELS), recording.labels, 2, "moved")
    monitor = Monitor(model, point, attach="upright")
    records = [x for i, s in enumerate(moved.signals) for x in monitor.push(s, t=i / 50)]
    assert records[0]["event"] == "calibrating"
    armed = [x for x in records if x["event"] == "reset" and x["id"].endswith("reset-calibrated")]
    assert len(armed) == 1 and armed[0]["t"] < 20
    starts = [x["t"] for x in records if x["event"] == "alarm_start"]
    assert len(starts) == 2 and 102.8 <= starts[0] <= 104.5 and 147.5 <= starts[1] <= 149.5
    assert starts == pytest.approx([a / 50 for a in searched(model, moved, point, "upright")])


def test_resume_across_calibration_is_exact(model, recording, point, tmp_path):
    moved = rotate(recording.signals[:6000], dict(axis_rotations())["axes +y,+z,+x"], CHANNELS)
    whole = Monitor(model, point, attach="upright")
    reference = [x for i, s in enumerate(moved) for x in whole.push(s, t=i / 50)]
    for stop in (300, 1400):  # before and after calibration
        steps, tail = resumed_tail(model, point, moved, stop, tmp_path, "upright", 2.0)
        assert tail == [x for x in reference if x["t"] >= steps / 50]


def test_faults_are_read_in_the_sensor_axes_not_the_rotated_ones(model, recording, point):
    moved = rotate(recording.signals[:5000], random_rotations(1, 3)[0][1], CHANNELS)
    moved[2500:4000, 0] = moved[2500, 0]  # one channel stuck for 30 s, after calibration
    monitor = Monitor(model, point, attach="upright")
    checks = [x for i, s in enumerate(moved) for x in monitor.push(s, t=i / 50) if x["event"] == "sensor_check"]
    assert [x["fault"] for x in checks] == ["stuck"] and 50 <= checks[0]["t"] <= 55


def resumed_tail(model, point, signals, stop, folder, attach, every_s) -> tuple[int, list[dict]]:
    """Stream signals[:stop] with snapshots every `every_s`, resume a new monitor from the last one and stream the
    rest: (the step it resumed at, its events but snapshots)."""
    snap = folder / f"{stop}.json"
    first = Monitor(model, point, snapshot=snap, snapshot_every_s=every_s, attach=attach)
    for i, s in enumerate(signals[:stop]):
        first.push(s, t=i / 50)
    first.close()
    resumed = Monitor(model, point, snapshot=snap, attach=attach)
    steps = resumed.steps
    tail = [x for i, s in enumerate(signals) for x in resumed.push(s, t=i / 50) if i >= steps]
    return steps, [x for x in tail if x["event"] != "snapshot"]


def searched(model, recording, point, attach):
    """The alarm starts evaluate-alarms' point search finds for `point`: the logits a ward streamed (under another
    point with the same frame), scored over the whole recording (evaluate.Streamed)."""
    other = OperatingPoint(frame=point.frame)
    assert (other.score, other.alarm) != (point.score, point.alarm)
    return streamed(model, [recording], other, attach, search=True).starts(point)[0]


def from_lying(recording):
    first = int(np.flatnonzero(recording.labels == load_hapt().label_names.index("LAYING"))[0])
    return type(recording)(recording.signals[first:], recording.labels[first:], recording.subject, "from lying")


def test_attached_lying_in_the_documented_placement_alarms_live_as_offline(model, recording, point):
    lying = from_lying(recording)
    monitor = Monitor(model, point)  # attach="lying": the default
    records = [x for i, s in enumerate(lying.signals) for x in monitor.push(s, t=i / 50)]
    armed = [x for x in records if x["id"].endswith("reset-calibrated")]
    assert len(armed) == 1 and "documented placement" in armed[0]["reason"] and armed[0]["t"] < 10
    starts = [x["t"] for x in records if x["event"] == "alarm_start"]
    onsets = [e.onset / 50 for e in get_up_events(lying.labels, load_hapt().label_names)]
    assert len(starts) == len(onsets) == 2 and all(-1 <= a - o <= 1.5 for a, o in zip(starts, onsets, strict=True))
    confirmed = next(x["t"] for x in records if x["id"].endswith("calibrating-confirmed"))  # sitting, between them
    assert [x.get("frame") for x in records if x["event"] == "alarm_start"] == ["provisional", None]
    assert starts[0] < confirmed < starts[1]
    assert starts == pytest.approx([a / 50 for a in searched(model, lying, point, "lying")])


@pytest.mark.parametrize("turn", ["axes +y,+x,-z", "axes -z,+y,+x"])
def test_attached_lying_elsewhere_never_alarms_from_an_unresolved_frame(model, recording, point, turn):
    """Gravity along the sensor's long axis while lying (first turn), or a sensor the model does not see lying in
    (second): the frame cannot be known, an event says so, and no alarm follows, live or offline."""
    lying = from_lying(recording)
    moved = rotate(lying.signals, dict(axis_rotations())[turn], CHANNELS)
    monitor = Monitor(model, point, attach="lying")
    records = [x for i, s in enumerate(moved) for x in monitor.push(s, t=i / 50)]
    unresolved = [x for x in records if x["id"].endswith("calibrating-unresolved")]
    assert len(unresolved) == 1 and "cannot be known" in unresolved[0]["detail"]
    assert not [x for x in records if x["event"] == "alarm_start"]
    assert searched(model, type(lying)(moved, lying.labels, 2, "moved"), point, "lying") == []


def test_attached_lying_resumes_exactly_before_and_after_calibration(model, recording, point, tmp_path):
    lying = from_lying(recording).signals[:3000]
    whole = Monitor(model, point)
    reference = [x for i, s in enumerate(lying) for x in whole.push(s, t=i / 50)]
    for stop in (100, 1000):
        steps, tail = resumed_tail(model, point, lying, stop, tmp_path, "lying", 1.0)
        assert tail == [x for x in reference if x["t"] >= steps / 50]


@pytest.fixture(scope="module")
def lying_then_walking():
    """The trace recording from its first lying sample to 30 s into its first walk: two get-ups, then walking."""
    names = load_hapt().label_names
    whole = hapt_recording(TRACE)
    walk = int(np.flatnonzero(whole.labels == names.index("WALKING"))[0])
    first = from_lying(whole)
    cut = walk - (len(whole) - len(first)) + 1500
    return type(first)(first.signals[:cut], first.labels[:cut], first.subject, "lying, then walking"), walk


def test_attached_lying_as_placed_is_confirmed_once_upright(model, lying_then_walking, point):
    """The documented placement: alarms at both get-ups (each needing the long axis rising), and the frame confirmed
    when the wearer is seen upright: no reset, the model goes on."""
    lying, _ = lying_then_walking
    records = _streamed(model, point, lying.signals)
    confirmed = [x for x in records if x["id"].endswith("calibrating-confirmed")]
    assert len(confirmed) == 1 and "confirmed" in confirmed[0]["detail"]
    assert len([x for x in records if x["id"].endswith("reset-calibrated")]) == 1  # the lying calibration only
    starts = [x["t"] for x in records if x["event"] == "alarm_start"]
    onsets = [e.onset / 50 for e in get_up_events(lying.labels, load_hapt().label_names)]
    assert len(onsets) == 2 and all(any(-1 <= a - o <= 1.5 for a in starts) for o in onsets)
    assert all((x.get("frame") == "provisional") == (x["t"] < confirmed[0]["t"])
               for x in records if x["event"] == "alarm_start")


def test_attached_lying_upside_down_raises_nothing_until_the_walk_resolves_it(model, lying_then_walking, point):
    """Upside down along the body: gravity while lying cannot tell it from the documented placement, but the long
    axis falls as the wearer sits up: no alarm at the get-ups; the wearer's walk resolves the frame (an upright
    calibration, the model afresh); live and offline agree."""
    lying, walk = lying_then_walking
    moved = rotate(lying.signals, dict(axis_rotations())["axes -x,-y,+z"], CHANNELS)
    records = _streamed(model, point, moved)
    walked = [x for x in records if x["id"].endswith("reset-calibrated") and "walked" in x["reason"]]
    assert len(walked) == 1
    first_walk_s = (walk - (len(hapt_recording(TRACE)) - len(from_lying(hapt_recording(TRACE))))) / 50
    last_get_up_s = get_up_events(lying.labels, load_hapt().label_names)[-1].onset / 50
    assert last_get_up_s < walked[0]["t"] < first_walk_s + 15  # HAPT's subjects walk unlabelled between tasks
    assert not [x for x in records if x["event"] == "alarm_start" and x["t"] < walked[0]["t"]]
    starts = [x["t"] for x in records if x["event"] == "alarm_start"]
    assert starts == pytest.approx([a / 50 for a in searched(model, type(lying)(moved, lying.labels, 2, "moved"),
                                                               point, "lying")])


@pytest.mark.parametrize("degrees", [70, -70])
def test_attached_lying_turned_about_gravity_raises_nothing_until_the_walk(model, lying_then_walking, point, degrees):
    """Turned about the axis gravity shows while the wearer lies: gravity cannot tell it from the documented
    placement, and as the wearer sits up the sensor's long axis rises too, but more sideways than along itself
    (tan 70 deg = 2.7; turned 60 deg, this recording's stand-up, itself 13 deg sideways, passes the 35 deg test):
    no alarm at the get-ups; the walk resolves the frame. Without the sideways test both alarm."""
    lying, _ = lying_then_walking
    g = lying.signals[:150, :3].mean(axis=0)
    k = np.cross(np.eye(3), g / np.linalg.norm(g))  # the cross-product matrix of the lying gravity's direction
    angle = np.radians(degrees)
    turn = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    moved = rotate(lying.signals, turn, CHANNELS)
    records = _streamed(model, point, moved)
    walked = [x for x in records if x["id"].endswith("reset-calibrated") and "walked" in x["reason"]]
    assert len(walked) == 1
    assert not [x for x in records if x["event"] == "alarm_start" and x["t"] < walked[0]["t"]]


def _streamed(model, point, signals) -> list[dict]:
    monitor = Monitor(model, point, attach="lying")
    return [x for i, s in enumerate(signals) for x in monitor.push(s, t=i / 50)]


def test_resume_inside_the_walk_that_resolves_the_frame_is_exact(model, lying_then_walking, point, tmp_path):
    """A snapshot taken while the gait windows fill (state: |a| window, walking blocks, the provisional level)
    resumes to the same events as one stream."""
    lying, _ = lying_then_walking
    moved = rotate(lying.signals, dict(axis_rotations())["axes -x,-y,+z"], CHANNELS)
    reference = _streamed(model, point, moved)
    walked = next(x for x in reference if x["id"].endswith("reset-calibrated") and "walked" in x["reason"])
    stop = round(walked["t"] * 50) - 60
    steps, tail = resumed_tail(model, point, moved, stop, tmp_path, "lying", 0.5)
    assert stop - 30 <= steps <= stop and tail == [x for x in reference if x["t"] >= steps / 50]
