"""Field faults injected into a real recording (HAPT test subject 2, 160 s, two get-ups), streamed through the
monitor on the real runtime. Each fault either keeps detection working (both get-ups alarmed, within the
1.5 s the alarms are scored with) or produces a visible event within 5 s of stream time, and every record is
strict JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.monitor import Monitor
from rnnedge.monitor.monitor import json_line
from rnnedge.monitor.sources import csv_rows
from tests.monitor.conftest import CHANNELS, as_recorded, csv_lines, export

FAULT_T = 60.0  # every fault starts here, well before the first get-up (~103.5 s)
ROW = int(FAULT_T * 50) + 1  # its line (line 0 is the header)


def run(model, lines, **options) -> list[dict]:
    records = list(Monitor(model, **options).run(csv_rows(lines, CHANNELS)))
    for record in records:
        json.loads(json_line(record), parse_constant=_refuse)  # strict JSON: no NaN / Infinity tokens
    return records


def _refuse(name: str):
    raise AssertionError(f"{name} in the output")


def starts(records) -> list[float]:
    return [r["t"] for r in records if r["event"] == "alarm_start"]


def detected(records, reference) -> bool:
    """Both get-ups alarmed, each within 1.5 s of where the clean recording alarms (a sensor that held one value
    for half a minute leaves the model a little behind)."""
    found = starts(records)
    return len(found) == len(reference) and all(abs(a - b) <= 1.5 for a, b in zip(found, reference, strict=True))


def events(records, name: str, after: float = FAULT_T) -> list[dict]:
    return [r for r in records if r["event"] == name and r["t"] >= after - 0.02]


@pytest.fixture(scope="module")
def clean(recording) -> list[str]:
    return csv_lines(recording.signals)


@pytest.fixture(scope="module")
def reference(model, clean) -> list[float]:
    found = starts(run(model, clean))
    assert len(found) == 2 and 102.8 <= found[0] <= 104.5 and 147.5 <= found[1] <= 149.5
    return found


def with_time(line: str, t: str) -> str:
    return ",".join([t, *line.split(",")[1:]])


def shifted(lines: list[str], start: int, by: float) -> list[str]:
    return lines[:start] + [with_time(line, f"{float(line.split(',')[0]) + by:.2f}") for line in lines[start:]]


def test_glitch_value_keeps_detection(model, clean, reference):
    lines = clean.copy()
    fields = lines[ROW].split(",")
    lines[ROW] = ",".join([*fields[:3], "1e30", *fields[4:]])  # finite, float32-representable, absurd
    records = run(model, lines)
    assert starts(records) == reference
    if model.manifest.input.valid_range is not None:  # the runtime holds it: the monitor says so
        assert events(records, "sample")[0]["issue"] == "held"


@pytest.mark.parametrize("bad", ["1e9", "1e308", "-1e308", "inf", "nan", "oops"])
def test_one_absurd_timestamp_changes_nothing_but_is_reported(model, clean, reference, bad):
    lines = clean.copy()
    lines[ROW] = with_time(lines[ROW], bad)
    records = run(model, lines)
    assert starts(records) == reference
    issue = events(records, "sample")[0]
    assert issue["t"] <= FAULT_T + 0.1 and issue["issue"] in ("timestamp", "malformed")
    assert records[-1]["steps"] == 8000 and records[-1]["t"] == pytest.approx(7999 / 50)


def test_absurd_first_timestamp(model, clean, reference):
    lines = clean.copy()
    lines[1] = with_time(lines[1], "-1e308")
    records = run(model, lines)
    assert starts(records) == reference
    assert records[0]["event"] == "sample" and "unusable timestamp" in records[0]["detail"]


@pytest.mark.parametrize("by", [-100.0, -1e9, 1000.0, 1e9])
def test_clock_jump_resyncs_and_keeps_detection(model, clean, reference, by):
    records = run(model, shifted(clean, ROW, by))
    assert starts(records) == pytest.approx([t + by for t in reference])
    resync = [r for r in records if r["event"] in ("resync", "reset")]
    assert len(resync) == 1 and resync[0]["t"] == pytest.approx(FAULT_T + by)
    assert resync[0]["id"] == ("3000:resync" if by < 0 else "3000:reset-gap")  # forward: a gap, warm-up again
    assert records[-1]["steps"] == 8000  # nothing dropped


def test_small_step_back_drops_only_what_overlaps(model, clean, reference):
    lines = shifted(clean, ROW, -1.0)  # 1 s back: within max_gap, the overlapping second is late
    records = run(model, lines)
    assert starts(records) == pytest.approx([t - 1.0 for t in reference], abs=0.05)
    assert records[-1]["sample_issues"] == {"late": 50}


def test_stuck_clock_is_reported_while_it_lasts(model, clean, reference):
    lines = clean.copy()
    stuck = lines[ROW].split(",")[0]
    lines[ROW:ROW + 500] = [with_time(line, stuck) for line in lines[ROW:ROW + 500]]  # 10 s on one timestamp
    records = run(model, lines)
    checks = events(records, "sensor_check")
    assert checks and checks[0]["t"] <= FAULT_T + 5 and checks[0]["issues"] == {"late": 150}
    assert starts(records) == reference  # the clock comes back: a gap, reset; warm-up done long before 103 s


@pytest.mark.parametrize("dead", ["nan", ""])
def test_dead_sensor_is_reported_periodically_and_cleared(model, clean, reference, dead):
    lines = clean.copy()
    lines[ROW:ROW + 1250] = [",".join([line.split(",")[0], *[dead] * 6]) for line in lines[ROW:ROW + 1250]]  # 25 s
    records = run(model, lines)
    checks = events(records, "sensor_check")
    assert [r["t"] for r in checks] == pytest.approx([FAULT_T + 2.98, FAULT_T + 12.98, FAULT_T + 22.98])
    assert [r["fault_s"] for r in checks] == [3.0, 13.0, 23.0] and checks[0]["since"] == pytest.approx(FAULT_T - 0.02)
    cleared = events(records, "sensor_ok")
    assert len(cleared) == 1 and cleared[0]["t"] == pytest.approx(FAULT_T + 25) and cleared[0]["fault_s"] == 25.0
    assert records.index(checks[0]) < records.index(cleared[0])  # raised live, not only in the summary
    assert detected(records, reference)


def test_garbled_lines_and_silence_are_reported(model, clean, reference):
    lines = clean.copy()
    lines[ROW:ROW + 250] = ["\x00\x7f garbage"] * 250  # 5 s of lines with no usable field count: dropped
    records = run(model, lines)
    check = events(records, "sensor_check", after=0)[0]
    assert check["t"] <= FAULT_T + 5 and check["issues"] == {"malformed": 150}
    assert [r["reason"] for r in records if r["event"] == "reset"] == [
        "gap of 5.00 s before t=65.0: score restarted (no alarm for 10 s), model state kept"]
    assert detected(records, reference)
    gap = run(model, lines[:ROW] + lines[ROW + 1500:])  # 30 s with nothing at all: a gap, reset and warm-up
    assert [r["t"] for r in gap if r["event"] == "reset"] == [FAULT_T + 30]
    assert detected(gap, reference)


@pytest.mark.parametrize("cut", [1, 5, 30])
def test_attaching_mid_line_keeps_the_layout(model, clean, reference, cut):
    lines = clean[1:]  # a live feed: no header
    lines[0] = lines[0][cut:]  # the first line read is a fragment (6 fields, or a cut timestamp, ...)
    records = run(model, lines)
    assert starts(records) == reference
    assert records[-1]["sample_issues"].keys() <= {"malformed", "gap"}


@pytest.mark.parametrize("header", [True, False])
def test_unreadable_first_line_is_malformed_not_a_stop(model, clean, reference, header):
    lines = clean.copy() if header else clean[1:]
    lines[int(header)] = with_time(lines[int(header)], "0.00").replace(",", ",oops", 1)
    records = run(model, lines)
    assert starts(records) == reference
    assert records[0]["event"] == "sample" and records[0]["issue"] == "malformed"


@pytest.mark.slow
def test_runtime_held_and_refused_steps_are_visible(model, clean, reference, tmp_path_factory):
    """A glitch that a backend's state cannot take (LiteRT fp32: 1e30 makes it NaN for good): the runtime
    holds the step or the monitor resets; either way an event at the glitch, valid JSON, detection back."""
    tflite = rt.load(export(tmp_path_factory.mktemp("tflite") / "b", "tflite"), precision="fp32")
    assert tflite.backend == "litert"
    lines = clean.copy()
    fields = lines[ROW].split(",")
    lines[ROW] = ",".join([*fields[:3], "1e30", *fields[4:]])
    records = run(tflite, lines, point=as_recorded())
    first = [r for r in records if r["event"] in ("sample", "reset")][0]
    assert first["t"] == pytest.approx(FAULT_T) and (first["event"] == "reset" or first["issue"] == "held")
    assert starts(records) == pytest.approx(reference, abs=0.1)
    assert all(np.isfinite(r["p"]) for r in records if "p" in r)


def test_silent_live_feed_is_reported_while_silent(bundle, clean):
    """An unplugged sensor sends nothing at all: the monitor notices by wall time, while it is silent."""
    monitor = subprocess.Popen([sys.executable, "-m", "rnnedge.cli", "monitor", str(bundle), "--precision", "fp32",
                                "--input", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    monitor.stdin.write("\n".join(clean[:301]) + "\n")
    monitor.stdin.flush()
    check = json.loads(monitor.stdout.readline())  # blocks until the monitor speaks: it must, on its own
    silent_since = time.monotonic()
    assert check["event"] == "sensor_check" and check["issues"] == {"silent_s": 3} and check["t"] == 5.98
    monitor.stdin.write("\n".join(clean[301:600]) + "\n")  # the sensor is back
    monitor.stdin.close()
    rest = [json.loads(line) for line in monitor.stdout.read().splitlines()]
    assert monitor.wait(timeout=60) == 0 and time.monotonic() - silent_since < 30
    assert rest[0]["event"] == "sensor_ok" and rest[0]["t"] == 6.0
    assert rest[-1]["steps"] == 599 and rest[-1]["sample_issues"] == {"silent_s": 3}


def test_push_takes_any_timestamp(model, recording):
    monitor = Monitor(model)
    sample = recording.signals[0]
    records = [r for t in (0.0, float("inf"), float("nan"), 1e308, -1e308, 0.02, None, 0.06)
               for r in monitor.push(sample, t=t)]
    records += monitor.push(None, t=0.08) + monitor.push(sample, t=0.1) + monitor.flush()
    assert monitor.steps == 6 and monitor.issues == {"malformed": 5, "missing": 1}
    assert [r["id"] for r in records] == ["0+1:sample-malformed", "0+2:sample-malformed", "0+3:sample-malformed",
                                          "0+4:sample-malformed", "3+1:sample-malformed", "5:sample-missing"]
    for record in records:
        json.loads(json_line(record), parse_constant=_refuse)


@pytest.mark.parametrize("glitch", ["nan", "inf", "1e30", "stuck"])
def test_a_get_up_right_after_a_short_glitch_is_still_alarmed(model, recording, glitch):
    """0.2 s of garbage 5 s before a get-up: the get-up is alarmed as without it (a glitch blocks alarms no longer
    than it lasts plus the warm-up; a wrong value held by the runtime is no reading of gravity)."""
    from rnnedge.data.hapt import load_hapt
    from rnnedge.monitor.events import get_up_events

    onset = get_up_events(recording.labels, load_hapt().label_names)[0].onset
    signals = recording.signals.copy()
    at = slice(onset - 250, onset - 240)  # 10 samples = 0.2 s, 5 s before the get-up
    signals[at] = {"nan": np.nan, "inf": np.inf, "1e30": 1e30, "stuck": signals[onset - 250]}[glitch]
    monitor = Monitor(model)
    records = [r for i, x in enumerate(signals) for r in monitor.push(x, t=i / 50)]
    starts = [r["t"] for r in records if r["event"] == "alarm_start"]
    assert any(-1.0 <= t - onset / 50 <= 1.5 for t in starts), (starts, onset / 50)
    assert not [r for r in records if r["event"] == "sensor_check" and r.get("fault") == "gravity"]


@pytest.mark.parametrize(("unit", "scale", "channels"), [("deg/s", 180 / np.pi, slice(3, 6)),
                                                         ("m/s^2", 9.81, slice(0, 3))])
def test_units_the_data_show_to_be_wrong_raise_a_sensor_check_within_seconds(model, recording, unit, scale, channels):
    signals = recording.signals[:3000].copy()
    signals[:, channels] *= scale
    monitor = Monitor(model)
    records = [r for i, x in enumerate(signals) for r in monitor.push(x, t=i / 50)]
    checks = [r for r in records if r["event"] == "sensor_check"]
    assert checks and checks[0]["t"] <= 15.0, (unit, checks[:1])
    assert any(r.get("fault") in ("range", "gravity") for r in checks)
    assert not [r for r in records if r["event"] == "alarm_start"]
