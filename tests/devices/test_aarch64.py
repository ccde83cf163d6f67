"""aarch64 without ARM hardware: the rnnedge runtime on a real bundle under QEMU user-mode (Cortex-A72, an
arm64 CPython 3.11 with the aarch64 wheels of numpy, onnxruntime and ai-edge-litert) computes the same
outputs as on this x86 machine, and `rnnedge devices` / `rnnedge bench` run there unchanged, without torch.

Assembling the emulator takes about a minute the first time (then it is cached, see rnnedge.devices.emulate);
the test skips only when it cannot be set up, and says why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnedge.devices import emulate

pytestmark = pytest.mark.slow

# Runs on both machines: fp32 outputs of every path (step, feed, pool) on both backends, saved to an .npz.
SCRIPT = """
import platform, sys
import numpy as np
import rnnedge.runtime as rt

bundle, out = sys.argv[1], sys.argv[2]
with np.load(bundle + "/reference.npz") as ref:
    x = ref["x"][0, :300]
arrays = {}
for backend in ("onnxruntime", "litert"):
    model = rt.load(bundle, backend=backend, precision="fp32")
    stream = model.stream()
    arrays[backend + "/step"] = np.stack([stream.step(sample) for sample in x[:60]])
    stream.reset()
    arrays[backend + "/feed"] = stream.feed(x)
    pool = model.pool(capacity=2)
    pool.add("a"), pool.add("b")
    arrays[backend + "/pool"] = np.stack([pool.step_array(x[[t, t + 100]]) for t in range(40)])
np.savez(out, **arrays)
print(platform.machine(), "torch" in sys.modules)
"""


@pytest.fixture(scope="session")  # session, like small_bundle, so it is set up (or skips) first
def emulator() -> emulate.Emulator:
    try:
        return emulate.ensure(log=lambda message: print(f"[aarch64] {message}", flush=True))
    except emulate.EmulatorUnavailable as exc:
        pytest.skip(f"aarch64 emulator unavailable: {exc}")


def _check(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_runtime_matches_x86_under_emulation(emulator, small_bundle: Path, tmp_path: Path) -> None:
    script = tmp_path / "outputs.py"
    script.write_text(SCRIPT)
    host = _check(subprocess.run([sys.executable, str(script), str(small_bundle), str(tmp_path / "x86.npz")],
                                 capture_output=True, text=True, timeout=300))
    arm = _check(emulator.run([str(script), str(small_bundle), str(tmp_path / "arm.npz")], timeout=900))
    assert host.split()[0] == "x86_64" or host.split()[0] != "aarch64"
    assert arm.split() == ["aarch64", "False"]  # really aarch64, and the runtime never imported torch
    with np.load(tmp_path / "x86.npz") as x86, np.load(tmp_path / "arm.npz") as arm64:
        assert sorted(x86.files) == sorted(arm64.files) and len(x86.files) == 6
        for name in x86.files:
            assert x86[name].shape == arm64[name].shape, name
            assert np.abs(x86[name] - arm64[name]).max() <= 1e-5, name


def test_devices_sees_a_cortex_a72_board(emulator) -> None:
    report = json.loads(_check(emulator.run(["-m", "rnnedge.cli", "devices", "--json"], timeout=300)))
    assert report["machine"]["arch"] == "aarch64" and report["machine"]["cpu_part"] == "0xd08"
    assert report["machine"]["cpu_model"] == "Cortex-A72"
    assert report["recommendation"]["profile"]["key"] == "rpi4"
    assert report["recommendation"]["backend"] == "litert"


def test_bench_runs_unchanged_without_torch(emulator, small_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    _check(emulator.run(["-m", "rnnedge.cli", "bench", str(small_bundle), "--quick", "--precision", "fp32",
                         "--pool-sizes", "16", "--out", str(out)], timeout=900))
    report = json.loads((out / "bench.json").read_text())
    assert report["machine"]["arch"] == "aarch64" and report["profile"] == "rpi4"
    rows = {(r["kind"], r["backend"]): r for r in report["rows"]}
    for backend in ("onnxruntime", "litert"):
        row = rows[("stream", backend)]
        assert row["status"] == "ok", row
        assert row["max_abs_diff"] <= row["allowed_diff"] and row["score"] is not None
        assert row["cold_start_s"] > 0 and row["peak_rss_mb"] > 0  # the fresh process ran emulated too
    torch_row = rows[("torch eager", "torch")]
    assert torch_row["status"] == "backend not available" and "torch" in torch_row["note"]
    assert (out / "bench.md").is_file()
