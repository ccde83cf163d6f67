"""The recipe sized to the data (issue 26): the bundled set keeps its recipe, a small set trains long enough, and
every setting given is kept."""

import numpy as np

from rnnedge.data.recording import Dataset, Recording
from rnnedge.training.recipe import AUGMENTS, LEVEL_SHIFT, MIN_STEPS, PATIENCE_STEPS, memory_span, size_recipe
from tests.conftest import hapt_split


def dataset(series: int, length: int, classes: int = 2) -> Dataset:
    recordings = [Recording(np.zeros((length, 1), np.float32), np.full(length, 1 + i % classes), 0, str(i))
                  for i in range(series)]
    return Dataset(recordings, ["x"], ["UNLABELED", *map(str, range(classes))], 10.0, "synthetic")


def test_the_bundled_set_keeps_its_recipe():
    recipe = size_recipe(hapt_split("train"), "tag", {})
    assert (recipe.lanes, recipe.chunk_len, recipe.hidden, recipe.layers, recipe.epochs, recipe.patience,
            recipe.members) == (16, 250, 64, 2, 60, 15, 1)


def test_a_small_set_trains_for_enough_steps_and_waits_in_steps():
    """The issue's case: 50 series of 150 steps stopped after ~50 optimizer steps with the HAPT recipe."""
    recipe = size_recipe(dataset(40, 150), "classify", {})
    assert recipe.layers == 1 and recipe.lanes == 8
    assert recipe.epochs * recipe.steps_per_epoch >= MIN_STEPS
    assert recipe.patience * recipe.steps_per_epoch >= PATIENCE_STEPS
    assert "epochs 600 (~5 steps an epoch" in recipe.describe()


def test_given_settings_are_kept_and_said():
    recipe = size_recipe(dataset(40, 150), "classify", {"epochs": 7, "lanes": 3, "layers": 2, "hidden": None})
    assert (recipe.epochs, recipe.lanes, recipe.layers, recipe.hidden) == (7, 3, 2, 64)
    assert "epochs 7 (given)" in recipe.describe() and "hidden 64 (each member)" in recipe.describe()
    one = size_recipe(dataset(40, 150), "classify", {"members": 1})
    assert one.members == 1 and "members 1 (given)" in one.describe() and "hidden 64 (default)" in one.describe()


def test_short_recordings_get_short_chunks():
    recipe = size_recipe(dataset(6, 90), "forecast", {})
    assert recipe.chunk_len == 90 and recipe.lanes == 3


def test_classify_tries_both_gated_cells_and_both_inits_unless_one_is_given():
    """Trace: an LSTM never learnt it, a GRU did; BasicMotions the other way round; PLAID's models needed fast
    units, PigCVP's slow ones (recipe.py)."""
    assert size_recipe(dataset(40, 150), "classify", {}).cells == ("lstm", "gru", "lstm+slow", "gru+slow")
    assert size_recipe(dataset(40, 150), "classify", {"cells": ("gru",)}).cells == ("gru",)
    assert size_recipe(dataset(6, 90), "forecast", {}).cells == ("lstm", "lstm+change")
    assert size_recipe(dataset(6, 90), "forecast", {"cells": ("gru",)}).cells == ("gru",)
    assert size_recipe(dataset(6, 90), "tag", {}).cells == ("lstm",)
    assert "cells lstm or gru or lstm+slow or gru+slow (the best on validation)" in \
        size_recipe(dataset(40, 150), "classify", {}).describe()
    assert "cells lstm or lstm+change (the second only when clearly better on validation)" in \
        size_recipe(dataset(6, 90), "forecast", {}).describe()


def test_small_sets_fold_several_seeds_large_or_bidirectional_ones_train_one():
    """A small set's score swings with the seed; the mean of two seeds' models less, of four less again (recipe.py,
    ensemble.py)."""
    assert size_recipe(dataset(20, 24), "classify", {}).members == 4  # below 2,000 samples
    assert size_recipe(dataset(6, 90), "forecast", {}).members == 4
    assert size_recipe(dataset(40, 150), "classify", {}).members == 2  # below 100,000
    assert size_recipe(dataset(40, 150), "classify", {}, bidirectional=True).members == 1
    assert size_recipe(dataset(100, 1000), "classify", {}).members == 1  # 100,000 samples and more
    assert "members 4 (4 seeds folded into one: 480 training samples)" in size_recipe(
        dataset(20, 24), "classify", {}).describe()


def test_folding_bidirectional_members_is_refused_before_training(tmp_path):
    import pytest

    from rnnedge.errors import RnnedgeError
    from rnnedge.training.prepare import prepared

    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(10):
        (folder / f"{i}.csv").write_text("t,x,label\n" + "".join(f"{t},{(t * (1 + i % 2)) % 7},{1 + i % 2}\n"
                                                                   for t in range(20)))
    with pytest.raises(RnnedgeError, match="--members"):
        prepared(str(folder), None, None, "x", "label", 10.0, None, None, "classify", True, 1, 0.1,
                 {"members": 2}, 0)


def test_the_recipe_says_how_each_channel_is_normalized():
    wave = np.sin(np.arange(100) / 5.0)[:, None].astype(np.float32)
    wide = Dataset([Recording(wave * scale, np.full(100, 1 + i % 2), 0, str(i))
                    for i, scale in enumerate([1, 1, 1, 2, 300, 1, 1, 500])], ["x"], ["UNLABELED", "0", "1"], 10.0,
                   "synthetic")
    recipe = size_recipe(wide, "classify", {})
    assert recipe.spread_limit == 10 and "normalization nearer the median recording for x " in recipe.describe()
    given = size_recipe(wide, "classify", {"spread_limit": 0.0})
    assert given.spread_limit == 0 and "normalization by all samples" in given.describe()
    assert "(given)" in given.describe().split("normalization")[1]
    assert "normalization by all samples (channel spread at most 1.2x" in size_recipe(
        hapt_split("train"), "tag", {}).describe()


def test_augmentation_is_given_or_the_data_sets_own_and_said():
    """No rule turns it on but a forecast's level shift (noise and stretching cost the benchmark's small sets their
    worst seed: recipe.py)."""
    assert size_recipe(dataset(40, 150), "classify", {}).augment == dict.fromkeys(AUGMENTS, 0.0)
    forecast = size_recipe(dataset(6, 90), "forecast", {})  # the one rule: a forecast's level shift
    assert forecast.augment == dict.fromkeys(AUGMENTS, 0.0) | {"shift": LEVEL_SHIFT}
    assert f"augmentation shift {LEVEL_SHIFT:g} (a forecast: any level" in forecast.describe()
    assert size_recipe(dataset(6, 90), "forecast", {"shift": 0.0}).augment["shift"] == 0.0
    assert "augmentation none" in size_recipe(hapt_split("train"), "tag", {"rotate_deg": 0, "speed": 0}).describe()
    bundled = size_recipe(hapt_split("train"), "tag", {})
    assert bundled.augment == {"rotate_deg": 180.0, "speed": 0.25, "jitter": 0.0, "shift": 0.0}
    assert "rotate_deg 180 (the data set's own), speed 0.25 (the data set's own)" in bundled.describe()
    classified = size_recipe(hapt_split("train"), "classify", {})  # series batches do not rotate: its own 180 unused
    assert classified.augment["rotate_deg"] == 0.0 and "rotate_deg" not in classified.describe()
    given = size_recipe(dataset(40, 150), "classify", {"jitter": 0.05, "speed": 0.2})
    assert given.augment == {"rotate_deg": 0.0, "speed": 0.2, "jitter": 0.05, "shift": 0.0}
    assert "speed 0.2 (given), jitter 0.05 (given)" in given.describe()
    shifted = size_recipe(dataset(6, 90), "forecast", {"shift": 2.0})
    assert shifted.augment["shift"] == 2.0 and "augmentation shift 2 (given)" in shifted.describe()
    kept = size_recipe(hapt_split("train"), "tag", {"speed": 0.0})
    assert kept.augment["speed"] == 0.0 and "speed" not in kept.describe().split("augmentation")[1]


def test_a_small_classify_set_with_a_test_split_is_fitted_again_on_all_it_has():
    small = size_recipe(dataset(40, 150), "classify", {})
    assert small.final_fit and "final_fit yes (training + validation series" in small.describe()
    untested = size_recipe(dataset(40, 150), "classify", {}, tested=False)
    assert not untested.final_fit and "final_fit no (no test split: validation stays held out)" in untested.describe()
    assert not size_recipe(dataset(100, 1000), "classify", {}).final_fit  # 100,000 samples and more
    assert not size_recipe(dataset(6, 90), "forecast", {}).final_fit
    assert not size_recipe(hapt_split("train"), "tag", {}).final_fit
    assert "final_fit no (given)" in size_recipe(dataset(40, 150), "classify", {"final_fit": False}).describe()
    assert size_recipe(dataset(6, 90), "forecast", {"final_fit": True}).final_fit


def test_the_init_is_said_with_the_span_classify_learns_back_through():
    """Classify's chrono init is sized to its longest training series (or the window it is cut to); the tagger and
    forecaster keep PyTorch's init, and the line says which."""
    mixed = Dataset([*dataset(4, 90).recordings, *dataset(4, 150).recordings], ["x"], ["UNLABELED", "0", "1"], 10.0,
                    "synthetic")
    assert memory_span(mixed, "classify") == 150 and memory_span(mixed, "classify", window_len=40) == 40
    both = "init chrono (gate time scales from 1 to 149 steps, the longest series 150: spread over octaves; +slow: as "
    assert both + "published, most units slow)" in size_recipe(mixed, "classify", {}).describe()
    assert "150: spread over octaves)" in size_recipe(mixed, "classify", {"cells": ("gru",)}).describe()
    slow = size_recipe(mixed, "classify", {"cells": ("gru+slow",)})
    assert "150: +slow: as published, most units slow)" in slow.describe()
    assert memory_span(mixed, "tag") == 0 and memory_span(mixed, "forecast") == 0
    assert "init PyTorch's (targets at every step)" in size_recipe(mixed, "tag", {}).describe()
    vanilla = size_recipe(mixed, "classify", {"cells": ("rnn_tanh",)})
    assert "init PyTorch's (no gate to keep open)" in vanilla.describe()
