"""Every option with a fixed set of values refuses another with the list of the values the code accepts, and
`--help` shows that list (from the same registries the code uses: rnnedge/choices.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnnedge.bundle import Precision
from rnnedge.runtime.model import BACKENDS

CASES = [
    (["evaluate", "b", "--backend", "foo"], ["'onnxruntime'", "'litert'"]),
    (["monitor", "b", "--input", "-", "--backend", "foo"], [f"'{b}'" for b in BACKENDS]),
    (["monitor", "b", "--input", "-", "--precision", "int4"], [f"'{p}'" for p in Precision.__args__]),
    (["monitor", "b", "--input", "-", "--attach", "sideways"], ["'lying'", "'upright'"]),
    (["evaluate-alarms", "b", "--attach", "sideways"], ["'lying'", "'upright'"]),
    (["evaluate-alarms", "b", "--backend", "foo"], ["'tflm'"]),
]


@pytest.mark.parametrize(("args", "listed"), CASES, ids=[" ".join(a[::2]) for a, _ in CASES])
def test_an_unknown_value_is_refused_with_the_choices(args, listed):
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", *args], capture_output=True, text=True, timeout=60,
                          env={"COLUMNS": "300", "PATH": ""})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "is not one of" in done.stderr and all(value in done.stderr for value in listed), done.stderr


def test_help_lists_what_the_code_accepts():
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "monitor", "--help"], capture_output=True, text=True,
                          timeout=60, env={"COLUMNS": "300", "PATH": ""})
    assert done.returncode == 0
    assert "|".join(BACKENDS) in done.stdout and "a16w8" in done.stdout and "lying|upright" in done.stdout
