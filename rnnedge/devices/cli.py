"""`rnnedge devices` (what this machine is, what to ship to it) and `rnnedge bench BUNDLE` (measure it)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import typer

from rnnedge.choices import Backend, Precision
from rnnedge.console import table_console
from rnnedge.devices.cortexm import TARGETS
from rnnedge.devices.profiles import Budget, Recommendation, recommend
from rnnedge.errors import RnnedgeError
from rnnedge.tasks import get_task, shown
from rnnedge.training.cli import BUNDLED, CSV_OPTIONS, DATA_HELP, TaskName, writable_run_folder
from rnnedge.training.config import TrainConfig

DEFAULT_OUT = Path("artifacts/bench")


POOL_SIZE = 1024  # streams in the pool devices times: the size where the bench's pools level off on CPUs


def _throughput(bundle: Path, advice: Recommendation) -> tuple[float, float]:
    """(median batch-1 step in us on the streams' backend, stream-steps/s of a pool of POOL_SIZE on the pools'),
    timed as `rnnedge bench` times them."""
    import numpy as np

    import rnnedge.runtime as rt
    from rnnedge.devices.bench import pool_rate, timed

    model = rt.load(bundle, backend=advice.backend, precision=advice.precision, threads=advice.threads)
    stream = model.stream()
    timed(lambda: stream.step(model.mean), 20)
    step_us = float(np.median(timed(lambda: stream.step(model.mean), 200)) / 1e3)
    pools = model if advice.pool_backend == advice.backend else rt.load(
        bundle, backend=advice.pool_backend, precision=advice.precision, threads=advice.threads)
    samples = np.tile(model.mean.astype(np.float32), (POOL_SIZE, 1))
    return step_us, pool_rate(pools, samples, POOL_SIZE, ticks=20)


def devices_command(
    sample_rate: float = typer.Option(50.0, min=0.001, help="Sample rate (Hz) for the real-time budget."),
    bundle: Path | None = typer.Option(None, help="A bundle: use its sample rate and time its step and a pool "
                                       "here, to say how many real-time streams fit."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Describe this machine, its usable backends, and what rnnedge runs on it (backend="auto", the monitor's
    precision); with --bundle, how many real-time streams fit."""
    from rich.table import Table

    from rnnedge.bundle import read_manifest
    from rnnedge.devices.info import detect_backends, detect_machine

    machine = detect_machine()
    backends = detect_backends(machine)
    manifest = read_manifest(bundle) if bundle is not None else None
    files = None if manifest is None else {(f.format, f.precision) for f in manifest.files if f.graph == "stream"}
    advice = recommend(machine, backends, files)
    single = pooled = None
    if manifest is not None:
        sample_rate = manifest.input.sample_rate_hz
        if advice.backend is not None:
            step_us, pool_steps_per_s = _throughput(bundle, advice)
            # one stream per core at batch 1, or every stream in one batched call per tick
            single = Budget.for_rate(sample_rate, machine.cores * 1e6 / step_us)
            pooled = Budget.for_rate(sample_rate, pool_steps_per_s)
    from rnnedge.devices import cortexm
    from rnnedge.devices.mcu import MCU_PROFILES, fit

    qemu = {"targets": [t.key for t in TARGETS], "missing_tools": cortexm.missing_tools()}
    if as_json:
        print(json.dumps({"machine": asdict(machine), "backends": [asdict(b) for b in backends], "cortex_m_qemu": qemu,
                          "microcontrollers": [asdict(p) for p in MCU_PROFILES], "recommendation": asdict(advice),
                          "budget": asdict(Budget.for_rate(sample_rate)),
                          "streams_batch1": single and asdict(single), "streams_pooled": pooled and asdict(pooled),
                          "pool_size": POOL_SIZE}, indent=2))
        return
    out_console = table_console()
    facts = Table(title="this machine", show_header=False)
    gpus = ", ".join(f"{g.name} ({g.memory_mb} MiB, driver {g.driver})" for g in machine.gpus) or "none"
    cpu = machine.cpu_model + (f" (CPU part {machine.cpu_part})" if machine.cpu_part else "")
    for key, value in (("arch", machine.arch), ("cpu", cpu), ("cores", str(machine.cores)),
                       ("memory", f"{machine.memory_mb / 1024:.1f} GiB"), ("board", machine.board or "-"),
                       ("gpu", gpus), ("os", machine.os), ("python", machine.python)):
        facts.add_row(key, value)
    found = Table("backend", "format", "version", "usable", "detail", title="backends")
    for b in backends:
        found.add_row(b.name, b.format, b.version or "-", "yes" if b.usable else "no", b.detail,
                      style=None if b.usable else "dim")
    out_console.print(facts, found)
    p = advice.profile
    out_console.print(f"[bold]profile[/]: {p.name} ({p.key}): {p.why}")
    out_console.print(f"[bold]runs here[/] (backend auto, precision {advice.precision}, threads {advice.threads}): "
                      f"one stream (rnnedge monitor) on {advice.backend or 'none usable'} "
                      f"({advice.format or '-'} file), pools on {advice.pool_backend or 'none usable'}")
    line = f"[bold]real-time budget[/]: {1e3 / sample_rate:g} ms per step at {sample_rate:g} Hz"
    if single is None:
        line += "; pass --bundle to see how many streams fit"
    else:
        line += (f"; {single.streams:,} streams fit at one stream per core (a step "
                 f"{machine.cores * 1e6 / single.steps_per_s:.1f} us), {pooled.streams:,} in pools of "
                 f"{POOL_SIZE:,} ({pooled.steps_per_s:,.0f} stream-steps/s)")
    out_console.print(line)
    out_console.print("[bold]Cortex-M under QEMU[/] (`rnnedge mcu BUNDLE`: the bundle's plain C, bit-exact against "
                      f"TFLite Micro): {', '.join(t.name for t in TARGETS)}; " + (
                          f"missing {', '.join(qemu['missing_tools'])} ({cortexm.INSTALL})" if qemu["missing_tools"]
                          else "the tools are installed"))
    out_console.print("[bold]Microcontroller profiles[/] (`rnnedge tune --device`, fits below with --bundle): " +
                      "; ".join(f"{p.key} ({p.ram_bytes >> 10} KB RAM, {p.flash_bytes >> 10} KB flash, "
                                f"{p.clock_hz / 1e6:g} MHz)" for p in MCU_PROFILES))
    if manifest is not None:
        mcus = Table("microcontroller", "fits", "why", title="this bundle on microcontrollers (TFLite Micro)")
        for mcu in MCU_PROFILES:
            result = fit(manifest, mcu)
            mcus.add_row(mcu.name, "yes" if result.file is not None else "no", result.reason)
        out_console.print(mcus)


def bench_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (from `rnnedge export`)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Report folder: bench.json, bench.md, bench.png."),
    quick: bool = typer.Option(False, help="Fewer repetitions and one pool size: under a minute."),
    checkpoint: Path | None = typer.Option(None, help="Source checkpoint for the torch eager row "
                                           "(default: the manifest's provenance, if recorded)."),
    backend: list[Backend] = typer.Option([], help="Only these backends (repeatable)."),
    precision: list[Precision] = typer.Option([], help="Only these precisions (repeatable)."),
    pool_sizes: str = typer.Option("", help="Comma-separated pool sizes (default: the device profile's)."),
    threads: int = typer.Option(1, min=1, help="Intra-op threads per model."),
    cold_start: bool = typer.Option(True, help="Measure cold start and peak RSS in a fresh process."),
    runtime_targets: bool | None = typer.Option(None, help="Also time the runtime's own targets (step vs bare "
                                                "backend call, pool, feed, import + load, peak RSS) into "
                                                "runtime.json/.md. Default: on, off with --quick."),
) -> None:
    """Benchmark every format x precision x backend of BUNDLE on this machine; print and write the report."""
    from rich.console import Console
    from rich.progress import Progress

    from rnnedge.devices import bench, report
    from rnnedge.errors import RnnedgeError

    if pool_sizes and not all(part.strip().isdigit() and int(part) > 0 for part in pool_sizes.split(",")):
        raise RnnedgeError(f"--pool-sizes must be positive integers separated by commas, got {pool_sizes!r}")
    backends, precisions = {b.value for b in backend}, {p.value for p in precision}
    settings = replace(bench.QUICK if quick else bench.FULL, threads=threads, cold_start=cold_start,
                       pool_sizes=tuple(int(part) for part in pool_sizes.split(",") if part.strip()))
    if quick and not settings.pool_sizes:
        settings = replace(settings, pool_sizes=(1024,))
    out_console = table_console()
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("bench", total=None)
        result = bench.run(
            bundle, settings, checkpoint,
            only=lambda _, p, b: (not backends or b in backends) and (not precisions or p in precisions),
            progress=lambda label: progress.update(task, description=label, advance=1))
    out_console.print(report.table(result))
    for path in report.write(result, out):
        out_console.print(f"wrote {path}")
    if runtime_targets if runtime_targets is not None else not quick:
        from rnnedge.atomic import write_text_atomic
        from rnnedge.devices import runtime_bench

        targets = runtime_bench.measure_targets(bundle)
        out_console.print(runtime_bench.table(targets))
        write_text_atomic(out / "runtime.json", json.dumps(targets, indent=2) + "\n")
        lines = [*(f"- {line}" for line in report.header(result)), "", runtime_bench.table(targets)]
        write_text_atomic(out / "runtime.md", "\n".join(lines) + "\n")
        out_console.print(f"wrote {out / 'runtime.json'}")


def report_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (from `rnnedge export`)."),
    out: Path | None = typer.Option(None, help="HTML file to write (default: report.html beside the bundle)."),
    bench: Path | None = typer.Option(None, help="bench.json or its folder (default: the newest beside the "
                                      "bundle that names it, as `make export` writes them)."),
    alarms: Path | None = typer.Option(None, help="evaluate-alarms' report.json or its folder (default: the "
                                       "newest beside the bundle that names it)."),
    mcu: Path | None = typer.Option(None, help="rnnedge mcu's mcu.json or its folder (default: the newest beside "
                                    "the bundle that names it)."),
) -> None:
    """Write one self-contained HTML page for a bundle: the model, its files (size, accuracy, parity), the
    benchmark, the alarms and the microcontroller fit. Opens offline in any browser."""
    from rnnedge.atomic import check_file_target
    from rnnedge.devices import page
    from rnnedge.errors import RnnedgeError

    out = check_file_target(out or bundle.resolve().parent / "report.html", "--out", RnnedgeError)
    typer.echo(f"wrote {page.write(bundle, out, bench, alarms, mcu)}")


def mcu_command(
    bundle: Path = typer.Argument(..., help="Bundle folder with an integer-only a16w8 file (rnnedge export "
                                  "--precisions ...,a16w8): its plain C library is what runs."),
    recording: str = typer.Option("reference", help="What to stream: 'reference' (the bundle's reference.npz), "
                                  "'test' (every recording of the held-out split the bundle records, each from a "
                                  "zero state), or one recording of that split by name."),
    target: list[str] = typer.Option([], help="Cortex-M targets (repeatable; default: all): " +
                                     ", ".join(t.key for t in TARGETS) + "."),
    out: Path = typer.Option(Path("artifacts/mcu"), help="Folder: mcu.json and mcu.md (the table)."),
) -> None:
    """Build the bundle's plain C step into a Cortex-M firmware, run it under QEMU (M4F, M33), compare every output
    with TFLite Micro's on this machine, and report flash, RAM and instructions per step."""
    from rnnedge.atomic import write_text_atomic
    from rnnedge.devices import cortexm
    from rnnedge.errors import RnnedgeError

    unknown = [t for t in target if t not in {x.key for x in TARGETS}]
    if unknown:
        raise RnnedgeError(f"unknown target {unknown[0]!r} (one of {', '.join(x.key for x in TARGETS)})")
    chosen = [x for x in TARGETS if not target or x.key in target]
    check = cortexm.check_bundle(bundle, "a16w8", recording, chosen)
    table = cortexm.markdown(check)
    typer.echo(table, nl=False)
    write_text_atomic(out / "mcu.json", json.dumps({"bundle": check.bundle, "file": check.file, "recording":
                                                    check.recording, "steps": check.steps, "rows": check.rows(),
                                                    "flatbuffer_bytes": check.flatbuffer_bytes,
                                                    "arena_bytes": check.arena_bytes}, indent=2) + "\n")
    write_text_atomic(out / "mcu.md", table)
    typer.echo(f"wrote {out / 'mcu.json'}, {out / 'mcu.md'}")
    if any(differing for _, differing in check.runs):
        raise RnnedgeError("the firmware's outputs differ from TFLite Micro's (the table says where)")


def tune_command(
    data: str = typer.Option(BUNDLED, help=DATA_HELP),
    val: str | None = typer.Option(None, help="Validation, as for train (the search is scored on it alone)."),
    test: str | None = typer.Option(None, help="Test, as for train: recorded for export and evaluate, never used "
                                    "by the search."),
    out: Path = typer.Option(Path("artifacts/tune"), help="Search folder: tune.json (resumable), one run folder "
                             "per candidate, model.pt (the best that fits)."),
    budget: float = typer.Option(10.0, min=0.1, help="Minutes for the whole search (a resumed search counts the "
                                 "time already spent)."),
    device: str | None = typer.Option(None, help="A microcontroller profile (`rnnedge devices` lists them, e.g. "
                                      "cortex-m4f): candidates whose int8 weights or state do not fit, or whose step "
                                      "(estimated) takes over half the sample period, are skipped."),
    task: TaskName = typer.Option("tag", help="As for train."),
    horizon: int = typer.Option(1, min=1, help="forecast: values predicted per step."),
    window_len: int = typer.Option(TrainConfig.window_len, min=0, help="classify: as for train."),
    threads: int = typer.Option(TrainConfig.threads, min=0, help="torch threads, as for train."),
    seed: int = typer.Option(TrainConfig.seed),
    channels: str | None = CSV_OPTIONS["channels"],
    label_column: str | None = CSV_OPTIONS["label_column"],
    sample_rate: float | None = CSV_OPTIONS["sample_rate"],
    unlabelled: str | None = CSV_OPTIONS["unlabelled"],
    trained: Path | None = typer.Option(None, help="A finished `rnnedge train --out RUN` with these data and flags "
                                        "(and --seed): its models stand for the recipe's, so the whole budget goes "
                                        "to the variations (checked: same data, splits, settings and seeds)."),
) -> None:
    """Search cell, size, layers, chunk length and learning rate within a time and device budget, on validation."""
    from rich.table import Table

    from rnnedge.devices.mcu import MCU_PROFILES
    from rnnedge.devices.tune import tune
    from rnnedge.training.prepare import prepared

    profiles = {p.key: p for p in MCU_PROFILES}
    if device is not None and device not in profiles:
        raise RnnedgeError(f"--device {device!r}: not a microcontroller profile ({', '.join(profiles)})")
    if trained is not None and not trained.is_dir():
        raise RnnedgeError(f"--trained {trained}: no such run folder (`rnnedge train --out` writes one)")
    run = prepared(data, val, test, channels, label_column, sample_rate, unlabelled, None, TaskName(task).value,
                    False, horizon, 0.1, {}, window_len)
    config = run.train_config(window_len=window_len, seed=seed, threads=threads)
    writable_run_folder(out)
    typer.echo(run.recipe.describe(), err=True)
    record = tune(run.part["train"], run.part["val"], run.model, config, out, budget,
                  profiles.get(device) if device else None, run.record, say=lambda line: typer.echo(line, err=True),
                  cells=run.recipe.cells, members=run.recipe.members, trained=trained, final=run.recipe.final_fit)
    table = Table(title=f"tune: validation {record['metric']}, best first")
    for column in ("candidate", "status", "validation", "minutes", "parameters", "footprint"):
        table.add_column(column)
    get = get_task(TaskName(task).value)
    scored = sorted((r for r in record["rows"] if r["val_score"] is not None),
                    key=lambda r: -r["val_score"] if get.higher_is_better else r["val_score"])
    for row in scored + [r for r in record["rows"] if r["val_score"] is None]:
        value = "-" if row["val_score"] is None else shown(row['val_score'])
        table.add_row(row["name"] + (" (kept)" if row["name"] == record["best"] else ""), row["status"], value,
                      f"{row['minutes']:.1f}", str(row["params"]), row["footprint"])
    table_console().print(table)
    if record["best"] is None:
        raise RnnedgeError("tune: no candidate was trained within the budget that fits the device")
    typer.echo(f"checkpoint: {out / 'model.pt'} ({record['best']})")


def register(app: typer.Typer) -> None:
    app.command("devices")(devices_command)
    app.command("bench")(bench_command)
    app.command("report")(report_command)
    app.command("mcu")(mcu_command)
    app.command("tune")(tune_command)
