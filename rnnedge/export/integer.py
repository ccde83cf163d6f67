"""Integer-only TFLite stream files for microcontrollers and NPUs: a8w8 and a16w8, run by TFLite Micro.

Every tensor of these files is an integer (int8 weights; int8 or int16 activations; int32/int64 biases), the
I/O included: x, state, y and state_out carry a (scale, zero_point) each, recorded in the manifest, and a
device quantizes x and the state in and dequantizes y (or keeps the state integer between calls).

Three measured facts shape them (HAPT LSTM 2x64 tagger, test subjects; see docs/mcu.md):
- The LSTM cell state is an integrator: streamed over real 5-minute recordings some layer-2 units reach
  |c| ~ 3000 (tanh(c) saturates from |c| ~ 4; the size only says how long the unit stays latched). One
  quantization scale over that range leaves nothing for h, so the integer graph clips c to +-CELL_CLIP:
  fp32 accuracy with the clip 0.9738 (64), 0.9702 (32), 0.9033 (16) vs 0.9686 unclipped.
- The state must be calibrated with the states real streams reach: a zero or short-stream state collapses or
  under-ranges the state's scale (static int8 measured 15%: state scale 2.3, every h rounds to zero).
- c needs more than 8 bits: c at int8 (scale 64/127) alone drops accuracy to 0.66, h at int8 costs nothing.
  So a8w8 keeps the cell state (and the one state tensor that holds it) in int16, as TFLite Micro's own
  int8 LSTM kernel does; every other activation is int8.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import torch

from rnnedge.data.recording import Recording
from rnnedge.errors import ExportError
from rnnedge.export.graphs import example_inputs
from rnnedge.export.tflite_export import SIGNATURE, convert_tflite
from rnnedge.export.tflite_stream import UnrolledStream
from rnnedge.training.checkpoint import Checkpoint

PRECISIONS = ("a8w8", "a16w8")
ACTIVATION_BITS = {"a8w8": 8, "a16w8": 16}
CELL_CLIP = 64.0  # |c| bound inside integer LSTM graphs (module docstring: accuracy vs clip)
CALIBRATION_PAIRS = 1024  # (x, state) pairs spread over the recordings, plus each channel's extremes

NOTES = {
    "a8w8": "integer only (TFLite Micro, NPUs): int8 weights (per output channel) and int8 activations; the "
            "LSTM cell state and the state tensor int16 (as TFLite Micro's int8 LSTM); x, state, y and state_out "
            "are integer tensors with the (scale, zero_point) in `quantization`",
    "a16w8": "integer only (TFLite Micro, NPUs): int8 weights (per output channel), int16 activations and "
             "state; x, state, y and state_out are int16 tensors with the (scale, zero_point) in `quantization`",
}


class IntegerStream(UnrolledStream):
    """The TFLite stream graph with the LSTM cell state clipped to +-CELL_CLIP after every step (h is computed
    from the unclipped c: tanh is 1.0 in float32 long before the clip). The fp32 model that the integer files
    quantize, and the one their calibration streams."""

    def _cell(self, x_t: torch.Tensor, carried: list[torch.Tensor], layer: int) -> list[torch.Tensor]:
        carried = super()._cell(x_t, carried, layer)
        if self.cell == "lstm":
            carried[1] = carried[1].clamp(-CELL_CLIP, CELL_CLIP)
        return carried


def streamed_pairs(module: torch.nn.Module, recordings: list[Recording], state_size: int, time: int = 1,
                   count: int = CALIBRATION_PAIRS) -> list[dict[str, np.ndarray]]:
    """Calibration inputs for a stream file of fixed length `time`: (x, state) pairs where the state is the one
    the fp32 `module` reaches by streaming each whole recording from zero. Picked: `count` steps spread evenly
    over all recordings, and each recording's steps where a channel peaks (so x's scale covers the data)."""
    recordings = [r for r in recordings if len(r) >= time]
    if not recordings:
        raise ExportError(f"no calibration data: every recording is shorter than {time} steps")
    longest = max(len(r) for r in recordings)
    x = np.stack([np.pad(r.signals, ((0, longest - len(r)), (0, 0)), "edge") for r in recordings]).astype(np.float32)
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
    """The integer-only flatbuffer of `fp32` (an IntegerStream file), calibrated on `calibration`."""
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer.qtyping import TFLOperationName

    if precision not in PRECISIONS:
        raise ValueError(f"unknown integer precision {precision!r}")
    logging.getLogger("absl").setLevel(logging.ERROR)
    q = quantizer.Quantizer(bytearray(fp32))
    q.add_static_config(".*", TFLOperationName.ALL_SUPPORTED, ACTIVATION_BITS[precision], 8)
    with contextlib.redirect_stderr(io.StringIO()):  # the quantizer's own progress bars
        calibrated = q.calibrate({SIGNATURE: calibration}, num_threads=1)
        result = q.quantize(calibrated, enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)


def integer_tflite(checkpoint: Checkpoint, precision: str, recordings: list[Recording], time: int = 1,
                   cache: dict | None = None) -> bytes:
    """Build the integer-only stream file of `precision` at fixed length `time` (batch 1): the clipped fp32
    graph converted, calibrated on streamed states over `recordings`, quantized. `cache` keeps the fp32 file
    and the calibration pairs for the other precision."""
    cache = {} if cache is None else cache
    key = ("integer", time)
    if key not in cache:
        module = IntegerStream(checkpoint).eval()
        fp32 = convert_tflite(module, example_inputs(checkpoint, "stream", time))
        cache[key] = fp32, streamed_pairs(module, recordings, checkpoint.config.state_size, time)
    fp32, pairs = cache[key]
    return quantize_integer(fp32, precision, pairs)
