"""The public-data benchmark's own parts (scripts/own_data/bench.py): its 1-NN DTW (dtw.c) against DTW written out
in numpy, and the sets it runs: none of the held-out ones."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "own_data" / "bench.py"
spec = importlib.util.spec_from_file_location("own_data_bench", SCRIPT)
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench  # dataclasses look their module up
spec.loader.exec_module(bench)


def dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Textbook DTW: squared Euclidean step cost, full window."""
    cost = np.full((len(a) + 1, len(b) + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            step = float(((a[i - 1] - b[j - 1]) ** 2).sum())
            cost[i, j] = step + min(cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1])
    return float(cost[-1, -1])


def test_nearest_neighbour_under_dtw_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    train = [rng.normal(size=(int(rng.integers(5, 30)), 2)) for _ in range(12)]
    test = [rng.normal(size=(int(rng.integers(5, 30)), 2)) for _ in range(8)]
    test.append(train[3][::-1].copy())  # a time-reversed copy: its own reverse is not its nearest by accident
    test.append(np.repeat(train[7], 2, axis=0))  # train[7] slowed down twice: DTW distance 0 to it
    expected = [int(np.argmin([dtw(q, r) for r in train])) for q in test]
    found = bench.nearest_dtw(train, test, build=tmp_path)
    assert found.tolist() == expected and found[-1] == 7


def test_the_benchmark_never_touches_the_held_out_sets_unless_told_to_run_only_them():
    names = {s.name for s in bench.CLASSIFICATION + bench.FORECASTS}
    members = " ".join(s.member for s in bench.CLASSIFICATION + bench.FORECASTS)
    assert not names & bench.HELD_OUT and not any(h in members for h in bench.HELD_OUT)
    assert not {s.name for s in bench.chosen_sets(set(), independent_check=False)} & bench.HELD_OUT
    assert {s.name for s in bench.chosen_sets(set(), independent_check=True)} == bench.HELD_OUT
    with pytest.raises(SystemExit, match="held out: --independent-check runs them"):
        bench.chosen_sets({"GunPoint"}, independent_check=False)
    with pytest.raises(SystemExit, match="unknown set"):
        bench.chosen_sets({"Coffee"}, independent_check=True)
    assert len(bench.CLASSIFICATION) >= 9 and len(bench.FORECASTS) >= 3
    # their published figures are there for the independent check's table; accuracies, not error rates
    assert bench.HELD_OUT - {"co2", "sunspots"} <= set(bench.PUBLISHED)
    assert all(0 <= a <= 1 and 0 <= r <= 1 for a, r in bench.PUBLISHED.values())


def test_every_file_the_benchmark_reads_is_pinned_by_sha256():
    """One set is a pickle read from its wheel: the wheel is checked first. A package with no pure-Python wheel
    (statsmodels) has the files read from it pinned instead."""
    sets = bench.CLASSIFICATION + bench.FORECASTS + bench.HELD_OUT_SETS
    for s in sets:
        members = [s.member.format(split=split) for split in ("TRAIN", "TEST")] if "{split}" in s.member else [s.member]
        assert s.wheel in bench.WHEEL_SHA256 or all((s.wheel, m) in bench.MEMBER_SHA256 for m in members), s.name
    assert all(len(h) == 64 for h in [*bench.WHEEL_SHA256.values(), *bench.MEMBER_SHA256.values()])


def test_the_table_shows_the_worst_seed_first_then_every_seed():
    def run(seed: int, accuracy: float, shape: str) -> dict:
        return {"seed": seed, "int8_accuracy": accuracy, "shape": shape, "train_seconds": 10.0}

    runs = [run(0, 0.9, "lstm 1x64"), run(1, 0.7, "gru 1x64"), run(2, 0.8, "lstm 1x64")]
    worst = {"set": "A", "task": "classify", "train_series": 20, "test_series": 20, "length": [24, 24], "channels": 1,
             "classes": 2, "dtw_1nn_accuracy": 0.75, **bench.seeded_summary(runs, "accuracy")}
    one = {**worst, "set": "B", **bench.seeded_summary([run(0, 0.8, "lstm 1x64")], "accuracy")}
    rows = [line for line in bench.table([one, worst], {"cpu": "x", "cpus": 2, "platform": "p"}).splitlines()
            if line.startswith("| A") or line.startswith("| B")]
    assert rows[0].startswith("| A ") and "| 0.7000 (gru 1x64; seeds 0, 1, 2: 0.9000 / 0.7000 / 0.8000) |" in rows[0]
    assert "-5.0 pts" in rows[0] and "| 0.8000 (lstm 1x64) |" in rows[1]
    refused = {**worst, "set": "C", **bench.seeded_summary([run(0, 0.8, "lstm 1x64") | {"int8_refused": "why"},
                                                           run(1, 0.9, "lstm 1x64")], "accuracy")}
    row = next(line for line in bench.table([refused], {"cpu": "x", "cpus": 2, "platform": "p"}).splitlines()
               if line.startswith("| C"))
    assert "seed 0: the int8 file export refused, scored there)" in row


def test_a_set_the_archive_publishes_is_judged_against_its_published_dtw():
    """dtw.c on the raw files is not the archive's figure (PigCVP: 0.3269 raw, 0.1538 published, z-normalized)."""
    run = {"seed": 0, "int8_accuracy": 0.0769, "shape": "lstm 2x64", "train_seconds": 10.0}
    pig = {"set": "PigCVP", "task": "classify", "train_series": 104, "test_series": 208, "length": [2000, 2000],
           "channels": 1, "classes": 52, "dtw_1nn_accuracy": 0.3269, **bench.seeded_summary([run], "accuracy")}
    own = {**pig, "set": "Own", "dtw_1nn_accuracy": 0.1}
    rows = [line for line in bench.table([pig, own], {"cpu": "x", "cpus": 2, "platform": "p"}).splitlines()
            if line.startswith("| PigCVP") or line.startswith("| Own")]
    assert "| 0.3269 / 0.1538 | 0.9341 | -7.7 pts |" in rows[0]
    assert "| 0.1000 / - | - | -2.3 pts |" in rows[1]
