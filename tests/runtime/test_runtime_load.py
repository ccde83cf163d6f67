"""Loading: the runtime never imports torch, refuses tampered or incomplete bundles, and says why."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import rnnedge.runtime as rt
from rnnedge.errors import BackendUnavailableError, BundleError


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_streaming_never_imports_torch(bundle, backend):
    code = (
        "import sys, numpy as np, rnnedge.runtime as rt\n"
        f"m = rt.load({str(bundle)!r}, backend={backend!r})\n"
        "s = m.stream(); s.step(np.zeros(m.channels)); s.feed(np.zeros((60, m.channels)))\n"
        "p = m.pool(4); p.add(0); p.step({0: np.zeros(m.channels)})\n"
        "heavy = sorted(n for n in ('torch', 'onnx', 'litert_torch', 'tensorflow') if n in sys.modules)\n"
        "print(m.backend, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [backend, "[]"]


def test_tampered_file_is_refused(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    model_file = next(copy.glob("*.onnx"))
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        rt.load(copy, backend="onnxruntime")
    rt.load(copy, backend="litert")  # only the files a backend uses are read: the TFLite ones are intact


def test_window_models_do_not_stream(window_bundle):
    with pytest.raises(BundleError, match="cannot stream"):
        rt.load(window_bundle)


def test_missing_pieces_are_named(bundle, other_bundle, tmp_path):
    with pytest.raises(BundleError, match="no onnx/int8/stream file"):
        rt.load(bundle, backend="onnxruntime", precision="int8")
    with pytest.raises(BundleError, match="no fp32 TFLite stream file of time length 1"):
        rt.load(other_bundle, backend="litert")  # an ONNX-only bundle
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tensorrt'"):
        rt.load(bundle, backend="tensorrt")
    with pytest.raises(BundleError, match="not a bundle"):
        rt.load(tmp_path)


def test_model_describes_itself(bundle):
    model = rt.load(bundle)
    assert (model.channels, model.outputs) == (6, model.manifest.output.size)
    assert model.state_size == model.manifest.state.size
    assert model.sha256 == model.manifest.find("onnx").sha256
    assert "onnxruntime" in repr(model)
