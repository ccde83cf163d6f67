"""The integer-only (a16w8) file of the default model where a Cortex-M runs it: `rnnedge monitor` in TFLite Micro
(the kernels a Cortex-M runs) alarms at the get-ups, written to a file, as the int8 file does; and the bed-exit
firmware (the file's plain C step plus the monitor's score and alarm in C, on a Cortex-M4F under QEMU) raises and
ends its alarms at the very steps `Monitor` does on the host with the same file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tflite_micro  # noqa: F401  (in the lock: missing, this fails rather than skips)

from rnnedge.data.hapt import hapt_recording, hapt_split
from rnnedge.devices import cortexm
from rnnedge.monitor.firmware import alarm_config, compare
from rnnedge.monitor.operating_point import DEFAULT, write_to_bundle
from tests.conftest import short
from tests.monitor.conftest import CHECKPOINT, csv_lines

pytestmark = pytest.mark.slow  # an a16w8 export (litert-torch conversion + calibration): ~1 min


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from rnnedge.export import export_bundle

    out = tmp_path_factory.mktemp("integer") / "bundle"
    export_bundle(CHECKPOINT, out, formats=("tflite",), precisions=("fp32", "a16w8"), chunk_len=1,
                  eval_data=short(hapt_split("val"), 2000, 2))
    write_to_bundle(out, DEFAULT)  # the default model's point (chosen for int8; a16w8 scores alike)
    return out


def test_monitor_on_the_a16w8_file_in_tflite_micro_alarms_at_the_get_ups(bundle, recording, tmp_path):
    (tmp_path / "in.csv").write_text("\n".join(csv_lines(recording.signals)) + "\n")
    out = tmp_path / "events.jsonl"
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "monitor", str(bundle), "--backend", "tflm",
                           "--precision", "a16w8", "--attach", "upright", "--input", str(tmp_path / "in.csv"),
                           "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events[-1]["event"] == "summary" and events[-1]["steps"] == len(recording.signals)
    starts = [e["t"] for e in events if e["event"] == "alarm_start"]
    assert len(starts) == 2 and 102.8 <= starts[0] <= 104.5 and 147.5 <= starts[1] <= 149.5, starts


def test_the_firmwares_alarms_are_the_monitors(bundle):
    missing = cortexm.missing_tools()
    if missing:
        if os.environ.get("RNNEDGE_MCU_REQUIRED") == "1":
            pytest.fail(f"{', '.join(missing)} missing, and make test requires them: {cortexm.INSTALL}")
        pytest.skip(f"{', '.join(missing)} missing ({cortexm.INSTALL})")
    recording = hapt_recording("hapt:2:3")  # two get-ups
    (run,) = compare(bundle, DEFAULT, [recording], cortexm.TARGETS[0])
    starts = [step for step, start in run.monitor if start]
    # both get-ups alarmed (onsets ~103 s and ~148 s); without the upright frame an alarm may also come at the
    # end of the 3 s warm-up: the same in both is what this checks
    assert run.steps == len(recording) and any(5100 <= s <= 5300 for s in starts)
    assert any(7300 <= s <= 7500 for s in starts)
    assert run.firmware == run.monitor


def test_the_firmwares_config_holds_the_points_constants():
    header = alarm_config(DEFAULT, ["WALKING", "LIE_TO_SIT", "LAYING", "LIE_TO_STAND"], 0.001, 50.0)
    assert "#define GET_UP_A 1\n#define GET_UP_B 3\n#define LYING 2\n" in header
    assert f"#define ALARM_THRESHOLD {DEFAULT.alarm.threshold!r}\n" in header
    assert f"#define ALARM_REFRACTORY_STEPS {round(DEFAULT.alarm.refractory_s * 50)}L\n" in header
