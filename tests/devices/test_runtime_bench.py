"""`rnnedge bench` (make bench) measures the runtime's own targets on a real bundle and reports every one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_runtime_bench_measures_every_target(small_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "runtime.json"
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "bench", str(small_bundle), "--quick",
                           "--runtime-targets", "--precision", "fp32", "--backend", "litert", "--no-cold-start",
                           "--pool-sizes", "8", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["backends"]) == {"onnxruntime", "litert"}
    for name, row in results["backends"].items():
        for key in ("bare_call_us", "stream_step_us", "torch_step_us", "feed50_us_per_step", "import_load_s",
                    "peak_rss_mb"):
            assert row[key] > 0, (name, key)
        assert row["torch_imported"] is False  # the streaming process never loads torch
        assert row["step_over_bare"] == pytest.approx(row["stream_step_us"] / row["bare_call_us"])
    assert results["backends"]["onnxruntime"]["pool1024_steps_per_s"] > 0
    assert "| onnxruntime |" in out.with_suffix(".md").read_text() and "| litert |" in done.stdout
