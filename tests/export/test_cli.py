import os
import subprocess
import sys

import pytest
import torch

from rnnedge.training.checkpoint import FORMAT


class Payload:  # a class object inside a checkpoint: loading it would need pickled code
    pass


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnedge.cli", "export", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("kind", ["missing", "corrupt", "pickled-code"])
def test_bad_checkpoints_are_refused_with_one_line(kind, tmp_path):
    path = tmp_path / "model.pt"
    if kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif kind == "pickled-code":
        torch.save({"format": FORMAT, "version": 1, "config": Payload}, path)
    result = run_cli(str(path), "--out", str(tmp_path / "b"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    assert {"missing": "no such checkpoint", "corrupt": "corrupt", "pickled-code": "pickled code"}[kind] in lines[0]
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_cli_exports_on_hapt_test_subjects_and_prints_the_table(tiny, tmp_path):
    tiny.save(tmp_path / "model.pt")
    result = run_cli(str(tmp_path / "model.pt"), "--out", str(tmp_path / "b"), "--formats", "onnx")
    assert result.returncode == 0, result.stderr
    assert "test split of bundled HAPT" in result.stdout and "verified" in result.stdout
    assert (tmp_path / "b" / "manifest.json").is_file()
