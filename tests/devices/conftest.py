"""A small real bundle for the device tests: a 2x16 LSTM trained briefly on real HAPT data, then exported
(ONNX + TFLite, fp32 and fp16: int8 would add a slow static-int8 calibration) and verified by the real
exporter."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory, hapt_small_train, hapt_small_val) -> Path:
    from rnnedge.export import export_bundle
    from rnnedge.training.config import ModelConfig, TrainConfig
    from rnnedge.training.train import train

    root = tmp_path_factory.mktemp("devices")
    result = train(hapt_small_train, hapt_small_val, ModelConfig(cell="lstm", hidden_size=16, output_size=12),
                   TrainConfig(epochs=2, chunk_len=100, batch_size=4, lr=1e-2, threads=1), out_dir=root / "train",
                   quiet=True)
    assert result is not None
    export_bundle(root / "train" / "model.pt", root / "bundle", precisions=("fp32", "fp16"),
                  eval_data=hapt_small_val)
    return root / "bundle"
