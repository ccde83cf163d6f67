"""Smaller ONNX files for every cell kind: store the weight matrices as int8 (or fp16) initializers decoded by a
DequantizeLinear (or Cast) node feeding the unchanged native op.

onnxruntime's dynamic quantizer only knows the LSTM op (GRU and RNN have no integer kernels), so instead of
rewriting the compute we rewrite the storage: per-output-channel symmetric int8 weights work the same for
LSTM, GRU, RNN and the head, the graph keeps its I/O, and states and activations stay float32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

# op type -> {input index: per-channel axis of that weight}; ONNX recurrent weights are [dirs, gates*H, in]
_WEIGHT_INPUTS = {"LSTM": {1: 1, 2: 1}, "GRU": {1: 1, 2: 1}, "RNN": {1: 1, 2: 1}, "MatMul": {1: -1}, "Gemm": {1: 1}}


def _weights(model: onnx.ModelProto) -> dict[str, int]:
    """Initializer name -> output-channel axis, for every weight matrix the compute ops read."""
    initializers = {init.name for init in model.graph.initializer}
    found: dict[str, int] = {}
    for node in model.graph.node:
        for index, axis in _WEIGHT_INPUTS.get(node.op_type, {}).items():
            if index < len(node.input) and node.input[index] in initializers:
                trans_b = any(a.name == "transB" and a.i for a in node.attribute)
                found[node.input[index]] = 0 if node.op_type == "Gemm" and trans_b else axis
    return found


def quantize_int8(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 (range +-127, zero point 0): returns (int8 values, float32 scales)."""
    axis = axis % w.ndim
    reduce = tuple(i for i in range(w.ndim) if i != axis)
    scale = np.abs(w).max(axis=reduce) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def compress_weights(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """A copy of `model` whose weight matrices are stored as int8 ("int8") or float16 ("fp16")."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    targets = _weights(out)
    kept, decoders, added = [], [], []
    for init in out.graph.initializer:
        if init.name not in targets:
            kept.append(init)
            continue
        w = numpy_helper.to_array(init)
        if precision == "int8":
            q, scale = quantize_int8(w, targets[init.name])
            axis = targets[init.name] % w.ndim
            added += [numpy_helper.from_array(q, f"{init.name}_int8"),
                      numpy_helper.from_array(scale, f"{init.name}_scale")]  # zero point: omitted = 0
            decoders.append(helper.make_node("DequantizeLinear", [f"{init.name}_int8", f"{init.name}_scale"],
                                             [init.name], axis=axis))
        elif precision == "fp16":
            added.append(numpy_helper.from_array(w.astype(np.float16), f"{init.name}_fp16"))
            decoders.append(helper.make_node("Cast", [f"{init.name}_fp16"], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            raise ValueError(f"unknown weight precision {precision!r}")
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + added)
    nodes = decoders + list(out.graph.node)  # decoders first: the graph stays topologically sorted
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


NOTES = {
    "fp32": "float32 weights and compute (native ONNX recurrent ops)",
    "int8": "weights stored int8 (symmetric, per output channel) and dequantized by DequantizeLinear into the "
            "native recurrent ops and head, which compute in float32; states and activations stay float32. "
            "Smaller file, same speed as fp32 with ONNX Runtime session config session.disable_quant_qdq=1 "
            "(rnnedge.runtime sets it; without it ORT keeps DequantizeLinear at run time, fuses the head into a "
            "MatMulNBits kernel with slightly different outputs, and runs ~1.7x slower).",
    "fp16": "weights stored float16 and cast to float32 at load; compute, states and activations in float32. "
            "Smaller file, same speed as fp32.",
}
