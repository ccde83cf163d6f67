"""The plain C library of an integer-only file (rnnedge.export.cgen), compiled for this machine: the same integers
as TFLite Micro's reference kernels, call by call, over a real recording, for each cell and for tag and forecast
models and members folded into one (each member's weights apart); and the state carried the way the
generated step carries it."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnedge.devices.tune import footprint
from rnnedge.errors import BundleError
from rnnedge.export import cgen, integer
from rnnedge.export.graphs import example_inputs
from rnnedge.export.tflite_export import convert_tflite
from rnnedge.export.tflite_stream import UnrolledStream
from rnnedge.runtime import fixed_point
from rnnedge.runtime.tflm import interpreter_module
from rnnedge.training.ensemble import fold
from tests.export.conftest import make_checkpoint

pytestmark = pytest.mark.slow  # three litert-torch conversions and calibrations: ~40 s

MODELS = [("lstm", "tag", 2, 1), ("gru", "forecast", 1, 1), ("rnn_tanh", "tag", 2, 1), ("lstm", "tag", 1, 3)]


@pytest.fixture(scope="module", params=MODELS, ids=lambda m: f"{m[0]}-{m[1]}" + (f"-{m[3]}-folded" if m[3] > 1 else ""))
def a16w8(request, hapt_small_train) -> bytes:
    torch.set_num_threads(1)
    cell, task, layers, members = request.param
    checkpoint = fold([make_checkpoint(hapt_small_train, cell, layers=layers, hidden=32, task=task, seed=4 + m)
                       for m in range(members)]) if members > 1 else \
        make_checkpoint(hapt_small_train, cell, layers=layers, hidden=16, task=task, seed=4)
    fp32 = convert_tflite(UnrolledStream(checkpoint).eval(), example_inputs(checkpoint, "stream", 1))
    return integer.integer_tflite(checkpoint, fp32, "a16w8", hapt_small_train.recordings, 1, {})


def compiled(model: bytes, folder: Path) -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler (cc) is needed for the host check"
    for name, text in cgen.generate(model, "m", ["a", "b"], "test").items():
        (folder / name).write_text(text)
    subprocess.run([compiler, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o",
                    str(folder / "m.so"), str(folder / "m.c")], check=True, capture_output=True)
    return ctypes.CDLL(str(folder / "m.so"))


def test_the_c_step_computes_tflite_micros_integers(a16w8, hapt_small_val, tmp_path):
    library = compiled(a16w8, tmp_path)
    graph = cgen.read_graph(a16w8, "test")
    x_t, state_t = (graph.tensors[i] for i in graph.inputs)
    y_t = graph.tensors[graph.outputs[0]]
    carry = cgen.state_carry_params(graph)
    micro = interpreter_module().Interpreter.from_bytes(a16w8, arena_size=256 * 1024)
    samples = hapt_small_val.recordings[0].signals  # a real recording, raw units
    quantized = np.clip(np.round(samples / x_t.scale), -32768, 32767).astype(np.int16)
    state_c = np.zeros(state_t.size, np.int16)
    state = np.zeros(state_t.size, np.int16)
    y_c = np.zeros(y_t.size, np.int16)
    differing = 0
    for x in quantized:
        micro.set_input(x.reshape(x_t.shape), 0)
        micro.set_input(state.reshape(state_t.shape), 1)
        micro.invoke()
        state = fixed_point.carry_state(micro.get_output(1).ravel(), carry)
        library.m_step(state_c.ctypes.data_as(ctypes.c_void_p), x.ctypes.data_as(ctypes.c_void_p),
                       y_c.ctypes.data_as(ctypes.c_void_p))
        differing += int((y_c != micro.get_output(0).ravel()).sum() + (state_c != state).sum())
        state_c[:] = state  # call by call: both are given the same state
    assert len(quantized) == 2000 and differing == 0
    assert np.abs(state).max() > 100  # the state moved: the check was not on zeros


def test_the_header_says_what_a_caller_needs(a16w8, tmp_path):
    files = cgen.generate(a16w8, "bed", ["sit", "stand"], "test")
    header, source = files["bed.h"], files["bed.c"]
    graph = cgen.read_graph(a16w8, "test")
    assert f"#define BED_STATE {graph.tensors[graph.inputs[1]].size}" in header
    assert "void bed_step(int16_t *state, const int16_t *x, int16_t *y);" in header
    assert '{"sit", "stand"}' in source and "malloc" not in source and "float" not in source.split("#include")[-1]


def test_carry_state_is_tflite_micros_requantize():
    # x 0.5 exactly (multiplier 2^30, shift 0): gemmlowp's doubling high multiply rounds halves up for positive
    # products and toward zero for negative ones (its nudge is 1 - 2^30 there): -0.5 -> 0, -1.5 -> -1
    multiplier, shift = fixed_point.quantize_multiplier(0.5)
    assert (multiplier, shift) == (1 << 30, 0)
    values = np.array([1, 2, 3, -1, -3, 32767, -32768], np.int16)
    np.testing.assert_array_equal(fixed_point.carry_state(values, (multiplier, shift)), [1, 1, 2, 0, -1, 16384, -16384])
    # x 0.25 as 0.5 and a right shift of 1: the shift rounds halves away from zero (RoundingDivideByPOT)
    multiplier, shift = fixed_point.quantize_multiplier(0.25)
    assert (multiplier, shift) == (1 << 30, -1)
    np.testing.assert_array_equal(fixed_point.carry_state(np.array([2, 6, -2, -6], np.int16), (multiplier, shift)),
                                  [1, 2, -1, -2])
    assert fixed_point.round_away(2.5) == 3 and fixed_point.round_away(-2.5) == -3


def test_a_float_file_is_refused_with_its_reason(hapt_small_train):
    checkpoint = make_checkpoint(hapt_small_train, "gru", hidden=8)
    fp32 = convert_tflite(UnrolledStream(checkpoint).eval(), example_inputs(checkpoint, "stream", 1))
    with pytest.raises(BundleError, match="FLOAT32; the C generator computes integer-only files"):
        cgen.generate(fp32, "m", [], "fp32.tflite")


def test_folded_members_run_apart_and_the_c_stores_what_tune_counts(hapt_small_train):
    """Three members of 32 folded into one LSTM of 96: the file multiplies each member's own weights (export/folded:
    three recurrent FULLY_CONNECTED of 128 x 32, not one of 384 x 96 that is two thirds zeros), and the C's weight
    constants are the weights tune's device budget counts."""
    torch.set_num_threads(1)
    checkpoint = fold([make_checkpoint(hapt_small_train, "lstm", hidden=32, task="tag", seed=s) for s in (1, 2, 3)])
    fp32 = convert_tflite(UnrolledStream(checkpoint).eval(), example_inputs(checkpoint, "stream", 1))
    model = integer.integer_tflite(checkpoint, fp32, "a16w8", hapt_small_train.recordings, 1, {})
    graph = cgen.read_graph(model, "test")
    shapes = [tuple(graph.tensors[op.inputs[1]].shape) for op in graph.ops if op.kind == "FULLY_CONNECTED"]
    assert shapes.count((128, 32)) == 3 and (384, 96) not in shapes
    source = cgen.generate(model, "m", ["a"], "test")["m.c"]
    stored = sum(int(n) for n in re.findall(r"static const int8_t fc\d+_w\[(\d+)\]", source))
    assert stored == footprint(checkpoint.config, blocks=3)["weights"]
