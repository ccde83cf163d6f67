"""The TFLite stream graph: the recurrence written out with explicit cells, for litert-torch to convert.

Converting torch's nn.LSTM/GRU/RNN gives two FULLY_CONNECTED per layer and step plus slicing for every gate.
Written out, each layer projects the whole input chunk at once (one matmul for all T steps, both biases
pre-summed) and each step costs one recurrent matmul plus the gate arithmetic; LSTM gates are reordered
(i, f, o, g) so one sigmoid covers three of them. Fewer ops make the file smaller (most of a small unrolled
model's bytes are op and tensor records, not weights) and the call faster. Weights and the folded input
normalization come from rnnedge.export.folded, shared with the ONNX graph; the state layout is the bundle's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rnnedge.export.folded import Layer, head, member_layers, reorder_gates
from rnnedge.training.checkpoint import Checkpoint

_GATE_ORDER = {"lstm": (0, 1, 3, 2), "gru": (0, 1, 2), "rnn_tanh": (0,), "rnn_relu": (0,)}


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, np.float32))


class UnrolledStream(nn.Module):
    """x [batch, T, channels] raw, state [batch, state_size] -> {y [batch, T, outputs], state_out}."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__()
        config = checkpoint.config
        stacks = member_layers(checkpoint)
        self.cell, self.members = config.cell, len(stacks[0])
        self.width, self.hidden = config.hidden_size, config.hidden_size // self.members  # the fold's, a member's
        self.parts, self.layers = len(config.state_tensors), config.num_layers
        self.w_x, self.b_x, self.w_h, self.b_h = (nn.ParameterList() for _ in range(4))  # [layer * members + k]
        for members in stacks:
            for member in members:
                for target, value in zip((self.w_x, self.b_x, self.w_h, self.b_h), self._weights(member),
                                         strict=True):
                    target.append(nn.Parameter(_tensor(value), requires_grad=False))
        head_w, head_b = head(checkpoint)
        self.head_w = nn.Parameter(_tensor(head_w.T), requires_grad=False)
        self.head_b = nn.Parameter(_tensor(head_b), requires_grad=False)
        self.residual = config.horizon if config.residual else 0  # copies of x added to y (folded.head)
        self.change_input = config.change_input  # layer 0 also takes the sample before
        self.state_parts = config.state_parts
        if self.change_input:  # which the state keeps normalized, so the graph normalizes (folded.py)
            norm = checkpoint.normalization
            self.norm_mean = nn.Parameter(_tensor(np.asarray(norm.mean)), requires_grad=False)
            self.norm_inv_std = nn.Parameter(_tensor(1.0 / np.asarray(norm.std, np.float64)), requires_grad=False)

    def _weights(self, layer: Layer) -> tuple[np.ndarray, ...]:
        """(input weight [in, G*H], input bias, recurrent weight [H, G*H], recurrent bias) in this graph's
        gate order. The biases are summed into the input projection, except GRU's new-gate recurrent bias,
        which the reset gate multiplies."""
        order = _GATE_ORDER[self.cell]
        w_ih, w_hh = reorder_gates(layer.w_ih, order), reorder_gates(layer.w_hh, order)
        b_ih, b_hh = reorder_gates(layer.b_ih, order), reorder_gates(layer.b_hh, order)
        b_h = np.zeros_like(b_hh)
        if self.cell == "gru":
            b_h[2 * self.hidden:] = b_hh[2 * self.hidden:]
            b_hh = b_hh - b_h
        return w_ih.T, b_ih + b_hh, w_hh.T, b_h

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> dict[str, torch.Tensor]:
        sequence, tail = x, []
        if self.change_input:
            sequence, state, tail = self._changes(x, state)
        parts = state.reshape(state.shape[0], self.parts, self.layers, self.width)
        finals: list[list[torch.Tensor]] = [[] for _ in range(self.parts)]
        sequences = [sequence] * self.members  # layer 0's input, shared
        for layer in range(self.layers):
            member_finals: list[list[torch.Tensor]] = [[] for _ in range(self.parts)]
            for k in range(self.members):
                at = layer * self.members + k
                projected = sequences[k] @ self.w_x[at] + self.b_x[at]  # [batch, T, G*H]: all steps at once
                carried = [self._own(parts[:, p, layer], k) for p in range(self.parts)]
                outputs = []
                for x_t in projected.unbind(1):
                    carried = self._cell(x_t, carried, at)
                    outputs.append(carried[0])
                sequences[k] = torch.stack(outputs, 1)
                for p in range(self.parts):
                    member_finals[p].append(carried[p])
            for p in range(self.parts):
                finals[p].append(self._joined(member_finals[p]))
        sequence = self._joined(sequences)
        y = sequence @ self.head_w + self.head_b
        if self.residual:
            y = y + (torch.cat([x] * self.residual, -1) if self.residual > 1 else x)
        state_out = torch.stack([t for part in finals for t in part], 1).reshape(state.shape[0], -1)
        return {"y": y, "state_out": torch.cat([state_out, *tail], 1) if tail else state_out}

    def _own(self, units: torch.Tensor, k: int) -> torch.Tensor:
        """Member k's units of a fold's [batch, width] (a model trained as one: all of them)."""
        return units if self.members == 1 else units[:, k * self.hidden:(k + 1) * self.hidden]

    def _joined(self, members: list[torch.Tensor]) -> torch.Tensor:
        """The members' tensors side by side on the last axis."""
        return members[0] if self.members == 1 else torch.cat(members, -1)

    def _changes(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        """The change input (training.model._with_changes, its weights folded: onnx_stream._changes): layer 0's
        input [x, the sample before], normalized, the state's recurrent part, and the state's new tail."""
        recurrent, last_at, seen_at = self.state_parts
        normalized = (x - self.norm_mean) * self.norm_inv_std
        last, seen = state[:, last_at], state[:, seen_at]
        first = normalized[:, 0]
        start = first + seen * (last - first)  # the state's sample, or the first where it has seen none
        before = torch.cat([start[:, None], normalized[:, :-1]], 1)
        seen_out = seen + (1.0 - seen)  # 1, whatever it was, from ops every integer kernel has
        return torch.cat([normalized, before], 2), state[:, recurrent], [normalized[:, -1], seen_out]

    def _cell(self, x_t: torch.Tensor, carried: list[torch.Tensor], at: int) -> list[torch.Tensor]:
        """One step of member `at` (layer * members + k)."""
        h, n = carried[0], self.hidden
        gates = h @ self.w_h[at]
        if self.cell == "lstm":
            gates = gates + x_t
            sig = torch.sigmoid(gates[:, :3 * n])
            c = sig[:, n:2 * n] * carried[1] + sig[:, :n] * torch.tanh(gates[:, 3 * n:])
            return [sig[:, 2 * n:] * torch.tanh(c), c]
        if self.cell == "gru":
            gates = gates + self.b_h[at]
            r_z = torch.sigmoid(x_t[:, :2 * n] + gates[:, :2 * n])
            new = torch.tanh(x_t[:, 2 * n:] + r_z[:, :n] * gates[:, 2 * n:])
            return [new + r_z[:, n:] * (h - new)]
        act = torch.relu if self.cell == "rnn_relu" else torch.tanh
        return [act(x_t + gates)]
