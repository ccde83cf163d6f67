import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from rnnedge.data.recording import Dataset, Recording
from rnnedge.training.batches import stateful_chunks
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.config import CELLS, ModelConfig, TrainConfig
from rnnedge.training.train import kept_cell, ranked, train, train_cells


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


def test_speed_augmentation_keeps_labels_on_their_samples(hapt_small_train):
    """Played faster or slower, each sample keeps the label of the moment it shows, and chunks stay aligned."""
    from rnnedge.data.recording import Normalization
    from rnnedge.training.batches import stretch

    rec = hapt_small_train.recordings[0]
    faster, source = stretch(rec.signals, 1.25)
    assert len(faster) == round(len(rec) / 1.25) and source[0] == 0 and source[-1] <= len(rec) - 1
    np.testing.assert_allclose(faster[::4], rec.signals[::5][: len(faster[::4])], atol=1e-6)  # 4 new = 5 old
    slower, source = stretch(rec.signals, 0.8)
    assert len(slower) == round(len(rec) / 0.8) and np.all(np.diff(source) >= 0)
    norm = Normalization.fit(hapt_small_train.recordings)
    plain = list(stateful_chunks(hapt_small_train.recordings, norm, "tag", 4, 100, np.random.default_rng(0)))
    varied = list(stateful_chunks(hapt_small_train.recordings, norm, "tag", 4, 100, np.random.default_rng(0),
                                  speed=0.25))
    assert len(plain) != len(varied) and all(c.x.shape[:2] == c.target.shape for c in varied)


def test_series_augmentation_keeps_each_label_and_draws_afresh():
    """Classify's batches: stretched series keep their class and lengths within the speed's bounds, jitter adds
    noise of its std, and without either the batches are the normalized series themselves."""
    from rnnedge.data.recording import Normalization
    from rnnedge.training.batches import series_batches

    data = synthetic("classify", 30, seed=0)
    norm = Normalization.fit(data.recordings)

    def batches(**augment):
        return list(series_batches(data.recordings, norm, 8, np.random.default_rng(1), False, **augment))

    plain = batches()
    for x, y, lengths in plain:  # equal lengths: row i of x is the series of class y[i]
        assert np.all(lengths == 60) and x.shape == (len(y), 60, 1)
    rows = {norm.apply(r.signals).tobytes(): int(r.labels[-1]) - 1 for r in data.recordings}
    assert all(rows[row.tobytes()] == label for x, y, _ in plain for row, label in zip(x, y, strict=True))
    stretched = batches(speed=0.2)
    lengths = np.concatenate([lengths for _, _, lengths in stretched])
    assert lengths.min() >= round(60 / 1.2) and lengths.max() <= round(60 * 1.2) and len(set(lengths)) > 3
    assert sorted(np.concatenate([y for _, y, _ in stretched])) == sorted(rows.values())
    clean = np.stack([norm.apply(r.signals) for r in data.recordings])
    noisy = np.concatenate([x for x, _, _ in batches(jitter=0.1)])
    nearest = ((noisy[:, None] - clean[None]) ** 2).sum(axis=(2, 3)).argmin(axis=1)  # the noise is far smaller
    assert sorted(nearest) == list(range(len(clean)))  # than the distance between two series: one each
    difference = noisy - clean[nearest]
    assert 0.09 < difference.std() < 0.11 and abs(difference.mean()) < 0.01


def synthetic(task: str, count: int, seed: int) -> Dataset:
    """Where the answer is known. classify: 60-step noisy sines whose frequency is the class (3 classes, chance
    1/3); forecast: a noisy sine to continue (persistence's error is known)."""
    rng = np.random.default_rng(seed)
    t = np.arange(60)
    recordings = []
    for i in range(count):
        label = i % 3 + 1
        if task == "classify":
            x = np.sin(2 * np.pi * (0.03 * label) * t + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.2, 60)
        else:
            x = np.sin(2 * np.pi * 0.05 * np.arange(400) + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.05, 400)
        labels = np.full(len(x), label if task == "classify" else 0, np.int64)
        recordings.append(Recording(x[:, None].astype(np.float32), labels, i, f"s{i}"))
    names = ["unlabelled", "slow", "medium", "fast"] if task == "classify" else ["unlabelled"]
    return Dataset(recordings, ["x"], names, 50.0, "synthetic")


def test_classify_learns_what_is_known():
    config = ModelConfig(cell="gru", input_size=1, hidden_size=16, num_layers=1, output_size=3, task="classify")
    result = train(synthetic("classify", 60, 0), synthetic("classify", 30, 1), config,
                   TrainConfig(epochs=30, batch_size=8, lr=1e-2, patience=30, threads=1), quiet=True)
    val = max(h["val_score"] for h in result.history)
    assert val >= 0.8, [h["val_score"] for h in result.history]  # chance: 1/3


@pytest.mark.parametrize("task,slow", [("classify", False), ("classify", True), ("tag", False)])
def test_classify_starts_remembering_as_long_as_its_series_and_tag_keeps_pytorchs_init(task, slow):
    """With a learning rate of 0 the kept model is its initial one: classify's forget gates span time scales up to
    the series' 60 steps (chrono init), spread over octaves (few units keep over half the series) or as published
    (slow: about half of them do); the stateful tagger's are PyTorch's uniform(-1/sqrt(h), 1/sqrt(h)) twice."""
    data = synthetic("classify", 12, 0)
    config = ModelConfig(cell="lstm", input_size=1, hidden_size=32, output_size=3, task=task, slow_init=slow)
    result = train(data, synthetic("classify", 6, 1), config,
                   TrainConfig(epochs=1, batch_size=4, chunk_len=60, lr=0.0, threads=1), quiet=True)
    weights, h = result.checkpoint.state_dict, config.hidden_size
    forget = (weights["rnn.bias_ih_l0"] + weights["rnn.bias_hh_l0"])[h:2 * h]
    if task == "classify":
        assert forget.min() >= 0 and np.log(20) < forget.max() <= np.log(59) + 1e-6
        over_half = float((forget > np.log(59 / 2)).float().mean())
        assert over_half > 0.3 if slow else over_half < 0.3
    else:
        assert forget.abs().max() < 2 / h ** 0.5


def test_forecast_beats_persistence():
    val_data = synthetic("forecast", 2, 1)
    config = ModelConfig(cell="gru", input_size=1, hidden_size=16, num_layers=1, output_size=1, task="forecast")
    result = train(synthetic("forecast", 6, 0), val_data, config,
                   TrainConfig(epochs=15, chunk_len=100, batch_size=4, lr=1e-2, patience=15, threads=1), quiet=True)
    persistence = np.mean([np.mean(np.diff(r.signals[:, 0]) ** 2) for r in val_data.recordings])
    assert min(h["val_score"] for h in result.history) < 0.3 * persistence


def test_level_shift_moves_each_recording_and_its_targets_alike():
    """The level shift adds one offset per recording and channel, within the bound, to inputs and targets alike
    (the targets are the shifted inputs' next values), and changes nothing else."""
    from rnnedge.data.recording import Normalization

    data = synthetic("forecast", 1, 0)
    norm = Normalization.fit(data.recordings)

    def chunks(shift: float) -> list:
        return list(stateful_chunks(data.recordings, norm, "forecast", 1, 500, np.random.default_rng(3),
                                    shift=shift))

    (plain,), (moved,) = chunks(0.0), chunks(2.0)
    offset = moved.x[0, 0, 0] - plain.x[0, 0, 0]
    assert 0.0 < abs(offset) <= 2.0 and np.array_equal(moved.mask, plain.mask)
    real = plain.mask[0]
    samples = int(real.sum()) + 1  # the last sample has no next value to forecast
    np.testing.assert_allclose(moved.x[0, :samples] - plain.x[0, :samples], offset, atol=1e-5)
    np.testing.assert_allclose(moved.target[0, real] - plain.target[0, real], offset, atol=1e-5)


def test_early_stopping_keeps_the_best_epoch(hapt_small_train, hapt_small_val):
    """Stops `patience` epochs after the best, and the checkpoint is the best epoch's model (its score on the
    validation data is the best one in the history, not the last)."""
    from rnnedge.data.recording import Normalization
    from rnnedge.training.model import RecurrentModel
    from rnnedge.training.scoring import report

    config = ModelConfig(cell="gru", hidden_size=8, num_layers=1, output_size=12)
    result = train(hapt_small_train, hapt_small_val, config,
                   TrainConfig(epochs=40, chunk_len=100, batch_size=4, lr=3e-2, patience=2, threads=1), quiet=True)
    scores = [h["val_score"] for h in result.history]
    best = result.best_epoch
    assert len(scores) == best + 2 or len(scores) == 40  # stopped 2 epochs after the best
    assert scores[best - 1] == max(scores)
    model = RecurrentModel(config)
    model.load_state_dict(result.checkpoint.state_dict)
    norm = Normalization.fit(hapt_small_train.recordings)
    again = report(model, hapt_small_val.recordings, norm, hapt_small_train.label_names[1:])["value"]
    assert again == pytest.approx(scores[best - 1], abs=1e-9)


def test_max_minutes_stops_after_the_epoch_that_crosses_it(hapt_small_train, hapt_small_val):
    config = ModelConfig(cell="gru", hidden_size=8, num_layers=1, output_size=12)
    result = train(hapt_small_train, hapt_small_val, config,
                   TrainConfig(epochs=50, chunk_len=100, batch_size=4, patience=50, threads=1, max_minutes=1e-4),
                   quiet=True)
    assert len(result.history) == 1


def test_train_cells_keeps_the_better_and_ties_keep_the_first(tmp_path):
    """The classify default trains an LSTM, then a GRU, and keeps the better on validation; where both are
    perfect, the LSTM (whatever their cross-entropy, recorded beside)."""
    config = ModelConfig(cell="lstm", input_size=1, hidden_size=16, num_layers=1, output_size=3, task="classify")
    data = synthetic("classify", 60, 0), synthetic("classify", 30, 1)
    short = TrainConfig(epochs=2, batch_size=8, lr=1e-4)  # nowhere near perfect: both cells train
    result = train_cells(*data, config, short, ("lstm", "gru"), tmp_path / "short")
    scores = result.checkpoint.provenance["cells"]
    assert set(scores) == {"lstm", "gru"} and max(scores.values()) < 1
    kept = "gru" if scores["gru"] > scores["lstm"] else "lstm"
    assert result.checkpoint.config.cell == kept
    run, its_own = tmp_path / "short", tmp_path / "short" / "cells" / kept
    saved, trained = Checkpoint.load(run / "model.pt"), Checkpoint.load(its_own / "model.pt")
    assert saved.provenance["cells"] == scores and all(
        torch.equal(saved.state_dict[k], trained.state_dict[k]) for k in trained.state_dict)
    assert (run / "metrics.json").read_text() == (its_own / "metrics.json").read_text()

    long = TrainConfig(epochs=40, batch_size=8, lr=1e-2, patience=40)
    result = train_cells(*data, config, long, ("lstm", "gru"), tmp_path / "long")
    assert result.checkpoint.provenance["cells"] == {"lstm": 1.0, "gru": 1.0}
    losses = {cell: Checkpoint.load(tmp_path / "long" / "cells" / cell / "model.pt").provenance["val_loss"]
              for cell in ("lstm", "gru")}
    assert result.checkpoint.config.cell == "lstm" and all(0 < loss < 1 for loss in losses.values())


def test_a_forecasts_change_input_is_kept_only_when_clearly_better():
    """Lynx (seed 1, 16 validation years): the change input 2.5 % lower on validation, 1.71x the MSE on test. A
    forecast keeps its first model unless the second beats it by more than luck (`clearly_better`); classify cells
    compare as before."""
    from rnnedge.tasks import get_task

    forecast, classify = get_task("forecast"), get_task("classify")

    def kept(task, scores, count):
        return kept_cell(task, scores, {c: ranked(task, v, None, 1.0) for c, v in scores.items()}, count)

    assert kept(forecast, {"lstm": 1_699_112.5, "lstm+change": 1_657_090.8}, 16) == "lstm"
    assert kept(forecast, {"lstm": 0.9087, "lstm+change": 0.1388}, 78) == "lstm+change"
    assert kept(forecast, {"lstm": 0.5, "lstm+change": 0.52}, 330) == "lstm"
    assert kept(classify, {"lstm": 0.80, "gru": 0.81}, 100) == "gru"


def test_a_run_that_never_left_chance_trains_once_more_from_another_seed(tmp_path, capsys):
    """Coffee: LSTMs sat at chance (training loss ln 2) for whole runs, and a 6-series validation split could not
    tell. A run of PATIENCE_STEPS or more whose training loss at its kept epoch is near a constant guess's
    (chance_loss) trains again from refit_seed; the lower training loss is kept, its files on top of the run
    folder. One that fit, a shorter one or one with a time limit, not."""
    from rnnedge.training.recipe import PATIENCE_STEPS
    from rnnedge.training.train import fit_loss, refit_seed, train_fitted

    config = ModelConfig(cell="gru", input_size=1, hidden_size=8, num_layers=1, output_size=3, task="classify")
    data = synthetic("classify", 30, 0), synthetic("classify", 15, 1)
    frozen = TrainConfig(epochs=-(-PATIENCE_STEPS // 30), batch_size=1, lr=0.0, seed=4, threads=1)  # learns nothing
    kept = train_fitted(*data, config, frozen, tmp_path / "frozen", False, None)
    again = tmp_path / "frozen" / f"refit-seed-{refit_seed(4)}"
    assert "seed 4 never left chance" in capsys.readouterr().err and (again / "model.pt").is_file()
    other = Checkpoint.load(again / "model.pt")
    assert other.provenance["train_config"]["seed"] == refit_seed(4)
    assert fit_loss(kept) <= json.loads((again / "metrics.json").read_text())[0]["train_loss"]
    shown = tmp_path / "frozen"  # the run folder holds the kept run's model and metrics
    assert Checkpoint.load(shown / "model.pt").provenance["train_config"] == kept.checkpoint.provenance["train_config"]
    assert json.loads((shown / "metrics.json").read_text())[0]["train_loss"] == fit_loss(kept)
    limited = train_fitted(*data, config, replace(frozen, max_minutes=5.0), tmp_path / "limited", True, None)
    assert limited.checkpoint.provenance["train_config"]["seed"] == 4
    assert not list((tmp_path / "limited").glob("refit*"))
    fit = train_fitted(synthetic("classify", 60, 0), data[1], replace(config, hidden_size=16),
                       replace(frozen, lr=1e-2, epochs=40, patience=40, batch_size=2), tmp_path / "fit", True, None)
    assert fit.history[-1]["steps"] >= PATIENCE_STEPS and fit_loss(fit) < 0.5
    assert not list((tmp_path / "fit").glob("refit*"))
    glance = train_fitted(*data, config, replace(frozen, epochs=2), tmp_path / "glance", True, None)  # 60 steps
    assert fit_loss(glance) > 0.55 and not list((tmp_path / "glance").glob("refit*"))
    judged = train_fitted(*data, config, replace(frozen, epochs=2), tmp_path / "judged", True, None, judged=True)
    assert list((tmp_path / "judged").glob("refit*")) and fit_loss(judged) > 0.55  # as few steps, shown enough


def test_chance_loss_is_the_weighted_entropy_of_the_class_shares():
    from rnnedge.tasks import get_task
    from rnnedge.training.train import chance_loss

    def data(counts: list[int]) -> Dataset:
        labels = [c + 1 for c, n in enumerate(counts) for _ in range(n)]
        return Dataset([Recording(np.zeros((3, 1), np.float32), np.full(3, label), 0, str(i))
                        for i, label in enumerate(labels)], ["x"], ["u", *map(str, range(len(counts)))], 1.0, "s")

    classify = get_task("classify")
    assert chance_loss(data([5, 5, 5]), classify, 0.5) == pytest.approx(np.log(3))
    share = np.sqrt([9, 1]) / np.sqrt([9, 1]).sum()  # weights (1 / n) ** 0.5: shares n ** 0.5
    assert chance_loss(data([9, 1]), classify, 0.5) == pytest.approx(-(share * np.log(share)).sum())
    assert chance_loss(data([9, 1]), classify, 0.0) == pytest.approx(-(0.9 * np.log(0.9) + 0.1 * np.log(0.1)))
    assert np.isnan(chance_loss(data([9, 1]), get_task("forecast"), 0.5))


def test_members_fold_into_one_model_validated_as_a_whole(tmp_path):
    """members=2: two seeds trained in seed-N folders, folded into one model of twice the width that outputs
    their mean, its own validation score and loss recorded; metrics.json holds both histories."""
    from rnnedge.training.scoring import report
    from rnnedge.training.train import train_model

    config = ModelConfig(cell="gru", input_size=1, hidden_size=8, num_layers=2, output_size=3, task="classify")
    data = synthetic("classify", 40, 0), synthetic("classify", 20, 1)
    result = train_model(*data, config, TrainConfig(epochs=3, batch_size=8, seed=1), 2, tmp_path, quiet=True)
    folded = Checkpoint.load(tmp_path / "model.pt")
    members = [Checkpoint.load(tmp_path / f"seed-{seed}" / "model.pt") for seed in (2, 3)]
    assert folded.config.hidden_size == 16 and [m["seed"] for m in folded.provenance["members"]] == [2, 3]
    x = torch.from_numpy(folded.normalization.apply(data[1].recordings[0].signals))[None]
    with torch.no_grad():
        mean = sum(m.build_model().window_logits(x) for m in members) / 2
        assert torch.allclose(folded.build_model().window_logits(x), mean, atol=1e-5)
    checked = report(folded.build_model(), data[1].recordings, folded.normalization, folded.labels)
    assert result.checkpoint.provenance["val_score"] == checked["value"] == folded.provenance["val_score"]
    assert folded.provenance["val_loss"] == pytest.approx(checked["loss"])
    assert set(json.loads((tmp_path / "metrics.json").read_text())["members"]) == {"seed 2", "seed 3"}
    assert (tmp_path / "training_curve.png").stat().st_size > 1000


def test_between_equal_scores_a_model_that_learned_beats_one_that_did_not():
    """Coffee: two LSTMs stuck at chance scored 6 of 6 on validation at one epoch; their validation
    cross-entropy (0.63) was near always guessing (ln 2), the GRU's far below it."""
    from rnnedge.tasks import get_task
    from rnnedge.training.train import guess_loss, ranked

    task = get_task("classify")
    data = synthetic("classify", 40, 0)
    guess = guess_loss(data, task)
    counts = np.bincount([int(r.labels[-1]) for r in data.recordings])[1:]
    assert guess == pytest.approx(-sum(c / counts.sum() * np.log(c / counts.sum()) for c in counts if c))
    scores = {"lstm": ranked(task, 1.0, 0.63 * guess / np.log(2), guess), "gru": ranked(task, 1.0, 0.01, guess)}
    assert task.best(scores) == "gru"
    both_learned = {"lstm": ranked(task, 1.0, 0.03, guess), "gru": ranked(task, 1.0, 0.002, guess)}
    assert task.best(both_learned) == "lstm"  # not the surer: ties keep the first
    assert task.best({"lstm": ranked(task, 0.9, 0.01, guess), "gru": ranked(task, 0.8, 0.01, guess)}) == "lstm"
    forecast = get_task("forecast")
    assert forecast.best({"a": ranked(forecast, 2.0, None, float("nan")), "b": ranked(forecast, 1.0, None,
                                                                                      float("nan"))}) == "b"


def test_a_final_fit_trains_each_member_again_on_training_and_validation(tmp_path, capsys):
    """final=True: the kept cell's members train again from their own seeds on the training and validation series
    together, each for the epochs its validated run kept; folded, and beside them the validated model (the mean
    of both: twice the width), the result is model.pt (the run folder's too), the validated one validated.pt. Its
    provenance keeps the validated scores and members, and says what was refitted. A final run that never left
    chance trains once more from another seed, as training's do."""
    from rnnedge.training.ensemble import fold
    from rnnedge.training.recipe import PATIENCE_STEPS
    from rnnedge.training.scoring import torch_outputs
    from rnnedge.training.train import refit_seed

    config = ModelConfig(cell="gru", input_size=1, hidden_size=8, num_layers=1, output_size=3, task="classify")
    data = synthetic("classify", 40, 0), synthetic("classify", 20, 1)
    cfg = TrainConfig(epochs=20, batch_size=4, lr=2e-2, patience=20, seed=2, threads=1)
    result = train_cells(*data, config, cfg, ("lstm", "gru"), tmp_path, members=2, final=True)
    err = capsys.readouterr().err
    assert "final fit: seed 4 on all 60 training and validation series for" in err and "never left" not in err
    kept = result.checkpoint.config.cell
    folder = tmp_path / "cells" / kept
    validated = Checkpoint.load(folder / "validated.pt").provenance
    final = Checkpoint.load(tmp_path / "model.pt")
    assert Checkpoint.load(folder / "model.pt").provenance == final.provenance
    assert final.provenance["final_fit"] == {"series": 60, "epochs": [m["best_epoch"] for m in validated["members"]],
                                             "seeds": [m["seed"] for m in validated["members"]],
                                             "accuracy_on_all": final.provenance["final_fit"]["accuracy_on_all"],
                                             "kept": "fit and validated"}
    refits = fold([Checkpoint.load(folder / "final" / f"seed-{m['seed']}" / "model.pt") for m in validated["members"]])
    both = [Checkpoint.load(folder / "validated.pt"), refits]
    logits = [np.stack(torch_outputs(c.build_model(), data[1].recordings, c.normalization, series=True))
              for c in (final, *both)]
    assert final.config.hidden_size == 2 * 2 * 8 and np.allclose(logits[0], (logits[1] + logits[2]) / 2, atol=1e-5)
    for key in ("val_score", "val_loss", "members", "cells"):
        assert final.provenance[key] == validated[key]
    for member in validated["members"]:
        run = json.loads((folder / "final" / f"seed-{member['seed']}" / "metrics.json").read_text())
        assert len(run) == member["best_epoch"]  # exactly its epochs: no early stopping
        assert not any("val_score" in row for row in run)  # validation is training data there: never scored
        refitted = Checkpoint.load(folder / "final" / f"seed-{member['seed']}" / "model.pt")
        assert refitted.provenance["train_config"]["seed"] == member["seed"]
        assert refitted.provenance["best_epoch"] == member["best_epoch"]  # the last epoch's weights
    # learns nothing; 10 steps an epoch on the training split (too few to judge), 15 on all the data (enough)
    frozen = train_cells(*data, config, replace(cfg, lr=0.0, epochs=-(-PATIENCE_STEPS // 15), patience=10**6),
                         ("gru",), tmp_path / "frozen", final=True)
    assert "seed 2 on all 60" in capsys.readouterr().err
    assert (tmp_path / "frozen" / "final" / f"seed-{refit_seed(2)}" / "model.pt").is_file()
    assert frozen.checkpoint.provenance["final_fit"]["seeds"][0] in (2, refit_seed(2))  # the lower training loss


def test_a_final_fit_that_fits_its_own_data_worse_than_the_validated_model_is_dropped(tmp_path, capsys):
    """No held-out data judges a final fit, but the series it trained on do: a fit that scores below the validated
    model there (which never saw a fifth of them) failed to learn (Coffee: both members at chance, 0.54 on test
    where the validated model scored 1.00), and the validated model is kept alone."""
    from rnnedge.training.train import final_fit

    config = ModelConfig(cell="lstm", input_size=1, hidden_size=8, num_layers=1, output_size=3, task="classify")
    data = synthetic("classify", 40, 0), synthetic("classify", 20, 1)
    cfg = TrainConfig(epochs=20, batch_size=4, lr=2e-2, patience=20, seed=1, threads=1)
    validated = train_cells(*data, config, cfg, ("lstm",), tmp_path / "run")
    assert validated.checkpoint.provenance["val_score"] >= 0.8
    capsys.readouterr()
    kept = final_fit(*data, validated, config, replace(cfg, lr=0.0), tmp_path / "run").checkpoint
    on_all = kept.provenance["final_fit"]["accuracy_on_all"]
    assert kept.provenance["final_fit"]["kept"] == "validated" and on_all["fit"] < on_all["validated"]
    assert kept.config == validated.checkpoint.config and "the validated model kept" in capsys.readouterr().err
    assert all(torch.equal(kept.state_dict[k], v) for k, v in validated.checkpoint.state_dict.items())
