"""ONNX export. Stream graphs are written node by node from the weights (onnx_stream: a few nodes, the fastest
at batch 1); window graphs (classify models, bidirectional ones included) are traced with torch's legacy
(TorchScript) exporter, which emits the native LSTM/GRU/RNN ops and keeps batch and time dynamic. (The dynamo
exporter fixes time to the example length for recurrent models; see the measured notes.)"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

from rnnedge.export.graphs import example_inputs
from rnnedge.export.onnx_stream import OPSET, build_stream_onnx
from rnnedge.training.checkpoint import Checkpoint


class _Tuple(nn.Module):
    """The legacy exporter wants tuple outputs; the graph modules return named dicts."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.graph(*inputs).values())


def export_onnx(checkpoint: Checkpoint, module: nn.Module, graph: str, summary: dict[str, str]) -> onnx.ModelProto:
    """An opset-17 model with dynamic batch and time of `graph` ("stream", or "window": `module` traced)."""
    if graph == "stream":
        return build_stream_onnx(checkpoint, summary)
    inputs = example_inputs(checkpoint, graph, time=3, batch=2)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about batch_first RNNs and its own deprecation
        torch.onnx.export(_Tuple(module).eval(), tuple(inputs.values()), buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(inputs), output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch"}},
                          do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    _compact_names(model)
    set_metadata(model, summary)
    return model


def _compact_names(model: onnx.ModelProto) -> None:
    """Short internal tensor names: the traced ones ('/graph/model/rnn/Reshape_output_0') weigh more than the
    weights of a small model. Graph inputs and outputs keep their contract names."""
    keep = {v.name for v in (*model.graph.input, *model.graph.output)} | {""}
    internal = [init.name for init in model.graph.initializer] + [o for n in model.graph.node for o in n.output]
    rename = {name: f"t{i}" for i, name in enumerate(dict.fromkeys(n for n in internal if n not in keep))}
    for init in model.graph.initializer:
        init.name = rename.get(init.name, init.name)
    for node in model.graph.node:
        node.name = ""
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]


def set_metadata(model: onnx.ModelProto, summary: dict[str, str]) -> None:
    """A file found alone still says what it is (Netron and onnx.load show metadata_props)."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, summary)


def serialize_onnx(model: onnx.ModelProto) -> bytes:
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
