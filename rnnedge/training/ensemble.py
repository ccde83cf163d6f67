"""Several models trained from different seeds, folded into ONE recurrent model that computes their average.

On small data sets a model's test accuracy swings with its seed (measured on the public-data benchmark, seeds 0-2:
Coffee 0.96 / 0.57 / 1.00, UnitTest 0.95 / 0.91 / 0.86); the average of two models' outputs swings much less (the
worst pair: Coffee 0.96, UnitTest 0.91). A device should not run two models, and need not: M recurrent stacks of
width H side by side are one stack of width M*H whose weight matrices are block-diagonal (each member's units see
only its own units and the input), and a head of [W_1 ... W_M] / M averages their outputs. The folded model is an
ordinary checkpoint: every export path (ONNX, TFLite, integer TFLite Micro, generated C) runs it exactly, each
member apart where that makes the files smaller (`runs_apart`: export/folded.member_layers).
Unidirectional stacks only (a bidirectional stack's layer input interleaves the two directions)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rnnedge.data.recording import Normalization
from rnnedge.tasks import get_task
from rnnedge.training.checkpoint import Checkpoint

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}  # gate blocks stacked in PyTorch's weight rows


def fold(members: list[Checkpoint]) -> Checkpoint:
    """One checkpoint computing the mean output of `members` (same cell, shape and task); its provenance is the
    first member's, plus each member's own under "members". A classifier normalized otherwise than the first takes
    the first's normalization (`renormalized`); a forecast's outputs are in its normalization's units: it must
    share it."""
    first = members[0]
    config = first.config
    if config.bidirectional:
        raise ValueError("only unidirectional models fold into one")
    if any(other.config != config for other in members[1:]):
        raise ValueError("members must share cell, shape and task")
    if any(not _same(other.normalization, first.normalization) for other in members[1:]) and \
            not get_task(config.task).classes:
        raise ValueError("forecast members must share their normalization")
    members = [first] + [renormalized(other, first.normalization) for other in members[1:]]
    count, hidden, gates = len(members), config.hidden_size, GATES[config.cell]
    folded = {}
    for name in first.state_dict:
        parts = [m.state_dict[name].detach().float() for m in members]
        if name == "head.weight":  # [outputs, hidden]: side by side, each 1/M of the mean
            folded[name] = torch.cat(parts, dim=1) / count
        elif name == "head.bias":
            folded[name] = torch.stack(parts).mean(0)
        elif name == "change_scale":  # fitted from the data the members share
            folded[name] = parts[0]
        else:
            own_inputs = not name.startswith("rnn.weight_ih_l0")  # layer 0's input is the data, shared by all
            folded[name] = _stack_gates(parts, gates, hidden, own_inputs)
    provenance = dict(first.provenance)
    provenance["members"] = [{"seed": m.provenance.get("train_config", {}).get("seed"),
                              "val_score": m.provenance.get("val_score"),
                              "best_epoch": m.provenance.get("best_epoch"),
                              "train_loss": m.provenance.get("train_loss")} for m in members]
    return Checkpoint(replace(config, hidden_size=hidden * count), folded, first.normalization, first.channels,
                      first.labels, first.sample_rate_hz, provenance)


SPLIT_WEIGHTS = 4096  # runs_apart: the fewest weights in a member's rows of the fold's recurrent matrix


def runs_apart(gates: int, hidden: int, count: int) -> bool:
    """Whether a fold of `count` members into `hidden` units runs member by member: when each member's rows of the
    fold's recurrent matrix (gates * hidden / count of them, `hidden` wide) hold more than SPLIT_WEIGHTS weights.
    Below it a graph's extra ops' records and quantization parameters outweigh the zeros left out (TFLite LSTM files at
    T=1, a16w8, apart against whole: 4 members of 16 units 38.9 against 37.6 KB; 2 of 32, 34.4 against 37.6 KB;
    4 of 64, 141 against 324 KB)."""
    return count > 1 and gates * (hidden // count) * hidden > SPLIT_WEIGHTS


def renormalized(checkpoint: Checkpoint, norm: Normalization) -> Checkpoint:
    """`checkpoint` taking inputs normalized by `norm` instead of its own, outputs unchanged (to float32 rounding):
    its own normalized input is (x - m) / s = x' s' / s + (m' - m) / s for x' = (x - m') / s', so its first layer's
    input weight takes s' / s per channel and its input bias W (m' - m) / s. The head is untouched: for classes
    only (a forecast's outputs are in its normalization's units)."""
    own = checkpoint.normalization
    if _same(own, norm):
        return checkpoint
    scale = np.asarray(norm.std, np.float64) / np.asarray(own.std, np.float64)
    shift = (np.asarray(norm.mean, np.float64) - np.asarray(own.mean, np.float64)) / np.asarray(own.std, np.float64)
    weights = dict(checkpoint.state_dict)
    w_ih = weights["rnn.weight_ih_l0"].detach().double()
    weights["rnn.weight_ih_l0"] = (w_ih * torch.from_numpy(scale)).float()
    weights["rnn.bias_ih_l0"] = (weights["rnn.bias_ih_l0"].detach().double() + w_ih @ torch.from_numpy(shift)).float()
    return replace(checkpoint, state_dict=weights, normalization=norm)


def _same(one: Normalization, other: Normalization) -> bool:
    return one.to_dict() == other.to_dict()


def _stack_gates(parts: list[torch.Tensor], gates: int, hidden: int, own_inputs: bool) -> torch.Tensor:
    """A recurrent weight [gates*H, inputs] (or bias [gates*H]) of each member -> [gates*M*H, ...]: gate-major,
    member-minor rows; with `own_inputs` (a recurrent weight, or a deeper layer's input weight) each member's block
    sits on its own H columns, zeros elsewhere."""
    count = len(parts)
    rows = []
    for gate in range(gates):
        for member, weight in enumerate(parts):
            block = weight[gate * hidden:(gate + 1) * hidden]
            if own_inputs and block.ndim == 2:
                padded = torch.zeros(hidden, hidden * count)
                padded[:, member * hidden:(member + 1) * hidden] = block
                block = padded
            rows.append(block)
    return torch.cat(rows, dim=0)


def member_seeds(seed: int, count: int) -> list[int]:
    """Distinct seeds for the members of a run with `seed` (runs with different seeds share no member); the first
    member of seed s trains exactly as a single model with seed s * count would."""
    return list(range(seed * count, (seed + 1) * count))
