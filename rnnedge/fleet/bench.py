"""Fleet benchmark (not a test): BEDS beds x 50 Hz through the embedded Flink job, sustained, with latency.

    .cache/venv-fleet/bin/python -m rnnedge.fleet.bench BUNDLE --beds 100,1000 --seconds 40 --out DIR

Per point, a gateway thread writes one file every 0.5 s into a watched folder: one message per bed (0.5 s of
real bundled samples, timestamps continuing, "sent" = its wall clock). The job runs with latency records on (one
per message, when the operator has emitted its events). Reported, over the messages after a warm-up:
  sustained   messages processed / messages sent, and samples/s processed;
  latency     e2e (gateway wrote the file -> the message's events left the operator; includes the folder watch
              interval) and in-job (parsed after the source -> events out), p50/p99/max;
  per core    samples (stream-steps) per second per core of the machine, beside the runtime's in-process Pool
              (one batched backend call per tick) and an in-process Monitor per bed, measured in the same run.
Latency records after the last checkpoint are not committed when the job is cancelled: the window ends there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

CHUNK_S = 0.5
WARMUP_S = 10.0


def gateway(folder: Path, beds: int, signals: np.ndarray, rate: float, seconds: float, stop: threading.Event,
            sent: list[int]) -> None:
    from rnnedge.fleet.messages import encode

    chunk, n = round(CHUNK_S * rate), 0
    start = time.time()
    while not stop.is_set() and n * CHUNK_S < seconds:
        wait = start + n * CHUNK_S - time.time()
        if wait > 0:
            time.sleep(wait)
        now = time.time()
        lines = []
        for bed in range(beds):
            first = (n * chunk + bed * 997) % (len(signals) - chunk)
            t = (n * chunk + np.arange(chunk)) / rate
            lines.append(encode(f"bed-{bed:05d}", signals[first:first + chunk], t, sent=now))
        tmp = folder / f".tick-{n:06d}.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.rename(folder / f"tick-{n:06d}.jsonl")  # the source lists only complete files
        sent[0] += beds
        n += 1


def point(bundle: str, beds: int, seconds: float, work: Path, parallelism: int, precision: str) -> dict:
    from rnnedge.fleet.beds import MonitorSettings
    from rnnedge.fleet.job import FleetConfig, run
    from rnnedge.monitor.sources import demo_signals

    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    signals = demo_signals()
    config = FleetConfig(bundle=bundle, output=str(work / "out"), precision=precision,
                         monitor=MonitorSettings(), parallelism=parallelism, checkpoint_interval_s=5.0,
                         latency=True, state_ttl_s=0)
    started = time.time()
    client = run(config, inputs=[str(work / "in")], monitor_s=0.1, job_name=f"fleet bench {beds} beds")
    stop, sent = threading.Event(), [0]
    writer = threading.Thread(target=gateway, args=(work / "in", beds, signals, 50.0, seconds, stop, sent))
    writer.start()
    writer.join()
    time.sleep(6.0)  # one more checkpoint commits what was processed
    client.cancel().result()
    records = [json.loads(line) for part in (work / "out").glob("events-*.jsonl")
               for line in part.read_text().splitlines()]
    # the steady window: messages sent after the warm-up, until the last checkpoint before the cancel
    steady = [r for r in records if r["event"] == "latency" and r["sent"] >= started + WARMUP_S]
    last = max((r["sent"] for r in steady), default=started)
    offered = beds * max(0.0, last - started - WARMUP_S) / CHUNK_S
    e2e, inside = np.array([r["e2e_s"] for r in steady]), np.array([r["in_s"] for r in steady])
    return {"beds": beds, "seconds": seconds, "parallelism": parallelism, "messages_sent": sent[0],
            "steady_messages_done": len(steady), "steady_messages_offered": round(offered),
            "samples_per_s_offered": beds * 50,
            "samples_per_s_done": round(len(steady) * CHUNK_S * 50 / max(1e-9, last - started - WARMUP_S)),
            "e2e_s": percentiles(e2e), "in_job_s": percentiles(inside),
            "wall_s": round(time.time() - started, 1)}


def percentiles(a: np.ndarray) -> dict | None:
    if not len(a):
        return None
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3)}


def in_process(bundle: str, precision: str, beds: int = 1024, steps: int = 200) -> dict:
    """Stream-steps/s on one core: the runtime's Pool (batched) and a Monitor per bed (what the operator runs)."""
    import rnnedge.runtime as rt
    from rnnedge.monitor import Monitor
    from rnnedge.monitor.sources import demo_signals

    model = rt.load(bundle, precision=precision)
    signals = demo_signals()
    pool = model.pool(capacity=beds)
    for i in range(beds):
        pool.add(i)
    t = time.process_time()
    for k in range(steps):
        pool.step_array(signals[k:k + beds] if k + beds <= len(signals) else signals[:beds])
    pool_rate = beds * steps / (time.process_time() - t)
    monitors = [Monitor(model) for _ in range(64)]
    t = time.process_time()
    for k in range(steps):
        for i, monitor in enumerate(monitors):
            monitor.push(signals[k + i], k / 50)
    return {"pool_steps_per_s_per_core": round(pool_rate), "pool_streams": beds,
            "monitor_steps_per_s_per_core": round(64 * steps / (time.process_time() - t))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--beds", default="100,1000")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", type=Path, default=Path("artifacts/fleet-bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()},
              "in_process": in_process(args.bundle, args.precision), "points": []}
    for beds in map(int, args.beds.split(",")):
        result["points"].append(point(args.bundle, beds, args.seconds, args.out / f"work-{beds}", args.parallelism,
                                      args.precision))
        shutil.rmtree(args.out / f"work-{beds}", ignore_errors=True)
        print(json.dumps(result["points"][-1]), flush=True)
    for p in result["points"]:
        p["samples_per_s_done_per_core"] = round(p["samples_per_s_done"] / os.cpu_count())
    result["machine"]["load_after"] = os.getloadavg()
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
