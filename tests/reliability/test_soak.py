"""A short soak: 20,000 steps per backend, with snapshots, held glitches and pool ticks along the way, must not
grow the process's resident memory (the audit's 1M-step soak found it flat; this keeps it so, cheaply)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SOAK = """
import sys, numpy as np, rnnedge.runtime as rt
def rss():
    return next(int(n.split()[1]) for n in open('/proc/self/status') if n.startswith('VmRSS')) / 1024
bundle, backend, snap = sys.argv[1:4]
model = rt.load(bundle, backend=backend)
stream, pool = model.stream(nan_policy='hold'), model.pool(capacity=8, nan_policy='hold', max_pending=16)
for i in range(8):
    pool.add(i)
x = np.random.default_rng(0).normal(0, 0.5, (1000, model.channels)).astype(np.float32)
def run(steps):
    for t in range(steps):
        sample = x[t % 1000]
        if t % 997 == 0:
            sample = np.full(model.channels, 1e30, np.float32)
        stream.step(sample)
        pool.submit(t % 8, x[t % 1000])
        if t % 8 == 7:
            pool.tick()
        if t % 1000 == 0:
            stream.save(snap)
            stream.feed(x[:50])
run(2000)
before = rss()
run(20000)
print(rss() - before)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_twenty_thousand_steps_do_not_grow_memory(small_bundle, tmp_path, backend):
    result = subprocess.run([sys.executable, "-c", SOAK, str(small_bundle), backend, str(tmp_path / "s.snap")],
                            capture_output=True, text=True, check=True)
    growth_mb = float(result.stdout.split()[-1])
    assert growth_mb < 1.0, f"{backend}: resident memory grew {growth_mb:.2f} MB over 20,000 steps"
