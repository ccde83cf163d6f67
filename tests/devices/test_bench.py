"""`rnnedge bench` and `rnnedge devices` on this machine, on a real exported bundle.

No timing assertions: timings only have to exist and be positive. What is asserted is what the report must
get right: which variants ran, parity and accuracy against the reference, and the status column."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rnnedge.bundle import read_manifest, sha256_file, with_changes, write_manifest
from rnnedge.devices import bench
from rnnedge.devices.info import detect_backends, detect_machine

pytestmark = pytest.mark.slow
FAST = replace(bench.QUICK, steps=50, chunks=3, pool_steps=256, windowed_steps=20,
               pool_sizes=(8,), cold_start=False, warmup_s=0.05)


def rnnedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rnnedge.cli", *args], capture_output=True, text=True, timeout=600)


def test_bench_cli_writes_the_report(small_bundle: Path, tmp_path: Path) -> None:
    done = rnnedge("bench", str(small_bundle), "--quick", "--pool-sizes", "64", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rnnedge bench" in done.stdout and "backend not available" in done.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"bench.json", "bench.md", "bench.png"}
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {(r["kind"], r["format"], r["precision"], r["backend"]): r for r in report["rows"]}
    usable = {b.name: b.usable for b in detect_backends(detect_machine())}
    for fmt, precision, backend in bench.variants(read_manifest(small_bundle)):
        row = rows[("stream", fmt, precision, backend)]
        if not usable[backend]:
            assert row["status"] == "backend not available" and row["step_us"] is None
            continue
        assert row["status"] == "ok", row
        assert row["max_abs_diff"] <= row["allowed_diff"] and 0 <= row["score"] <= 1
        assert all(v > 0 for v in row["step_us"]) and row["pool_steps_per_s"]["64"] > 0 and row["streams"] >= 1
        assert row["cold_start_s"] > 0 and row["peak_rss_mb"] > 0 and row["file_bytes"] > 0
    windowed = rows[("windowed 100", "onnx", "fp32", "onnxruntime")]
    assert windowed["status"] == "ok" and windowed["step_us"][0] > 0
    torch_row = rows[("torch eager", "checkpoint", "fp32", "torch")]  # checkpoint found via the provenance
    assert torch_row["status"] == "ok" and torch_row["max_abs_diff"] <= 1e-5
    assert "| onnx fp32 | onnxruntime | ok |" in (tmp_path / "bench.md").read_text()


def test_a_checkpoint_changed_since_export_is_not_the_torch_reference(small_bundle: Path, tmp_path: Path) -> None:
    manifest = read_manifest(small_bundle)
    found = bench.find_checkpoint(small_bundle, manifest)
    assert found is not None
    (tmp_path / "model.pt").write_bytes(found.read_bytes() + b"retrained in place")
    moved = with_changes(manifest, provenance=manifest.provenance | {"checkpoint": str(tmp_path / "model.pt")})
    assert bench.find_checkpoint(small_bundle, moved) is None


def test_a_fast_but_wrong_file_shows_as_parity_failed(small_bundle: Path, tmp_path: Path) -> None:
    """The fp16 ONNX file replaced by another model (the fp32 graph with its recurrent weights halved) and
    the manifest's hash updated, so it loads fine and runs fast, but computes something else."""
    import onnx
    from onnx import numpy_helper

    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle)
    manifest = read_manifest(bundle)
    entry = manifest.find("onnx", "fp16")
    graph = onnx.load(bundle / manifest.find("onnx", "fp32").path)
    for init in graph.graph.initializer:
        if len(init.dims) == 3:  # the LSTM's W and R
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0.5, init.name))
    onnx.save(graph, bundle / entry.path)
    swapped = with_changes(entry, sha256=sha256_file(bundle / entry.path))
    write_manifest(bundle, with_changes(manifest, files=[swapped if f is entry else f for f in manifest.files]))
    report = bench.run(bundle, FAST, only=lambda fmt, _, backend: fmt == "onnx" and backend == "onnxruntime")
    status = {(r.kind, r.precision): r.status for r in report.rows}
    assert status[("stream", "fp16")] == "parity failed"
    assert status[("stream", "fp32")] == "ok"


def test_devices_cli(small_bundle: Path) -> None:
    done = rnnedge("devices", "--json", "--bundle", str(small_bundle))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["recommendation"]["backend"] and report["budget"]["step_budget_us"] == 20_000
    single, pooled = report["streams_batch1"], report["streams_pooled"]
    assert single["streams"] >= 1 and pooled["streams"] >= 1 and pooled["steps_per_s"] > 0
    assert {p["key"]: p["clock_hz"] for p in report["microcontrollers"]}["cortex-m4f"] == 64e6  # tune --device
    text = rnnedge("devices")
    assert text.returncode == 0 and "runs here" in text.stdout and "real-time budget" in text.stdout
    assert "cortex-m4f (256 KB RAM, 1024 KB flash, 64 MHz)" in " ".join(text.stdout.split())


def test_bench_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    done = rnnedge("bench", str(tmp_path), "--quick", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "not a bundle" in done.stderr and "Traceback" not in done.stderr


def test_cuda_pools_up_to_8192_streams(request: pytest.FixtureRequest) -> None:
    usable = {b.name: b for b in detect_backends(detect_machine())}
    if not usable["onnxruntime-cuda"].usable:
        pytest.skip(f"no CUDA here: {usable['onnxruntime-cuda'].detail}")
    report = bench.run(request.getfixturevalue("small_bundle"), replace(FAST, pool_sizes=(1024, 8192)),
                       only=lambda _, precision, backend: backend == "onnxruntime-cuda" and precision == "fp32")
    row = next(r for r in report.rows if r.backend == "onnxruntime-cuda" and r.kind == "stream")
    assert row.status == "ok", row
    assert row.pool_steps_per_s[8192] > 0 and row.max_abs_diff <= row.allowed_diff
