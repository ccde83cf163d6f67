"""The fleet on real Flink (embedded mini-cluster, the fleet environment's `rnnedge fleet`): beds interleaved give
each bed's `rnnedge monitor` events; a SIGKILL mid-stream restored from the latest checkpoint, and a savepoint
taken at parallelism 1 restored at 2, give the same events, none lost or duplicated (the file sink is
exactly-once); a restore with another model is refused.

BEDS beds x (ATTACH + SAMPLES) samples (20 s standing at attach, then 20 s around a real get-up; every 4th bed with
sample faults), plus bad messages.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rnnedge.digest import sha256_file
from rnnedge.monitor import Monitor
from rnnedge.monitor.sources import csv_rows
from tests.edits import write_manifest_json
from tests.fleet.conftest import (
    bed_signals,
    comparable,
    fleet,
    message_lines,
    monitors_alone,
    read_events,
    with_faults,
)
from tests.monitor.conftest import CHANNELS

pytestmark = pytest.mark.slow
BEDS = int(os.environ.get("RNNEDGE_FLEET_TEST_BEDS", "48"))
SAMPLES = 1000
BAD_LINES = ["garbage", '{"x": [[1, 2, 3, 4, 5, 6]]}', '{"bed": "bed-000", "x": "no"}']
RUN_S = 300  # one job's wall-clock limit


def make_beds(model, folder: Path, count: int) -> tuple[Path, dict[str, list[dict]]]:
    """(the input file, the expected events per bed: `rnnedge monitor` on each bed alone)."""
    rows = [with_faults(bed, signals) for bed, signals in enumerate(bed_signals(count, SAMPLES))]
    lines = message_lines(rows)
    lines[len(lines) // 2:len(lines) // 2] = BAD_LINES
    path = folder / "messages.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = {f"bed-{bed:03d}": [comparable(r) for r in records]
                for bed, records in enumerate(monitors_alone(model, rows))}
    return path, expected


@pytest.fixture(scope="module")
def beds(model, tmp_path_factory):
    return make_beds(model, tmp_path_factory.mktemp("fleet-input"), BEDS)


def finish(process, timeout: float = RUN_S) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out, err


def check_events(output: Path, expected: dict[str, list[dict]]) -> None:
    events = read_events(output)
    bad = [r for rs in events.values() for r in rs if r["event"] == "bad_message"]
    events = {bed: [r for r in rs if r["event"] != "bad_message"] for bed, rs in events.items() if bed is not None}
    assert sorted(r["detail"].split(" (")[0] for r in bad) == ["'bed' must be a non-empty string of at most 200 "
                                                              "characters", "'x' must be a non-empty list of "
                                                              "samples", "not JSON"]
    assert sorted(events) == sorted(expected)
    for bed, records in events.items():
        assert [comparable(r) for r in records] == expected[bed], bed
    starts = sum(r["event"] == "alarm_start" for rs in events.values() for r in rs)
    assert starts >= len(expected)  # every bed has its get-up alarm


def wait_for_checkpoint(folder: Path, process, timeout: float = RUN_S) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = list(folder.glob("*/chk-*/_metadata"))
        if done:
            return done[0].parent
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.2)
    raise AssertionError("no checkpoint completed")


def test_interleaved_beds_equal_the_monitor_on_each_bed_alone(fleet_bin, bundle, model, tmp_path):
    """200 beds (the references: one ward of them all, every 25th bed also alone)."""
    messages, expected = make_beds(model, tmp_path, 200)
    finish(fleet(fleet_bin, bundle, "--input", messages, "--output", tmp_path / "out", "--precision", "fp32",
                 "--parallelism", 2, "--checkpoint-every", 2))
    check_events(tmp_path / "out", expected)


def test_batched_records_equal_the_monitor_on_each_bed_alone(fleet_bin, bundle, model, tmp_path):
    """Records that carry several messages, one per line (a gateway's batch, as a Kafka record would), bad lines
    among them: the job groups them by shard, and every bed's events are still `rnnedge monitor`'s."""
    messages, expected = make_beds(model, tmp_path, 20)
    lines = messages.read_text(encoding="utf-8").splitlines()
    records = ["\n".join(lines[i:i + 7]) for i in range(0, len(lines), 7)]
    (tmp_path / "records.json").write_text(json.dumps(records))
    script = ("import json, sys; from rnnedge.fleet import job; from rnnedge.fleet.beds import MonitorSettings; "
              "config = job.FleetConfig(bundle=sys.argv[1], output=sys.argv[2], precision='fp32', "
              "checkpoint_interval_s=1.0, monitor=MonitorSettings(attach='upright')); "
              "client = job.run(config, collection=json.load(open(sys.argv[3]))); "
              "client.get_job_execution_result().result()")
    process = subprocess.run([str(fleet_bin.parent / "python"), "-c", script, str(bundle), str(tmp_path / "out"),
                              str(tmp_path / "records.json")], env={**os.environ, "OMP_NUM_THREADS": "1"},
                             capture_output=True, text=True, timeout=RUN_S)
    assert process.returncode == 0, process.stderr[-3000:]
    check_events(tmp_path / "out", expected)


def test_sigkill_mid_stream_then_restore_loses_and_duplicates_nothing(fleet_bin, bundle, beds, tmp_path):
    messages, expected = beds
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    args = [bundle, "--input", messages, "--output", out, "--precision", "fp32", "--parallelism", 2,
            "--checkpoint-every", 1, "--checkpoints", checkpoints]
    first = fleet(fleet_bin, *args)
    wait_for_checkpoint(checkpoints, first)
    time.sleep(1.5)  # past the first checkpoint: some events committed, some in flight
    os.killpg(first.pid, signal.SIGKILL)  # the client, the JVM and its Python workers: the whole job
    first.communicate()
    partial = read_events(out)
    assert sum(r["event"] == "summary" for rs in partial.values() for r in rs) < BEDS, "killed after the end"
    finish(fleet(fleet_bin, *args, "--restore", "latest"))
    check_events(out, expected)


@pytest.fixture(scope="module")
def savepoint(fleet_bin, bundle, beds, tmp_path_factory):
    """A savepoint taken mid-stream at parallelism 1 (SIGTERM to `rnnedge fleet --savepoint-dir`), and its output."""
    messages, _ = beds
    work = tmp_path_factory.mktemp("fleet-savepoint")
    process = fleet(fleet_bin, bundle, "--input", messages, "--output", work / "out", "--precision", "fp32",
                    "--parallelism", 1, "--checkpoint-every", 1, "--checkpoints", work / "checkpoints",
                    "--savepoint-dir", work / "savepoints")
    wait_for_checkpoint(work / "checkpoints", process)
    process.send_signal(signal.SIGTERM)
    out, err = finish(process)
    path = out.strip().splitlines()[-1]
    assert path.startswith("file:") and "savepoint" in path, err[-2000:]
    return path.removeprefix("file:"), work / "out"


def test_savepoint_at_parallelism_1_restored_at_2(fleet_bin, bundle, beds, savepoint):
    messages, expected = beds
    path, out = savepoint
    partial = read_events(out)
    assert sum(r["event"] == "summary" for rs in partial.values() for r in rs) < BEDS, "stopped after the end"
    finish(fleet(fleet_bin, bundle, "--input", messages, "--output", out, "--precision", "fp32",
                 "--parallelism", 2, "--checkpoint-every", 2, "--restore", path))
    check_events(out, expected)


def test_restore_with_another_model_is_refused(fleet_bin, bundle, beds, savepoint, tmp_path):
    import onnx

    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    entry = manifest["files"][0]
    graph = onnx.load(other / entry["path"])
    graph.doc_string = "another model"  # other bytes, other sha256: to the fleet, another model
    onnx.save(graph, other / entry["path"])
    entry["sha256"], entry["size_bytes"] = sha256_file(other / entry["path"]), (other / entry["path"]).stat().st_size
    write_manifest_json(other, manifest)
    process = fleet(fleet_bin, other, "--input", beds[0], "--output", tmp_path / "out", "--precision", "fp32",
                    "--parallelism", 1, "--restore", savepoint[0])
    _, err = process.communicate(timeout=RUN_S)
    assert process.returncode == 2, err[-3000:]
    assert "the checkpoint/savepoint holds state of another model" in err.strip().splitlines()[-1]


def test_a_folder_once_with_allowed_beds_and_scores(fleet_bin, bundle, model, tmp_path):
    """A gateway's folder of message files read once (--once), only the listed beds (--beds: another bed's
    messages are bad messages, never fed), and the score every second (--report-every): every allowed bed's events
    are `rnnedge monitor --report-every 1` on that bed alone."""
    rows = [with_faults(bed, signals) for bed, signals in enumerate(bed_signals(3, 1500))]
    folder = tmp_path / "in"
    folder.mkdir()
    # a file per gateway, each with its own beds: files are read in parallel, so one bed's messages stay in one file
    (folder / "a.jsonl").write_text("\n".join(message_lines([rows[0], [], rows[2]])) + "\n", encoding="utf-8")
    (folder / "b.jsonl").write_text("\n".join(message_lines([[], rows[1]])) + "\n", encoding="utf-8")
    (tmp_path / "beds.txt").write_text("bed-000\nbed-001\n")
    finish(fleet(fleet_bin, bundle, "--input", folder, "--once", "--beds", tmp_path / "beds.txt", "--report-every", 1,
                 "--output", tmp_path / "out", "--precision", "fp32", "--checkpoint-every", 2))
    events = read_events(tmp_path / "out")
    assert sorted(events) == ["bed-000", "bed-001", "bed-002"]
    bad = events.pop("bed-002")  # read_events keys records by their bed
    assert bad and all(r["event"] == "bad_message" and r["detail"] == "unknown bed (not in the allowed list)"
                       for r in bad)
    for bed in ("bed-000", "bed-001"):
        lines_csv = [",".join(["t", *CHANNELS])] + [",".join([repr(t), *map(repr, x)]) for t, x in rows[int(bed[-1])]]
        alone = Monitor(model, attach="upright", report_every_s=1.0).run(csv_rows(lines_csv, CHANNELS))
        expected = [comparable(json.loads(json.dumps(r))) for r in alone]
        assert [comparable(r) for r in events[bed]] == expected, bed
        assert any(r["event"] == "probability" for r in events[bed])


def test_a_bed_silent_longer_than_the_state_ttl_starts_afresh(fleet_bin, bundle, tmp_path):
    """--state-ttl: a bed whose messages stop for longer than the TTL loses its state (a new monitor: it calibrates
    again); a bed that keeps talking keeps it. A watched folder that gateways add files to, then SIGTERM with a
    savepoint (which commits the output)."""
    rows = [with_faults(0, signals) for signals in bed_signals(2, 2000)]
    first, second = [r[:1000] for r in rows], [r[1000:] for r in rows]
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()

    def add(name: str, lines: list[str]) -> None:  # as a gateway does: a temporary name, then a rename
        (folder / f".{name}.tmp").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / f".{name}.tmp").rename(folder / f"{name}.jsonl")

    add("a", message_lines(first))
    process = fleet(fleet_bin, bundle, "--input", folder, "--watch-every", 0.2, "--state-ttl", 4, "--output", out,
                    "--precision", "fp32", "--parallelism", 1, "--checkpoint-every", 1, "--checkpoints",
                    tmp_path / "checkpoints", "--savepoint-dir", tmp_path / "savepoints")
    wait_for_checkpoint(tmp_path / "checkpoints", process)
    for i in range(0, 600, 25):  # bed-001 keeps talking, a message every 0.5 s; bed-000 is silent for ~12 s
        add(f"b{i:04d}", message_lines([[], second[1][i:i + 25]]))
        time.sleep(0.5)
    add("c", message_lines([[(t + 5.0, x) for t, x in second[0][:400]]]))  # 5 s on: a kept state says "gap"
    time.sleep(4)
    process.send_signal(signal.SIGTERM)
    finish(process)
    events = read_events(out)
    calibrating = {bed: [r["t"] for r in records if r["event"] == "calibrating"] for bed, records in events.items()}
    assert calibrating["bed-000"] == [0.0, 25.0], events["bed-000"]  # expired: a new monitor at its next message
    assert calibrating["bed-001"] == [0.0], calibrating  # kept: one monitor all along


def test_shard_keys_spread_evenly_over_flink_key_groups(fleet_bin):
    """The key group Python computes for each shard key (messages.key_group) is the one Flink's own
    KeyGroupRangeAssignment gives PyFlink's key (a Row of the INT key): the shards spread evenly over subtasks."""
    script = ("from pyflink.java_gateway import get_gateway; from rnnedge.fleet import job, messages; "
              "g = get_gateway(); jvm = g.jvm; K = jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment\n"
              "def row(k):\n"
              "    a = g.new_array(jvm.java.lang.Object, 1); a[0] = jvm.java.lang.Integer.valueOf(k)\n"
              "    return jvm.org.apache.flink.types.Row.of(a)\n"
              "keys = [*job.SHARD_KEYS, *range(40)]\n"
              "print([K.assignToKeyGroup(row(k), job.MAX_PARALLELISM) for k in keys])\n"
              "print([messages.key_group(k, job.MAX_PARALLELISM) for k in keys])\n"
              "print([K.assignKeyToParallelOperator(row(k), job.MAX_PARALLELISM, 2) for k in job.SHARD_KEYS])")
    done = subprocess.run([str(fleet_bin.parent / "python"), "-c", script], capture_output=True, text=True,
                          timeout=RUN_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    java, python, operators = (json.loads(line) for line in done.stdout.strip().splitlines()[-3:])
    assert java == python
    assert java[:16] == list(range(0, 128, 8)) and sorted(operators) == [0] * 8 + [1] * 8
