"""The monitor's engine against the bare runtime, per core (`make bench`; the fleet benchmark reports it too):

    python -m rnnedge.monitor.bench BUNDLE --out artifacts/bench     # ward.json, ward.md

At each number of beds (1, 64, 1,000, 5,000), in one process and one run, stream-steps per second of process time
(one core): the runtime's `Pool` alone (one batched call per step: the floor the monitor adds to), and the ward
(rnnedge/monitor/ward.py: the whole monitor step for every bed, a message of CHUNK_S of real samples per bed per
call, timestamped), alone and with every bed's state captured as bytes after each call (what the Flink operator
writes to keyed state). Each bed streams the bundled demo recording from a place of its own, attached upright.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

import rnnedge.runtime as rt
from rnnedge.atomic import write_text_atomic
from rnnedge.devices.info import detect_machine
from rnnedge.monitor.monitor import encode_state
from rnnedge.monitor.sources import demo_signals
from rnnedge.monitor.ward import Ward

CHUNK_S = 0.5
SIZES = (1, 64, 1000, 5000)


def engine_vs_pool(bundle: str | Path, precision: str = "int8", sizes: tuple[int, ...] = SIZES,
                   seconds: float = 4.0) -> list[dict]:
    """One row per number of beds (see the module docstring); about `seconds` of work per measurement."""
    logging.getLogger("rnnedge.monitor").setLevel(logging.ERROR)  # a calibration event per bed otherwise
    model = rt.load(bundle, backend="onnxruntime", precision=precision)
    signals, rate = demo_signals(), model.manifest.input.sample_rate_hz
    chunk, rows = round(CHUNK_S * rate), []
    for beds in sizes:
        calls = max(4, round(seconds / (chunk * (beds * 4e-6 + 1.5e-4))))  # ~`seconds` on this kind of box
        starts = (np.arange(beds) * 997) % (len(signals) - chunk)
        x = [signals[(starts + k * chunk)[:, None] % (len(signals) - chunk) + np.arange(chunk)] for k in range(calls)]
        pool = model.pool(capacity=beds)
        for bed in range(beds):
            pool.add(bed)
        t = time.process_time()
        for k in range(calls):
            for j in range(chunk):
                pool.step_array(x[k][:, j])
        row = {"beds": beds, "pool": beds * calls * chunk / (time.process_time() - t)}
        for name, capture in (("ward", False), ("ward_with_state", True)):
            ward = Ward(model, attach="upright", replay=False, capacity=beds)
            for bed in range(beds):
                ward.add(bed)
            t = time.process_time()
            for k in range(calls):
                ward.feed({bed: (x[k][bed], (k * chunk + np.arange(chunk)) / rate) for bed in range(beds)})
                if capture:
                    for bed in range(beds):
                        encode_state(ward, bed)
            row[name] = beds * calls * chunk / (time.process_time() - t)
        row["ward_share"] = row["ward"] / row["pool"]
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| beds | Pool alone, steps/s | monitor (ward), steps/s | ward / Pool (>= 50 % at 1,000) | "
             "ward + state bytes per bed, steps/s |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['beds']:,} | {r['pool']:,.0f} | {r['ward']:,.0f} | {r['ward_share']:.0%} | "
              f"{r['ward_with_state']:,.0f} |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    """The CPU and its cores, as `rnnedge devices` reads them."""
    found = detect_machine()
    return f"{found.cpu_model}, {found.cores} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench"))
    args = parser.parse_args()
    rows = engine_vs_pool(args.bundle, args.precision)
    args.out.mkdir(parents=True, exist_ok=True)
    header = [f"- machine: {machine()}; one core per measurement (process time)",
              f"- date: {time.strftime('%Y-%m-%d %H:%M')}; bundle {args.bundle}, {args.precision} ONNX Runtime",
              f"- reproduce: `python -m rnnedge.monitor.bench {args.bundle} --out {args.out}` (make bench)"]
    write_text_atomic(args.out / "ward.json", json.dumps({"rows": rows, "header": header}, indent=2) + "\n")
    write_text_atomic(args.out / "ward.md", "\n".join([*header, "", table(rows)]) + "\n")
    print("\n".join([*header, "", table(rows)]))


if __name__ == "__main__":
    main()
