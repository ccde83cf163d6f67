"""The exported graphs as torch modules: normalization (raw sensor units in) + the model (+ forecasts back in the
data's units), with the bundle's I/O names. They are the reference every exported file is verified against; the
stream files are written by hand from the same weights (onnx_stream, tflite_stream), window files traced."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rnnedge.errors import ExportError
from rnnedge.tasks import get_task
from rnnedge.training.checkpoint import Checkpoint

GRAPHS: tuple[str, ...] = ("stream", "window")


class _Normalized(nn.Module):
    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__()
        self.model = checkpoint.build_model()
        self.register_buffer("mean", torch.as_tensor(checkpoint.normalization.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(checkpoint.normalization.std, dtype=torch.float32))
        horizon = 0 if get_task(checkpoint.config.task).classes else checkpoint.config.horizon
        self.forecast = horizon > 0
        self.register_buffer("out_mean", self.mean.repeat(max(horizon, 1)))
        self.register_buffer("out_std", self.std.repeat(max(horizon, 1)))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def to_units(self, y: torch.Tensor) -> torch.Tensor:
        """Forecasts leave the graph in the data's units; logits as they are."""
        return y * self.out_std + self.out_mean if self.forecast else y

    def output_levels(self) -> np.ndarray | None:
        """Per output, the level in the data's units a forecast is computed from (|mean| + std of its channel:
        to_units adds std * z to the mean, or a residual forecast to the raw input), so its float32 rounding
        follows that, not the forecast's own size; None for logits."""
        return (self.out_mean.abs() + self.out_std).double().numpy() if self.forecast else None


class StreamGraph(_Normalized):
    """x [batch, time, channels] raw, state [batch, state_size] -> {y [batch, time, outputs], state_out}."""

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> dict[str, torch.Tensor]:
        y, state_out = self.model(self.normalize(x), state)
        return {"y": self.to_units(y), "state_out": state_out}


class WindowGraph(_Normalized):
    """x [batch, time, channels] raw -> {y [batch, outputs]}: one output per window."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": self.model.window_logits(self.normalize(x))}


def default_graphs(checkpoint: Checkpoint) -> tuple[str, ...]:
    """Stream files for causal models (a classify stream's output is the class of the series so far), window
    files for bidirectional ones."""
    return ("stream",) if checkpoint.config.streamable else ("window",)


def build_graph(checkpoint: Checkpoint, graph: str) -> nn.Module:
    if graph not in GRAPHS:
        raise ExportError(f"unknown graph {graph!r} (choose from {', '.join(GRAPHS)})")
    if graph == "stream" and not checkpoint.config.streamable:
        raise ExportError("a bidirectional model cannot be exported for streaming: its backward direction needs "
                          "the future of the sequence; export the 'window' graph instead")
    if graph == "window" and not get_task(checkpoint.config.task).per_series:
        raise ExportError(f"the window graph is for classify models; this one is a {checkpoint.config.task} model")
    module = StreamGraph(checkpoint) if graph == "stream" else WindowGraph(checkpoint)
    return module.eval()


def example_inputs(checkpoint: Checkpoint, graph: str, time: int, batch: int = 1) -> dict[str, torch.Tensor]:
    x = torch.zeros(batch, time, checkpoint.config.input_size)
    if graph == "window":
        return {"x": x}
    return {"x": x, "state": torch.zeros(batch, checkpoint.config.state_size)}
