"""Both backends reproduce the torch model's reference outputs on real held-out data, and every way of
driving a stream (step by step, chunks of any length, a pool) computes the same thing."""

from __future__ import annotations

import numpy as np
import pytest

import rnnedge.runtime as rt

BACKENDS = ("onnxruntime", "litert")
FP32_TOL = 1e-4  # fp32 files vs torch on real data (the exporter held them to its own, tighter bound)


@pytest.fixture(scope="module")
def models(bundle) -> dict[str, rt.Model]:
    return {name: rt.load(bundle, backend=name) for name in BACKENDS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_matches_reference(models, reference, backend):
    model = models[backend]
    assert model.backend == backend
    for x, y in zip(reference["x"], reference["y"], strict=True):
        stream = model.stream()
        out = np.stack([stream.step(sample) for sample in x])
        assert out.dtype == np.float32 and out.shape == y.shape
        np.testing.assert_allclose(out, y, atol=FP32_TOL)
        assert stream.steps == len(x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunks_of_any_length_equal_steps(models, reference, backend):
    x = reference["x"][0][:333]
    stepped = np.stack([s for s in map(models[backend].stream().step, x)])
    for lengths in ([333], [50, 50, 1, 232], [7, 120, 0, 3, 203], [1] * 10 + [323]):
        stream, start, pieces = models[backend].stream(), 0, []
        for n in lengths:
            pieces.append(stream.feed(x[start:start + n]))
            start += n
        np.testing.assert_allclose(np.concatenate(pieces), stepped, atol=1e-6, err_msg=str(lengths))


def test_backends_agree(models, reference):
    x = reference["x"][1]
    ort, litert = (models[name].stream().feed(x) for name in BACKENDS)
    np.testing.assert_allclose(ort, litert, atol=FP32_TOL)
    assert (ort.argmax(-1) == litert.argmax(-1)).mean() > 0.99


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_equals_streams(models, reference, backend):
    model, xs = models[backend], reference["x"]
    pool = model.pool(capacity=8)
    for i in range(len(xs)):
        pool.add(f"bed-{i}")
    by_array = np.stack([pool.step_array(xs[:, t]) for t in range(xs.shape[1])], axis=1)
    np.testing.assert_allclose(by_array, reference["y"], atol=FP32_TOL)
    for i in range(len(xs)):
        pool.reset(f"bed-{i}")
    by_dict = [pool.step({f"bed-{i}": xs[i, t] for i in range(len(xs))}) for t in range(50)]
    np.testing.assert_allclose(np.stack([[d[f"bed-{i}"] for i in range(len(xs))] for d in by_dict], axis=1),
                               by_array[:, :50], atol=1e-6)


def test_int8_file_streams_close_to_fp32(other_bundle):
    with np.load(other_bundle / "reference.npz") as npz:
        x, y = npz["x"][0], npz["y"][0]
    int8 = rt.load(other_bundle, precision="int8")
    assert int8.sha256 == int8.manifest.find("onnx", "int8").sha256
    out = int8.stream().feed(x)
    np.testing.assert_allclose(out, y, atol=0.05)  # int8 weights: small, bounded error
    assert (out.argmax(-1) == y.argmax(-1)).mean() > 0.95

