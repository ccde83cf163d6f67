import json
import os
from dataclasses import replace

import numpy as np
import onnx
import pytest
from ai_edge_litert.interpreter import Interpreter

import rnnedge.runtime as rt
from rnnedge.bundle import read_manifest, verify_file
from rnnedge.errors import BundleError, ExportError
from rnnedge.export import export_bundle
from rnnedge.export.onnx_stream import build_stream_onnx
from rnnedge.training.config import CELLS
from tests.export.conftest import make_checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_exports_with_parity(cell, layers, hapt_small_train, hapt_small_val, tmp_path):
    checkpoint = make_checkpoint(hapt_small_train, cell, layers)
    manifest = export_bundle(checkpoint, tmp_path / "b", precisions=("fp32",), chunk_len=5,
                             eval_data=hapt_small_val)  # raises if any fp32 file misses the tolerance
    assert [(f.format, f.chunk_len) for f in manifest.files] == [("onnx", None), ("tflite", 1), ("tflite", 5)]
    assert manifest == read_manifest(tmp_path / "b") and manifest.chunk_lens == [1, 5]
    for f in manifest.files:
        verify_file(tmp_path / "b", f)
        assert f.parity.max_abs_diff_output <= 1e-4 and f.parity.tolerance == 1e-5
        assert f.parity.argmax_agreement == 1.0 and f.score == pytest.approx(manifest.evaluation.torch_score)
    onnx_model = onnx.load(tmp_path / "b" / "stream_fp32.onnx")
    assert "gru" in cell or cell in {p.value for p in onnx_model.metadata_props}.pop()
    assert [i.name for i in onnx_model.graph.input] == ["x", "state"]
    assert [o.name for o in onnx_model.graph.output] == ["y", "state_out"]
    ops = [n.op_type for n in onnx_model.graph.node]  # the hand-written graph: no shape arithmetic per call
    assert len(ops) == 10 + 2 * layers and not {"Shape", "Gather", "Unsqueeze"} & set(ops)
    signature = Interpreter(model_path=str(tmp_path / "b" / "stream_t5_fp32.tflite")).get_signature_list()
    assert signature == {"serving_default": {"inputs": ["state", "x"], "outputs": ["state_out", "y"]}}


@pytest.mark.parametrize("task, change_input, residual", [("tag", False, False), ("forecast", False, True),
                                                        ("forecast", True, True), ("forecast", True, False)])
def test_stream_graphs_compute_nothing_unread(task, change_input, residual, hapt_small_train):
    checkpoint = make_checkpoint(hapt_small_train, "lstm", task=task, change_input=change_input)
    checkpoint = replace(checkpoint, config=replace(checkpoint.config, residual=residual))
    model = build_stream_onnx(checkpoint, {})
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    read = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    assert [o for n in graph.node for o in n.output if o not in read] == []


@pytest.mark.slow
def test_int8_and_fp16_are_smaller_and_accurate(hapt_small_train, hapt_small_val, tmp_path):
    checkpoint = make_checkpoint(hapt_small_train, "gru", layers=2, hidden=32)  # weights outweigh the graph
    manifest = export_bundle(checkpoint, tmp_path / "b", chunk_len=4, eval_data=hapt_small_val)
    sizes = {(f.format, f.precision, f.chunk_len): f.size_bytes for f in manifest.files}
    for fmt, length, int8_share in (("onnx", None, 0.5), ("tflite", 1, 0.65)):  # TFLite graphs weigh more
        assert sizes[(fmt, "int8", length)] < int8_share * sizes[(fmt, "fp32", length)]
        assert sizes[(fmt, "fp16", length)] < 0.75 * sizes[(fmt, "fp32", length)]
    torch_score = manifest.evaluation.torch_score
    for f in manifest.files:
        assert abs(f.score - torch_score) <= 0.01
        if f.precision != "fp32":  # the note's share is the size gate's: the shipped files' sizes
            assert f"; {f.size_bytes / sizes[(f.format, 'fp32', f.chunk_len)]:.0%} of the fp32 file" in f.notes
        assert f.precision == "int8_static" or f.parity.argmax_agreement >= 0.95
    attempted = {(f.precision, f.chunk_len) for f in manifest.files} | {(r.precision, None) for r in
                                                                         manifest.rejected}
    assert any(p == "int8_static" for p, _ in attempted)  # static int8 is tried; shipped or rejected with a reason
    assert all(r.reason for r in manifest.rejected)
    with np.load(tmp_path / "b" / "reference.npz") as ref:
        assert ref["x"].shape[:2] == ref["labels"].shape == ref["y"].shape[:2]
        assert ref["state_out"].shape == (len(ref["x"]), checkpoint.config.state_size)
        for f in manifest.files:  # the streamed figure is what a device sees streaming the slice from zero state
            if f.format == "onnx":
                model = rt.load(tmp_path / "b", backend="onnxruntime", precision=f.precision)
                y = np.stack([model.stream().feed(x) for x in ref["x"]])
                assert np.abs(y - ref["y"]).max() == pytest.approx(f.parity.streamed_max_abs_diff, rel=1e-3, abs=1e-6)
    assert (tmp_path / "b" / "reference.npz").stat().st_size < 1_000_000


def test_tampered_file_is_refused(tiny, hapt_small_val, tmp_path):
    manifest = export_bundle(tiny, tmp_path / "b", formats=("onnx",), precisions=("fp32",), eval_data=hapt_small_val)
    path = tmp_path / "b" / manifest.files[0].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        verify_file(tmp_path / "b", manifest.files[0])


def test_failed_verification_writes_nothing_and_keeps_the_old_bundle(tiny, hapt_small_val, tmp_path):
    export_bundle(tiny, tmp_path / "b", formats=("onnx",), precisions=("fp32",), eval_data=hapt_small_val)
    before = json.loads((tmp_path / "b" / "manifest.json").read_text())
    with pytest.raises(ExportError, match="failed verification"):
        export_bundle(tiny, tmp_path / "b", formats=("onnx",), precisions=("fp32", "int8"),
                      eval_data=hapt_small_val, tolerance=1e-12)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging folder left behind
    with pytest.raises(ExportError, match="failed verification"):
        export_bundle(tiny, tmp_path / "new", formats=("onnx",), eval_data=hapt_small_val, tolerance=1e-12)
    assert not (tmp_path / "new").exists()


def test_an_export_removes_what_a_killed_export_left_and_keeps_a_running_ones(tiny, hapt_small_val, tmp_path):
    """A killed export (no `finally` runs) leaves its staging folder beside the bundle: the next export to the same
    place removes it, but not the folder of an export still running (its process alive)."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f".b.export-{int(gone.stdout)}-abcd"
    running = tmp_path / f".b.export-{os.getpid()}-efgh"
    for folder in (killed, running):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"partial")
    export_bundle(tiny, tmp_path / "b", formats=("onnx",), precisions=("fp32",), eval_data=hapt_small_val)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", running.name])


def test_bidirectional_model_refuses_streaming_and_exports_a_window_graph(hapt_small_train, hapt_small_val,
                                                                          tmp_path):
    checkpoint = make_checkpoint(hapt_small_train, "lstm", task="classify", bidirectional=True)
    with pytest.raises(ExportError, match="needs the future"):
        export_bundle(checkpoint, tmp_path / "s", formats=("onnx",), graphs=("stream",), eval_data=hapt_small_val)
    assert not (tmp_path / "s").exists()
    manifest = export_bundle(checkpoint, tmp_path / "w", formats=("onnx",), eval_data=hapt_small_val)
    assert {(f.graph, f.precision) for f in manifest.files} == {("window", "fp32"), ("window", "int8"),
                                                                ("window", "fp16")}
    assert not manifest.streamable and manifest.files[0].parity.max_abs_diff_output <= 1e-5


def test_bad_requests_are_export_errors(tiny, hapt_small_val, tmp_path):
    with pytest.raises(ExportError, match="unknown"):
        export_bundle(tiny, tmp_path / "b", formats=("coreml",), eval_data=hapt_small_val)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a bundle"):
        export_bundle(tiny, tmp_path / "user", eval_data=hapt_small_val)


def test_converter_chatter_is_held_back_and_replayed_on_failure(capfd):
    import os

    from rnnedge.export.tflite_export import native_stderr_held

    with native_stderr_held():
        os.write(2, b"oneDNN custom operations are on\n")
    assert "oneDNN" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), native_stderr_held():
        os.write(2, b"the converter's real complaint\n")
        raise RuntimeError("conversion failed")
    assert "the converter's real complaint" in capfd.readouterr().err
