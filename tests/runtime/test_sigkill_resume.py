"""A streaming process killed with SIGKILL at any moment (here: while it snapshots after every step) resumes
from its last snapshot, and what it computes from there equals an uninterrupted run, bit for bit."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest

import rnnedge.runtime as rt

WORKER = """
import sys
from pathlib import Path
import numpy as np
import rnnedge.runtime as rt

bundle, data, snap, out = sys.argv[1:5]
x = np.load(data)
stream = rt.load(bundle).stream(resume=snap if Path(snap).exists() else None)
start = stream.steps
outputs = []
for sample in x[start:]:
    outputs.append(stream.step(sample))
    stream.save(snap)
    print(stream.steps, flush=True)
np.save(out, np.stack(outputs))
print("start", start, flush=True)
"""


def _run_until(args: list[str], steps: int | None) -> str:
    """Run the worker; SIGKILL it once it reports `steps` (None: let it finish). Returns its last line."""
    worker = subprocess.Popen([sys.executable, "-c", WORKER, *args], stdout=subprocess.PIPE, text=True)
    line = ""
    for line in worker.stdout:
        if steps is not None and line.strip().isdigit() and int(line) >= steps:
            worker.send_signal(signal.SIGKILL)
            break
    worker.wait(timeout=60)
    if steps is not None:
        assert worker.returncode == -signal.SIGKILL
    return line.strip()


@pytest.mark.slow
def test_killed_stream_resumes_exactly(bundle, signals, tmp_path):
    x = signals[:400]
    np.save(tmp_path / "x.npy", x)
    args = [str(bundle), str(tmp_path / "x.npy"), str(tmp_path / "state.snap"), str(tmp_path / "out.npy")]
    for kill_at in (60, 190, 300):  # killed three times, each time resumed from its own snapshot
        _run_until(args, kill_at)
        assert rt.load(bundle).stream(resume=tmp_path / "state.snap").steps >= kill_at
    last = _run_until(args, None)
    start = int(last.split()[1])
    assert start >= 300
    uninterrupted = rt.load(bundle).stream()
    expected = np.stack([uninterrupted.step(sample) for sample in x])
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected[start:])
