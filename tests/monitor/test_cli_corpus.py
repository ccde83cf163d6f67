"""Bad inputs for `rnnedge monitor`, each with its expected outcome: data faults are records (exit 0, strict JSON
lines, the fault visible), user errors are one line on stderr naming the path (exit 2); never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rnnedge.monitor import Monitor
from rnnedge.monitor.monitor import snapshot_checksum
from rnnedge.monitor.sources import csv_rows
from tests.edits import set_at
from tests.monitor.conftest import CHANNELS, csv_lines


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]  # after `rnnedge monitor BUNDLE --precision fp32 --bed bed-1`; {tmp} {csv} {snapshot} filled in
    stdin: bytes | Callable[[list[str]], bytes] = b""  # a callable makes it from the clean lines
    rc: int = 0
    expect: str | Callable[[list[dict]], bool] = ""  # rc 2: in stderr; rc 0: true of the records
    snapshot_edit: Callable[[dict], None] | None = None  # start from a real snapshot with its JSON edited so
    files: dict[str, bytes | Callable[[list[str]], bytes]] = field(default_factory=dict)


def issues(records) -> dict:
    return records[-1]["sample_issues"]


def raised(records) -> bool:
    return any(r["event"] == "sensor_check" for r in records)


def stdin_lines(lines: list[str], newline: str = "\n") -> bytes:
    return (newline.join(lines) + newline).encode()


def edited(**edits: tuple[int, bytes]) -> Callable[[list[str]], bytes]:
    """The clean lines with field `f` of line `n` replaced by bytes, for each edit name=(n, f, bytes)."""
    def make(clean: list[str]) -> bytes:
        lines = [line.encode().split(b",") for line in clean]
        for line, column, text in edits.values():
            lines[line][column] = text
        return b"\n".join(b",".join(fields) for fields in lines) + b"\n"
    return make


HEADER = ",".join(["t", *CHANNELS])


CASES = [
    # data faults: the monitor runs on, says what happened, and writes strict JSON
    Case("non-utf8-byte-on-stdin", ["--input", "-"], edited(a=(150, 2, b"\xff\xfe")), 0,
         lambda r: issues(r) == {"malformed": 1} and r[-1]["steps"] == 300),
    Case("non-utf8-byte-in-file", ["--input", "{tmp}/bad.csv"], rc=0, files={"bad.csv": edited(a=(150, 2, b"\xc3("))},
         expect=lambda r: issues(r) == {"malformed": 1}),
    Case("empty-stdin", ["--input", "-"], b"", 2, "-: no sample was read"),
    Case("header-only", ["--input", "-"], (HEADER + "\n").encode(), 2, "-: no sample was read"),
    Case("empty-file", ["--input", "{tmp}/e.csv"], rc=2, files={"e.csv": b""},
         expect="{tmp}/e.csv: no sample was read"),
    Case("byte-order-mark-and-crlf", ["--input", "-"], lambda clean: b"\xef\xbb\xbf" + stdin_lines(clean, "\r\n"), 0,
         lambda r: issues(r) == {} and r[-1]["steps"] == 300),
    Case("cr-only-line-endings", ["--input", "-"], lambda clean: stdin_lines(clean, "\r"), 0,
         lambda r: issues(r) == {} and r[-1]["steps"] == 300),
    Case("cr-only-file", ["--input", "{tmp}/cr.csv"], rc=0, files={"cr.csv": lambda clean: stdin_lines(clean, "\r")},
         expect=lambda r: issues(r) == {} and r[-1]["steps"] == 300),
    Case("timestamps-in-milliseconds", ["--input", "-"],
         lambda clean: stdin_lines([clean[0]] + [f"{i * 20}," + line.split(",", 1)[1] for i, line in
                                                 enumerate(clean[1:])]), 0,
         lambda r: r[-1]["steps"] == 300 and "t must be in seconds" in r[1]["detail"]),
    Case("binary-garbage", ["--input", "-"], random.Random(0).randbytes(20000), 0,
         lambda r: r[-1]["event"] == "summary"),
    Case("a-1MB-line", ["--input", "-"], edited(a=(150, 2, b"9" * (1 << 20))), 0,
         lambda r: issues(r)["malformed"] >= 1 and r[-1]["steps"] >= 300),
    Case("absurd-timestamps", ["--input", "-"],
         edited(a=(100, 0, b"1e308"), b=(120, 0, b"-1e308"), c=(140, 0, b"inf"), d=(160, 0, b"1e9")), 0,
         lambda r: r[-1]["steps"] == 300 and issues(r) == {"malformed": 3, "missing": 3, "timestamp": 1}),
    Case("values-beyond-float32", ["--input", "-"], edited(a=(150, 2, b"1e300")), 0,
         lambda r: issues(r) == {"malformed": 1}),
    Case("dead-from-the-first-line", ["--input", "-"],
         stdin_lines([f"{i / 50:.2f}," + ",".join(["nan"] * 6) for i in range(300)]), 0, raised),
    Case("wrong-field-count-everywhere", ["--input", "-"], stdin_lines(["1,2,3,4"] * 300), 0, raised),
    Case("only-commas", ["--input", "-"], stdin_lines([",,,,,,"] * 300), 2, "-: no sample was read"),
    Case("clock-runs-backwards", ["--input", "-"],
         stdin_lines([f"{-i / 50:.2f},0.1,0.2,0.9,0,0,0" for i in range(300)]), 0,
         # late within max_gap, then each row a jump back that the next row does not confirm: fed as the next
         # and the constant values are a stuck sensor (faults.py)
         lambda r: issues(r) == {"late": 99, "timestamp": 199, "resync": 1, "sensor_stuck": 1} and
         r[-1]["steps"] == 201),
    # user errors: one line, the path, exit 2
    Case("header-lacks-channels", ["--input", "-"], b"t,a,b\n0,1,2\n", 2, "header lacks column(s) acc-x"),
    Case("output-is-a-folder", ["--input", "{csv}", "--output", "{tmp}"], rc=2,
         expect="{tmp}: is not a regular file; --output names a file"),
    Case("output-under-a-file", ["--input", "{csv}", "--output", "{tmp}/f/x.jsonl"], rc=2, files={"f": b""},
         expect="{tmp}/f/x.jsonl: its folder {tmp}/f does not exist"),
    Case("output-is-the-input", ["--input", "{csv}", "--output", "{csv}"], rc=2,
         expect="--input and --output are the same file"),
    Case("snapshot-is-the-input", ["--input", "{csv}", "--snapshot", "{csv}"], rc=2,
         expect="--input and --snapshot are the same file"),
    Case("output-is-a-device", ["--input", "{csv}", "--output", "/dev/null"], rc=2,
         expect="/dev/null: is not a regular file; --output names a file"),
    Case("snapshot-under-a-file", ["--input", "{csv}", "--snapshot", "{tmp}/f/m.json"], rc=2, files={"f": b""},
         expect="{tmp}/f/m.json: its folder {tmp}/f does not exist"),
    Case("snapshot-in-a-missing-folder", ["--input", "{csv}", "--snapshot", "{tmp}/none/m.json"], rc=2,
         expect="{tmp}/none/m.json: its folder {tmp}/none does not exist"),
    Case("snapshot-is-a-folder", ["--input", "{csv}", "--snapshot", "{tmp}"], rc=2, expect="is not a regular file"),
    Case("snapshot-is-a-device", ["--input", "{csv}", "--snapshot", "/dev/null"], rc=2,
         expect="/dev/null: is not a regular file"),
    Case("snapshot-garbage", ["--input", "{csv}", "--snapshot", "{tmp}/g.json"], rc=2, files={"g.json": b"\x00\xff{"},
         expect="{tmp}/g.json: unreadable monitor snapshot"),
    Case("snapshot-t0-abc", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("cadence.t0", "abc"), expect="unreadable monitor snapshot (invalid clock t0='abc'"),
    Case("snapshot-nan-score", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("score.ema", float("nan")), expect="NaN is not a number a snapshot may hold"),
    Case("snapshot-infinite-steps", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("alarm.steps", float("inf")), expect="unreadable monitor snapshot"),
    Case("snapshot-stream-outside", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("stream", "../../etc/passwd"), expect="unreadable monitor snapshot"),
    Case("snapshot-stream-missing", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("stream", "gone.stream"), expect="gone.stream: cannot read snapshot"),
    Case("snapshot-of-another-model", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("model_sha256", "0" * 64), expect="snapshot of another model"),
    Case("snapshot-of-another-bed", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("stream_id", "bed-7"), expect="snapshot of stream 'bed-7', this monitor is 'bed-1'"),
    Case("snapshot-of-another-bed-by-default", ["--input", "{csv}", "--snapshot", "{snapshot}", "--bed", ""], rc=2,
         snapshot_edit=set_at("stream_id", "bed-1"), expect="snapshot of stream 'bed-1', this monitor is '{csv}'"),
    Case("snapshot-edited-by-hand", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("alarm.blocked_until", 10 ** 9), expect="checksum mismatch (edited or damaged)"),
    Case("snapshot-without-checksum", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=lambda state: state.pop("checksum"), expect="checksum mismatch"),
    Case("snapshot-of-an-older-version", ["--input", "{csv}", "--snapshot", "{snapshot}"], rc=2,
         snapshot_edit=set_at("version", 1), expect="not a monitor snapshot of this rnnedge"),
    # settings that would switch the alarm or the sensor watch off
    Case("max-gap-inf", ["--input", "{csv}", "--max-gap", "inf"], rc=2, expect="'inf' is not a finite number"),
    Case("max-gap-nan", ["--input", "{csv}", "--max-gap", "nan"], rc=2, expect="Invalid value"),
    Case("max-gap-zero", ["--input", "{csv}", "--max-gap", "0"], rc=2, expect="max_gap_s must be in (0, 3600]"),
    Case("sensor-check-inf", ["--input", "{csv}", "--sensor-check", "inf"], rc=2,
         expect="'inf' is not a finite number"),
    Case("sensor-check-1e400", ["--input", "{csv}", "--sensor-check", "1e400"], rc=2,
         expect="'1e400' is not a finite number"),
    Case("snapshot-every-nan", ["--input", "{csv}", "--snapshot-every", "nan"], rc=2, expect="Invalid value"),
    Case("report-every-huge", ["--input", "{csv}", "--report-every", "1e300"], rc=2,
         expect="report_every_s must be in [0, 86400]"),
    Case("attach-unknown", ["--input", "{csv}", "--attach", "sideways"], rc=2, expect="Invalid value"),
    # signing: a key asks for a signed bundle
    Case("verify-key-on-an-unsigned-bundle", ["--input", "{csv}", "--verify-key", "{tmp}/key"], rc=2,
         files={"key": b"0123456789abcdef0123456789abcdef"}, expect="unsigned bundle (no manifest.sig)"),
    Case("verify-key-missing", ["--input", "{csv}", "--verify-key", "{tmp}/none"], rc=2,
         expect="{tmp}/none: cannot read the key"),
    Case("verify-key-too-short", ["--input", "{csv}", "--verify-key", "{tmp}/key"], rc=2, files={"key": b"short"},
         expect="{tmp}/key"),
    Case("input-missing", ["--input", "{tmp}/none.csv"], rc=2, expect="{tmp}/none.csv: no such input file"),
    Case("input-is-a-folder", ["--input", "{tmp}"], rc=2, expect="{tmp}: cannot read the input"),
    Case("hapt-spec", ["--input", "hapt:2:x"], rc=2, expect="hapt:2:x: expected hapt:SUBJECT"),
    Case("operating-point-garbage", ["--input", "{csv}", "--operating-point", "{tmp}/op.json"], rc=2,
         files={"op.json": b"[1, 2"}, expect="{tmp}/op.json: unreadable operating point"),
    Case("negative-report-every", ["--input", "{csv}", "--report-every", "-1"], rc=2, expect="Invalid value"),
]


def render(content: bytes | Callable[[list[str]], bytes], clean: list[str]) -> bytes:
    return content(clean) if callable(content) else content


@pytest.fixture(scope="module")
def clean(recording) -> list[str]:
    return csv_lines(recording.signals[:300])


@pytest.fixture(scope="module")
def saved(model, clean, tmp_path_factory) -> Path:
    """A real monitor snapshot (JSON + stream file) to edit."""
    folder = tmp_path_factory.mktemp("snapshot")
    monitor = Monitor(model, snapshot=folder / "m.json", stream_id="bed-1")
    list(monitor.run(csv_rows(clean, CHANNELS)))
    monitor.close()
    return folder


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, bundle, clean, saved, tmp_path):
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(render(content, clean))
    (tmp_path / "clean.csv").write_text("\n".join(clean) + "\n")
    snapshot = tmp_path / "snap" / "m.json"
    if case.snapshot_edit:
        shutil.copytree(saved, snapshot.parent)
        state = json.loads(snapshot.read_text())
        case.snapshot_edit(state)
        if "checksum" in state and "edited" not in case.name:  # what lies beyond the checksum is checked too
            with contextlib.suppress(ValueError):  # NaN: refused before the checksum is looked at
                state["checksum"] = snapshot_checksum(state)
        snapshot.write_text(json.dumps(state))
    fill = {"{tmp}": str(tmp_path), "{csv}": str(tmp_path / "clean.csv"), "{snapshot}": str(snapshot)}
    args = [_fill(a, fill) for a in case.args]
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "monitor", str(bundle), "--precision", "fp32",
                           "--bed", "bed-1", *args],
                          input=render(case.stdin, clean), capture_output=True, timeout=120)
    stderr = done.stderr.decode(errors="replace")
    assert "Traceback" not in stderr and done.returncode == case.rc, stderr
    if case.rc == 2:  # one "error:" line from rnnedge, or a usage box from the option parser
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) <= 1 and _fill(case.expect, fill) in (errors[0] if errors else stderr), stderr
    else:
        records = [json.loads(line, parse_constant=_refuse) for line in done.stdout.decode().splitlines()]
        assert records[-1]["event"] == "summary" and case.expect(records), records[-3:]


def _fill(text: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        text = text.replace(key, value)
    return text


def _refuse(name: str):
    raise AssertionError(f"{name} in the output: not strict JSON")


def test_closed_stdin_and_a_reader_that_goes_away(bundle, recording, tmp_path):
    base = [sys.executable, "-m", "rnnedge.cli", "monitor", str(bundle), "--precision", "fp32"]
    closed = subprocess.run([*base, "--input", "-"], capture_output=True, text=True, timeout=120,
                            stdin=None, preexec_fn=lambda: os.close(0))
    assert closed.returncode == 2 and "error: standard input is closed" in closed.stderr, closed.stderr
    reader = subprocess.Popen([*base, "--input", "hapt:2", "--report-every", "0.02"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    reader.stdout.readline()
    reader.stdout.close()  # like `| head -1`
    stderr = reader.stderr.read()
    assert reader.wait(timeout=120) == 2 and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == \
        ["error: standard output: cannot write the events (Broken pipe)"]


def test_evaluate_alarms_refuses_an_output_folder_it_cannot_write_before_working(bundle, tmp_path):
    (tmp_path / "f").write_text("")
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "evaluate-alarms", str(bundle), "--precision", "fp32",
                           "--out", str(tmp_path / "f" / "alarms")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {tmp_path}/f/alarms: cannot write the results (Not a directory)"
