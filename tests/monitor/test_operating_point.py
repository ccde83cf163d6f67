"""The operating point travels with the model: evaluate-alarms writes it into the bundle (hash-checked), the monitor
uses it, --operating-point overrides it, and a bundle without one is refused (never another model's point)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import rnnedge.runtime as rt
from rnnedge.bundle import SIGNATURE_NAME, sign_bundle
from rnnedge.errors import BundleError
from rnnedge.monitor import DEFAULT, Monitor, OperatingPoint
from rnnedge.monitor.alarm import AlarmConfig
from rnnedge.monitor.operating_point import bundle_point, write_to_bundle
from rnnedge.monitor.score import ScoreConfig

OTHER = OperatingPoint(ScoreConfig(smoothing_s=0.2), AlarmConfig(0.9, 0.45, 5.0), {"note": "test"})


def monitor_cli(bundle, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnedge.cli", "monitor", str(bundle), "--precision", "fp32",
                           "--input", "hapt:2", "--attach", "upright", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def copy(bare_bundle, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(bare_bundle, out)
    return out


def test_written_point_is_listed_with_its_hash_and_replaces_the_old_one(copy):
    write_to_bundle(copy, DEFAULT)
    first = rt.load(copy, precision="fp32").manifest.operating_point
    write_to_bundle(copy, OTHER)
    model = rt.load(copy, precision="fp32")
    entry = model.manifest.operating_point
    assert entry.path != first.path and not (copy / first.path).exists()  # content-named: no stale file
    assert bundle_point(model) == OTHER and Monitor(model).point == OTHER
    assert not list(copy.glob(".*"))  # no temp file left
    (copy / entry.path).write_text((copy / entry.path).read_text().replace("0.9", "0.1", 1))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        bundle_point(rt.load(copy, precision="fp32"))


def test_monitor_cli_uses_the_bundle_point_and_an_explicit_file_overrides_it(copy, tmp_path):
    done = monitor_cli(copy)  # no point in the bundle: refused, with what to do
    assert done.returncode == 2 and "has no operating point" in done.stderr and "evaluate-alarms" in done.stderr
    assert "Traceback" not in done.stderr
    write_to_bundle(copy, OperatingPoint(DEFAULT.score, AlarmConfig(0.999999, 0.5, 20.0)))  # never fires
    done = monitor_cli(copy)  # the exit code first: a crash also writes no alarm_start
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    alarms = [json.loads(line)["event"] for line in done.stdout.splitlines()]
    assert "alarm_start" not in alarms and alarms[-1] == "summary"
    DEFAULT.save(tmp_path / "op.json")
    for override in (str(tmp_path / "op.json"), "default"):
        done = monitor_cli(copy, "--operating-point", override)
        assert done.returncode == 0 and "alarm_start" in done.stdout  # subject 2's get-ups


def test_a_signed_bundle_is_left_alone(copy):
    sign_bundle(copy, b"k" * 16)
    assert "signed" in write_to_bundle(copy, DEFAULT)
    assert rt.load(copy, precision="fp32", verify_key=b"k" * 16).manifest.operating_point is None
    assert (copy / SIGNATURE_NAME).exists()
