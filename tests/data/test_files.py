import numpy as np
import pytest

from rnnedge.data import load_csv, load_npz
from rnnedge.errors import DataError

CHANNELS = ["ax", "ay"]


def write(tmp_path, text, name="rec.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_loads_channels_by_name_and_labels(tmp_path):
    path = write(tmp_path, "t,ay,ax,label\n0,1.5,2.5,walk\n1,1.0,2.0,\n2,0.5,1.0,sit\n")
    data = load_csv([path], CHANNELS, 50.0, label_column="label")
    rec = data.recordings[0]
    np.testing.assert_array_equal(rec.signals, [[2.5, 1.5], [2.0, 1.0], [1.0, 0.5]])
    assert data.label_names == ["UNLABELED", "sit", "walk"]
    np.testing.assert_array_equal(rec.labels, [2, 0, 1])


@pytest.mark.parametrize("text, expected", [
    ("", "empty file"),
    ("ax,ay\n", "no data rows"),
    ("ax,az\n1,2\n", "missing column(s) ay"),
    ("ax,ay\n1,2\n3,oops\n", "row 3, column ay: not a number: 'oops'"),
    ("ax,ay\n1,2\n3\n", "row 3 has 1 cells, header has 2"),
    ("ax,ay\n1,nan\n", "row 2, column ay: non-finite value"),
])
def test_csv_errors_name_file_row_and_column(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_csv([path], CHANNELS, 50.0)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_csv_unknown_label_is_an_error(tmp_path):
    path = write(tmp_path, "ax,ay,y\n1,2,run\n")
    with pytest.raises(DataError, match="row 2, column y: unknown label 'run'"):
        load_csv([path], CHANNELS, 50.0, label_column="y", label_names=["none", "walk"])


def test_npz_round_trip_and_errors(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, signals=np.ones((10, 2), np.float32), labels=np.arange(10) % 2, sample_rate_hz=25.0,
             channels=np.array(CHANNELS))
    data = load_npz(good)
    assert data.channels == CHANNELS and data.sample_rate_hz == 25.0 and len(data.recordings[0]) == 10
    bad = tmp_path / "bad.npz"
    np.savez(bad, signals=np.array([[1.0, np.inf]]), sample_rate_hz=25.0)
    with pytest.raises(DataError, match="row 0, column 1: non-finite"):
        load_npz(bad)
    with pytest.raises(DataError, match="not a readable NPZ"):
        load_npz(write(tmp_path, "not zip", "x.npz"))
