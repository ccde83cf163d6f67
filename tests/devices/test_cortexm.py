"""The bundle's plain C built for Cortex-M4F and Cortex-M33 and run under QEMU (`rnnedge mcu`): every output
integer equal to TFLite Micro's on this machine, with flash, RAM and instructions reported. Needs Debian's
gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm (.ci/run installs them; make test requires them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnedge.data.hapt import hapt_split
from rnnedge.devices import cortexm
from rnnedge.devices.tune import footprint
from rnnedge.export import export_bundle
from rnnedge.training.config import ModelConfig
from tests.conftest import short
from tests.export.conftest import make_checkpoint
from tests.runtime.conftest import held_out

pytestmark = pytest.mark.slow  # per model an a16w8 export and two firmware builds and runs: ~30 s


@pytest.fixture(scope="module", params=[("lstm", "tag"), ("lstm", "forecast"), ("gru", "tag")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def bundle(request, tmp_path_factory) -> Path:
    missing = cortexm.missing_tools()
    if missing:
        if os.environ.get("RNNEDGE_MCU_REQUIRED") == "1":
            pytest.fail(f"{', '.join(missing)} missing, and make test requires them: {cortexm.INSTALL}")
        pytest.skip(f"{', '.join(missing)} missing ({cortexm.INSTALL})")
    cell, task = request.param
    out = tmp_path_factory.mktemp("mcu") / "b"
    checkpoint = make_checkpoint(short(hapt_split("train"), 3000, 4), cell, layers=2, hidden=16, task=task, seed=5)
    export_bundle(checkpoint, out, formats=("tflite",), precisions=("fp32", "a16w8"), chunk_len=1,
                  eval_data=held_out(samples=300, count=2))
    return out


def test_the_firmware_computes_tflite_micros_integers_on_m4f_and_m33(bundle, tmp_path):
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "mcu", str(bundle), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "mcu.json").read_text())
    rows = {row["target"]: row for row in report["rows"]}
    assert set(rows) == {"cortex-m4f", "cortex-m33"} and report["steps"] == 300
    estimate = footprint(ModelConfig.from_dict(json.loads((bundle / "manifest.json").read_text())["model"]))
    for row in rows.values():
        assert row["differing"] == 0
        assert 0 < row["flash_bytes"] <= report["flatbuffer_bytes"]  # the library, not bigger than the file
        assert 0 < row["ram_bytes"] <= 0.25 * report["arena_bytes"]  # state + the step's stack
        assert row["instructions_per_step"] > 1000 and row["worst_instructions"] >= row["instructions_per_step"]
        # what `rnnedge tune` estimates a step from (devices/mcu.step_instructions) holds to what QEMU counts
        assert row["instructions_per_step"] == pytest.approx(estimate["step_instructions"], rel=0.1)
    assert "| Cortex-M4F (QEMU mps2-an386) | 0 of" in (tmp_path / "mcu.md").read_text()


def test_a_bundle_without_plain_c_is_refused(tmp_path):
    out = tmp_path / "b"
    export_bundle(make_checkpoint(short(hapt_split("train"), 500, 1), "gru"), out, formats=("onnx",),
                  precisions=("fp32",), chunk_len=1, eval_data=held_out(samples=50, count=1))
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "mcu", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "no a16w8 file with plain C" in done.stderr
