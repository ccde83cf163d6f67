"""The ONNX stream graph, written node by node from the checkpoint's weights.

Tracing the torch model gives a correct graph whose state plumbing (Shape/Gather/Concat/Reshape chains to
unpack and repack the flat state) is most of its run time at batch 1. Written by hand it is a few nodes:

    x [B,T,C] -> Transpose -> LSTM/GRU/RNN per layer (+Squeeze) -> MatMul+Add -> Transpose -> y [B,T,O]
    state [B,S] -> Reshape [B,P*L,H] -> Transpose -> Split into P*L [1,B,H] -> the layers' initial states
    the layers' final states -> Concat -> Transpose -> Reshape -> state_out [B,S]

Input normalization is folded into the first layer's weights (rnnedge.export.folded), so callers still feed
raw sensor units and the graph spends no node on it. The state layout is the one of
rnnedge.training.model: [batch, parts (h, c), layers, hidden], flattened.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rnnedge.export.folded import Layer, head, member_layers, reorder_gates
from rnnedge.training.checkpoint import Checkpoint

OPSET = 17
# torch gate blocks -> ONNX gate blocks (LSTM: i,f,g,o -> i,o,f,c; GRU: r,z,n -> z,r,h)
_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn_tanh": (0,), "rnn_relu": (0,)}
_OP = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def _onnx_weights(layer: Layer, cell: str) -> dict[str, np.ndarray]:
    """ONNX W [1, G*H, in], R [1, G*H, H], B [1, 2*G*H] of one layer."""
    order = _GATE_ORDER[cell]
    arrays = {"W": reorder_gates(layer.w_ih, order)[None], "R": reorder_gates(layer.w_hh, order)[None],
              "B": np.concatenate([reorder_gates(layer.b_ih, order), reorder_gates(layer.b_hh, order)])[None]}
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def _changes(checkpoint: Checkpoint, node, const) -> tuple[str, list[str]]:
    """The change input's nodes (training.model._with_changes; the weights on the sample before are folded, so
    no change is computed here): seq_before [T, B, 2C] = [x, the sample before], normalized, the state's
    recurrent part, and the state's new tail (the last sample normalized, seen flags of 1)."""
    config, channels = checkpoint.config, checkpoint.config.input_size
    norm = checkpoint.normalization
    recurrent, last_at, seen_at = config.state_parts

    def part(source: str, start: int, end: int, axis: int, name: str) -> str:
        bounds = [const(f"{name}_{k}", np.array([v], np.int64)) for k, v in (("start", start), ("end", end),
                                                                               ("axis", axis))]
        node("Slice", [source, *bounds], [name])
        return name

    node("Sub", ["x", const("norm_mean", np.asarray(norm.mean, np.float32))], ["x_centred"])
    node("Mul", ["x_centred", const("norm_inv_std", (1.0 / np.asarray(norm.std, np.float64)).astype(np.float32))],
         ["x_norm"])
    last = part("state", last_at.start, last_at.stop, 1, "last")
    seen = part("state", seen_at.start, seen_at.stop, 1, "seen")
    first = part("x_norm", 0, 1, 1, "first")  # [B, 1, C]
    axis1 = const("axis1_changes", np.array([1], np.int64))
    node("Unsqueeze", [last, axis1], ["last3"])
    node("Unsqueeze", [seen, axis1], ["seen3"])
    node("Sub", ["last3", first], ["to_last"])
    node("Mul", ["seen3", "to_last"], ["seen_to_last"])
    node("Add", [first, "seen_to_last"], ["start"])  # the state's sample, or the first where it has seen none
    node("Concat", ["start", part("x_norm", 0, -1, 1, "earlier")], ["before"], axis=1)
    node("Concat", ["x_norm", "before"], ["x_before"], axis=2)
    node("Transpose", ["x_before"], ["seq_before"], perm=[1, 0, 2])
    node("Max", [seen, const("one", np.ones(channels, np.float32))], ["seen_out"])  # 1, whatever it was
    newest = part("x_norm", -1, np.iinfo(np.int64).max, 1, "newest")
    node("Squeeze", [newest, const("axis1_newest", np.array([1], np.int64))], ["newest2"])
    return part("state", 0, recurrent.stop, 1, "recurrent"), ["newest2", "seen_out"]


def _joined(names: list[str], joined: str, axis: int, node) -> str:
    """The members' tensors side by side along `axis` (a single member's as it is)."""
    if len(names) == 1:
        return names[0]
    node("Concat", names, [joined], axis=axis)
    return joined


def build_stream_onnx(checkpoint: Checkpoint, summary: dict[str, str]) -> onnx.ModelProto:
    """The streaming graph: x [batch, time, channels] raw, state [batch, S] -> y [batch, time, O], state_out."""
    config = checkpoint.config
    layers, hidden, parts = config.num_layers, config.hidden_size, len(config.state_tensors)
    pieces = parts * layers
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        nodes.append(helper.make_node(op, inputs, outputs, **attrs))

    if config.residual or not config.change_input:  # the residual's latest inputs, or layer 0's own
        node("Transpose", ["x"], ["seq"], perm=[1, 0, 2])  # ONNX recurrent ops want [time, batch, features]
    recurrent = "state"
    if config.change_input:
        recurrent, remembered = _changes(checkpoint, node, const)
    node("Reshape", [recurrent, const("pieces_shape", np.array([0, pieces, hidden], np.int64))], ["pieces"])
    node("Transpose", ["pieces"], ["pieces_t"], perm=[1, 0, 2])
    initial = [f"init{i}" for i in range(pieces)]  # index = part * layers + layer
    node("Split", ["pieces_t"], initial, axis=0)  # equal pieces [1, batch, hidden]
    stacks = member_layers(checkpoint)
    count = len(stacks[0])
    width = hidden // count
    mark = [f"_m{k}" if count > 1 else "" for k in range(count)]  # a model trained as one keeps its names
    if count > 1:  # each piece split again into the members' units
        for piece in initial:
            node("Split", [piece], [piece + m for m in mark], axis=2)
    finals = []  # per layer, the members' final h and c
    sequences = ["seq_before" if config.change_input else "seq"] * count  # layer 0's input, shared
    for layer, members in enumerate(stacks):
        h_out, c_out = [], []
        for k, member in enumerate(members):
            name = f"{layer}{mark[k]}"
            weights = {key: const(f"{key}{name}", v) for key, v in _onnx_weights(member, config.cell).items()}
            inputs = [sequences[k], weights["W"], weights["R"], weights["B"], "", initial[layer] + mark[k]]
            outputs = [f"y{name}", f"h{name}"]
            attrs = {"hidden_size": width}
            if config.cell == "lstm":
                inputs.append(initial[layers + layer] + mark[k])
                outputs.append(f"c{name}")
                c_out.append(f"c{name}")
            elif config.cell == "gru":
                attrs["linear_before_reset"] = 1  # torch's GRU applies the reset gate after the recurrent matmul
            else:
                attrs["activations"] = ["Relu" if config.cell == "rnn_relu" else "Tanh"]
            node(_OP[config.cell], inputs, outputs, **attrs)
            h_out.append(f"h{name}")
            node("Squeeze", [f"y{name}", const(f"axis1_{name}", np.array([1], np.int64))], [f"seq{name}"])
            sequences[k] = f"seq{name}"  # [time, batch, width]: the member's next layer's input
        finals.append((h_out, c_out))
    sequence = _joined(sequences, f"seq{layers - 1}", 2, node)  # the members side by side: the head's input
    h_final = [_joined(h, f"h{layer}", 2, node) for layer, (h, _) in enumerate(finals)]
    c_final = [_joined(c, f"c{layer}", 2, node) for layer, (_, c) in enumerate(finals) if c]
    head_w, head_b = head(checkpoint)
    node("MatMul", [sequence, const("head_w", head_w.T.astype(np.float32))], ["head_mm"])
    node("Add", ["head_mm", const("head_b", head_b.astype(np.float32))], ["y_tb"])
    if config.residual:  # a forecast of changes: add the latest input, once per step of the horizon
        if config.horizon > 1:
            node("Concat", ["seq"] * config.horizon, ["seq_h"], axis=2)
        node("Add", ["y_tb", "seq_h" if config.horizon > 1 else "seq"], ["y_change"])
    node("Transpose", ["y_change" if config.residual else "y_tb"], ["y"], perm=[1, 0, 2])
    node("Concat", h_final + c_final, ["final"], axis=0)  # [P*L, batch, hidden]
    node("Transpose", ["final"], ["final_t"], perm=[1, 0, 2])
    final = "state_out" if not config.change_input else "recurrent_out"
    node("Reshape", ["final_t", const("state_shape", np.array([0, config.state_parts[0].stop], np.int64))], [final])
    if config.change_input:
        node("Concat", [final, *remembered], ["state_out"], axis=1)

    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "rnnedge_stream",
        [helper.make_tensor_value_info("x", f32, ["batch", "time", config.input_size]),
         helper.make_tensor_value_info("state", f32, ["batch", config.state_size])],
        [helper.make_tensor_value_info("y", f32, ["batch", "time", config.output_size]),
         helper.make_tensor_value_info("state_out", f32, ["batch", config.state_size])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rnnedge")
    model.ir_version = 8  # opset 17's IR: loadable by onnxruntime >= 1.14
    helper.set_model_props(model, summary)
    return model
