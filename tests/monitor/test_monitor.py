"""The monitor on a real bundle (the default model, ONNX fp32) and the real runtime, over real HAPT data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rnnedge.monitor import Monitor, MonitorError, OperatingPoint
from rnnedge.monitor.alarm import alarm_intervals
from rnnedge.monitor.score import GetUpScore
from rnnedge.monitor.sources import csv_rows, open_source
from tests.monitor.conftest import TRACE, as_recorded


def alarms(records):
    return [(r["event"], r["t"]) for r in records if r["event"].startswith("alarm")]


def test_monitor_alarms_at_the_get_ups_and_equals_offline_scoring(model, recording):
    monitor = Monitor(model)
    records = [r for i, x in enumerate(recording.signals) for r in monitor.push(x, t=i / 50)]
    starts = [t for e, t in alarms(records) if e == "alarm_start"]
    assert len(starts) == 2 and 102.8 <= starts[0] <= 104.5 and 147.5 <= starts[1] <= 149.5
    # offline: the model's stream over the whole recording, the score and alarm over its whole length
    point = as_recorded()
    scores = GetUpScore(point.score, list(model.manifest.output.labels), 50.0).feed(model.stream().feed(
        recording.signals))
    expected = [a / 50 for a, _ in alarm_intervals(scores, point.alarm, 50.0)]
    assert starts == pytest.approx(expected)


def test_snapshot_resume_continues_identically(model, recording, tmp_path):
    reference = alarms(Monitor(model).run(open_source(TRACE, list(model.manifest.input.channels), 50.0)))
    snap = tmp_path / "m.json"
    rows = list(open_source(TRACE, list(model.manifest.input.channels), 50.0))
    first = Monitor(model, snapshot=snap, snapshot_every_s=10.0)
    head = [r for row in rows[:5210] for r in first.feed_row(row)]  # killed at 104.2 s: mid-alarm
    assert first.alarm_active and snap.exists()
    first.close()  # killed: its lock on the snapshot path goes with it
    resumed = Monitor(model, snapshot=snap)  # last snapshot at 100 s: rows up to then are replayed as late
    assert resumed.steps == 5000
    tail = list(resumed.run(rows))
    assert alarms(head) + [a for a in alarms(tail) if a[1] > 104.18] == reference
    late = [r for r in tail if r["event"] == "summary"][0]["sample_issues"]["late"]
    assert late == 5000


def test_late_missing_malformed_and_gap_never_crash(model, recording):
    lines = ["t,acc-x,acc-y,acc-z,gyro-x,gyro-y,gyro-z"]
    lines += [",".join([f"{i / 50:.2f}", *map(str, x)]) for i, x in enumerate(recording.signals[:1000])]
    lines[100] = "1.98,oops,0,0,0,0,0"  # malformed value: held
    lines[200] = "1,2,3"  # wrong field count: dropped, its slot filled as missing
    lines[300] = lines[250]  # late (a repeat): dropped, and its own slot is then missing
    del lines[400:410]  # 10 missing samples: held
    lines.insert(600, "# a comment")
    lines[900:] = [",".join([f"{float(t.split(',')[0]) + 30:.2f}", *t.split(",")[1:]]) for t in lines[900:]]
    monitor = Monitor(model, max_gap_s=2.0)
    records = list(monitor.run(csv_rows(lines, list(model.manifest.input.channels))))
    summary = records[-1]
    assert summary["sample_issues"] == {"malformed": 2, "late": 1, "missing": 3, "gap": 1}
    assert any(r["event"] == "reset" for r in records)
    assert summary["t"] == pytest.approx(999 / 50 + 30)


def test_untimed_stdin_cli_writes_json_lines(bundle, recording, tmp_path):
    text = "\n".join(",".join(map(str, x)) for x in recording.signals[:300]) + "\nnot,a,number\n"
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "monitor", str(bundle), "--precision", "fp32",
                           "--input", "-", "--report-every", "1"], input=text, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["t"] for r in records if r["event"] == "probability"] == [0, 1, 2, 3, 4, 5, 6]
    assert records[-1]["steps"] == 301 and records[-1]["sample_issues"] == {"malformed": 1}


def test_user_errors_are_one_line_exit_2(bundle, tmp_path):
    for args, message in ((["--input", "hapt:99"], "no such HAPT recording"),
                          (["--input", str(tmp_path / "none.csv")], "no such input file"),
                          (["--input", "hapt:2", "--operating-point", str(tmp_path)], "operating point")):
        done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "monitor", str(bundle), "--precision", "fp32",
                               *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_header_must_name_the_channels():
    with pytest.raises(MonitorError, match="header lacks"):
        list(csv_rows(["t,a,b", "0,1,2"], ["acc-x", "acc-y"]))
    rows = list(csv_rows(["acc-y,time,acc-x", "2,0.5,1"], ["acc-x", "acc-y"]))
    assert rows[0].t == 0.5 and np.array_equal(rows[0].values, [1, 2])


@pytest.mark.slow
def test_evaluate_alarms_chooses_on_validation_and_scores_test(model, tmp_path):
    from rnnedge.monitor.evaluate import evaluate_alarms

    report = evaluate_alarms(model, tmp_path, trace=TRACE)
    assert report["test"]["events"] == 36 and report["test"]["recall"] >= 0.8
    assert report["test"]["false_alarms_per_hour"] <= 2.0
    rule = report["operating_point"]["chosen_on"]["rule"]
    assert rule["subjects"] == [3, 8, 15, 22, 28]
    assert report["validation"]["false_alarms"] <= rule["false_alarms_allowed"]
    assert {p.name for p in tmp_path.iterdir()} == {"report.json", "report.md", "operating_point.json", "trace.png"}
    assert OperatingPoint.load(tmp_path / "operating_point.json").alarm.threshold == \
        report["operating_point"]["alarm"]["threshold"]


def test_a_snapshot_that_cannot_be_written_is_an_event_and_the_alarm_runs_on(model, recording, tmp_path):
    snap = tmp_path / "m.json"
    (tmp_path / "m.json.50.stream").mkdir()  # the first save's stream file (step 50) cannot be written
    monitor = Monitor(model, snapshot=snap, snapshot_every_s=1.0)
    records = [r for i, x in enumerate(recording.signals[:6000]) for r in monitor.push(x, t=i / 50)]
    errors = [r for r in records if r["event"] == "snapshot_error"]
    assert len(errors) == 1 and "m.json.50.stream" in errors[0]["error"] and errors[0]["path"] == str(snap)
    assert sum(r["event"] == "snapshot" for r in records) > 100  # the next saves work
    assert [r["event"] for r in records].count("alarm_start") == 1  # the get-up at ~103 s, as without the fault
    monitor.close()
