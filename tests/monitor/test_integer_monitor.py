"""`rnnedge monitor` on the integer-only (a16w8) file in TFLite Micro, the kernels a Cortex-M runs: the bed-exit
alarms of the default model, written to a file, as the int8 file's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tflite_micro  # noqa: F401  (in the lock: missing, this fails rather than skips)

from rnnedge.data.hapt import hapt_split
from rnnedge.monitor.operating_point import DEFAULT, write_to_bundle
from tests.conftest import short
from tests.monitor.conftest import CHECKPOINT, csv_lines

pytestmark = pytest.mark.slow  # an a16w8 export (litert-torch conversion + calibration): ~1 min


def test_monitor_on_the_a16w8_file_in_tflite_micro_alarms_at_the_get_ups(recording, tmp_path):
    from rnnedge.export import export_bundle

    bundle = tmp_path / "bundle"
    export_bundle(CHECKPOINT, bundle, formats=("tflite",), precisions=("fp32", "a16w8"), chunk_len=1,
                  eval_data=short(hapt_split("val"), 2000, 2))
    write_to_bundle(bundle, DEFAULT)  # the default model's point (chosen for int8; a16w8 scores alike)
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
