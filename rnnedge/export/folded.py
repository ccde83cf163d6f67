"""The stream graphs' weights, read from a checkpoint once for both hand-written graphs (ONNX and TFLite).

Input normalization is folded into the first layer: W (x - mean) / std + b == (W / std) x + (b - W mean / std),
so the files take raw sensor units and spend no node on normalizing; a forecast head folds the inverse in. A
forecast with the change input (ModelConfig.change_input) has layer 0 take [x, the sample before], both normalized
by the graph (its state keeps the sample normalized).
Gate blocks stay in torch order (LSTM i,f,g,o; GRU r,z,n); each graph writer reorders them for its own ops.
Members folded into one model (training/ensemble.py) come apart again here (`member_layers`), so that a graph runs
each member's small recurrence instead of the fold's block-diagonal matrices, zeros and all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnedge.tasks import get_task
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.ensemble import GATES, runs_apart


@dataclass(frozen=True)
class Layer:
    w_ih: np.ndarray  # [gates*H, in] float64
    w_hh: np.ndarray  # [gates*H, H]
    b_ih: np.ndarray  # [gates*H]
    b_hh: np.ndarray  # [gates*H]


def folded_layers(checkpoint: Checkpoint) -> list[Layer]:
    """Per layer, torch's weights in float64 with the input normalization folded into layer 0."""
    sd = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in checkpoint.state_dict.items()}
    layers = []
    for i in range(checkpoint.config.num_layers):
        w_ih, b_ih = sd[f"rnn.weight_ih_l{i}"], sd[f"rnn.bias_ih_l{i}"]
        if i == 0:
            mean = np.asarray(checkpoint.normalization.mean, np.float64)
            std = np.asarray(checkpoint.normalization.std, np.float64)
            if checkpoint.config.change_input:
                w_ih = _change_input(checkpoint, w_ih, sd)
            else:
                b_ih = b_ih - w_ih @ (mean / std)
                w_ih = w_ih / std
        layers.append(Layer(w_ih, sd[f"rnn.weight_hh_l{i}"], b_ih, sd[f"rnn.bias_hh_l{i}"]))
    return layers


def member_layers(checkpoint: Checkpoint) -> list[list[Layer]]:
    """`folded_layers`, each layer split into the members folded side by side (one member for a model trained
    as one): member k's rows of every gate, and of its recurrent weight (and a deeper layer's input weight) the
    columns of its own units. Layer 0's input weights read the shared input. Small members stay folded
    (`runs_apart`)."""
    layers, gates = folded_layers(checkpoint), GATES[checkpoint.config.cell]
    count = member_count(layers, gates)
    if not runs_apart(gates, checkpoint.config.hidden_size, count):
        count = 1
    width = checkpoint.config.hidden_size // count
    split = []
    for depth, layer in enumerate(layers):
        members = []
        for k in range(count):
            # gate-major, member-minor rows (ensemble.fold): gate g of member k at (g * count + k) * width
            rows = np.concatenate([np.arange(width) + (g * count + k) * width for g in range(gates)])
            own = slice(k * width, (k + 1) * width)
            w_ih = layer.w_ih[rows] if depth == 0 else layer.w_ih[rows][:, own]
            members.append(Layer(w_ih, layer.w_hh[rows][:, own], layer.b_ih[rows], layer.b_hh[rows]))
        split.append(members)
    return split


def member_count(layers: list[Layer], gates: int) -> int:
    """How many members were folded into these layers: the most equal parts their units split into with every
    weight from one part's units to another's gates exactly zero (a fold's padding; a model trained as one has
    none, so 1). The finest split: a fold of folds comes apart into all their members."""
    hidden = layers[0].w_hh.shape[1]
    own_inputs = [layer.w_hh for layer in layers] + [layer.w_ih for layer in layers[1:]]
    for count in range(hidden, 1, -1):
        if hidden % count == 0 and all(_blocked(w, count) for w in own_inputs):
            return count
    return 1


def _blocked(weight: np.ndarray, count: int) -> bool:
    """Is `weight` [gates*H, H] zero from each of `count` parts of the H units to every other part's gate rows?"""
    hidden = weight.shape[1]
    width = hidden // count
    row_part = (np.arange(weight.shape[0]) % hidden) // width
    col_part = np.arange(hidden) // width
    return not np.any(weight[row_part[:, None] != col_part[None, :]])


def _change_input(checkpoint: Checkpoint, w_ih: np.ndarray, sd: dict) -> np.ndarray:
    """Layer 0's weight with the change input, on [the sample, the sample before], both normalized:
    [W1 | W2] [x, k (x - b)] == [W1 + W2 k | -W2 k] [x, b], so a graph computes no change. Not folded with the
    normalization: the sample before is normalized in the state, and a weight on raw units beside it would sit at
    1/std of its scale (one int8 scale per tensor: Airline's raw columns quantized to nothing)."""
    channels = checkpoint.config.input_size
    on_change = w_ih[:, channels:] * sd["change_scale"]
    return np.concatenate([w_ih[:, :channels] + on_change, -on_change], axis=1)


def head(checkpoint: Checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """The linear head's (weight [outputs, features], bias [outputs]) in float64; a forecast head folds the
    de-normalization in (y * std + mean), so forecasts leave the graph in the data's units. A residual forecast's
    head is a change: its units need no mean (std * (change + (x - mean) / std) + mean == std * change + x), and
    the graph adds the raw input, repeated for each step of the horizon."""
    sd = checkpoint.state_dict
    weight = sd["head.weight"].detach().cpu().numpy().astype(np.float64)
    bias = sd["head.bias"].detach().cpu().numpy().astype(np.float64)
    config = checkpoint.config
    if not get_task(config.task).classes:
        std = np.tile(np.asarray(checkpoint.normalization.std, np.float64), config.horizon)
        mean = np.tile(np.asarray(checkpoint.normalization.mean, np.float64), config.horizon)
        weight, bias = weight * std[:, None], bias * std + (0.0 if config.residual else mean)
    return weight, bias


def reorder_gates(w: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """Gate blocks along axis 0 in `order` (indices into torch's blocks)."""
    blocks = np.split(w, len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)
