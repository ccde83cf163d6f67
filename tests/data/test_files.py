import numpy as np
import pytest

from rnnedge.data import load_csv, load_npz
from rnnedge.data.recording import UNLABELED
from rnnedge.data.source import DataSource, load_split, make_splits, split_record
from rnnedge.errors import DataError
from rnnedge.tasks import forecast_targets

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
    ("ax,ay\n1,nan\n", "row 2, column ay: non-finite value 'nan' (a missing sample is an empty cell)"),
    ("ax,ay\n1,NA\n", "row 2, column ay: not a number: 'NA' (a missing sample is an empty cell)"),
    ("ax,ay\n1,1e39\n", "row 2, column ay: '1e39' is beyond float32's range (+-3.4e+38)"),
    ("ax,ay\n1,\n2, \n", "column(s) ay have no values (every cell empty)"),
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


def test_csv_empty_cell_is_a_missing_sample_held_and_never_scored(tmp_path):
    """Issue 26: a forecasting CSV with one empty cell was refused ("not a number: ''")."""
    path = write(tmp_path, "ax,ay,label\n1,,a\n2,5,a\n,6,b\n4,,b\n5,8,b\n")
    data = load_csv([path], CHANNELS, 50.0, label_column="label")
    rec = data.recordings[0]
    # held: the channel's last reading, its first reading before any
    np.testing.assert_array_equal(rec.signals, [[1, 5], [2, 5], [2, 6], [4, 6], [5, 8]])
    np.testing.assert_array_equal(rec.missing, [True, False, True, True, False])
    np.testing.assert_array_equal(rec.labels, [UNLABELED, 1, UNLABELED, UNLABELED, 2])
    assert load_csv([write(tmp_path, "ax,ay\n1,2\n", "full.csv")], CHANNELS, 50.0).recordings[0].missing is None


def test_forecast_targets_skip_missing_samples():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    missing = np.array([False, False, True, False, False, False])
    _, valid = forecast_targets(x, 2, missing)
    # step t is scored when t+1 and t+2 exist and were measured
    np.testing.assert_array_equal(valid, [False, False, True, True, False, False])
    np.testing.assert_array_equal(forecast_targets(x, 2)[1], [True, True, True, True, False, False])


def test_one_recording_splits_in_time_and_is_found_again(tmp_path):
    """Issue 26: a single long series (one file) trains, validates and tests on consecutive pieces."""
    rows = "\n".join(f"{i},{i % 7},{'' if i == 150 else i % 3}" for i in range(200))
    path = write(tmp_path, f"t,ax,ay\n{rows}\n")
    source = DataSource.parse(str(path), "ax,ay", None, 10.0)
    splits = make_splits(source.load(), source)
    assert {n: [len(r) - r.history for r in s.recordings] for n, s in splits.items()} == {"train": [140],
                                                                                          "val": [30], "test": [30]}
    test = splits["test"].recordings[0]  # the samples before it come first, as history (validation starts cold)
    assert [s.recordings[0].history for s in splits.values()] == [0, 0, 170]
    np.testing.assert_array_equal(test.signals[:, 0], np.arange(200) % 7)
    assert splits["val"].recordings[0].missing[10]  # row 150 had an empty cell
    record = split_record(splits)
    assert record["test"]["recordings"][0]["slice"] == [170, 200] and record["test"]["recordings"][0]["history"]
    again = load_split(record, "test")  # export and evaluate read it again from the file
    np.testing.assert_array_equal(again.recordings[0].signals, test.signals)
    assert again.recordings[0].history == 170
    with pytest.raises(DataError, match="too short to split in time"):
        make_splits(DataSource.parse(str(write(tmp_path, "ax,ay\n1,2\n3,4\n", "two.csv")), "ax,ay", None,
                                     10.0).load(), source)


def test_classify_validation_is_stratified_by_class(tmp_path):
    """Issue 26: every fifth series can miss a class of a small set; a fifth of each class's series instead."""
    for i in range(15):
        write(tmp_path, f"ax,ay,y\n1,2,{'a' if i < 10 else 'b'}\n", f"s{i:02d}.csv")
    source = DataSource.parse(str(tmp_path), "ax,ay", "y", 10.0)
    val = make_splits(source.load(), source, stratify=True)["val"].recordings
    assert sorted(r.name for r in val) == ["s02.csv", "s07.csv", "s12.csv"]  # 2 of a's 10, 1 of b's 5
