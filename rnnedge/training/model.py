"""The model family: one recurrent stack (RNN tanh/relu, LSTM, GRU) plus a linear head.

The recurrent state travels as ONE flat float tensor per stream, shape [batch, state_size]. Training,
export and the runtime all use this layout, so a streaming call has exactly two inputs (x, state) and two
outputs (y, state) whatever the cell, and the state is trivially saved, batched and reset.
Layout: state.view(batch, parts, layers * directions, hidden), parts = (h, c) for LSTM, (h,) otherwise; a
forecast with the change input (ModelConfig.change_input) then carries the last sample and a seen flag per channel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rnnedge.tasks import TASKS
from rnnedge.training.config import GATED, ModelConfig

_RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}


class RecurrentModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        kwargs = {"nonlinearity": config.cell.removeprefix("rnn_")} if config.cell.startswith("rnn_") else {}
        self.rnn = _RNN_CLASSES[config.cell](
            config.input_size * (2 if config.change_input else 1), config.hidden_size, num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional, **kwargs,
        )
        self.head = nn.Linear(config.hidden_size * config.directions, config.output_size)
        if config.change_input:  # set from the training data (`fit_change_scale`), saved with the weights
            self.register_buffer("change_scale", torch.ones(config.input_size))

    @torch.no_grad()
    def fit_change_scale(self, normalized: list[np.ndarray]) -> None:
        """Each channel's changes from one sample to the next brought to unit scale, as normalization brings its
        level: a trend's normalized changes are small beside its level (a weekly series: 0.06 of the level's
        spread), and the noise a forecast must see through reached the model at that scale and went unlearned."""
        changes = np.concatenate([np.diff(x, axis=0) for x in normalized if len(x) > 1])
        spread = changes.std(axis=0) if len(changes) > 1 else np.ones(self.config.input_size)
        self.change_scale.copy_(torch.from_numpy(np.where(spread > 1e-6, 1.0 / np.maximum(spread, 1e-6), 1.0)))

    @torch.no_grad()
    def remember_for(self, steps: int) -> None:
        """Chrono initialization (Tallec & Ollivier 2018), sized to the data: the LSTM's forget gates (input gates
        their opposite) and the GRU's update gates start with biases b, so that a unit keeps its state for about e^b
        steps, from one step to the longest series. Classify trains from each series' last step back through the
        whole series; with PyTorch's near-zero bias a unit forgets about half its memory a step, and with the former
        fixed forget bias of 1 Coffee's models (286 steps) sat at chance (loss ln 2) for 2,200-2,900 of their 3,000
        steps; with chrono they left chance after 730-1,230 (docs/own-data-benchmark.md).
        The time scales are spread evenly over octaves (b ~ U(0, log(steps - 1)): as many units per octave), or with
        `slow_init` drawn as published (b = log U(1, steps - 1): half the units keep over half the longest series).
        Neither suits every set: spread, PLAID's worst of three seeds (1,344 steps of appliance current, where a
        waveform's shape needs fast units) scored 0.5810 against 0.5121 as published and Coffee's 1.0000 against
        0.9643, while PigCVP's (2,000 steps) scored 0.1058 against 0.1298; the recipe trains both and keeps the
        better on validation, which kept a draw at least as good on test on every seed of those three sets
        (docs/design.md). The stateful tagger and forecaster (targets at every step) keep PyTorch's init, with
        which the bundled recipe was measured."""
        if self.config.cell not in GATED:
            return
        h, lstm = self.config.hidden_size, self.config.cell == "lstm"
        gates = slice(0, 2 * h) if lstm else slice(h, 2 * h)  # gates in PyTorch's order: LSTM i, f, g, o; GRU r, z, n
        for name, bias in self.rnn.named_parameters():
            if name.startswith("bias_ih"):
                draw = torch.rand(h)
                keep = torch.log(1 + draw * max(steps - 2, 0)) if self.config.slow_init else \
                    draw * math.log(max(steps - 1, 1))
                bias[gates] = torch.cat([-keep, keep]) if lstm else keep  # LSTM: an input gate as shut as f is open
            elif name.startswith("bias_hh"):
                bias[gates] = 0.0

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.config.state_size)

    def _unpack(self, state: torch.Tensor):
        c = self.config
        state = state[:, c.state_parts[0]]
        parts = state.reshape(state.shape[0], len(c.state_tensors), c.num_layers * c.directions, c.hidden_size)
        parts = parts.permute(1, 2, 0, 3).contiguous()  # [parts, layers*dirs, batch, hidden]
        return (parts[0], parts[1]) if c.cell == "lstm" else parts[0]

    @staticmethod
    def _pack(torch_state) -> torch.Tensor:
        stacked = torch.stack(torch_state if isinstance(torch_state, tuple) else (torch_state,))
        return stacked.permute(2, 0, 1, 3).reshape(stacked.shape[2], -1)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [batch, time, input] (normalized) -> (per-step outputs [batch, time, output], new state)."""
        if state is None:
            state = self.initial_state(x.shape[0]).to(x)
        features, new_state = self.rnn(self._with_changes(x, state), self._unpack(state))
        y = self.head(features)
        if self.config.residual:  # the forecast is a change from the latest value (forecasts and inputs share units)
            y = y + x.repeat(1, 1, self.config.horizon)
        packed = self._pack(new_state)
        if self.config.change_input:
            packed = torch.cat([packed, x[:, -1], torch.ones_like(x[:, -1])], dim=-1)
        return y, packed

    def _with_changes(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """x, or with the change input [x, scale * (x - the sample before)]; the sample before the first is the
        state's, or the first itself where the state has seen none (a fresh stream's first change is 0)."""
        if not self.config.change_input:
            return x
        _, last_at, seen_at = self.config.state_parts
        last, seen = state[:, last_at], state[:, seen_at]
        first = x[:, 0]
        before = torch.cat([(first + seen * (last - first))[:, None], x[:, :-1]], dim=1)
        return torch.cat([x, self.change_scale * (x - before)], dim=-1)

    def window_logits(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Window tasks: one output per window. Unidirectional: the last step's output (with `lengths`, each
        series' own last step: the rest is padding). Bidirectional: the forward direction's last step joined with
        the backward direction's first step."""
        features, _ = self.rnn(x, self._unpack(self.initial_state(x.shape[0]).to(x)))
        if self.config.bidirectional:
            h = self.config.hidden_size
            summary = torch.cat([features[:, -1, :h], features[:, 0, h:]], dim=-1)
        elif lengths is not None:
            summary = features[torch.arange(x.shape[0]), lengths - 1]
        else:
            summary = features[:, -1]
        return self.head(summary)

    @torch.no_grad()
    def rollout(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Forecast one-to-many: warm up on x, then feed each predicted next value back as input."""
        if TASKS[self.config.task].classes:
            raise ValueError("rollout needs a forecast model")
        out, state = self(x)
        step_input = out[:, -1:, : self.config.input_size]
        predictions = []
        for _ in range(steps):
            predictions.append(step_input)
            out, state = self(step_input, state)
            step_input = out[:, -1:, : self.config.input_size]
        return torch.cat(predictions, dim=1)
