import numpy as np
import pytest

from rnnedge.data import load_csv, load_npz
from rnnedge.data.recording import UNLABELED
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


def test_csv_label_zero_is_a_class_like_any_other(tmp_path):
    """Observation 8 (issue 11): a user's label 0 was read as 'unlabelled', so that class vanished."""
    path = write(tmp_path, "ax,ay,label\n1,2,0\n3,4,1\n5,6,0\n7,8,10\n9,9,2\n")
    data = load_csv([path], CHANNELS, 50.0, label_column="label")
    assert data.label_names == ["UNLABELED", "0", "1", "2", "10"]  # numeric order: "2" before "10"
    labels = data.recordings[0].labels
    np.testing.assert_array_equal(labels, [1, 2, 1, 4, 3])
    # what training sees: every row labelled, and the class "0" among the classes it learns
    assert (labels != UNLABELED).all()
    assert {data.label_names[i] for i in labels} == {"0", "1", "2", "10"}


def test_csv_unlabelled_is_an_explicit_choice(tmp_path):
    path = write(tmp_path, "ax,ay,label\n1,2,-1\n3,4,0\n5,6,\n7,8, 1 \n")
    data = load_csv([path], CHANNELS, 50.0, label_column="label", unlabelled="-1")
    assert data.label_names == ["UNLABELED", "0", "1"]
    np.testing.assert_array_equal(data.recordings[0].labels, [UNLABELED, 1, UNLABELED, 2])
    # without `unlabelled`, -1 is a class too; only the empty cell is unlabelled
    data = load_csv([path], CHANNELS, 50.0, label_column="label")
    assert data.label_names == ["UNLABELED", "-1", "0", "1"]
    np.testing.assert_array_equal(data.recordings[0].labels, [1, 2, UNLABELED, 3])


def test_csv_test_split_loads_with_the_training_label_set(tmp_path):
    train = write(tmp_path, "ax,ay,y\n1,2,sit\n3,4,walk\n", "train.csv")
    test = write(tmp_path, "ax,ay,y\n1,2,walk\n\n3,4,walk\n5,6,run\n", "test.csv")
    names = load_csv([train], CHANNELS, 50.0, label_column="y").label_names
    data = load_csv([train], CHANNELS, 50.0, label_column="y", label_names=names)
    assert data.label_names == names == ["UNLABELED", "sit", "walk"]
    with pytest.raises(DataError) as info:
        load_csv([test], CHANNELS, 50.0, label_column="y", label_names=names)
    message = str(info.value)  # the blank line still counts as a row, as in a spreadsheet
    assert f"{test}: row 5, column y: unknown label 'run' (labels: sit, walk)" == message
    # the placeholder at index 0 is not a class: a label spelled like it is unknown
    with pytest.raises(DataError, match="unknown label 'none'"):
        load_csv([write(tmp_path, "ax,ay,y\n1,2,none\n")], CHANNELS, 50.0, label_column="y",
                 label_names=["none", "walk"])


def test_csv_encodings(tmp_path):
    """Observation 9 (issue 11): Latin-1 gave a UnicodeDecodeError traceback, a BOM an invisible header char."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes("ax,ay,label\n1,2,café\n".encode("utf-8-sig"))
    data = load_csv([bom], CHANNELS, 50.0, label_column="label")
    assert data.label_names == ["UNLABELED", "café"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("ax,ay,label\n1,2,walk\n3,4,café\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        load_csv([latin], CHANNELS, 50.0, label_column="label")
    assert str(info.value) == f"{latin}: line 3: not UTF-8 text (byte 0xe9); save the file as UTF-8 CSV"
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("ax,ay\n1,2\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16 text; save it as UTF-8"):
        load_csv([utf16], CHANNELS, 50.0)


def test_csv_names_are_trimmed(tmp_path):
    path = write(tmp_path, " ax , ay,label \n1,2,walk\n")
    data = load_csv([path], [" ax", "ay "], 50.0, label_column=" label")  # as `--channels " ax,ay "` splits
    assert data.channels == CHANNELS and data.label_names == ["UNLABELED", "walk"]
    np.testing.assert_array_equal(data.recordings[0].signals, [[1, 2]])
    with pytest.raises(DataError, match="empty channel name"):
        load_csv([path], ["ax", " "], 50.0)


def test_csv_recording_names_stay_distinct_across_folders(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder, "ax,ay\n1,2\n", "rec.csv")
        write(tmp_path / folder, "ax,ay\n1,2\n", "notes.txt")
    data = load_csv([tmp_path / "a", tmp_path / "b"], CHANNELS, 50.0)
    assert [r.name for r in data.recordings] == ["a/rec.csv", "b/rec.csv"]
    assert {r.subject for r in data.recordings} == {0}
    assert [r.name for r in load_csv(tmp_path / "a", CHANNELS, 50.0).recordings] == ["rec.csv"]
    assert [r.name for r in load_csv([tmp_path / "a" / "rec.csv"], CHANNELS, 50.0).recordings] == ["rec"]
    with pytest.raises(DataError, match="no .csv files in this folder"):
        load_csv([tmp_path], CHANNELS, 50.0)
    with pytest.raises(DataError, match="given more than once"):
        load_csv([tmp_path / "a", tmp_path / "a" / "rec.csv"], CHANNELS, 50.0)
