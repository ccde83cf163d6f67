"""Real bundles for the runtime tests, made by the real exporter from small random-weight models (the runtime's
behaviour does not depend on how well a model was trained), with normalization fit on real HAPT data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnedge.data.hapt import hapt_split
from rnnedge.data.recording import Dataset, Normalization, Recording
from rnnedge.export import export_bundle
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.config import ModelConfig
from rnnedge.training.model import RecurrentModel


def make_checkpoint(cell: str, hidden: int, seed: int, **config) -> Checkpoint:
    torch.manual_seed(seed)
    train = hapt_split("train")
    classes = len(train.label_names) - 1  # label 0 is "unlabelled", never a model class
    config = ModelConfig(cell=cell, hidden_size=hidden, output_size=classes, dropout=0.0, **config)
    return Checkpoint(config, RecurrentModel(config).state_dict(), Normalization.fit(train.recordings[:4]),
                      train.channels, train.label_names[1:], train.sample_rate_hz, {"data": "hapt:test-slice"})


def held_out(samples: int = 400, count: int = 3) -> Dataset:
    test = hapt_split("test")
    recordings = [Recording(r.signals[:samples], r.labels[:samples], r.subject, r.name)
                  for r in test.recordings[:count]]
    return Dataset(recordings, test.channels, test.label_names, test.sample_rate_hz, test.source)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """LSTM, ONNX (any length) + TFLite (T=1 and T=50), fp32."""
    out = tmp_path_factory.mktemp("bundles") / "lstm"
    export_bundle(make_checkpoint("lstm", 24, seed=0, num_layers=2), out, formats=("onnx", "tflite"),
                  precisions=("fp32",), chunk_len=50, eval_data=held_out())
    return out


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory) -> Path:
    """A different model (GRU, ONNX only, fp32 + int8): its snapshots must not load into the LSTM's streams."""
    out = tmp_path_factory.mktemp("bundles") / "gru"
    export_bundle(make_checkpoint("gru", 16, seed=1, num_layers=2), out, formats=("onnx",), precisions=("fp32", "int8"),
                  chunk_len=50, eval_data=held_out())
    return out


@pytest.fixture(scope="session")
def window_bundle(tmp_path_factory) -> Path:
    """A bidirectional classifier: window files only, nothing to stream."""
    out = tmp_path_factory.mktemp("bundles") / "window"
    checkpoint = make_checkpoint("gru", 8, seed=2, num_layers=1, bidirectional=True, task="classify")
    export_bundle(checkpoint, out, formats=("onnx",), precisions=("fp32",), eval_data=held_out())
    return out


@pytest.fixture(scope="session")
def reference(bundle) -> dict[str, np.ndarray]:
    """The bundle's held-out real HAPT data (raw units) and the torch model's outputs on it."""
    with np.load(bundle / "reference.npz") as npz:
        return {name: npz[name] for name in npz.files}


@pytest.fixture(scope="session")
def signals() -> np.ndarray:
    """A longer real recording (HAPT test subject, raw units) for continuation tests."""
    return hapt_split("test").recordings[3].signals[:600].astype(np.float32)


@pytest.fixture(scope="session")
def many() -> np.ndarray:
    """Six real recordings side by side [6, 300, channels], for pools."""
    return np.stack([r.signals[1000:1300] for r in hapt_split("test").recordings[4:10]]).astype(np.float32)
