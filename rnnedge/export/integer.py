"""Integer-only TFLite stream files for microcontrollers and NPUs: a8w8 and a16w8, run by TFLite Micro.

Every tensor of these files is an integer (int8 weights; int8 or int16 activations; int32/int64 biases), the
I/O included: x, state, y and state_out carry a (scale, zero_point) each, recorded in the manifest; a device
quantizes x and the state in and dequantizes y (or keeps the state integer between calls, docs/mcu.md).

What shapes them (measured on the default LSTM 2x64 tagger; numbers in docs/mcu.md):
- The LSTM cell state is an integrator: streamed over whole recordings its units reach |c| of tens (a model
  trained with the state penalty) to thousands (without it); tanh(c) saturates from |c| ~ 4, the size only says
  how long the unit stays latched. c shares the state tensor's one int16 scale with h, and c's resolution is what
  the accuracy hangs on (c integrates small steps): the same file with c's range ending at 16 or 32 gives 0.9699 /
  0.9693, at 53 0.9371 (torch 0.9683). So c is clipped at the smallest of CELL_CLIPS whose fp32 model still
  scores what the unclipped model scores on the calibration streams (cell_clip); a model none of them keeps (the
  unpenalized one) gets the largest, 64. The files do not clip with an op (ai-edge-quantizer leaves MINIMUM in
  float): they are calibrated on the states of the clipped model (IntegerStream), so c's range ends there.
- Each tensor's range is its min/max over every calibration pair. ai-edge-quantizer's default is a moving
  average of the pairs' ranges (weight 0.95 on the past): the range of the last few pairs, which left c's range
  at 6.4 where c reaches 50 (0.9577).
- Calibration must see the states real streams reach: calibrated on zero or short-stream states, the state's
  scale is wrong (static int8 measured 15%: state scale 2.3, every h rounds to zero).
- c needs more than 8 bits: c at int8 (scale 64/127) alone drops accuracy to 0.66, h at int8 costs nothing; all
  activations int8 (state included) gives 0.73. So a8w8 is int8 into and out of every FULLY_CONNECTED (the
  multiply-accumulates) and int16 for the gates, the cell and the state; a16w8 is int16 throughout.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import torch

from rnnedge.data.recording import Recording
from rnnedge.errors import ExportError
from rnnedge.export.tflite_export import SIGNATURE
from rnnedge.export.tflite_stream import UnrolledStream
from rnnedge.tasks import get_task, score
from rnnedge.training.checkpoint import Checkpoint

PRECISIONS = ("a8w8", "a16w8")
CELL_CLIPS = (4.0, 8.0, 16.0, 32.0, 64.0)  # |c| bounds tried inside integer LSTM graphs, smallest first (tanh(4)
# is 0.9993); the last is the bound when none keeps the score (module docstring: accuracy vs clip)
CLIP_TOLERANCE = 0.001  # what the clip may cost the fp32 model on the calibration recordings: 0.1 point of
# accuracy, 0.1% of MSE. Asking instead that it keep 99.9% of the steps' argmax chose 32 for the bundled tagger
# (16 kept 99.886%, at the same accuracy), where its a16w8 file lost 1.8 points against 0.6 with the clip at 8
CALIBRATION_PAIRS = 1024  # (x, state) pairs spread over the recordings, plus each channel's extremes

NOTES = {
    "a8w8": "integer only (TFLite Micro, NPUs): int8 weights (per output channel); int8 activations into and out "
            "of the FULLY_CONNECTED ops, int16 gates, cell and state; x, state, y and state_out are integer "
            "tensors with the (scale, zero_point) in `quantization`",
    "a16w8": "integer only (TFLite Micro, NPUs): int8 weights (per output channel), int16 activations and "
             "state; x, state, y and state_out are int16 tensors with the (scale, zero_point) in `quantization`",
}


class IntegerStream(UnrolledStream):
    """The TFLite stream graph with the LSTM cell state clipped to +-clip after every step (h is computed from
    the unclipped c): the model whose streams calibrate the integer files, so that their integer c ends at the
    clip. `clip`: one bound, or one per batch row ([batch, 1], inf: unclipped)."""

    def __init__(self, checkpoint: Checkpoint, clip: float | torch.Tensor) -> None:
        super().__init__(checkpoint)
        self.clip = torch.as_tensor(clip, dtype=torch.float32)

    def _cell(self, x_t: torch.Tensor, carried: list[torch.Tensor], at: int) -> list[torch.Tensor]:
        carried = super()._cell(x_t, carried, at)
        if self.cell == "lstm":
            carried[1] = torch.clamp(carried[1], -self.clip, self.clip)
        return carried


def _padded(recordings: list[Recording]) -> np.ndarray:
    """x [recordings, longest, channels], each recording padded by repeating its last sample."""
    longest = max(len(r) for r in recordings)
    return np.stack([np.pad(r.signals, ((0, longest - len(r)), (0, 0)), "edge") for r in recordings]).astype(
        np.float32)


def cell_clip(checkpoint: Checkpoint, recordings: list[Recording], chunk: int = 100) -> float:
    """The smallest of CELL_CLIPS at which the fp32 model, streamed over each whole recording from zero, scores
    (the task's metric on these recordings) within CLIP_TOLERANCE of the unclipped model, else the largest. One
    pass: every clip is a group of batch rows."""
    if checkpoint.config.cell != "lstm":
        return float("inf")
    if not recordings:
        raise ExportError("no calibration data for the cell clip")
    bounds = (float("inf"), *CELL_CLIPS)
    x = torch.from_numpy(np.tile(_padded(recordings), (len(bounds), 1, 1)))
    clip = torch.tensor(bounds, dtype=torch.float32).repeat_interleave(len(recordings))[:, None]
    module = IntegerStream(checkpoint, clip).eval()
    state, ys = torch.zeros(len(x), checkpoint.config.state_size), []
    with torch.no_grad():
        for t in range(0, x.shape[1], chunk):
            out = module(x=x[:, t: t + chunk], state=state)
            state = out["state_out"]
            ys.append(out["y"])
    y = torch.cat(ys, 1).numpy().reshape(len(bounds), len(recordings), x.shape[1], -1)
    config, task = checkpoint.config, get_task(checkpoint.config.task)
    scores = [score(config.task, [out[:len(r)] for out, r in zip(group, recordings, strict=True)], recordings,
                    checkpoint.labels, config.horizon)["value"] for group in y]
    for bound, value in zip(CELL_CLIPS, scores[1:], strict=True):
        if (value >= scores[0] - CLIP_TOLERANCE if task.higher_is_better
                else value <= scores[0] * (1 + CLIP_TOLERANCE)):
            return bound
    return CELL_CLIPS[-1]


def streamed_pairs(module: torch.nn.Module, recordings: list[Recording], state_size: int, time: int = 1,
                   count: int = CALIBRATION_PAIRS) -> list[dict[str, np.ndarray]]:
    """Calibration inputs for a stream file of fixed length `time`: (x, state) pairs where the state is the one
    the fp32 `module` reaches by streaming each whole recording from zero. Picked: `count` steps spread evenly
    over all recordings, and each recording's steps where a channel peaks (so x's scale covers the data)."""
    recordings = [r for r in recordings if len(r) >= time]
    if not recordings:
        raise ExportError(f"no calibration data: every recording is shorter than {time} steps")
    x = _padded(recordings)
    longest = x.shape[1]
    total = sum(len(r) - time + 1 for r in recordings)
    every = np.linspace(0, total - 1, min(count, total)).astype(np.int64)
    picks: list[set[int]] = []
    offset = 0
    for r in recordings:
        usable = len(r) - time + 1
        steps = set((every[(every >= offset) & (every < offset + usable)] - offset).tolist())
        signals = r.signals[:usable]
        steps |= set(signals.argmax(0).tolist()) | set(signals.argmin(0).tolist())
        picks.append({s - s % time for s in steps})  # calls start every `time` steps
        offset += usable
    pairs = []
    state = torch.zeros(len(recordings), state_size)
    xs = torch.from_numpy(x)
    with torch.no_grad():
        for t in range(0, longest - time + 1, time):
            pairs += [{"x": x[lane: lane + 1, t: t + time], "state": state[lane: lane + 1].numpy().copy()}
                      for lane, steps in enumerate(picks) if t in steps]
            state = module(x=xs[:, t: t + time], state=state)["state_out"]
    return pairs


def quantize_integer(fp32: bytes, precision: str, calibration: list[dict[str, np.ndarray]]) -> bytes:
    """The integer-only flatbuffer of `fp32` (an IntegerStream file), calibrated on `calibration`: each tensor's
    range is its min/max over all pairs (the quantizer's own calibrate() averages the pairs' ranges)."""
    from ai_edge_quantizer import calibrator, quantizer, recipe_manager
    from ai_edge_quantizer.qtyping import TFLOperationName
    from ai_edge_quantizer.utils import qsv_utils

    if precision not in PRECISIONS:
        raise ValueError(f"unknown integer precision {precision!r}")
    logging.getLogger("absl").setLevel(logging.ERROR)
    q = quantizer.Quantizer(bytearray(fp32))
    q.add_static_config(".*", TFLOperationName.ALL_SUPPORTED, 16, 8)
    if precision == "a8w8":
        q.add_static_config(".*", TFLOperationName.FULLY_CONNECTED, 8, 8)
    recipe = recipe_manager.RecipeManager()
    recipe.load_quantization_recipe(q.get_quantization_recipe())
    with contextlib.redirect_stderr(io.StringIO()):  # the quantizer's own progress bars
        calibration_run = calibrator.Calibrator(fp32, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        calibration_run.calibrate({SIGNATURE: calibration}, recipe)
        result = q.quantize(calibration_run.get_model_qsvs(), enable_progress_bar=False,
                            enable_progress_report=False)
    return general_int16_arithmetic(bytes(result.quantized_model))


def general_int16_arithmetic(model: bytes) -> bytes:
    """The file with its int16 ADD and SUB marked for the kernels' general path (any scales: op versions 3 and 5).
    The quantizer leaves them on the power-of-two path, which LiteRT takes whenever all three scales are within
    0.001 of a power of two and which shifts one input only: a GRU's h - n, both calibrated to +-1 (2^-15) into
    +-2 (2^-14), failed to load (`sub.cc: input1_shift == 0 || input2_shift == 0`). TFLite Micro and the
    generated C compute ADD and SUB the general way for any scales, so both runtimes now run the same arithmetic."""
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    general = {"ADD": 3, "SUB": 5}  # the first op versions with pot_scale_int16 = false
    for graph in obj.subgraphs:
        for op in graph.operators:
            name = flatbuffer_utils.opcode_to_name(obj, op.opcodeIndex)
            if name in general and graph.tensors[op.inputs[0]].type == flatbuffer_utils.TensorType.INT16:
                op.builtinOptions.potScaleInt16 = False
                code = obj.operatorCodes[op.opcodeIndex]
                code.version = max(code.version, general[name])
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def integer_tflite(checkpoint: Checkpoint, fp32: bytes, precision: str, recordings: list[Recording],
                   time: int = 1, cache: dict | None = None) -> bytes:
    """The integer-only stream file of `precision` from `fp32` (the UnrolledStream file at fixed length `time`,
    batch 1), calibrated on the streamed states over `recordings` of the model clipped at cell_clip. Refuses a
    result with a float tensor left in it. `cache` keeps the clip and calibration pairs for the other precision."""
    cache = {} if cache is None else cache
    key = ("integer calibration", time)
    if key not in cache:
        clip = cell_clip(checkpoint, recordings)
        module = IntegerStream(checkpoint, clip).eval()
        cache[key] = streamed_pairs(module, recordings, checkpoint.config.state_size, time)
    model = quantize_integer(fp32, precision, cache[key])
    floats = float_tensors(model)
    if floats:
        raise ExportError(f"{precision}: the quantizer left {len(floats)} float tensor(s) in the graph "
                          f"({', '.join(floats[:3])}): not integer-only")
    return model


def float_tensors(model: bytes) -> list[str]:
    """Names of the model's float32 tensors (none in an integer-only file)."""
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    return [(t.name or b"").decode() if isinstance(t.name, bytes) else str(t.name)
            for g in obj.subgraphs for t in g.tensors if t.type == flatbuffer_utils.TensorType.FLOAT32]
