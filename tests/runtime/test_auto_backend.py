"""backend="auto" chooses per use: streams on LiteRT (the cheaper single-stream call), pools on ONNX Runtime (the
one that batches), each loaded only when its use is first asked for; snapshots stay bound to the file that steps."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.errors import SnapshotError


def test_streams_on_litert_pools_on_onnxruntime(bundle, reference):
    model = rt.load(bundle)
    assert (model.backend, model.pool_backend) == ("litert", None)  # nothing loaded for pools yet
    assert model.sha256 == model.manifest.find("tflite", chunk_len=1).sha256
    xs = reference["x"]
    stream, pool = model.stream(), model.pool(capacity=len(xs))
    assert stream.model.backend == "litert" and pool.model.backend == model.pool_backend == "onnxruntime"
    assert pool.model.sha256 == model.manifest.find("onnx").sha256
    assert model.pool(capacity=1).model is pool.model  # loaded once
    assert "pool_backend='onnxruntime'" in repr(model)
    pooled = _pooled(pool, xs)
    streamed = np.stack([model.stream().feed(x) for x in xs])
    np.testing.assert_allclose(pooled, streamed, atol=1e-4)  # two fp32 files of one model
    np.testing.assert_array_equal(streamed[0], rt.load(bundle, backend="litert").stream().feed(xs[0]))
    np.testing.assert_array_equal(pooled, _pooled(rt.load(bundle, backend="onnxruntime").pool(len(xs)), xs))


def _pooled(pool: rt.Pool, xs: np.ndarray) -> np.ndarray:
    for i in range(len(xs)):
        pool.add(i)
    return np.stack([pool.step_array(xs[:, t]) for t in range(xs.shape[1])], axis=1)


def test_onnxruntime_is_imported_at_the_first_pool_only(bundle):
    code = (
        "import sys, numpy as np, rnnedge.runtime as rt\n"
        f"m = rt.load({str(bundle)!r}); s = m.stream(); s.step(np.zeros(m.channels))\n"
        "print('onnxruntime' in sys.modules, m.pool_backend)\n"
        "p = m.pool(2); p.add(0); p.step({0: np.zeros(m.channels)})\n"
        "print('onnxruntime' in sys.modules, m.pool_backend)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "None", "True", "onnxruntime"]


def test_one_backend_serves_both_uses(bundle, other_bundle):
    onnx_only = rt.load(other_bundle)  # no TFLite file: ONNX Runtime streams and pools, one session
    assert onnx_only.backend == "onnxruntime" and onnx_only.pool().model is onnx_only
    assert onnx_only.pool_backend == "onnxruntime"
    for backend in ("litert", "onnxruntime"):  # an explicit backend serves both, as it always did
        explicit = rt.load(bundle, backend=backend)
        assert explicit.pool_backend == backend and explicit.pool().model is explicit
        assert "pool_backend" not in repr(explicit)


def test_auto_snapshots_resume_on_the_same_load_options(bundle, signals, tmp_path):
    model = rt.load(bundle)
    first = model.stream()
    first.feed(signals[:200])
    snap = first.save(tmp_path / "auto.snap")
    expected = first.feed(signals[200:])
    np.testing.assert_array_equal(rt.load(bundle).stream(resume=snap).feed(signals[200:]), expected)
    pinned = rt.load(bundle, backend=model.backend)  # the saved Model.backend pins it
    np.testing.assert_array_equal(pinned.stream(resume=snap).feed(signals[200:]), expected)
    with pytest.raises(SnapshotError, match="another model"):  # the pools' file holds another state
        rt.load(bundle, backend="onnxruntime").stream(resume=snap)
