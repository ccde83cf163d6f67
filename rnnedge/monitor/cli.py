"""`rnnedge monitor` (live bed-exit alarms as JSON lines) and `rnnedge evaluate-alarms` (scored on HAPT)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from enum import Enum
from pathlib import Path

import typer

from rnnedge.atomic import check_file_target
from rnnedge.choices import STREAMING_PRECISION, Backend, Precision, key_from, verify_key_option
from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.frame import ATTACH_POSTURES, DEFAULT_ATTACH

BACKEND_HELP = ("auto: LiteRT for a .tflite file of the precision, else ONNX Runtime; tflm: TFLite Micro's kernels "
                "(integer-only a8w8/a16w8 files).")
PRECISION_HELP = "Which of the bundle's files (int8: dynamic-range weights; a8w8/a16w8: integer only, for tflm)."
Attach = Enum("Attach", {posture: posture for posture in ATTACH_POSTURES}, type=str)
ATTACH_HELP = ("The wearer's posture when the sensor is attached (with an operating point that has an upright "
               "frame): lying (default: a bed-exit sensor goes on a patient in bed; the sensor must be in the "
               "documented placement, else no alarm and an event says why) or upright (standing or sitting still "
               "for a few seconds after attaching; any sensor orientation).")


def monitor_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (rnnedge export)."),
    input: str = typer.Option(..., "--input", "-i", help="CSV file, '-' for standard input (one sample per "
                              "line), or hapt:SUBJECT[:EXPERIMENT] for a bundled HAPT recording. Columns named "
                              "by a header (t, then the bundle's channels: acc-x/y/z in g, gyro-x/y/z in rad/s; t in "
                              "seconds, optional); example: examples/bed/, or `rnnedge sample-csv`."),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    precision: Precision = typer.Option(STREAMING_PRECISION, help=PRECISION_HELP),
    operating_point: str | None = typer.Option(None, help="operating_point.json from evaluate-alarms, overriding "
                                               "the bundle's own; 'default': the default model's (default: the "
                                               "bundle's, which evaluate-alarms writes)."),
    snapshot: Path | None = typer.Option(None, help="Save the monitor state here periodically; a restarted "
                                         "monitor resumes from it."),
    snapshot_every: float = typer.Option(60.0, min=0.0, help="Seconds of stream time between snapshots."),
    report_every: float = typer.Option(0.0, min=0.0, help="Also write the score every this many seconds."),
    max_gap: float = typer.Option(2.0, min=0.0, help="Longer timestamp gaps reset the monitor (shorter: held); "
                                  "timestamps further back than this resync the clock."),
    sensor_check: float = typer.Option(3.0, min=0.0, help="Seconds without a clean sample before a sensor_check "
                                       "event (repeated while the fault lasts)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="JSON-lines file (default: stdout)."),
    attach: Attach = typer.Option(DEFAULT_ATTACH, help=ATTACH_HELP),
    verify_key: Path | None = verify_key_option(),
    bed: str | None = typer.Option(None, help="This stream's identity (a bed or device id), kept in its snapshot: "
                                   "a snapshot of another bed is refused (default: the input's name)."),
) -> None:
    """Run the bed-exit monitor over a sample source; write JSON-lines events (alarm_start/alarm_end...)."""
    import rnnedge.runtime as rt
    from rnnedge.monitor.monitor import Monitor, json_line
    from rnnedge.monitor.operating_point import resolve_point
    from rnnedge.monitor.sources import open_source, watched

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    _distinct_paths(input, output, snapshot)
    model = rt.load(bundle, backend=backend.value, precision=precision.value, verify_key=key_from(verify_key))
    point = resolve_point(model, operating_point)
    live = input == "-" or not (input.startswith("hapt:") or Path(input).is_file())  # stdin, a pipe, a device
    identity = bed or (input if live or input.startswith("hapt:") else str(Path(input).resolve()))
    monitor = Monitor(model, point, snapshot=snapshot, snapshot_every_s=snapshot_every, report_every_s=report_every,
                      max_gap_s=max_gap, sensor_check_s=sensor_check, replay=not live, attach=attach.value,
                      stream_id=identity)
    rows = open_source(input, list(model.manifest.input.channels), model.manifest.input.sample_rate_hz)
    if live:  # a silent feed is a fault too: noticed by wall time, since no row brings stream time
        rows = watched(rows)
    where = output or "standard output"
    try:
        with contextlib.ExitStack() as stack:
            # resumed: the events so far are in the file already (at-least-once: the new ones follow them)
            mode = "a" if monitor.resumed else "w"
            sink = stack.enter_context(open(output, mode, encoding="utf-8")) if output else sys.stdout
            for record in monitor.run(rows):  # the monitor snapshots only after its records are written
                sink.write(json_line(record) + "\n")
                sink.flush()  # a live consumer sees each alarm as it happens
        if monitor.steps == 0:  # an empty file, a header alone, empty stdin: no alarm could have been raised
            raise MonitorError(f"{input}: no sample was read (empty, or a header alone): nothing was monitored")
    except OSError as exc:
        if output is None:  # the reader is gone: spare the interpreter's own failing flush of stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise MonitorError(f"{where}: cannot write the events ({exc.strerror or exc})") from None


def _distinct_paths(input: str, output: Path | None, snapshot: Path | None) -> None:
    """The events never overwrite the samples or the snapshot, and go to a regular file in an existing folder."""
    named = {"--input": Path(input) if Path(input).exists() else None, "--output": output, "--snapshot": snapshot}
    paths = {flag: path.resolve() for flag, path in named.items() if path is not None}
    for flag, path in paths.items():
        for other, there in paths.items():
            if flag < other and path == there:
                raise MonitorError(f"{flag} and {other} are the same file ({path}): one would destroy the other")
    if output is not None:
        check_file_target(output, "--output", MonitorError)


def evaluate_alarms_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (rnnedge export)."),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    precision: Precision = typer.Option(STREAMING_PRECISION, help=PRECISION_HELP),
    out: Path = typer.Option(Path("artifacts/alarms"), help="Folder: report.json, operating_point.json, "
                             "trace.png."),
    operating_point: Path | None = typer.Option(None, help="Score this point instead of choosing one on the "
                                                "validation subjects."),
    max_false_alarms_per_hour: float = typer.Option(1.0, min=0.0, help="The false-alarm rate the point aims at "
                                                    "(choosing on validation allows twice it, rounded: see "
                                                    "rnnedge/monitor/evaluate.py)."),
    trace: str | None = typer.Option(None, help="Recording to plot, hapt:SUBJECT[:EXPERIMENT] (default: the "
                                     "first test recording)."),
    write_bundle: bool = typer.Option(True, help="Write the point chosen on validation into the bundle (its "
                                      "manifest lists it with its sha256), for `rnnedge monitor`."),
    sweep: bool = typer.Option(False, help="Also score the test subjects in the 24 axis-aligned orientations, "
                               "random 3D ones and other sensor rates (report.json 'sweep', placements.png)."),
    upright_frame: bool = typer.Option(True, help="Choose a point that calibrates an upright frame at attach "
                                       "time (any sensor orientation; the wearer upright and still for a few "
                                       "seconds after attaching): rnnedge/monitor/frame.py. --no-upright-frame: "
                                       "the sensor as the training data wore it."),
    long_hours: float = typer.Option(0.0, min=0.0, help="Also stream the test subjects back to back, repeated, "
                                     "for at least this many hours without a reset (accuracy, alarms and state "
                                     "magnitude per hour)."),
    faults: bool = typer.Option(False, help="Also splice synthetic sensor faults (off body on a table, a stuck "
                                "channel, saturation, dropout) into the test recordings and stream them through "
                                "the monitor (report.json 'faults'): rnnedge/monitor/splice.py."),
    attach: Attach = typer.Option("upright", help="The posture the sensor is attached in: upright (as HAPT was "
                                  "recorded: each recording from its start) or lying (each validation and test "
                                  "recording from its first lying sample, a patient in bed)."),
    gaps: bool = typer.Option(False, help="Also stream each test subject's recordings back to back through the "
                              "monitor with the clock jumping 120 s between them (report.json 'gaps': false alarms "
                              "in the 30 s after each gap)."),
    verify_key: Path | None = verify_key_option(),
    random_rotations: int = typer.Option(20, min=0, help="--sweep: random 3D orientations."),
    seed: int = typer.Option(0, help="--sweep: seed of the random orientations."),
    rates: str = typer.Option("25,100", help="--sweep: sensor rates in Hz, comma-separated (resampled by "
                              "timestamps as the monitor does); empty for none."),
) -> None:
    """Choose the alarm's operating point on HAPT validation subjects; score get-up alarms on test subjects."""
    import rnnedge.runtime as rt
    from rnnedge.monitor.evaluate import evaluate_alarms
    from rnnedge.monitor.operating_point import OperatingPoint, write_to_bundle
    from rnnedge.monitor.splice import LEAD_S

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    model = rt.load(bundle, backend=backend.value, precision=precision.value, verify_key=key_from(verify_key))
    point = OperatingPoint.load(operating_point) if operating_point else None
    try:  # before minutes of work: a folder that cannot be written is an error now
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
        try:
            hz = [float(r) for r in rates.split(",") if r.strip()]
        except ValueError:
            raise MonitorError(f"--rates {rates!r}: expected numbers in Hz, comma-separated") from None
        options = {"random": random_rotations, "seed": seed, "rates": hz} if sweep else None
        report = evaluate_alarms(model, out, point, max_false_alarms_per_hour, trace, options, upright_frame,
                                 long_hours, faults, attach.value, gaps)
    except OSError as exc:
        raise MonitorError(f"{exc.filename or out}: cannot write the results ({exc.strerror or exc})") from None
    for split in ("validation", "test"):
        m = report[split]
        delays = "-" if m["median_delay_s"] is None else f"{m['median_delay_s']:.2f} s / {m['p90_delay_s']:.2f} s"
        typer.echo(f"{split:>10}: recall {m['recall']:.3f} ({m['detected']}/{m['events']}), delay median/p90 "
                   f"{delays}, false alarms {m['false_alarms']} in {m['other_hours']:.2f} h = "
                   f"{m['false_alarms_per_hour']:.2f}/h")
    for split in ("validation", "test"):
        lead = report[split]["lead_to_on_feet_s"]
        if lead:
            typer.echo(f"{split:>10}: alarm before being on their feet: median {lead['median']:.1f} s, "
                       f"least {lead['min']:.1f} s ({lead['n']} get-ups); sensor_check "
                       f"{report[split]['sensor_check_hours'] * 3600:.0f} s")
    if "long_stream" in report:
        long, m = report["long_stream"], report["long_stream"]["alarms"]
        typer.echo(f"{long['wearers']} wearers, each {long['hours']:.1f} h without reset: per-sample accuracy "
                   f"{long['per_sample_accuracy']:.4f} "
                   f"(hour by hour {min(long['per_sample_accuracy_by_hour']):.4f}-"
                   f"{max(long['per_sample_accuracy_by_hour']):.4f}), |state| <= "
                   f"{max(long['max_abs_state_by_hour']):.1f}, recall {m['recall']:.3f} ({m['detected']}/{m['events']})"
                   f", false alarms {m['false_alarms']} = {m['false_alarms_per_hour']:.2f}/h")
    for f in report.get("faults", []):
        delay = "never" if f["check_delay_s"] is None else "after {:.1f}-{:.1f} s".format(*f["check_delay_s"])
        typer.echo(f"{f['fault']:>10} {f['minutes']:g} min x {f['recordings']}: sensor_check in {f['sensor_check']} "
                   f"({delay}), alarms during {f['alarms_during']}, the get-up {LEAD_S:g} s after it detected in "
                   f"{f['get_up_after_detected']}/{f['recordings']}"
                   + ("" if f["get_up_delay_s"] is None else " (delay median {median:.2f} s, max {max:.2f} s)".format(
                       **f["get_up_delay_s"])))
    if "gaps" in report:
        m = report["gaps"]
        typer.echo(f"{m['condition']} ({m['gaps']} gaps): recall {m['recall']:.3f} ({m['detected']}/{m['events']}), "
                   f"false alarms {m['false_alarms']} = {m['false_alarms_per_hour']:.2f}/h, "
                   f"{m['false_alarms_after_gap']} in the {m['after_gap_s']:g} s after a gap")
    for m in report.get("sweep", []):  # worst first
        typer.echo(f"{m['condition']:>22}: recall {m['recall']:.3f} ({m['detected']}/{m['events']}), false alarms "
                   f"{m['false_alarms_per_hour']:.2f}/h, median delay "
                   + ("-" if m["median_delay_s"] is None else f"{m['median_delay_s']:.2f} s")
                   + f", sensor_check {m['sensor_check_hours'] * 3600:.0f} s")
    typer.echo(f"wrote {out}/report.json, report.md, operating_point.json" + (", trace.png" if report["trace"] else "")
               + (", placements.png" if report.get("sweep_plot") else ""))
    if point is None and write_bundle:  # chosen here, on validation: the bundle's point from now on
        try:
            typer.echo(write_to_bundle(bundle, OperatingPoint.load(out / "operating_point.json")))
        except OSError as exc:
            raise MonitorError(f"{bundle}: cannot write the operating point ({exc.strerror or exc})") from None


def sample_csv_command(
    recording: str = typer.Argument(..., help="A bundled HAPT recording: hapt:SUBJECT[:EXPERIMENT]."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV file to write (t in seconds, acc-x/y/z in g, "
                             "gyro-x/y/z in rad/s: what `rnnedge monitor --input` reads)."),
    from_lying: bool = typer.Option(False, help="Start at the recording's first lying sample (a sensor attached "
                                    "to a patient in bed: `rnnedge monitor`'s default --attach lying)."),
    seconds: float = typer.Option(0.0, min=0.0, help="Keep this many seconds (0: to the end)."),
) -> None:
    """Write a real recording as the CSV the monitor reads: an example input to try, edit or compare with."""
    import numpy as np

    from rnnedge.atomic import write_text_atomic
    from rnnedge.data.hapt import hapt_recording, load_hapt

    check_file_target(out, "--out", MonitorError)
    data, rec = load_hapt(), hapt_recording(recording)
    start = 0
    if from_lying:
        lying = np.flatnonzero(rec.labels == data.label_names.index("LAYING"))
        if not len(lying):
            raise MonitorError(f"{recording}: the wearer never lies in this recording")
        start = int(lying[0])
    end = len(rec) if not seconds else min(len(rec), start + round(seconds * data.sample_rate_hz))
    lines = [",".join(["t", *data.channels])]
    lines += [",".join([f"{i / data.sample_rate_hz:.2f}", *(f"{v:.6f}" for v in row)])
              for i, row in enumerate(rec.signals[start:end].tolist())]
    write_text_atomic(out, "\n".join(lines) + "\n")
    typer.echo(f"wrote {out}: {end - start} samples ({(end - start) / data.sample_rate_hz:.1f} s) of {rec.name}"
               + (" from its first lying sample" if from_lying else ""))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("monitor")(monitor_command)
    app.command("evaluate-alarms")(evaluate_alarms_command)
    app.command("sample-csv")(sample_csv_command)
