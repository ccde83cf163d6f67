"""The monitor's fixtures: a real bundle of the trained default model (ONNX fp32) and real HAPT data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import rnnedge.runtime as rt
from rnnedge.data.hapt import hapt_recording, hapt_split
from tests.conftest import short

CHECKPOINT = Path(__file__).parents[1] / "fixtures" / "hapt-tag-lstm-2x64.pt"  # trained default model
TRACE = "hapt:2:3"  # test subject 2: a get-up at ~103 s and one at ~148 s
CHANNELS = ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"]


def export(out: Path, fmt: str) -> Path:
    from rnnedge.export import export_bundle

    # fp32 only, T=1 TFLite files: cheap; this suite tests the monitor (export tolerances are the export tests')
    export_bundle(CHECKPOINT, out, formats=(fmt,), precisions=("fp32",), chunk_len=1,
                  eval_data=short(hapt_split("val"), 2000, 2), tolerance=1e-4)
    return out


@pytest.fixture(scope="session")
def bare_bundle(tmp_path_factory) -> Path:
    """Exported, without an operating point (as `rnnedge export` leaves it)."""
    return export(tmp_path_factory.mktemp("bundle") / "b", "onnx")


def as_recorded():
    """The default model's operating point without its upright frame, and with a 10 s warm-up (the frame's
    calibration gives the model that time to settle): these tests stream HAPT as recorded to test the monitor's
    clock, fault and snapshot mechanics (the frame has its own tests: test_frame.py)."""
    from dataclasses import replace

    from rnnedge.monitor.operating_point import DEFAULT, OperatingPoint

    return OperatingPoint(replace(DEFAULT.score, warmup_s=10.0), DEFAULT.alarm, {"note": "DEFAULT, no frame"})


@pytest.fixture(scope="session")
def bundle(bare_bundle, tmp_path_factory) -> Path:
    """With an operating point in it (`as_recorded`), as evaluate-alarms leaves a bundle."""
    from rnnedge.monitor.operating_point import write_to_bundle

    out = tmp_path_factory.mktemp("bundle-with-point") / "b"
    shutil.copytree(bare_bundle, out)
    write_to_bundle(out, as_recorded())
    return out


@pytest.fixture(scope="session")
def model(bundle):
    return rt.load(bundle, precision="fp32")


@pytest.fixture(scope="session")
def recording():
    r = hapt_recording(TRACE)
    return type(r)(r.signals[:8000], r.labels[:8000], r.subject, r.name)  # 160 s: both get-ups


def csv_lines(signals, header: bool = True, start: int = 0) -> list[str]:
    """A recording as CSV lines `t,<channels>` at 50 Hz, as a timed source writes them (t = row / 50)."""
    lines = [",".join(["t", *CHANNELS])] if header else []
    return lines + [",".join([f"{(start + i) / 50:.2f}", *map(repr, map(float, x))]) for i, x in enumerate(signals)]
