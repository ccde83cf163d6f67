"""Normalization fit on training recordings (issue 26): by all samples when recordings are alike, by the median
recording where a few huge ones would set the scale (PLAID's currents: 0.1 A to 460 A), and a channel that never
moved centred only."""

import numpy as np
import pytest

from rnnedge.data.recording import Dataset, Normalization, Recording, channel_traits
from rnnedge.training.recipe import size_recipe


def recordings(scales: list[float], offset: float = 0.0) -> list[Recording]:
    """One recording per scale: a sine of that amplitude (plus offset times the scale) on channel a, a unit sine
    on channel b."""
    wave = np.sin(np.arange(200) / 7.0)
    return [Recording(np.stack([scale * (wave + offset), wave], axis=1).astype(np.float32), np.ones(200, np.int64),
                      0, str(i)) for i, scale in enumerate(scales)]


def test_alike_recordings_are_normalized_by_all_samples():
    alike = recordings([1.0, 1.5, 2.0, 2.5, 3.0])
    stacked = np.concatenate([r.signals for r in alike]).astype(np.float64)
    norm = Normalization.fit(alike)
    np.testing.assert_allclose(norm.mean, stacked.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(norm.std, stacked.std(axis=0), rtol=1e-6)


def test_a_channel_a_few_huge_recordings_dominate_is_centred_on_the_median_recording_and_scaled_nearer_it():
    data = recordings([1.0, 1.0, 2.0, 1.0, 500.0, 0.5, 800.0], offset=1.0)
    spread = channel_traits(data).spread
    assert spread[0] > 10 and spread[1] == pytest.approx(1.0)
    norm = Normalization.fit(data)
    typical = data[0].signals[:, 0].astype(np.float64)  # the median recording's scale is 1.0
    stacked = np.concatenate([r.signals for r in data]).astype(np.float64)
    assert norm.mean[0] == pytest.approx(typical.mean(), rel=1e-5)
    assert norm.std[0] == pytest.approx(np.sqrt(typical.std() * stacked[:, 0].std()), rel=1e-5)
    seen = np.std(norm.apply(data[0].signals)[:, 0])  # the typical recording, as the model sees it
    assert seen == pytest.approx(1 / np.sqrt(spread[0]), rel=1e-5) and seen > 5 / spread[0]
    assert norm.std[1] == pytest.approx(stacked[:, 1].std(), rel=1e-5)  # the other channel as before
    everything = Normalization.fit(data, spread_limit=0)  # 0: never
    assert everything.std[0] == pytest.approx(stacked[:, 0].std(), rel=1e-5)
    assert Normalization.fit(data, spread_limit=1e6).std[0] == everything.std[0]


def test_mostly_constant_recordings_keep_the_scale_of_all_samples():
    """A median recording that never moves has no scale to lend: dividing by it would blow every sample up."""
    data = recordings([0.0, 0.0, 0.0, 1.0, 3.0])
    assert not np.isfinite(channel_traits(data).spread[0])
    stacked = np.concatenate([r.signals for r in data]).astype(np.float64)
    assert Normalization.fit(data).std[0] == pytest.approx(stacked[:, 0].std(), rel=1e-5)


def test_a_channel_constant_in_every_training_sample_is_centred_and_not_scaled():
    """Scaled by a floor on its std (0), a reading that later moved by 0.01 would reach the model as 10,000."""
    data = recordings([1.0, 2.0, 3.0])
    for r in data:
        r.signals[:, 0] = 9.81  # a sensor axis that never moved while training data was recorded
    assert channel_traits(data).constant.tolist() == [True, False]
    norm = Normalization.fit(data)
    assert norm.mean[0] == pytest.approx(9.81) and norm.std[0] == 1.0
    moved = np.array([[9.82, 0.0]], np.float32)
    assert norm.apply(moved)[0, 0] == pytest.approx(0.01, abs=1e-5)
    assert not channel_traits(recordings([1e-9, 2e-9])).constant.any()  # small units are not constant
    dataset = Dataset(data, ["a", "b"], ["none", "x"], 50.0, "test")
    line = size_recipe(dataset, "classify", {}).describe()
    assert "constant in every training sample, centred and not scaled: a" in line
