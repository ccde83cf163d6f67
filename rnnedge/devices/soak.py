"""Soak: stream a bundle for many steps per backend and report resident memory before and after (a leak shows as
growth; a streaming process must stay flat). Each backend runs in its own fresh process.

    python -m rnnedge.devices.soak BUNDLE [--steps 1000000] [--out soak.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from rnnedge.atomic import write_text_atomic

_CHILD = """
import sys, time
import numpy as np
import rnnedge.runtime as rt

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

bundle, backend, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = rt.load(bundle, backend=backend)
stream = model.stream()
rng = np.random.default_rng(0)
samples = (model.mean + rng.normal(0, 0.3, (1000, model.channels))).astype(np.float32)
for sample in samples:  # warm up: first calls allocate the engine's buffers
    stream.step(sample)
before, start = rss_kb(), time.perf_counter()
for i in range(steps):
    stream.step(samples[i % 1000])
    if i % 100_000 == 99_999:
        stream.reset()  # a new patient now and then, as on a ward
print(before, rss_kb(), time.perf_counter() - start)
"""


def soak(bundle: Path, backend: str, steps: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(bundle), backend, str(steps)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: soak on {backend}: {last}")
    before_kb, after_kb, seconds = done.stdout.split()
    return {"backend": backend, "steps": steps, "rss_before_mb": int(before_kb) / 1024,
            "rss_after_mb": int(after_kb) / 1024, "growth_mb": (int(after_kb) - int(before_kb)) / 1024,
            "seconds": float(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--backends", default="onnxruntime,litert")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [soak(args.bundle, backend, args.steps) for backend in args.backends.split(",")]
    for row in rows:
        print(f"{row['backend']}: {row['steps']:,} steps in {row['seconds']:.0f} s, RSS {row['rss_before_mb']:.1f} -> "
              f"{row['rss_after_mb']:.1f} MB (growth {row['growth_mb']:+.2f} MB)")
    if args.out:
        write_text_atomic(args.out, json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows},
                                               indent=2) + "\n")


if __name__ == "__main__":
    main()
