"""Your own data through the CLI alone (issue 11): two public data sets the project ships as CSV folders
(examples/data), trained, evaluated on their test split, exported without naming held-out data, evaluated again
through the runtime, and streamed. Small models and few epochs: this checks the path, not the accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.bundle import read_manifest
from rnnedge.tasks import shown
from rnnedge.training.config import TrainConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"
BASIC_MOTIONS = ["--channels", " acc-x, acc-y ,acc-z,gyro-x,gyro-y,gyro-z", "--label-column", "label",
                 "--sample-rate", "10"]  # spaces around names are trimmed (observation 9)
VOWELS = ["--channels", ",".join(f"lpc{i}" for i in range(1, 13)), "--label-column", "label",
          "--sample-rate", "156.25"]


def rnnedge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "rnnedge.cli", *args], capture_output=True, text=True,
                            timeout=600, cwd=cwd, env={"OMP_NUM_THREADS": "1", "COLUMNS": "200", "PATH": ""})
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.slow
def test_basic_motions_train_evaluate_export_stream(tmp_path):
    train = rnnedge("train", "--data", str(EXAMPLES / "basicmotions" / "train"), "--test",
                    str(EXAMPLES / "basicmotions" / "test"), *BASIC_MOTIONS, "--task", "classify",
                    "--window-len", "128",  # longer than every series (100): each series whole (observation 4)
                    "--hidden", "16", "--layers", "1", "--epochs", "3", "--out", str(tmp_path / "run"))
    assert train.returncode == 0, train.stderr
    assert "test (40 recordings): accuracy" in train.stdout
    checkpoint = tmp_path / "run" / "model.pt"
    evaluated = rnnedge("evaluate", str(checkpoint), "--out", str(tmp_path / "eval-ckpt"))
    assert evaluated.returncode == 0 and "test split of csv:" in evaluated.stdout, evaluated.stderr

    # no --data: export finds the recorded test split (observation 1); a one-way classifier streams (2)
    exported = rnnedge("export", str(checkpoint), "--out", str(tmp_path / "bundle"), "--precisions", "fp32,int8",
                       "--chunk-len", "10")
    assert exported.returncode == 0, exported.stderr
    manifest = read_manifest(tmp_path / "bundle")
    assert manifest.streamable and {f.graph for f in manifest.files} == {"stream"}
    assert manifest.evaluation.data.startswith("test split of csv:") and manifest.evaluation.samples == 4000
    with np.load(tmp_path / "bundle" / "reference.npz") as ref:  # every test series, not one (observation 10)
        assert ref["x"].shape == (40, 100, 6)

    report = rnnedge("evaluate", str(tmp_path / "bundle"), "--out", str(tmp_path / "eval"))
    assert report.returncode == 0, report.stderr
    rows = {(r["model"], r["backend"]): r for r in json.loads((tmp_path / "eval" / "evaluation.json").read_text())}
    for f in manifest.files:  # the runtime's streams score what export measured for each file
        if f.chunk_len in (None, 1):
            row = rows[(f"{f.format} {f.precision}", "onnxruntime" if f.format == "onnx" else "litert")]
            assert row["value"] == pytest.approx(f.score, abs=1 / 40) and row["scored_series"] == 40

    explicit = rnnedge("evaluate", str(checkpoint), "--data", str(EXAMPLES / "basicmotions" / "test"), "--out",
                       str(tmp_path / "eval-explicit"))
    assert explicit.returncode == 0, explicit.stderr
    default, given = (json.loads((tmp_path / name / "evaluation.json").read_text())[0]
                      for name in ("eval-ckpt", "eval-explicit"))
    assert default["value"] == given["value"] and default["confusion"] == given["confusion"]

    stream = rt.load(tmp_path / "bundle").stream()  # a live series: the class so far, at every step
    series = np.loadtxt(EXAMPLES / "basicmotions" / "test" / "0000.csv", delimiter=",", skiprows=1,
                        usecols=range(1, 7), dtype=np.float32)
    outputs = stream.feed(series)
    assert outputs.shape == (100, 4) and np.isfinite(outputs).all()


@pytest.mark.slow
def test_variable_length_series_train_whole_and_export(tmp_path):
    """JapaneseVowels: 7-29 samples per series, trained whole (not a trailing window of the shortest)."""
    train = rnnedge("train", "--data", str(EXAMPLES / "japanesevowels" / "train"), "--test",
                    str(EXAMPLES / "japanesevowels" / "test"), *VOWELS, "--task", "classify", "--hidden", "16",
                    "--layers", "1", "--epochs", "2", "--out", str(tmp_path / "run"))
    assert train.returncode == 0, train.stderr
    from rnnedge.training.checkpoint import Checkpoint

    # no --cell: an LSTM and a GRU with either init, the best on validation kept, its checkpoint and curve in the
    # run folder
    kept = Checkpoint.load(tmp_path / "run" / "model.pt")
    scores = kept.provenance["cells"]
    assert list(scores) == ["lstm", "gru", "lstm+slow", "gru+slow"] and scores["lstm"] < 1  # two epochs: far off
    assert scores[kept.config.variant] == max(scores.values())
    assert f"kept {kept.config.variant}" in train.stderr and (tmp_path / "run" / "training_curve.png").is_file()
    for variant in scores:
        assert Checkpoint.load(tmp_path / "run" / "cells" / variant / "model.pt").config.variant == variant
    # a small set with a test split: the kept model trained again on training + validation (recipe: final_fit)
    assert "final_fit yes" in train.stderr and "(before the final fit on training + validation)" in train.stdout
    assert kept.provenance["final_fit"]["series"] == 270
    exported = rnnedge("export", str(tmp_path / "run" / "model.pt"), "--out", str(tmp_path / "bundle"),
                       "--formats", "onnx", "--precisions", "fp32")
    assert exported.returncode == 0, exported.stderr
    manifest = read_manifest(tmp_path / "bundle")
    assert manifest.evaluation.data.startswith("test split") and "370 recordings" in manifest.evaluation.data
    with np.load(tmp_path / "bundle" / "reference.npz") as ref:  # many short series, thousands of steps
        assert ref["x"].shape[0] * ref["x"].shape[1] >= 2000


def test_a_final_fit_needs_a_test_split(tmp_path):
    """Without --test, export and evaluate score the validation split: a final fit would have trained on it."""
    result = rnnedge("train", "--data", str(EXAMPLES / "basicmotions" / "train"), *BASIC_MOTIONS, "--task",
                     "classify", "--final-fit", "--out", str(tmp_path / "run"))
    assert result.returncode != 0 and "give --test" in result.stderr
    assert not (tmp_path / "run" / "model.pt").exists()


def test_label_zero_is_a_class_and_unlabelled_is_explicit(tmp_path):
    """Observation 8: a label 0 vanished as 'unlabelled' and training reported validation 1.0."""
    rng = np.random.default_rng(0)
    for i in range(5):
        rows = ["a,b,label"] + [f"{x:.4f},{y:.4f},{lab}" for (x, y), lab in
                                zip(rng.normal(size=(60, 2)), ["0"] * 20 + ["1"] * 20 + ["-1"] * 20, strict=True)]
        (tmp_path / f"r{i}.csv").write_text("\n".join(rows) + "\n")
    result = rnnedge("train", "--data", str(tmp_path), "--channels", "a,b", "--label-column", "label",
                     "--sample-rate", "10", "--unlabelled", "-1", "--hidden", "4", "--layers", "1", "--epochs", "1",
                     "--chunk-len", "20", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    from rnnedge.training.checkpoint import Checkpoint

    assert Checkpoint.load(tmp_path / "run" / "model.pt").labels == ["0", "1"]


def test_training_threads_default_to_one_and_are_an_option():
    """Observation 12: torch's default threads on a busy 2-core machine cost 20-50x per epoch."""
    assert TrainConfig().threads == 1
    assert "--threads" in rnnedge("train", "--help").stdout


def test_a_channel_a_few_huge_recordings_dominate_is_normalized_nearer_the_typical_one(tmp_path):
    """PLAID's currents span 0.1 A to 460 A: scaled by all samples the typical recording reached the model as noise
    near zero (rnnedge.data.recording.Normalization.fit). The recipe line says what was done; --spread-limit 0
    turns it off; the exported file still takes raw units."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(20):
        scale = 400.0 if i % 10 == 9 else 1.0 + i % 3
        amps = scale * np.sin(np.arange(50) / (2 + i % 2)) + rng.normal(0, 0.01, 50)
        rows = ["amps,volts,label"] + [f"{a:.5f},{v:.5f},{1 + i % 2}" for a, v in
                                        zip(amps, rng.normal(0, 1, 50), strict=True)]
        (data / f"r{i}.csv").write_text("\n".join(rows) + "\n")
    words = ["train", "--data", str(data), "--channels", "amps,volts", "--label-column", "label", "--sample-rate",
             "10", "--task", "classify", "--cell", "gru", "--members", "1", "--hidden", "4", "--epochs", "1"]
    from rnnedge.data.recording import channel_traits
    from rnnedge.data.source import load_split
    from rnnedge.training.checkpoint import Checkpoint

    near = rnnedge(*words, "--out", str(tmp_path / "near"))
    assert near.returncode == 0, near.stderr
    kept = Checkpoint.load(tmp_path / "near" / "model.pt")
    train_split = load_split(kept.provenance["data"]["splits"], "train").recordings
    spread = channel_traits(train_split).spread
    assert spread[0] > 10 > spread[1]
    assert f"normalization nearer the median recording for amps {spread[0]:.3g}x" in near.stderr
    stacked = np.concatenate([r.signals for r in train_split]).astype(np.float64)
    assert kept.normalization.std[0] < stacked[:, 0].std() / 3  # nearer the typical recording's scale
    assert kept.normalization.std[1] == pytest.approx(stacked[:, 1].std(), rel=1e-5)
    off = rnnedge(*words, "--spread-limit", "0", "--out", str(tmp_path / "off"))
    assert off.returncode == 0 and "normalization by all samples" in off.stderr
    assert Checkpoint.load(tmp_path / "off" / "model.pt").normalization.std[0] == pytest.approx(
        stacked[:, 0].std(), rel=1e-5)
    exported = rnnedge("export", str(tmp_path / "near" / "model.pt"), "--out", str(tmp_path / "bundle"),
                       "--formats", "onnx", "--precisions", "fp32")
    assert exported.returncode == 0, exported.stderr
    assert read_manifest(tmp_path / "bundle").input.normalization.std[0] == pytest.approx(
        float(kept.normalization.std[0]), rel=1e-6)


def test_a_forecast_prints_its_test_score_beside_persistence(tmp_path):
    """One series, split in time: the test line names persistence's MSE (what a forecast must beat) and says when
    the model does not beat it, whichever way two epochs land."""
    rng = np.random.default_rng(0)
    values = np.sin(np.arange(600) / 8) + rng.normal(0, 0.1, 600)
    (tmp_path / "series.csv").write_text("t,value\n" + "".join(f"{i},{v:.5f}\n" for i, v in enumerate(values)))
    train = rnnedge("train", "--data", str(tmp_path / "series.csv"), "--channels", "value", "--sample-rate", "1",
                    "--task", "forecast", "--members", "1", "--hidden", "8", "--epochs", "2",
                    "--out", str(tmp_path / "run"))
    assert train.returncode == 0, train.stderr
    report = json.loads((tmp_path / "run" / "test_report.json").read_text())
    line = next(line for line in train.stdout.splitlines() if line.startswith("test (1 recordings): mse"))
    assert f"(persistence {shown(report['persistence_mse'])}" in line  # 4 significant digits below 0.1
    assert ("not beaten" in line) == (report["value"] >= report["persistence_mse"])
