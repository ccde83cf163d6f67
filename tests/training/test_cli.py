"""The CLI's contract for user errors: one line on stderr, exit code 2, no traceback."""

import subprocess
import sys

import pytest


def rnnedge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnedge.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/nonexistent/folder"], "no such file or folder"),
    (["train", "--task", "tag", "--bidirectional", "--epochs", "1"], "need the future"),
    (["train", "--out", "pyproject.toml", "--epochs", "1"], "pyproject.toml: cannot use it as the run folder"),
    (["train", "--task", "classify", "--shift", "2", "--epochs", "1"], "--shift: classify training does not use it"),
    (["train", "--task", "forecast", "--jitter", "0.1", "--epochs", "1"], "--jitter: forecast training does not use"),
    (["train", "--task", "classify", "--rotate-deg", "30", "--epochs", "1"],
     "--rotate-deg: classify training does not use it (it is for tag and forecast)"),
    (["train", "--data", "examples/data/basicmotions/train", "--channels", "acc-x,acc-y", "--label-column", "label",
      "--sample-rate", "10", "--rotate-deg", "30", "--epochs", "1"], "no 3-axis sensor among the channels (acc-x"),
    (["train", "--channels", "acc-x", "--epochs", "1"], "hapt: --channels for CSV data only"),
    (["train", "--cell", "lstm+change", "--epochs", "1"], "the change input is a forecast's, not a 'tag' model's"),
    (["train", "--cell", "gru+slow", "--epochs", "1"], "the slow init keeps a classify model's gates open, not a"),
])
def test_user_errors_are_one_line_and_exit_2(args, message):
    result = rnnedge(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_an_unknown_cell_is_refused_with_the_cells_that_exist():
    result = rnnedge("train", "--cell", "transformer", "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'transformer' is not one of" in result.stderr
    assert all(f"'{cell}'" in result.stderr for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru"))


def test_csv_error_reaches_the_user_with_row_and_column(tmp_path):
    (tmp_path / "a.csv").write_text("ax,ay,label\n1,2,walk\n1,x,walk\n")
    result = rnnedge("train", "--data", str(tmp_path), "--channels", "ax,ay", "--label-column", "label",
                     "--sample-rate", "50")
    assert result.returncode == 2
    assert "a.csv: row 3, column ay: not a number: 'x'" in result.stderr


def test_data_command_describes_hapt():
    result = rnnedge("data")
    assert result.returncode == 0
    assert "61 recordings" in result.stdout and "LIE_TO_STAND" in result.stdout
    assert "test  subjects: 2, 4, 9, 10, 12, 13, 18, 20, 24" in result.stdout


def test_a_class_whose_only_series_validates_leaves_training_one_class_and_is_refused(tmp_path):
    """One series a class: the validation split takes one, and a model trained on the other's class alone learns
    nothing (it trained, validated 0.0 and wrote a checkpoint)."""
    for name, label in (("a.csv", "sit"), ("b.csv", "walk")):
        (tmp_path / name).write_text("ax,label\n" + "".join(f"{i % 3},{label}\n" for i in range(20)))
    result = rnnedge("train", "--data", str(tmp_path), "--channels", "ax", "--label-column", "label",
                     "--sample-rate", "50", "--task", "classify", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the training split holds 1 class(es) of 2 after validation took its share" in result.stderr
    assert not (tmp_path / "run" / "model.pt").exists()
