"""The paths users run, at their defaults: an int8 bundle (what `rnnedge monitor` picks), `evaluate-alarms` from
the CLI writing its point into the bundle (as `make export` does), then `rnnedge monitor` on a CSV with
`--output FILE`, attached lying and upright."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnedge.data.hapt import hapt_recording, load_hapt
from rnnedge.monitor.events import get_up_events
from tests.monitor.conftest import CHECKPOINT, csv_lines

pytestmark = pytest.mark.slow  # an export and an evaluate-alarms with every condition, small: ~1-2 min


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnedge.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, dict]:
    """An int8 ONNX bundle of the default model, and `evaluate-alarms` run on it from the CLI with its defaults
    (the point chosen on validation, written into the bundle) and every condition, each kept small."""
    folder = tmp_path_factory.mktemp("defaults")
    bundle = folder / "bundle"
    done = cli("export", str(CHECKPOINT), "--out", str(bundle), "--formats", "onnx", "--precisions", "int8")
    assert done.returncode == 0, done.stderr
    done = cli("evaluate-alarms", str(bundle), "--out", str(folder / "alarms"), "--gaps", "--faults", "--sweep",
               "--random-rotations", "1", "--rates", "25", "--long-hours", "0.05")
    assert done.returncode == 0, done.stderr
    assert "operating point written into" in done.stdout
    return bundle, json.loads((folder / "alarms" / "report.json").read_text())


def test_evaluate_alarms_cli_with_its_defaults_writes_the_point_into_the_bundle(evaluated):
    bundle, report = evaluated
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["operating_point"]["path"].startswith("operating_point-")
    assert report["backend"] == "onnxruntime" and report["attach"] == "upright"  # int8: the only file
    assert report["operating_point"]["frame"] is not None  # the upright frame, by default
    assert report["test"]["events"] == 36 and report["test"]["recall"] >= 0.9
    assert report["gaps"]["gaps"] == 10 and report["gaps"]["false_alarms_after_gap"] == 0
    assert [f["fault"] for f in report["faults"]] == ["table", "stuck", "saturated", "dropout"]
    assert all(f["alarms_during"] == 0 for f in report["faults"])
    assert len(report["sweep"]) == 24 + 1 + 1 and report["long_stream"]["hours"] >= 0.05


@pytest.mark.parametrize("attach", ["upright", "lying"])
def test_monitor_on_an_int8_bundle_writes_its_events_to_a_file(evaluated, attach, tmp_path):
    bundle, _ = evaluated
    recording = hapt_recording("hapt:2:3")
    signals, labels = recording.signals[:8000], recording.labels[:8000]
    if attach == "lying":  # the sensor put on while the subject lies, in the documented placement
        first = int(np.flatnonzero(labels == load_hapt().label_names.index("LAYING"))[0])
        signals, labels = signals[first:], labels[first:]
    (tmp_path / "in.csv").write_text("\n".join(csv_lines(signals)) + "\n")
    out = tmp_path / "events.jsonl"
    done = cli("monitor", str(bundle), "--input", str(tmp_path / "in.csv"), "--output", str(out),
               "--attach", attach)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""  # the events went to the file
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[-1]["event"] == "summary" and records[-1]["steps"] == len(signals)
    starts = [r["t"] for r in records if r["event"] == "alarm_start"]
    onsets = [e.onset / 50 for e in get_up_events(labels, load_hapt().label_names)]
    assert len(starts) == len(onsets) == 2
    assert all(-1.0 <= s - o <= 1.5 for s, o in zip(starts, onsets, strict=True))


def test_the_example_csv_is_the_sample_csv_command_s_and_the_monitor_alarms_on_it(evaluated, tmp_path):
    """examples/bed/hapt-2-3-from-lying.csv is what `rnnedge sample-csv` writes (a real recording, from the
    subject lying); `rnnedge monitor BUNDLE --input` it, with every default (attached lying), alarms at both
    get-ups."""
    bundle, _ = evaluated
    made = tmp_path / "made.csv"
    done = cli("sample-csv", "hapt:2:3", "--from-lying", "--seconds", "120", "--out", str(made))
    assert done.returncode == 0, done.stderr
    example = Path(__file__).parents[2] / "examples" / "bed" / "hapt-2-3-from-lying.csv"
    assert made.read_bytes() == example.read_bytes()
    done = cli("monitor", str(bundle), "--input", str(example))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert any(e["id"].endswith("reset-calibrated") and "documented placement" in e["reason"] for e in events)
    recording = hapt_recording("hapt:2:3")  # the labels of the same 120 s, from the first lying sample
    labels = recording.labels[int(np.flatnonzero(recording.labels == load_hapt().label_names.index("LAYING"))[0]):]
    onsets = [e.onset / 50 for e in get_up_events(labels[: 120 * 50], load_hapt().label_names)]
    starts = [e["t"] for e in events if e["event"] == "alarm_start"]
    assert len(starts) == len(onsets) == 2 and all(-1.0 <= s - o <= 1.5 for s, o in zip(starts, onsets, strict=True))


def browser() -> str | None:
    """Debian's chromium (what .ci/run installs), or another Chrome on PATH."""
    import shutil

    found = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                  if shutil.which(name)), None)
    if found is None and os.environ.get("RNNEDGE_BROWSER_REQUIRED") == "1":
        pytest.fail("no chromium on PATH, and make test requires it (apt-get install chromium)")
    return found


def test_the_bundle_page_renders_in_a_browser(evaluated):
    """`rnnedge bench` then `rnnedge report` beside the bundle, as `make export` runs them; the page opened by
    headless Chromium (no network) has every section filled, and its screenshot is a real picture."""
    bundle, _ = evaluated
    done = cli("bench", str(bundle), "--quick", "--backend", "onnxruntime", "--pool-sizes", "16", "--no-cold-start",
               "--out", str(bundle.parent / "bench-quick"))
    assert done.returncode == 0, done.stderr
    done = cli("report", str(bundle))
    assert done.returncode == 0, done.stderr
    page = bundle.parent / "report.html"
    assert done.stdout.strip() == f"wrote {page.resolve()}"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    chromium = browser()
    if chromium is None:
        pytest.skip("no chromium on PATH (make test requires it: RNNEDGE_BROWSER_REQUIRED=1)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,3600"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in ("model", "files", "benchmark", "alarms", "microcontrollers"):
        assert f'<section id="{section}">' in dom.stdout, section
    assert 'class="missing"' not in dom.stdout  # bench and alarms found beside the bundle
    assert dom.stdout.count("<img") == 3  # bench.png, trace.png, placements.png
    shot = bundle.parent / "report.png"
    done = subprocess.run([chromium, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (3600, 1280) and pixels.std() > 10  # drawn, not a blank page
