"""Tiny checkpoints with random weights (no training) and normalization fit on real HAPT data."""

from __future__ import annotations

import pytest
import torch

from rnnedge.data.recording import Dataset, Normalization
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.config import ModelConfig
from rnnedge.training.model import RecurrentModel


def make_checkpoint(data: Dataset, cell: str = "gru", layers: int = 1, hidden: int = 8, task: str = "tag",
                    bidirectional: bool = False, seed: int = 0, horizon: int = 1,
                    change_input: bool = False) -> Checkpoint:
    """Forecasts are residual (train's default): the latest value plus the head's change; `change_input`: its
    scale fitted on the data, as training does."""
    torch.manual_seed(seed)
    forecast = task == "forecast"
    outputs = len(data.channels) * horizon if forecast else len(data.label_names) - 1
    config = ModelConfig(cell=cell, input_size=len(data.channels), hidden_size=hidden, num_layers=layers,
                         output_size=outputs, task=task, bidirectional=bidirectional, horizon=horizon,
                         residual=forecast, change_input=change_input)
    norm = Normalization.fit(data.recordings)
    model = RecurrentModel(config)
    if change_input:
        model.fit_change_scale([norm.apply(r.signals) for r in data.recordings])
    return Checkpoint(config, model.state_dict(), norm,
                      list(data.channels), [] if forecast else list(data.label_names[1:]), data.sample_rate_hz,
                      {"data": data.source, "train_config": {"window_len": 32}})


@pytest.fixture(scope="session")
def tiny(hapt_small_train) -> Checkpoint:
    return make_checkpoint(hapt_small_train, "gru", layers=2, hidden=16)
