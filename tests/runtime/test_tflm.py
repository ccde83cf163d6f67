"""The tflm backend (TFLite Micro) on a real integer-only bundle: streams, chunks, snapshots and pools behave as on
every backend, it agrees with LiteRT on the same integer file, and it refuses files it would run wrongly."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import tflite_micro  # noqa: E402, F401  (in the lock: missing, these tests fail rather than skip quietly)
import torch

import rnnedge.runtime as rt
from rnnedge.errors import BundleError
from rnnedge.export import export_bundle
from rnnedge.runtime.tflm import TFLMBackend
from tests.runtime.conftest import held_out, make_checkpoint

pytestmark = pytest.mark.slow  # one export with litert-torch and ai-edge-quantizer (~40 s), shared by the module


@pytest.fixture(scope="module")
def integer_bundle(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bundles") / "integer"
    manifest = export_bundle(make_checkpoint("lstm", 16, seed=0, num_layers=2), out, formats=("tflite",),
                             precisions=("fp32", "a16w8"), chunk_len=1, eval_data=held_out())
    assert [f.precision for f in manifest.files] == ["fp32", "a16w8"], manifest.rejected
    return out


def test_step_chunk_and_snapshot_resume_agree(integer_bundle, signals, tmp_path):
    model = rt.load(integer_bundle, backend="tflm", precision="a16w8")
    assert model.backend == "tflm"
    x = signals[:120]
    stream = model.stream()
    stepped = np.stack([stream.step(sample) for sample in x])
    chunked = model.stream().feed(x)
    np.testing.assert_array_equal(stepped, chunked)  # the same integer calls, so the same integers

    first = model.stream()
    first.feed(x[:70])
    first.save(tmp_path / "state.snap")
    resumed = model.stream(resume=tmp_path / "state.snap")
    np.testing.assert_array_equal(resumed.feed(x[70:]), chunked[70:])  # the integer state survives the snapshot
    assert resumed.steps == len(x)


# the worst measured over these 300 calls (y 3, state_out 2 LSB) plus one LSB: one more rounding step can line up
# on other hardware or inputs; a real mismatch (a wrong scale, a lost state) is tens to thousands of LSB
LSB = {"y": 4, "state_out": 3}


def test_tflm_matches_litert_within_a_few_lsb(integer_bundle, signals):
    """Both run the same integer file. Call by call from the same integers (TFLite Micro's own state carried),
    y and state_out differ by a few steps of their scale: their int16 LOGISTIC/TANH kernels round differently by
    one step, which the following multiply-accumulates scale up (measured over these 300 calls: y 0/1/2/3 LSB in
    8/208/75/9 calls, state_out 0/1/2 LSB in 67/226/7). Streamed apart, the classes agree at every step."""
    models = {b: rt.load(integer_bundle, backend=b, precision="a16w8") for b in ("tflm", "litert")}
    quant = models["tflm"].manifest.find("tflite", "a16w8").quantization
    x = np.zeros((1, 1, signals.shape[1]), np.float32)
    state = np.zeros((1, models["tflm"].state_size), np.float32)
    out = {b: (np.zeros((1, 1, m.outputs), np.float32), np.zeros_like(state)) for b, m in models.items()}
    calls = {b: m.engine.bind(x, state, *out[b]) for b, m in models.items()}
    for sample in signals[:300]:
        x[0, 0] = sample
        for call in calls.values():
            call()
        for (a, b), role in zip(zip(out["tflm"], out["litert"], strict=True), ("y", "state_out"), strict=True):
            assert np.round(np.abs(a - b) / quant[role].scale).max() <= LSB[role], role
        state[...] = out["tflm"][1]
    apart = [m.stream().feed(signals[:300]).argmax(-1) for m in models.values()]
    np.testing.assert_array_equal(*apart)


def test_pool_matches_streams(integer_bundle, many):
    model = rt.load(integer_bundle, backend="tflm", precision="a16w8")
    pool = model.pool(capacity=8)
    for i in range(len(many)):
        pool.add(i)
    pooled = np.stack([pool.step_array(many[:, t]) for t in range(40)], axis=1)
    alone = np.stack([model.stream().feed(many[i, :40]) for i in range(len(many))])
    np.testing.assert_array_equal(pooled, alone)


def test_float_file_runs_in_tflm_too(integer_bundle, signals):
    """TFLite Micro also has float kernels: the fp32 file streams there as in LiteRT."""
    tflm = rt.load(integer_bundle, backend="tflm").stream().feed(signals[:50])
    litert = rt.load(integer_bundle, backend="litert").stream().feed(signals[:50])
    np.testing.assert_allclose(tflm, litert, atol=1e-5)


def _weight_only(fp32: bytes, per_channel: bool) -> bytes:
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer.qtyping import QuantGranularity, TFLOperationName

    q = quantizer.Quantizer(bytearray(fp32))
    granularity = QuantGranularity.CHANNELWISE if per_channel else QuantGranularity.TENSORWISE
    q.add_weight_only_config(".*", TFLOperationName.ALL_SUPPORTED, 8, granularity=granularity)
    with contextlib.redirect_stderr(io.StringIO()):
        return bytes(q.quantize().quantized_model)


def test_files_tflite_micro_would_run_wrongly_are_refused(integer_bundle, tmp_path):
    from rnnedge.export.tflite_export import quantize_tflite

    fp32 = (integer_bundle / "stream_t1_fp32.tflite").read_bytes()
    per_channel = tmp_path / "weights_per_channel.tflite"
    per_channel.write_bytes(_weight_only(fp32, per_channel=True))
    with pytest.raises(BundleError, match="one scale per output channel: TFLite Micro's DEQUANTIZE uses one scale"):
        TFLMBackend({1: per_channel})
    hybrid = tmp_path / "dynamic_range.tflite"
    hybrid.write_bytes(quantize_tflite(fp32, "int8"))
    with pytest.raises(BundleError, match="dynamic-range .hybrid. int8"):
        TFLMBackend({1: hybrid})
    per_tensor = tmp_path / "weights_per_tensor.tflite"  # one scale per tensor: TFLite Micro computes it right
    per_tensor.write_bytes(_weight_only(fp32, per_channel=False))
    TFLMBackend({1: per_tensor})


def test_cortex_m_profiles_say_whether_the_bundle_fits(integer_bundle):
    from rnnedge.bundle import read_manifest
    from rnnedge.devices.mcu import MCU_PROFILES, McuProfile, fit

    manifest = read_manifest(integer_bundle)
    for profile in MCU_PROFILES:
        result = fit(manifest, profile)
        assert result.file is not None and result.file.precision == "a16w8", result.reason
        assert result.ram_needed == result.file.mcu.arena_bytes + 2 * manifest.state.size * 2
    tiny = McuProfile("m0", "Cortex-M0 with 16 KB RAM", 16 << 10, 64 << 10, "a16w8", "")
    result = fit(manifest, tiny)
    assert result.file is None and result.reason.startswith("too big for 32 KB flash / 8 KB RAM: a16w8 needs")
