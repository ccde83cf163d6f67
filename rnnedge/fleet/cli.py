"""`rnnedge fleet`: the bed-exit monitor for many beds, as a Flink job (embedded mini-cluster by default).

pyflink is imported only when the command runs: it lives in its own environment (docs/fleet.md), and
`rnnedge --help` must not need it.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import time
from pathlib import Path

import typer

from rnnedge.choices import STREAMING_PRECISION, Backend, Precision, key_from, verify_key_option
from rnnedge.fleet.errors import FleetError
from rnnedge.monitor.cli import ATTACH_HELP, BACKEND_HELP, PRECISION_HELP, Attach
from rnnedge.monitor.frame import DEFAULT_ATTACH

_OURS = re.compile(r"(?:FleetError|MonitorError|BundleError|SnapshotError): ([^\n]+)")  # our one-line errors


def fleet_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (rnnedge export)."),
    input: Path = typer.Option(..., "--input", "-i", help="A file of message lines (read once), or a folder: "
                               "watched for new files (gateways add them) unless --once. Format: docs/fleet.md."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the events (JSON lines, part files "
                                "committed at each checkpoint: exactly once)."),
    backend: Backend = typer.Option("onnxruntime", help=f"{BACKEND_HELP} (the fleet pins onnxruntime)."),
    precision: Precision = typer.Option(STREAMING_PRECISION, help=PRECISION_HELP),
    operating_point: str | None = typer.Option(None, help="Override the bundle's operating point: a file from "
                                               "evaluate-alarms, or 'default' (the default model's)."),
    parallelism: int = typer.Option(2, min=1, max=128, help="Task slots (Python workers) of the job."),
    checkpoints: Path | None = typer.Option(None, help="Checkpoint folder (default: OUTPUT.checkpoints)."),
    checkpoint_every: float = typer.Option(10.0, min=0.1, help="Seconds between checkpoints."),
    restore: str | None = typer.Option(None, help="Resume from a checkpoint or savepoint folder, or 'latest' "
                                       "(the newest checkpoint in the checkpoint folder)."),
    savepoint_dir: Path | None = typer.Option(None, help="On Ctrl-C / SIGTERM, stop with a savepoint here "
                                              "(restore it, at any parallelism, with --restore)."),
    state_ttl: float = typer.Option(3600.0, min=0.0, help="Seconds a silent bed keeps its state (0: forever)."),
    beds: Path | None = typer.Option(None, help="File of allowed bed ids, one per line (others: bad messages)."),
    once: bool = typer.Option(False, help="With a folder: process the files it holds now, then stop."),
    watch_every: float = typer.Option(1.0, min=0.05, help="Seconds between looks for new files in a folder."),
    report_every: float = typer.Option(0.0, min=0.0, help="Also write each bed's score every this many seconds."),
    max_gap: float = typer.Option(2.0, min=0.0, help="As rnnedge monitor --max-gap."),
    sensor_check: float = typer.Option(3.0, min=0.0, help="As rnnedge monitor --sensor-check."),
    verify_key: Path | None = verify_key_option(),
    attach: Attach = typer.Option(DEFAULT_ATTACH, help=ATTACH_HELP + " Every bed."),
    cluster: bool = typer.Option(False, help="Submitted by `flink run -pym rnnedge.fleet.submit`: the cluster "
                                 "sets the workers' Python and task slots (docs/fleet.md)."),
) -> None:
    """Run the bed-exit monitor for every bed in a stream of messages, on Apache Flink, with checkpointed state."""
    import rnnedge.runtime as rt
    from rnnedge.fleet.beds import MonitorSettings
    from rnnedge.monitor.operating_point import resolve_point

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    backend, precision = backend.value, precision.value
    # a bad bundle fails here, before a JVM starts (the workers load it again: keep the bundle read-only)
    model = rt.load(bundle, backend=backend, precision=precision, verify_key=key_from(verify_key))
    point = resolve_point(model, operating_point)  # the bundle's own point, as `rnnedge monitor` uses
    if not input.exists():
        raise FleetError(f"{input}: no such input file or folder")
    allowed = None
    if beds is not None:
        try:
            allowed = frozenset(line.strip() for line in beds.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise FleetError(f"{beds}: cannot read the bed list ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        from rnnedge.fleet import job
    except ImportError as exc:
        raise FleetError(f"apache-flink is not installed here ({exc.name}): `make fleet-env`, then run "
                         ".cache/venv-fleet/bin/rnnedge fleet ...") from None
    config = job.FleetConfig(
        bundle=str(bundle), output=str(output), backend=backend, precision=precision,
        monitor=MonitorSettings(point, report_every, max_gap, sensor_check, attach.value), parallelism=parallelism,
        checkpoint_dir=str(checkpoints) if checkpoints else None, checkpoint_interval_s=checkpoint_every,
        restore=restore, state_ttl_s=state_ttl, beds=allowed, embedded=not cluster)
    watch = watch_every if input.is_dir() and not once else None
    client = job.run(config, inputs=[str(input)], monitor_s=watch)
    typer.echo(f"fleet job {client.get_job_id()} running (checkpoints in {config.checkpoints})", err=True)
    wait(client, savepoint_dir)


def wait(client, savepoint_dir: Path | None, drain: bool = False) -> None:
    """Until the job ends; Ctrl-C / SIGTERM stop it (with a savepoint if asked; `drain`: job.stop_with_savepoint).
    Failures as one line."""
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    try:
        result = client.get_job_execution_result()
        while not result.done():
            if stop:
                if savepoint_dir is None:
                    client.cancel().result()
                    typer.echo("cancelled (no --savepoint-dir; the latest checkpoint is kept)", err=True)
                    return
                from rnnedge.fleet.job import stop_with_savepoint

                path = stop_with_savepoint(client, savepoint_dir, drain)
                typer.echo(f"stopped with a savepoint: {path}", err=True)
                print(path)
                return
            time.sleep(0.2)
        result.result()
    except Exception as exc:  # py4j's Java exception: find our own one-line error in its causes
        found = _OURS.findall(str(exc))
        raise FleetError(found[-1] if found else f"the Flink job failed: {str(exc).splitlines()[0][:300]}") from None


def register(app: typer.Typer) -> None:
    app.command("fleet")(fleet_command)
