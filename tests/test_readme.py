"""The README's Python blocks run as written (README.md: every ```python block, in order, in one fresh process),
against a real bundle where the README says artifacts/bundle. A snippet that does not run fails here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitor.conftest import export

ROOT = Path(__file__).parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    export(folder / "artifacts" / "bundle", "onnx")  # the default model, fp32 ONNX, a short held-out set
    return folder


def test_the_readme_python_blocks_run(workdir):
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "README.md has no python block"
    done = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=workdir, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    labels = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING", "STAND_TO_SIT",
              "SIT_TO_STAND", "SIT_TO_LIE", "LIE_TO_SIT", "STAND_TO_LIE", "LIE_TO_STAND"]
    assert done.stdout.strip().splitlines()[-1] in labels
    assert (workdir / "state.snap").is_file()
    shutil.rmtree(workdir / "artifacts")
