"""TFLite Micro backend ("tflm"): the microcontroller interpreter (pip install tflite-micro), same kernels as on a
Cortex-M, on this machine. For checking integer-only (a8w8, a16w8) bundles exactly as a device runs them, and
for streaming them where TFLite Micro is the runtime.

Streams keep a float32 state (rnnedge.bundle.StateSpec): each call quantizes x and the state with the file's
(scale, zero_point) and dequantizes y; state_out is first requantized into the state input's scale with TFLite
Micro's integer rule (`carried`), so the dequantized state re-quantizes to the very integers a device carries:
the state streamed, snapshotted and resumed is the device's integer state, and the generated C (export/cgen.py)
computes the same integers call after call. TFLite Micro's interpreter has fixed
shapes (batch 1, the file's time length): a batch is a loop of calls.

TFLite Micro refuses files it would compute wrongly or cannot run, with the reason: dynamic-range (hybrid) int8
files (float activations into int8 weights: no such kernel) and weight-only int8 files with one scale per output
channel (its DEQUANTIZE reads one scale per tensor: silently wrong outputs, measured logits off by 6-9).
"""

from __future__ import annotations

from _thread import allocate_lock  # not threading: see rnnedge.runtime.litert
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnedge.bundle import one_line
from rnnedge.errors import BackendUnavailableError, BundleError
from rnnedge.runtime.fixed_point import carry_params, carry_state
from rnnedge.runtime.litert import by_rank, decoder, encoder, usable

ROLES = ("x", "state", "y", "state_out")
MIN_ARENA = 64 * 1024  # bytes; a host run is not short of memory (mcu.py measures what a device needs)


def interpreter_module():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise BackendUnavailableError("tflite-micro is not installed (pip install tflite-micro)") from None
    return runtime


def refusal(model: bytes) -> str | None:
    """Why TFLite Micro must not run this file, or None: float activations into int8 weights (dynamic-range
    files: it has no such kernels), or a DEQUANTIZE of a tensor with one scale per channel (weight-only
    per-channel files: it would dequantize with the first scale only)."""
    runtime = interpreter_module()
    ops, types = runtime.schema_fb.BuiltinOperator, runtime.schema_fb.TensorType
    obj = runtime.convert_bytearray_to_object(bytearray(model))
    for graph in obj.subgraphs:
        for op in graph.operators or []:
            code = runtime.get_builtin_code_from_operator_code(obj.operatorCodes[op.opcodeIndex])
            inputs = [graph.tensors[i] for i in op.inputs if i >= 0]
            if code == ops.DEQUANTIZE and _scale_count(inputs[0]) > 1:
                return ("weight-only int8 with one scale per output channel: TFLite Micro's DEQUANTIZE uses one "
                        "scale per tensor and would compute wrong outputs; use an integer-only file (a8w8, a16w8) "
                        "or per-tensor scales")
            if len(inputs) > 1 and inputs[0].type == types.FLOAT32 and inputs[1].type == types.INT8:
                return ("dynamic-range (hybrid) int8: float activations into int8 weights, which TFLite Micro "
                        "has no kernels for; use an integer-only file (a8w8, a16w8)")
    return None


def _scale_count(tensor) -> int:
    q = tensor.quantization
    return 0 if q is None or q.scale is None else len(q.scale)


def _detail(raw: dict, index: int) -> dict:
    """TFLite Micro's tensor details -> shape, dtype, (scale, zero_point) (0.0 scale: not quantized)."""
    q = raw.get("quantization_parameters") or {}
    scales, zeros = np.asarray(q.get("scales", [])), np.asarray(q.get("zero_points", []))
    if len(scales) > 1:
        raise ValueError(f"tensor {index} has {len(scales)} scales: per-channel I/O is not supported")
    quant = (float(scales[0]), int(zeros[0])) if len(scales) else (0.0, 0)
    return {"index": index, "shape": tuple(int(n) for n in raw["shape"]), "dtype": np.dtype(raw["dtype"]),
            "quantization": quant}


def carried(state: dict, state_out: dict) -> Callable[[np.ndarray], np.ndarray]:
    """state_out -> the float32 state the stream keeps. An integer file's int16 state_out is first requantized into
    the state input's scale with TFLite Micro's Requantize (rnnedge.runtime.fixed_point: what a device and the
    generated C do between calls), so the next call's quantization gives back those very integers: the stream
    carries the device's state, not a float rounding of it."""
    (out_scale, out_zero), (in_scale, in_zero) = state_out["quantization"], state["quantization"]
    if state_out["dtype"] != np.int16 or state["dtype"] != np.int16 or out_zero or in_zero:
        return decoder(state_out)
    params = carry_params(out_scale, in_scale)
    decode = decoder(state)
    return lambda value: decode(carry_state(value, params))


class TFLMBackend:
    name = "tflm"

    def __init__(self, paths: dict[int, Path], arena_bytes: int | None = None) -> None:
        runtime = interpreter_module()
        self.paths, self.chunk_lens = paths, tuple(sorted(paths))
        self._files = {}  # time length -> (interpreter, its lock, details of x, state, y, state_out)
        for time_len, path in paths.items():
            model = path.read_bytes()
            why = refusal(model)
            if why:
                raise BundleError(f"{path}: refused for TFLite Micro: {why}")
            arena = max(MIN_ARENA, 10 * len(model), arena_bytes or 0)
            try:
                interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
                inputs = by_rank([_detail(interpreter.get_input_details(i), i) for i in (0, 1)])
                outputs = by_rank([_detail(interpreter.get_output_details(i), i) for i in (0, 1)])
            except (ValueError, RuntimeError) as exc:  # its own reason went to stderr (C++)
                raise BundleError(f"{path}: TFLite Micro cannot load it as a stream file ({one_line(exc)})") from None
            self._files[time_len] = (interpreter, allocate_lock(), (*inputs, *outputs))

    def io(self) -> list[tuple[str, int | None, dict[str, tuple[tuple[int | None, ...], bool]]]]:
        """[(file, the time length it is run at, {role: (shape, usable type?)})], roles x, state, y, state_out
        (told apart by rank)."""
        return [(self.paths[t].name, t, {role: (d["shape"], usable(d))
                                         for role, d in zip(ROLES, details, strict=True)})
                for t, (_, _, details) in self._files.items()]

    def quantization(self, time_len: int = 1) -> dict[str, tuple[str, float, int]]:
        """{role: (dtype name, scale, zero_point)} of the file of that time length."""
        return {role: (d["dtype"].name, *d["quantization"])
                for role, d in zip(ROLES, self._files[time_len][2], strict=True)}

    def bind(self, x: np.ndarray, state: np.ndarray, y: np.ndarray,
             state_out: np.ndarray) -> Callable[[], None]:
        """A call that runs the file of x's time length on these buffers (batch rows one by one)."""
        interpreter, lock, details = self._files[x.shape[1]]
        set_input, get_output, invoke = interpreter.set_input, interpreter.get_output, interpreter.invoke
        encode_x, encode_state = encoder(details[0]), encoder(details[1])
        decode_y, decode_state = decoder(details[2]), carried(details[1], details[3])
        x_i, state_i, y_i, state_out_i = (d["index"] for d in details)

        def rows() -> None:
            with lock:
                for b in range(len(x)):
                    set_input(encode_x(x[b:b + 1]), x_i)
                    set_input(encode_state(state[b:b + 1]), state_i)
                    invoke()
                    y[b:b + 1] = decode_y(get_output(y_i))
                    state_out[b:b + 1] = decode_state(get_output(state_out_i))

        return rows
