import numpy as np
import pytest
import torch

from rnnedge.training.batches import stateful_chunks
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.config import CELLS, ModelConfig, TrainConfig
from rnnedge.training.train import train


def test_chunks_reset_exactly_where_recordings_start(hapt_small_train):
    from rnnedge.data.recording import Normalization

    norm = Normalization.fit(hapt_small_train.recordings)
    chunks = list(stateful_chunks(hapt_small_train.recordings, norm, "tag", lanes=2, chunk_len=100,
                                  rng=np.random.default_rng(0)))
    resets = np.stack([c.reset for c in chunks])  # [chunks, lanes]
    assert resets.sum() == len(hapt_small_train.recordings) and resets[0].all()
    scored = sum(int((c.target != -100).sum()) for c in chunks)
    expected = sum(int((r.labels > 0).sum()) for r in hapt_small_train.recordings)
    assert expected - 4 * 100 <= scored <= expected  # only the random start offsets are dropped


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_each_cell_learns_on_real_data(cell, hapt_small_train, hapt_small_val, tmp_path):
    config = ModelConfig(cell=cell, hidden_size=16, num_layers=2, output_size=12)
    result = train(hapt_small_train, hapt_small_val, config,
                   TrainConfig(epochs=4, chunk_len=100, batch_size=4, lr=1e-2, patience=10, threads=1),
                   out_dir=tmp_path, quiet=True)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "training_curve.png").stat().st_size > 1000


def test_training_is_reproducible_with_a_seed(hapt_small_train, hapt_small_val):
    config = ModelConfig(cell="gru", hidden_size=8, num_layers=1, output_size=12)
    runs = [train(hapt_small_train, hapt_small_val, config,
                  TrainConfig(epochs=1, chunk_len=100, batch_size=4, seed=3, threads=1), quiet=True)
            for _ in range(2)]
    for name, tensor in runs[0].checkpoint.state_dict.items():
        torch.testing.assert_close(tensor, runs[1].checkpoint.state_dict[name], rtol=0, atol=0)


@pytest.mark.parametrize("task", ["classify", "forecast"])
def test_window_and_forecast_tasks_train(task, hapt_small_train, hapt_small_val):
    outputs = 12 if task == "classify" else 6
    config = ModelConfig(cell="gru", hidden_size=8, num_layers=1, output_size=outputs, task=task,
                         bidirectional=task == "classify")
    result = train(hapt_small_train, hapt_small_val, config,
                   TrainConfig(epochs=2, chunk_len=100, batch_size=8, window_len=50, threads=1,
                               windows_per_epoch=16), quiet=True)
    assert np.isfinite(result.history[-1]["train_loss"])


def test_checkpoint_round_trip(tmp_path, hapt_small_train, hapt_small_val):
    config = ModelConfig(cell="lstm", hidden_size=8, num_layers=2, output_size=12)
    result = train(hapt_small_train, hapt_small_val, config, TrainConfig(epochs=1, chunk_len=100, threads=1),
                   out_dir=tmp_path, quiet=True)
    loaded = Checkpoint.load(tmp_path / "model.pt")
    assert loaded.config == config and loaded.labels == hapt_small_train.label_names[1:]
    np.testing.assert_array_equal(loaded.normalization.mean, result.checkpoint.normalization.mean)
    x = torch.randn(1, 20, 6)
    torch.testing.assert_close(loaded.build_model()(x)[0], result.checkpoint.build_model()(x)[0])
    assert loaded.provenance["data"]["description"].startswith("hapt")
    torch.load(tmp_path / "model.pt", weights_only=True)  # loadable without trusting pickled code


def test_checkpoint_refuses_corrupt_and_pickled_code(tmp_path):
    from rnnedge.errors import CheckpointError

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
        Checkpoint.load(corrupt)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "rnnedge-checkpoint", "hook": Checkpoint}, pickled)  # a class object = pickled code
    with pytest.raises(CheckpointError, match="refused"):
        Checkpoint.load(pickled)


def test_rotation_augmentation_keeps_magnitudes_and_the_long_axis(hapt_small_train):
    from rnnedge.training.batches import rotate, vector_groups

    signals = hapt_small_train.recordings[0].signals
    groups = vector_groups(hapt_small_train.channels)
    assert groups == [[0, 1, 2], [3, 4, 5]]
    turned = rotate(signals, groups, 90.0)
    np.testing.assert_allclose(np.linalg.norm(turned[:, :3], axis=1), np.linalg.norm(signals[:, :3], axis=1),
                               rtol=1e-5)
    np.testing.assert_array_equal(turned[:, [0, 3]], signals[:, [0, 3]])
    np.testing.assert_allclose(turned[:, 2], signals[:, 1], atol=1e-6)  # y turns into z
