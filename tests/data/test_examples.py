"""The example data sets shipped as CSV folders (examples/data) load with the CSV loader as documented."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rnnedge.data import load_csv
from rnnedge.data.recording import UNLABELED

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"

# name, channels, sample rate, {split: (series, shortest, longest)}, classes
SETS = [
    ("basicmotions", ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"], 10.0,
     {"train": (40, 100, 100), "test": (40, 100, 100)}, ["Badminton", "Running", "Standing", "Walking"]),
    ("japanesevowels", [f"lpc{i}" for i in range(1, 13)], 156.25,
     {"train": (270, 7, 26), "test": (370, 7, 29)}, [str(i) for i in range(1, 10)]),
]


@pytest.mark.parametrize("name, channels, rate, splits, classes", SETS, ids=[s[0] for s in SETS])
def test_example_sets_load_with_their_official_split(name, channels, rate, splits, classes):
    train = load_csv(EXAMPLES / name / "train", channels, rate, label_column="label")
    assert train.label_names == ["UNLABELED", *classes]
    for split, (count, shortest, longest) in splits.items():
        data = load_csv(EXAMPLES / name / split, channels, rate, label_column="label", label_names=train.label_names)
        lengths = [len(r) for r in data.recordings]
        assert (len(data.recordings), min(lengths), max(lengths)) == (count, shortest, longest)
        assert data.recordings[0].signals.shape[1] == len(channels)
        for rec in data.recordings:  # one class per series, every step labelled
            assert rec.labels[0] != UNLABELED and (rec.labels == rec.labels[0]).all()
        assert {int(r.labels[0]) for r in data.recordings} == set(range(1, len(classes) + 1))
        # the t column counts seconds at the documented rate
        t = load_csv(EXAMPLES / name / split / "0000.csv", ["t"], rate).recordings[0].signals[:, 0]
        np.testing.assert_allclose(t, np.arange(len(t)) / rate, atol=1e-6)


def test_ts_converter_keeps_variable_lengths_and_exact_values(tmp_path):
    spec = importlib.util.spec_from_file_location("ts_to_csv", EXAMPLES / "ts_to_csv.py")
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    ts = tmp_path / "tiny.ts"
    ts.write_text("# comment\n@problemName tiny\n@timeStamps false\n@univariate false\n@dimensions 2\n"
                  "@equalLength false\n@classLabel true a b\n@data\n"
                  "0.1,-3.13E-4,2:1,1,1:b\n0.123456789012345,5:7,8:a\n")
    series, labels = converter.parse_ts(ts)
    converter.write_csvs(series, labels, tmp_path / "out", ["x", "y"], 4.0)
    data = load_csv(tmp_path / "out", ["x", "y"], 4.0, label_column="label")
    assert [r.name for r in data.recordings] == ["0000.csv", "0001.csv"] and data.label_names[1:] == ["a", "b"]
    np.testing.assert_array_equal(data.recordings[0].signals, np.float32([[0.1, 1], [-3.13e-4, 1], [2, 1]]))
    np.testing.assert_array_equal(data.recordings[1].labels, [1, 1])
    assert (tmp_path / "out" / "0001.csv").read_text().splitlines()[1] == "0,0.123456789012345,7.0,a"
    ts.write_text("@classLabel true a\n@data\n1,?:a\n")
    with pytest.raises(converter.TsFormatError, match="tiny.ts:3: a value is missing"):
        converter.parse_ts(ts)
