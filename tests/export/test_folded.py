"""Members folded into one model come apart again for the graphs (export/folded.member_layers): each member's
weights exactly as it trained them, however the fold was made; the ONNX and TFLite graphs that run them apart
compute the fold; small members and a model trained as one stay whole."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rnnedge.export.folded import folded_layers, member_count, member_layers
from rnnedge.export.graphs import StreamGraph
from rnnedge.export.onnx_stream import build_stream_onnx
from rnnedge.export.tflite_stream import UnrolledStream
from rnnedge.training.config import CELLS, ModelConfig
from rnnedge.training.ensemble import GATES, fold
from tests.training.test_ensemble import member


def members_of(cell: str, layers: int, hidden: int, task: str = "classify") -> list:
    config = ModelConfig(cell=cell, input_size=2, hidden_size=hidden, num_layers=layers, task=task,
                         output_size=3 if task == "classify" else 2, residual=task == "forecast",
                         change_input=task == "forecast" and GATES[cell] > 1)  # the change input: gated cells
    return [member(config, seed) for seed in (0, 1, 2, 3)]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_a_fold_comes_apart_into_its_members_weights(cell, layers):
    members = members_of(cell, layers, hidden=48)
    for folded in (fold(members), fold([fold(members[:2]), fold(members[2:])])):  # a fold of folds: all four
        split = member_layers(folded)
        assert [len(layer) for layer in split] == [4] * layers
        for k, one in enumerate(members):
            for got, own in zip((layer[k] for layer in split), folded_layers(one), strict=True):
                for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                    np.testing.assert_allclose(getattr(got, name), getattr(own, name), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("task", ["classify", "forecast"])
def test_graphs_that_run_members_apart_compute_the_fold(cell, task):
    folded = fold(members_of(cell, 2, hidden=48, task=task))
    x = torch.randn(3, 7, 2)
    state = torch.zeros(3, folded.config.state_size)
    with torch.no_grad():
        reference = StreamGraph(folded).eval()(x, state)
        reference_next = StreamGraph(folded).eval()(x, reference["state_out"])  # the state carried a call on
        unrolled = UnrolledStream(folded)(x, state)
    session = ort.InferenceSession(build_stream_onnx(folded, {}).SerializeToString())
    y, state_out = session.run(None, {"x": x.numpy(), "state": state.numpy()})
    y_next, _ = session.run(None, {"x": x.numpy(), "state": state_out})
    np.testing.assert_allclose(y, reference["y"].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y_next, reference_next["y"].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(unrolled["state_out"].numpy(), reference["state_out"].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(unrolled["y"].numpy(), reference["y"].numpy(), rtol=1e-4, atol=1e-4)
    onnx_ops = [node.op_type for node in build_stream_onnx(folded, {}).graph.node]
    assert sum(op in ("LSTM", "GRU", "RNN") for op in onnx_ops) == 2 * 4  # a recurrent op per layer and member


def test_small_members_and_a_model_trained_as_one_stay_whole():
    small = fold(members_of("lstm", 2, hidden=5))
    assert member_count(folded_layers(small), GATES["lstm"]) == 4  # found, but too small to pay for their ops
    assert [len(layer) for layer in member_layers(small)] == [1, 1]
    one = members_of("lstm", 2, hidden=48)[0]
    assert member_count(folded_layers(one), GATES["lstm"]) == 1
    np.testing.assert_array_equal(member_layers(one)[1][0].w_hh, folded_layers(one)[1].w_hh)
