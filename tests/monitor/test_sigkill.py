"""`rnnedge monitor` killed with SIGKILL at random moments and restarted on the same file, each time resuming from
its snapshot: no event of an uninterrupted run is lost, and an event written more than once carries the same id
(and the same content) every time, so a consumer can drop the duplicates by id."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from rnnedge.monitor import Monitor
from rnnedge.monitor.sources import csv_rows
from tests.monitor.conftest import CHANNELS, csv_lines

KILLS = 30
INFORMATIONAL = ("snapshot", "summary")  # the record of a save cannot precede it; the summary counts the replays


def command(bundle, csv, snapshot) -> list[str]:
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "rnnedge.cli", "monitor", str(bundle), "--precision", "fp32", "--input", str(csv),
            "--snapshot", str(snapshot), "--snapshot-every", "1", "--report-every", "1"]


def parse(lines: list[str]) -> list[dict]:
    return [json.loads(line, parse_constant=_refuse) for line in lines]


def _refuse(name: str):
    raise AssertionError(f"{name} in the output: not strict JSON")


def run(args: list[str], stderr, kill: random.Random | None) -> tuple[list[str], int]:
    """Run the monitor; with `kill`, SIGKILL it at a random moment: after a few records plus up to 10 ms (records
    come every 20-50 ms of work, snapshots every ~5 ms: kills land in every phase), or before any record."""
    worker = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: list[str] = []
    if kill is not None:
        if kill.random() < 0.1:
            time.sleep(kill.uniform(0.0, 0.4))  # still starting up, or just started
        else:
            target = kill.randint(1, 3)
            while len(lines) < target and (line := worker.stdout.readline()):
                lines.append(line)
            time.sleep(kill.uniform(0.0, 0.01))
        worker.kill()
    lines += worker.stdout.read().splitlines(keepends=True)  # what it wrote before it died
    assert all(line.endswith("\n") for line in lines), "a torn line"
    return [line.rstrip("\n") for line in lines], worker.wait(timeout=60)


@pytest.mark.slow
def test_killed_monitor_loses_no_event_and_repeats_ids(bundle, recording, tmp_path):
    csv = tmp_path / "hapt2.csv"
    csv.write_text("\n".join(csv_lines(recording.signals)) + "\n")
    with open(tmp_path / "reference.err", "w") as err:
        lines, code = run(command(bundle, csv, tmp_path / "ref" / "m.json"), err, None)
    assert code == 0
    reference = {r["id"]: r for r in parse(lines)}
    assert sum(r["event"] == "alarm_start" for r in reference.values()) == 2

    rng, written, kills, code = random.Random(12), [], 0, None
    while code != 0:
        with open(tmp_path / f"run{kills}.err", "w") as err:
            lines, code = run(command(bundle, csv, tmp_path / "state" / "m.json"), err, rng if kills < KILLS else None)
        written += parse(lines)
        if kills < KILLS:
            assert code == -9, (tmp_path / f"run{kills}.err").read_text()  # killed before it could finish
            kills += 1
    assert kills == KILLS
    for err in tmp_path.glob("*.err"):
        assert "Traceback" not in err.read_text()

    by_id = defaultdict(list)
    for record in written:
        by_id[record["id"]].append(record)
    for same in by_id.values():  # a duplicate is the same event: same id, same content
        assert all(r == same[0] for r in same)
    ids_of = defaultdict(set)
    for record in written:
        ids_of[json.dumps({k: v for k, v in record.items() if k != "id"}, sort_keys=True)].add(record["id"])
    assert all(len(ids) == 1 for ids in ids_of.values())
    lost = [r for key, r in reference.items() if r["event"] not in INFORMATIONAL and by_id.get(key, [None])[0] != r]
    assert lost == []
    assert sum(len(same) - 1 for same in by_id.values()) > 0  # the kills did make it repeat itself
    summary = written[-1]
    assert summary["event"] == "summary" and summary["steps"] == 8000 and summary["alarms"] == 2
    # what the kills left mid-write (temp files, stream files not yet named in the JSON) is cleaned up
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["m.json", "m.json.8000.stream", "m.json.lock"]


def test_a_kill_before_a_steps_records_are_written_loses_none(model, recording, tmp_path):
    """The deterministic worst moment: a snapshot falls on an alarm's step, and the process dies right after
    that step, before its records reach the output. The snapshot must not cover that step yet."""
    rows = list(csv_rows(csv_lines(recording.signals[:5600]), CHANNELS))
    alarms = [r for r in Monitor(model).run(rows) if r["event"].startswith("alarm")]
    # the ids' contract (not their exact values): "<slot>:<event>", the slot being the step the event happened at
    assert [r["event"] for r in alarms] == ["alarm_start", "alarm_end"]
    assert all(r["id"] == f"{round(r['t'] * 50)}:{r['event']}" for r in alarms)
    for alarm in alarms:
        slot = int(alarm["id"].split(":")[0])
        every = max(d for d in range(1, 1000) if (slot + 1) % d == 0)  # snapshots due at this slot and before
        snapshot = tmp_path / str(slot) / "m.json"
        snapshot.parent.mkdir()
        killed = Monitor(model, snapshot=snapshot, snapshot_every_s=every / 50)
        written = [r for row in rows[:slot] for r in killed.feed_row(row)]
        assert alarm in killed.feed_row(rows[slot])  # the alarm's step ran; the kill takes these records with it
        killed.close()
        written += Monitor(model, snapshot=snapshot, snapshot_every_s=every / 50).run(rows)
        assert alarm in written
