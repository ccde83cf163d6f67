"""Verification runs stream files on the runtime's own engines: what the manifest reports is what a device
computes. The verifier's streamed outputs and `rt.load(...).stream()` agree bit for bit on the reference slice."""

from __future__ import annotations

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.bundle import read_manifest, read_reference
from rnnedge.export import export_bundle
from rnnedge.export.runners import load_runner
from rnnedge.export.verify import streamed
from tests.export.conftest import make_checkpoint


@pytest.mark.slow
def test_verification_and_the_runtime_compute_the_same_bits(hapt_small_train, hapt_small_val, tmp_path):
    checkpoint = make_checkpoint(hapt_small_train, "lstm", layers=2, hidden=16)
    export_bundle(checkpoint, tmp_path / "b", precisions=("fp32", "int8"), chunk_len=10, eval_data=hapt_small_val)
    manifest = read_manifest(tmp_path / "b")
    x = read_reference(tmp_path / "b", manifest)["x"][:, :200]
    checked = 0
    for f in manifest.files:
        if f.chunk_len not in (None, 1):
            continue  # the runtime steps with the T=1 file (and feeds chunks through the T=10 one)
        runner = load_runner(tmp_path / "b" / f.path, f.format, f.graph, f.chunk_len, manifest.output.size)
        verified = streamed(runner, x, manifest.state.size)
        backend = "onnxruntime" if f.format == "onnx" else "litert"
        model = rt.load(tmp_path / "b", backend=backend, precision=f.precision)
        device = []
        for row in x:
            stream = model.stream()
            device.append([stream.step(sample) for sample in row])
        np.testing.assert_array_equal(verified, np.asarray(device), err_msg=f.path)
        checked += 1
    assert checked >= 4  # ONNX and TFLite T=1, fp32 and int8 (and static int8 when it passed its gate)
