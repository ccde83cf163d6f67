"""The fleet's fixtures: a real bundle, beds made of real HAPT test recordings around get-ups (with faults), the
events `rnnedge monitor` gives on each bed alone, and the fleet environment (its own virtualenv: apache-flink
pins numpy/pandas below the main environment's; `make fleet-env`)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.data.hapt import GET_UP_LABELS, hapt_split
from rnnedge.monitor import Monitor
from rnnedge.monitor.sources import csv_rows
from tests.monitor.conftest import CHANNELS, export

ROOT = Path(__file__).parents[2]
FLEET_VENV = Path(os.environ.get("RNNEDGE_FLEET_VENV", ROOT / ".cache" / "venv-fleet"))
CHUNK = 25  # samples per message: 0.5 s at 50 Hz
RATE = 50.0
ATTACH = 1000  # samples each bed starts with: the recording's first 20 s, standing (the upright frame calibrates)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    return export(tmp_path_factory.mktemp("fleet-bundle") / "b", "onnx")


@pytest.fixture(scope="session")
def model(bundle):
    return rt.load(bundle, precision="fp32")


def bed_signals(beds: int, samples: int) -> list[np.ndarray]:
    """Each bed: ATTACH samples of a test recording's start (the sensor clipped on while the wearer stands: every
    HAPT test recording calibrates the default point's upright frame within 19 s), then a window of `samples` of
    that recording starting 12 s before a get-up (the get-up), get-ups taken in turn, each window shifted by the
    bed's index so no two beds are the same."""
    data = hapt_split("test")
    ids = [data.label_names.index(n) for n in GET_UP_LABELS]
    starts = []
    for r in data.recordings:
        onsets = np.flatnonzero(np.isin(r.labels, ids))
        for onset in onsets[np.r_[True, np.diff(onsets) > 1]] if len(onsets) else []:
            starts.append((r.signals, max(0, int(onset) - 600)))
    out = []
    for bed in range(beds):
        signals, start = starts[bed % len(starts)]
        start = min(start + 7 * (bed // len(starts)), len(signals) - samples)
        out.append(np.concatenate([signals[:ATTACH], signals[start:start + samples]]).astype(np.float32))
    return out


def with_faults(bed: int, signals: np.ndarray) -> list[tuple[float, list]]:
    """(t, values) per row; every 4th bed gets faults after the attach: an unreadable value, a 0.3 s gap, a row
    out of order, a row of the wrong length, a 5 s gap (reset)."""
    rows = [(i / RATE, x.tolist()) for i, x in enumerate(signals)]
    if bed % 4 == 3:
        rows[ATTACH + 100][1][2] = math.nan
        del rows[ATTACH + 200:ATTACH + 215]
        rows[ATTACH + 300], rows[ATTACH + 301] = rows[ATTACH + 301], rows[ATTACH + 300]
        rows[ATTACH + 400] = (rows[ATTACH + 400][0], rows[ATTACH + 400][1][:5])
        rows[ATTACH + 900:] = [(t + 5.0, x) for t, x in rows[ATTACH + 900:]]
    return rows


def message_lines(rows_per_bed: list[list[tuple[float, list]]]) -> list[str]:
    """All beds' messages of CHUNK rows, interleaved in time (bed ids bed-000, bed-001, ...)."""
    lines = []
    for start in range(0, max(map(len, rows_per_bed)), CHUNK):
        for bed, rows in enumerate(rows_per_bed):
            chunk = rows[start:start + CHUNK]
            if chunk:
                lines.append(json.dumps({"bed": f"bed-{bed:03d}", "t": [t for t, _ in chunk],
                                         "x": [x for _, x in chunk]}))
    return lines


def monitor_alone(model, rows: list[tuple[float, list]]) -> list[dict]:
    """What `rnnedge monitor --input bed.csv` writes for one bed (the same code path: Monitor.run over CSV rows)."""
    lines = [",".join(["t", *CHANNELS])] + [",".join([repr(t), *map(repr, x)]) for t, x in rows]
    return [json.loads(json.dumps(r)) for r in Monitor(model, attach="upright").run(csv_rows(lines, CHANNELS))]


def monitors_alone(model, rows_per_bed: list[list[tuple[float, list]]], check_every: int = 25) -> list[list[dict]]:
    """monitor_alone for many beds, computed as the beds of one ward (the same engine: tests/monitor/test_ward.py
    proves a bed's events do not depend on its neighbours), every `check_every`-th bed also run alone here."""
    from rnnedge.monitor.ward import Ward

    header = ",".join(["t", *CHANNELS])
    rows = {bed: list(csv_rows([header] + [",".join([repr(t), *map(repr, x)]) for t, x in bed_rows], CHANNELS))
            for bed, bed_rows in enumerate(rows_per_bed)}
    ward = Ward(model, attach="upright", capacity=max(1, len(rows)))
    for bed in rows:
        ward.add(bed)
    out = ward.feed(rows)
    found = [json.loads(json.dumps([*out[bed], *ward.flush(bed), ward.summary(bed)])) for bed in rows]
    for bed in range(0, len(rows_per_bed), check_every):
        assert found[bed] == monitor_alone(model, rows_per_bed[bed]), bed
    return found


def comparable(record: dict) -> dict:
    """A sample issue's detail names its CSV line or its message: the rest of the record must be identical."""
    return {k: v for k, v in record.items() if not (k == "detail" and record["event"] == "sample")}


def read_events(output: Path) -> dict[str, list[dict]]:
    """Committed part files only (in-progress ones start with '.'), per bed, in order: a bed's events are in order
    within a part file, and its part files in the order they were written (a subtask rolls to its next file at
    each checkpoint; a restored job writes after the one it continues)."""
    per_bed: dict[str, list[dict]] = {}
    parts = sorted(output.rglob("events-*.jsonl"), key=lambda p: (p.stat().st_mtime_ns, int(p.stem.rsplit("-", 1)[1])))
    for part in parts:
        for line in part.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            per_bed.setdefault(record.pop("bed"), []).append(record)
    return per_bed


@pytest.fixture(scope="session")
def fleet_bin() -> Path:
    rnnedge = FLEET_VENV / "bin" / "rnnedge"
    if not rnnedge.exists():
        if os.environ.get("RNNEDGE_FLEET_REQUIRED"):
            pytest.fail(f"no fleet environment at {FLEET_VENV} (make fleet-env)")
        pytest.skip(f"no fleet environment at {FLEET_VENV} (make fleet-env)")
    if shutil.which("java") is None:
        pytest.fail("apache-flink needs a Java 17 runtime (apt-get install openjdk-17-jre-headless)")
    return rnnedge


def fleet(fleet_bin: Path, *args: str, **popen) -> subprocess.Popen:
    """`rnnedge fleet ...` in the fleet environment, in its own process group (a test can kill it whole)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    point = [] if "--operating-point" in args else ["--operating-point", "default"]  # as Monitor(model) here
    # each bed starts standing (ATTACH): the upright frame calibrates, as in monitor_alone
    command = [str(fleet_bin), "fleet", *map(str, args), *point, "--attach", "upright"]
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)

