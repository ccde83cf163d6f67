"""Fleet benchmark (not a test): BEDS beds x 50 Hz through the embedded Flink job: sustained rate, latency, recovery.

    .cache/venv-fleet/bin/python -m rnnedge.fleet.bench BUNDLE --beds 1000,2000,5000 --seconds 60 --out DIR \\
        [--levers [NAME,...]] [--kills 10 --kill-beds 200]

Input: a replayable, ordered message stream, as a Kafka topic feeds a production job: a heartbeat source (Flink's
DataGeneratorSource, HEARTBEAT_HZ, one reader, its position checkpointed) and a gateway operator (keyed state: the
next tick to send) that at each heartbeat sends every tick now due: each bed's message CHUNK_S of real bundled
samples, timestamps continuing; tick n is due at epoch + n x chunk, "sent" = that time; the epoch: when the first
job's gateway opened, kept for its restarts). Behind schedule (after a restore) it sends the backlog at once, as a
broker would. Nothing sleeps inside a Python bundle, so checkpoint barriers pass (a gateway that slept until each
tick was due held the barrier for the whole run: no checkpoint completed). A record is one block line per up to
BATCH beds (messages.encode_block: a ward gateway's tick, base64 float32), or with lever "JSON line per bed" a line
per bed's message (messages.encode). When the last tick is sent the gateway
writes a marker file; the bench then stops the job with a draining savepoint (end of event time: every bed writes
its summary, the sink commits). The job is the fleet's own (rnnedge.fleet.job.build), run as a subprocess in its own
process group (`python -m rnnedge.fleet.bench job SPEC`), so a SIGKILL takes the client, the JVM and the workers.
Reported per point, over the ticks after a warm-up:
  samples_per_s_done  messages whose events left the operator within the window, per second, x samples each;
  e2e_s               sent (the tick's time) -> events out; includes the gateway's own buffering (<= 1 / HEARTBEAT_HZ);
  in_job_s            parsed -> events out (the job's own latency);
  per core            stream-steps/s per core, in this process, at 1, 64, 1,000 and 5,000 beds: the runtime's Pool
                      and the monitor's ward on the same beds (rnnedge.monitor.bench).
Recovery (--kills K): K SIGKILLs at random moments of one run, each followed by a restart from the latest
checkpoint; per kill the seconds until caught up (the first message sent after the kill whose events came out within
LATENCY_TARGET_S of being sent), and over the whole run every bed's events against the monitor run in this process
on the same messages: alarms lost and duplicated (and any other difference).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from rnnedge.atomic import write_text_atomic
from rnnedge.monitor.bench import engine_vs_pool, machine, table

CHUNK_S = 0.5
RATE = 50.0
ATTACH = "upright"  # the beds stream the monitor's demo recording (sources.demo_signals), which starts standing
WARMUP_S = 10.0
STARTUP_S = 60.0  # at most this long from launching a job to its first tick (JVM + Python workers)
LATENCY_TARGET_S = 1.0
LATENCY_EVERY = 10  # a latency record per this many messages (each record is output work too)
DRAIN_S = 20.0  # after the last tick, the job's time to finish before it is stopped (and read as it stands)
KILL_GAP_S = (25.0, 40.0)  # recovery: seconds from a (re)launch to the next kill, uniform
BATCH = 1000  # beds per gateway record at most (lines: 0 is a record per message)
HEARTBEAT_HZ = 10.0  # the gateway looks at the clock this often: its buffering is <= 1 / HEARTBEAT_HZ
CATCH_UP_TICKS = 2  # ticks a heartbeat at most: up to 10 s of data per second (20x real time at 0.5 s ticks)
HEARTBEAT_SPARE_S = 3600.0  # heartbeats beyond the last tick (restarts take time): the job is stopped before


def gateway_rows() -> list[str]:
    """The bundled recording's samples as JSON arrays, one string per sample (what a gateway sends)."""
    from rnnedge.monitor.sources import demo_signals

    return [json.dumps(row) for row in demo_signals().astype(np.float64).tolist()]


def bed_name(bed: int) -> str:
    return f"bed-{bed:05d}"


def first_sample(bed: int, tick: int, chunk: int, samples: int) -> int:
    """Where bed `bed`'s samples of tick `tick` start in the recording: a place of its own."""
    return (tick * chunk + bed * 997) % (samples - chunk)


def message(rows: list[str], bed: int, tick: int, chunk: int, sent: float) -> str:
    """Bed `bed`'s message of tick `tick` as a JSON line."""
    start, first = tick * chunk, first_sample(bed, tick, chunk, len(rows))
    t = ",".join(repr(round((start + i) / RATE, 6)) for i in range(chunk))
    return f'{{"bed":"{bed_name(bed)}","t":[{t}],"x":[{",".join(rows[first:first + chunk])}],"sent":{sent!r}}}'


def block(signals: np.ndarray, beds: range, tick: int, chunk: int, sent: float) -> str:
    """Beds `beds`' messages of tick `tick` as one block line (what a ward's gateway sends)."""
    from rnnedge.fleet.messages import encode_block

    starts = [first_sample(bed, tick, chunk, len(signals)) for bed in beds]
    x = signals[np.asarray(starts)[:, None] + np.arange(chunk)]
    return encode_block([bed_name(bed) for bed in beds], x, t0=[tick * chunk / RATE] * len(beds), dt=1 / RATE,
                        sent=sent)


def run_job(spec: dict) -> None:
    """The job of one bench run (the `job` subcommand): heartbeats -> gateway -> the fleet job; SIGTERM stops it
    with a draining savepoint."""
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.connectors import Source
    from pyflink.datastream.state import ValueStateDescriptor
    from pyflink.java_gateway import get_gateway

    from rnnedge.fleet import cli, job
    from rnnedge.fleet.beds import MonitorSettings

    class Gateway(KeyedProcessFunction):
        def open(self, runtime_context) -> None:
            from rnnedge.monitor.sources import demo_signals

            self.rows, self.signals = gateway_rows(), demo_signals()
            epoch = Path(spec["epoch_file"])
            if not epoch.exists():  # the first job: the clock starts now; a restarted one keeps it
                write_text_atomic(epoch, repr(time.time()))
            self.epoch = float(epoch.read_text())
            self.next = runtime_context.get_state(ValueStateDescriptor("next-tick", Types.LONG()))

        def process_element(self, heartbeat: str, ctx):
            first = self.next.value() or 0
            # behind schedule (a restore, a slow start): the backlog at up to CATCH_UP_TICKS a heartbeat, as a
            # consumer reads a broker's backlog at its own pace (all of it in one call was seen to stall the job)
            last = min(spec["ticks"], int((time.time() - self.epoch) / spec["chunk_s"]) + 1, first + CATCH_UP_TICKS)
            if first >= last:
                return
            chunk = round(spec["chunk_s"] * RATE)
            for tick in range(first, last):
                sent, beds = self.epoch + tick * spec["chunk_s"], spec["beds"]
                if spec["lines"]:  # a JSON line per bed: in records of `batch` lines (0: a record per line)
                    lines = [message(self.rows, bed, tick, chunk, sent) for bed in range(beds)]
                    size = spec["batch"] or 1
                    for i in range(0, len(lines), size):
                        yield "\n".join(lines[i:i + size])
                else:  # a ward gateway: a block line per `batch` beds
                    for i in range(0, beds, spec["batch"]):
                        yield block(self.signals, range(i, min(beds, i + spec["batch"])), tick, chunk, sent)
            self.next.update(last)
            if last == spec["ticks"]:
                Path(spec["done_file"]).touch()

    config = job.FleetConfig(bundle=spec["bundle"], output=spec["output"], precision=spec["precision"],
                             monitor=MonitorSettings(attach=ATTACH), parallelism=spec["parallelism"],
                             checkpoint_dir=spec["checkpoints"], checkpoint_interval_s=spec["checkpoint_s"],
                             restore=spec.get("restore"), state_ttl_s=0, bundle_ms=spec["bundle_ms"],
                             bundle_size=spec.get("bundle_size"), latency=LATENCY_EVERY)
    os.makedirs(config.checkpoints, exist_ok=True)
    env = job.environment(config)
    jvm = get_gateway().jvm
    count = round(HEARTBEAT_HZ * (spec["ticks"] * spec["chunk_s"] + HEARTBEAT_SPARE_S))
    beat = jvm.java.util.Collections.nCopies(count, "")  # the generator looks its value up by index: no value
    info = Types.STRING().get_java_type_info()
    function = jvm.org.apache.flink.connector.datagen.functions.IndexLookupGeneratorFunction(info, beat)
    rate = jvm.org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy.perSecond(HEARTBEAT_HZ)
    heartbeats = Source(jvm.org.apache.flink.connector.datagen.source.DataGeneratorSource(function, count, rate, info))
    beats = env.from_source(heartbeats, WatermarkStrategy.no_watermarks(), "heartbeats").uid(job.UID["source"]) \
        .set_parallelism(1)
    lines = beats.key_by(lambda _: 0, key_type=Types.INT()) \
        .process(Gateway(), Types.STRING()).uid("bench-gateway").name("gateway").set_parallelism(1) \
        .slot_sharing_group(job.PARSE_SLOTS).disable_chaining()  # chained, a heartbeat's work (up to 2 ticks of
    # every bed, parsed) ran inside the parser's bundle, with many heartbeats in flight: at 5,000 beds no output
    # and no checkpoint for a minute
    job.build(env, lines, config)
    cli.wait(env.execute_async("fleet bench"), Path(spec["savepoints"]), drain=True)


def launch(spec: dict, work: Path) -> subprocess.Popen:
    path = work / f"spec-{time.time_ns()}.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(work / "job.log", "a") as log:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "rnnedge.fleet.bench", "job", str(path)], env=env,
                                start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def spec_for(bundle: str, work: Path, beds: int, seconds: float, options: dict) -> dict:
    return {"bundle": bundle, "output": str(work / "out"), "checkpoints": str(work / "checkpoints"), "beds": beds,
            "precision": options.get("precision", "int8"), "parallelism": options.get("parallelism", 2),
            "checkpoint_s": options.get("checkpoint_s", 10.0), "bundle_ms": options.get("bundle_ms", 100),
            "bundle_size": options.get("bundle_size"), "chunk_s": options.get("chunk_s", CHUNK_S),
            "ticks": round(seconds / options.get("chunk_s", CHUNK_S)), "epoch_file": str(work / "epoch"),
            "done_file": str(work / "all-ticks-sent"), "savepoints": str(work / "savepoints"),
            "batch": options.get("batch", BATCH), "lines": options.get("lines", False)}


def read_output(output: Path, pending: bool = False) -> list[dict]:
    """Committed events in the order they were written (part files by time, then a subtask's counter); with
    `pending`, also those of a stopped job's part files in progress (a benchmark's latency records)."""
    parts = sorted(output.rglob("events-*.jsonl"), key=lambda p: (p.stat().st_mtime_ns, int(p.stem.rsplit("-", 1)[1])))
    parts += list(output.rglob(".events-*inprogress*")) if pending else []
    return [json.loads(line) for part in parts for line in part.read_text(encoding="utf-8").splitlines()
            if line.endswith("}")]  # a stopped job's last line may be cut


def point(bundle: str, beds: int, seconds: float, work: Path, options: dict) -> dict:
    """One run: sustained rate and latency at `beds` beds."""
    work.mkdir(parents=True)
    spec = spec_for(bundle, work, beds, seconds, options)
    process = launch(spec, work)
    epoch = started(spec, process, work)
    stop(process, spec, epoch + seconds + DRAIN_S)
    stopped = time.time()
    latency = [r for r in read_output(work / "out", pending=True) if r["event"] == "latency"]
    start = epoch + WARMUP_S
    window = [r for r in latency if r["sent"] >= start]
    out = [r["sent"] + r["e2e_s"] for r in latency if r["sent"] + r["e2e_s"] >= start]
    samples = round(spec["chunk_s"] * RATE) * LATENCY_EVERY
    return {"beds": beds, "seconds": seconds, "options": options, "latency_records": len(latency),
            "samples_per_s_offered": round(beds * RATE),
            # messages whose events came out after the warm-up, per second of that time
            "samples_per_s_done": round(len(out) * samples / max(1e-9, max(out, default=start) - start)),
            "e2e_s": percentiles([r["e2e_s"] for r in window]),
            "in_job_s": percentiles([r["in_s"] for r in window]),
            "behind_at_stop_s": round(stopped - max((r["sent"] for r in latency), default=stopped), 1)}


def started(spec: dict, process: subprocess.Popen, work: Path) -> float:
    """The run's epoch (its gateway's first opening), once the first job has started."""
    deadline = time.time() + STARTUP_S
    while not Path(spec["epoch_file"]).exists():
        if time.time() > deadline or process.poll() is not None:
            raise RuntimeError(f"the bench job did not start: see {work / 'job.log'}")
        time.sleep(0.2)
    return float(Path(spec["epoch_file"]).read_text())


def stop(process: subprocess.Popen, spec: dict, until: float) -> bool:
    """Once the gateway has sent its last tick, stop the job with a draining savepoint (SIGTERM to its client);
    at `until`, or when the drain takes longer than DRAIN_S, kill it where it stands (a saturated run). True when
    it drained."""
    done = Path(spec["done_file"])
    while not done.exists() and time.time() < until and process.poll() is None:
        time.sleep(0.2)
    if done.exists() and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=DRAIN_S) == 0
        except subprocess.TimeoutExpired:
            pass
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return False


def percentiles(values: list[float]) -> dict | None:
    if not values:
        return None
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3)}


def recovery(bundle: str, beds: int, kills: int, work: Path, seed: int = 16) -> dict:
    """`kills` SIGKILLs at random moments of one run, each restarted from the latest checkpoint."""
    rng = random.Random(seed)
    gaps = [rng.uniform(KILL_GAP_S[0], KILL_GAP_S[1]) for _ in range(kills)]
    seconds = sum(gaps) + 60.0
    work.mkdir(parents=True)
    spec = spec_for(bundle, work, beds, seconds, {"checkpoint_s": 2.0})
    process, killed_at = launch(spec, work), []
    epoch = started(spec, process, work)
    for gap in gaps:  # from each (re)launch: some kills land while the job is still starting or catching up
        time.sleep(gap)
        os.killpg(process.pid, signal.SIGKILL)  # the client, the JVM and its Python workers: the whole job
        killed_at.append(time.time())
        process.wait()
        process = launch({**spec, "restore": "latest"}, work)
    if not stop(process, spec, epoch + seconds + 1800):
        raise RuntimeError(f"the bench job did not finish: see {work / 'job.log'}")
    records = read_output(work / "out")
    latency = [r for r in records if r["event"] == "latency"]
    caught = []
    for kill in killed_at:
        after = [r["sent"] + r["e2e_s"] for r in latency if r["sent"] > kill and r["e2e_s"] <= LATENCY_TARGET_S]
        caught.append(round(min(after) - kill, 1) if after else None)
    got: dict[str, list[dict]] = {}
    for r in records:
        if r["event"] != "latency":
            got.setdefault(r.pop("bed"), []).append(r)
    expected, alone_differ = reference(bundle, spec)
    alarms = lambda per_bed: Counter((bed, r["id"]) for bed, rs in per_bed.items()  # noqa: E731
                                     for r in rs if r["event"].startswith("alarm"))
    want, have = alarms(expected), alarms(got)
    return {"beds": beds, "kills": kills, "seconds": round(seconds), "checkpoint_s": spec["checkpoint_s"],
            "kill_to_caught_up_s": caught, "alarm_events_expected": sum(want.values()),
            "alarm_events_lost": sum((want - have).values()), "alarm_events_duplicated": sum((have - want).values()),
            "beds_with_any_other_difference": sum(got.get(bed) != events for bed, events in expected.items()),
            "beds_checked_alone": alone_differ[0], "beds_alone_differ": alone_differ[1]}


def reference(bundle: str, spec: dict, alone_every: int = 10) -> tuple[dict[str, list[dict]], tuple[int, int]]:
    """Every bed's events from the monitor in this process (one ward of all the beds), on the samples the job was
    sent, as the job writes them; and how many of the beds checked against a `Monitor` on that bed alone (every
    `alone_every`-th): (checked, differing)."""
    import rnnedge.runtime as rt
    from rnnedge.monitor import Monitor
    from rnnedge.monitor.monitor import json_line
    from rnnedge.monitor.sources import demo_signals
    from rnnedge.monitor.ward import Ward, stream_beds

    model = rt.load(bundle, backend="onnxruntime", precision=spec["precision"])
    signals, chunk = demo_signals(), round(spec["chunk_s"] * RATE)
    ward = Ward(model, attach=ATTACH, replay=False, capacity=spec["beds"])
    feeds = {bed_name(bed): [(signals[first_sample(bed, tick, chunk, len(signals)):][:chunk],
                              tick * chunk / RATE + np.arange(chunk) * (1 / RATE)) for tick in range(spec["ticks"])]
             for bed in range(spec["beds"])}
    records = stream_beds(ward, feeds)
    out = {bed: [json.loads(json_line(r)) for r in found + [ward.summary(bed)]] for bed, found in records.items()}
    differ, checked = 0, list(feeds)[::alone_every]
    for bed in checked:
        monitor = Monitor(model, attach=ATTACH, replay=False)
        alone = [r for values, times in feeds[bed] for r in monitor.feed_chunk(values, times)]
        alone += list(monitor.run([]))
        differ += [json.loads(json_line(r)) for r in alone] != out[bed]
    return out, (len(checked), differ)


LEVERS = {"JSON line per bed": {"lines": True}, "one element per message": {"lines": True, "batch": 0},
          "blocks of 5000 beds": {"batch": 5000}, "blocks of 100 beds": {"batch": 100},
          "parallelism 1": {"parallelism": 1}, "message chunk 1 s": {"chunk_s": 1.0},
          "bundle.time 500 ms": {"bundle_ms": 500}, "bundle.size 100": {"bundle_size": 100},
          "checkpoint every 2 s": {"checkpoint_s": 2.0}}


def markdown(result: dict, command: str) -> str:
    """The run as Markdown (machine and date on top): the points, the levers, the engine per core, the recovery."""
    loads = result["machine"]
    load = [round(v, 1) for v in loads.get("load_before", [])[:1] + loads.get("load_after", [])[:1]]
    lines = [f"- machine: {machine()} (load before / after: {load})",
             f"- date: {result['date']}; reproduce: `{command}`", "",
             "| run | offered samples/s | sustained samples/s | latency in job p50 / p99 (s) | e2e p99 (s) |",
             "|---|---:|---:|---:|---:|"]
    runs = [(f"{p['beds']:,} beds", p) for p in result["points"]] + list(result["levers"].items())
    for name, p in runs:
        job, e2e = p["in_job_s"] or {}, p["e2e_s"] or {}
        lines.append(f"| {name} | {p['samples_per_s_offered']:,} | {p['samples_per_s_done']:,} | "
                     f"{job.get('p50', '-')} / {job.get('p99', '-')} | {e2e.get('p99', '-')} |")
    if result.get("in_process"):
        lines += ["", "Per core in this process, the same run (rnnedge.monitor.bench):", "",
                  table(result["in_process"])]
    if result.get("recovery"):
        r = result["recovery"]
        lines += ["", f"Recovery: {r['kills']} SIGKILLs of the whole job, {r['beds']} beds, checkpoints every "
                  f"{r['checkpoint_s']:g} s, {r['seconds']} s: caught up {r['kill_to_caught_up_s']} s after each; "
                  f"{r['alarm_events_expected']:,} alarm events expected, {r['alarm_events_lost']} lost, "
                  f"{r['alarm_events_duplicated']} duplicated, {r['beds_with_any_other_difference']} beds with any "
                  "other difference from the ward in process" + (
                      f"; {r['beds_checked_alone']} beds checked against `Monitor` alone, {r['beds_alone_differ']} "
                      "differ" if "beds_checked_alone" in r else "") + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:2] == ["job"]:
        run_job(json.loads(Path(sys.argv[2]).read_text()))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--beds", default="1000,2000,5000")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--levers", nargs="?", const=",".join(LEVERS), default="",
                        help="also these levers (default: all), each alone at the first bed count")
    parser.add_argument("--kills", type=int, default=0, help="recovery: SIGKILLs at random moments of one run")
    parser.add_argument("--kill-beds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("artifacts/fleet-bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": {"cores": os.cpu_count(),
                                                                  "load_before": os.getloadavg()},
              "in_process": engine_vs_pool(args.bundle, args.precision), "points": [], "levers": {}}
    print(table(result["in_process"]), flush=True)
    counts = [int(n) for n in args.beds.split(",") if n]
    runs = [(f"{n} beds", n, {"precision": args.precision}) for n in counts]
    if args.levers and counts:
        runs += [(name, counts[0], {"precision": args.precision, **LEVERS[name]}) for name in args.levers.split(",")]
    for name, beds, options in runs:
        found = point(args.bundle, beds, args.seconds, args.out / f"work-{stamp}" / name.replace(" ", "-"), options)
        found["load_after"] = os.getloadavg()
        if name.endswith(" beds"):
            result["points"].append(found)
        else:
            result["levers"][name] = found
        print(name, json.dumps(found), flush=True)
        write_text_atomic(args.out / f"bench-{stamp}.json", json.dumps(result, indent=2) + "\n")
    if args.kills:
        result["recovery"] = recovery(args.bundle, args.kill_beds, args.kills, args.out / f"work-{stamp}" / "kills")
        print(json.dumps(result["recovery"]), flush=True)
    result["machine"]["load_after"] = os.getloadavg()
    write_text_atomic(args.out / f"bench-{stamp}.json", json.dumps(result, indent=2) + "\n")
    command = "python -m rnnedge.fleet.bench " + " ".join(sys.argv[1:])
    write_text_atomic(args.out / "fleet.md", markdown(result, command))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
