"""Export on data that is not shaped like the bundled set (issue 11): short recordings, other cells and tasks,
variants that fail, forecasts in the data's units, and the parity tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnnedge.runtime as rt
from rnnedge.data.recording import Dataset, Recording
from rnnedge.errors import ExportError
from rnnedge.export import export_bundle
from rnnedge.tasks import get_task
from tests.export.conftest import make_checkpoint


def _cut(data: Dataset, samples: int) -> Dataset:
    recordings = [Recording(r.signals[:samples], r.labels[:samples], r.subject, r.name) for r in data.recordings]
    return Dataset(recordings, data.channels, data.label_names, data.sample_rate_hz, data.source)


@pytest.mark.slow
def test_recordings_shorter_than_the_chunk_export_without_padding_artefacts(hapt_small_train, hapt_small_val,
                                                                            tmp_path):
    """Observation 5: a T=50 file checked on 16-sample recordings compared a padded state and failed."""
    checkpoint = make_checkpoint(hapt_small_train, "lstm", layers=1, hidden=8)
    manifest = export_bundle(checkpoint, tmp_path / "b", precisions=("fp32",), chunk_len=50,
                             eval_data=_cut(hapt_small_val, 16))
    assert {f.chunk_len for f in manifest.files if f.format == "tflite"} == {1, 50}
    with np.load(tmp_path / "b" / "reference.npz") as ref:
        assert ref["x"].shape[:2] == (2, 16)  # both recordings, not just the first


@pytest.mark.slow
def test_a_variant_that_fails_is_rejected_with_its_reason_and_none_is_larger_than_fp32(hapt_small_train,
                                                                                       hapt_small_val, tmp_path):
    """Observations 3 and 11: static int8 of an rnn_relu model crashed the export; static int8 files larger than
    fp32 shipped."""
    checkpoint = make_checkpoint(hapt_small_train, "rnn_relu", layers=1, hidden=16)
    manifest = export_bundle(checkpoint, tmp_path / "b", precisions=("fp32", "int8"), chunk_len=50,
                             eval_data=hapt_small_val)
    fp32 = {(f.format, f.chunk_len): f.size_bytes for f in manifest.files if f.precision == "fp32"}
    for f in manifest.files:
        assert f.size_bytes < fp32[(f.format, f.chunk_len)] or f.precision == "fp32"
    static = [r for r in manifest.rejected if r.precision == "int8_static"]
    shipped_static = [f for f in manifest.files if f.precision == "int8_static"]
    assert static or shipped_static
    assert all(r.reason.startswith("stream_t") for r in static)


def test_tolerance_is_overridable_and_named_in_the_failure(tiny, hapt_small_val, tmp_path):
    """Observation 6: the fp32 bound can be set; a failure says how."""
    with pytest.raises(ExportError, match="--tolerance overrides"):
        export_bundle(tiny, tmp_path / "strict", formats=("onnx",), precisions=("fp32",),
                      eval_data=hapt_small_val, tolerance=1e-12)
    manifest = export_bundle(tiny, tmp_path / "loose", formats=("onnx",), precisions=("fp32",),
                             eval_data=hapt_small_val, tolerance=1e-3)
    assert manifest.files[0].parity.tolerance == 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("horizon,formats", [(1, ("onnx",)), (2, ("onnx", "tflite"))])
def test_forecast_outputs_are_in_the_data_units_and_gated_by_mse(hapt_small_train, hapt_small_val, tmp_path, horizon,
                                                                 formats):
    """Observation 7: forecasts left the graph normalized, the manifest did not say so, and had no gate. A residual
    forecast (the default) adds the raw input in the graph, once per step of the horizon."""
    checkpoint = make_checkpoint(hapt_small_train, "gru", layers=1, hidden=8, task="forecast", horizon=horizon)
    manifest = export_bundle(checkpoint, tmp_path / "b", formats=formats, precisions=("fp32", "int8"),
                             eval_data=hapt_small_val)
    assert manifest.evaluation.metric == "mse" and manifest.evaluation.higher_is_better is False
    assert manifest.output.kind == "forecast" and manifest.output.names[0] == "acc-x t+1"
    assert manifest.output.names[-1] == f"gyro-z t+{horizon}" and "units" in manifest.output.units
    model = checkpoint.build_model()
    x = hapt_small_val.recordings[0].signals[:200]
    normalized = checkpoint.normalization.apply(x)
    expected = model(torch.from_numpy(normalized[None]))[0][0].detach().numpy()
    expected = expected * np.tile(checkpoint.normalization.std, horizon) + np.tile(checkpoint.normalization.mean,
                                                                                   horizon)
    for backend in ({"onnx": "onnxruntime", "tflite": "litert"}[f] for f in formats):
        got = rt.load(tmp_path / "b", backend=backend, precision="fp32").stream().feed(x)
        np.testing.assert_allclose(got, expected, atol=1e-4 * (1 + np.abs(expected).max()))
    int8 = [f for f in manifest.files if f.precision == "int8"] + [r for r in manifest.rejected
                                                                    if r.precision == "int8"]
    assert int8  # measured by MSE against torch's: shipped within 5%, or rejected
    for f in manifest.files:
        assert get_task("forecast").gate(manifest.evaluation.torch_score, f.score, f.precision) is None


@pytest.mark.slow
def test_a_change_input_forecast_exports_and_streams_its_last_sample_in_the_state(hapt_small_train, hapt_small_val,
                                                                                 tmp_path):
    """The change input (training/model.py): every stream file carries the last sample, normalized, and a seen flag
    per channel in its state, and streams in any chunks as torch does from a fresh state."""
    checkpoint = make_checkpoint(hapt_small_train, "lstm", layers=2, hidden=8, task="forecast", horizon=2,
                                 change_input=True)
    assert float(checkpoint.state_dict["change_scale"].min()) > 1.5  # 50 Hz: changes are small beside the level
    manifest = export_bundle(checkpoint, tmp_path / "b", formats=("onnx", "tflite"), precisions=("fp32", "int8"),
                             eval_data=hapt_small_val)
    assert manifest.state.previous == 12 and manifest.state.size == 2 * 2 * 8 + 12
    assert {(f.format, f.precision) for f in manifest.files} >= {("onnx", "fp32"), ("tflite", "fp32")}
    x = hapt_small_val.recordings[0].signals[:120]
    model = checkpoint.build_model()
    expected, state = model(torch.from_numpy(checkpoint.normalization.apply(x)[None]))
    expected = expected[0].detach().numpy() * np.tile(checkpoint.normalization.std, 2) \
        + np.tile(checkpoint.normalization.mean, 2)
    for backend in ("onnxruntime", "litert"):
        stream = rt.load(tmp_path / "b", backend=backend, precision="fp32").stream()
        got = np.concatenate([stream.feed(x[a:b]) for a, b in ((0, 1), (1, 50), (50, 120))])
        np.testing.assert_allclose(got, expected, atol=1e-4 * (1 + np.abs(expected).max()))
        np.testing.assert_allclose(stream.state[-12:], state[0, -12:].detach().numpy(), atol=1e-5)


def test_forecast_gate_rejects_a_few_percent_worse_mse():
    task = get_task("forecast")
    assert task.gate(1.0, 1.04, "int8") is None
    assert "above torch" in task.gate(1.0, 1.2, "int8")
    assert not task.better(2.0, 1.0) and get_task("tag").better(0.9, 0.8)


def test_accuracy_gate_allows_one_example_of_a_small_split():
    """One flipped series of 40 is 2.5 points: noise on a small test split, not quantization damage."""
    task = get_task("classify")
    assert task.gate(0.95, 0.925, "int8", examples=40) is None
    assert "or one of 40 examples" in task.gate(0.95, 0.90, "int8", examples=40)
    assert "1 allowed" in task.gate(0.95, 0.93, "int8")  # without a count: points only
    assert task.gate(0.95, 0.945, "int8", examples=10_000) is None  # a large split: the 1-point gate
    assert task.gate(0.95, 0.93, "int8", examples=10_000) is not None
    labelled = [Recording(np.zeros((5, 1), np.float32), np.array([0, 1, 1, 0, 2]), 0, "r")]
    assert (task.examples(labelled), get_task("tag").examples(labelled), get_task("forecast").examples(labelled)) \
        == (1, 3, 0)


@pytest.mark.slow
def test_members_folded_into_one_export_to_every_format_and_stream_their_mean(hapt_small_train, hapt_small_val,
                                                                               tmp_path):
    """training/ensemble.py: the folded model is an ordinary checkpoint; ONNX and TFLite (float and integer)
    export it, the fp32 files match torch (export verifies parity), and the stream outputs the members' mean."""
    from rnnedge.training.ensemble import fold

    members = [make_checkpoint(hapt_small_train, "lstm", layers=2, hidden=8, seed=seed) for seed in (0, 1)]
    folded = fold(members)
    manifest = export_bundle(folded, tmp_path / "b", precisions=("fp32", "int8", "a16w8"), chunk_len=50,
                             eval_data=hapt_small_val)
    assert {(f.format, f.precision) for f in manifest.files} >= {("onnx", "fp32"), ("tflite", "fp32"),
                                                                   ("tflite", "a16w8")}
    assert manifest.model["hidden_size"] == 16
    x = hapt_small_val.recordings[0].signals[:60]
    stream = rt.load(tmp_path / "b", precision="fp32").stream()
    with torch.no_grad():
        mean = sum(m.build_model()(torch.from_numpy(m.normalization.apply(x))[None])[0][0] for m in members) / 2
    np.testing.assert_allclose(stream.feed(x), mean.numpy(), atol=1e-4)
