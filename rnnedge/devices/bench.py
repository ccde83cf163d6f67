"""`rnnedge bench BUNDLE`: every format x precision x backend this machine has, measured the same way.

Per variant: batch-1 step latency (p50/p90/p99), chunk latency, batched pool throughput and the real-time
streams it sustains at the model's sample rate, cold start and peak RSS (in a fresh process), file size,
and task accuracy + parity on the bundle's reference data, so a fast but wrong variant shows up as such.
Two comparison rows show what streaming saves: the torch eager source model stepping (only where torch is
installed), and naive windowed recompute (re-running the last N samples through the same backend every step).

Imports numpy, the runtime and the backends only: it runs unchanged on a board, or under emulation.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rnnedge.bundle import INTEGER_PRECISIONS, Manifest, ModelFile, read_manifest, read_reference, sha256_file
from rnnedge.data.recording import Recording
from rnnedge.devices.info import BACKEND_FORMATS, detect_backends, detect_machine
from rnnedge.devices.profiles import Budget, match, profile
from rnnedge.errors import BundleError, RnnedgeError
from rnnedge.tasks import score

LAUNCHER_ENV = "RNNEDGE_PYTHON"  # the interpreter command for fresh-process measurements (emulation sets it)
OK, PARITY_FAILED, UNAVAILABLE, LOAD_FAILED = "ok", "parity failed", "backend not available", "load failed"


@dataclass(frozen=True)
class Settings:
    steps: int  # timed batch-1 steps per variant
    chunks: int  # timed chunk calls per variant
    pool_steps: int  # stream-steps timed per pool size (ticks = pool_steps // size, at least 3)
    window: int  # naive recompute: samples re-run every step
    windowed_steps: int  # steps timed and scored for the naive recompute row
    threads: int
    pool_sizes: tuple[int, ...] = ()  # () = the device profile's sizes
    cold_start: bool = True
    # Untimed stepping before each variant's timed steps. By time, not by count: on the shared 2-core box a
    # process's first ~2 s of steady stepping ran at 24 us per ONNX step, then 15.5 (numpy matmuls too: the
    # machine, not a backend), and a count-based warm-up left the first variants measured in that phase.
    warmup_s: float = 2.0


QUICK = Settings(steps=300, chunks=20, pool_steps=20_000, window=100, windowed_steps=100, threads=1, warmup_s=1.0)
FULL = Settings(steps=3_000, chunks=200, pool_steps=300_000, window=100, windowed_steps=1_000, threads=1)


@dataclass
class BenchRow:
    kind: str  # "stream" | "torch eager" | "windowed N"
    format: str
    precision: str
    backend: str
    status: str = OK
    note: str = ""
    file_bytes: int | None = None
    step_us: tuple[float, float, float] | None = None  # p50, p90, p99 at batch 1
    chunk_len: int | None = None
    chunk_us: float | None = None  # median time of one chunk call
    pool_steps_per_s: dict[int, float] = field(default_factory=dict)  # pool size -> stream-steps/s
    streams: int | None = None  # real-time streams sustained at the model's sample rate
    cold_start_s: float | None = None
    peak_rss_mb: float | None = None
    max_abs_diff: float | None = None  # vs the reference (torch) outputs
    allowed_diff: float | None = None
    score: float | None = None  # the task metric (manifest.evaluation.metric) on the reference slice


@dataclass
class Report:
    bundle: str
    model: str
    task: str
    sample_rate_hz: float
    machine: dict
    profile: str
    settings: dict
    versions: dict
    rows: list[BenchRow]
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @staticmethod
    def from_json(data: dict) -> Report:
        """A report read back from bench.json (JSON turned the pool sizes into strings)."""
        rows = [BenchRow(**{**row, "pool_steps_per_s": {int(k): v for k, v in row["pool_steps_per_s"].items()}})
                for row in data["rows"]]
        return Report(**{**data, "rows": rows})


@dataclass(frozen=True)
class ReferenceData:
    x: np.ndarray  # [N, T, C] raw units
    labels: np.ndarray  # [N, T] int64, 0 = unscored (class = label - 1)
    y: np.ndarray  # [N, T, outputs] the torch model's outputs


@dataclass(frozen=True)
class Context:
    """What every measurement reads: the bundle, its manifest, the reference data and the settings."""

    bundle: Path
    manifest: Manifest
    ref: ReferenceData
    settings: Settings

    @property
    def sample_rate(self) -> float:
        return self.manifest.input.sample_rate_hz


def load_reference(bundle: Path, manifest: Manifest) -> ReferenceData:
    """The bundle's held-out data (the exporter keeps it to a few thousand steps: every run checks it all)."""
    data = read_reference(bundle, manifest)  # BundleError if missing, corrupt (not zlib.error) or mis-shaped
    return ReferenceData(data["x"], data["labels"], data["y"])


def _percentiles(samples_ns: list[int]) -> tuple[float, float, float]:
    p50, p90, p99 = np.percentile(np.asarray(samples_ns) / 1e3, [50, 90, 99])
    return float(p50), float(p90), float(p99)


def timed(call: Callable[[], object], repeats: int) -> list[int]:
    """Nanoseconds of each of `repeats` calls: the one timer of every benchmark here."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return times


def _score(outputs: np.ndarray, ctx: Context, row: BenchRow, ref: ReferenceData | None = None) -> None:
    """Parity (max |output - torch|) and the task metric (rnnedge.tasks) on the reference rows."""
    ref = ref or ctx.ref
    row.max_abs_diff = float(np.abs(outputs - ref.y).max())
    rows = [Recording(x, labels, 0, str(i)) for i, (x, labels) in enumerate(zip(ref.x, ref.labels, strict=True))]
    row.score = score(ctx.manifest.task, list(outputs), rows, ctx.manifest.output.labels,
                      ctx.manifest.model.get("horizon", 1))["value"]


def _allowed_diff(entry: ModelFile) -> float:
    """How far this device may be from torch on the continuous reference streams. Export checks fp32 files
    chunk by chunk from torch's own state (tolerance ~1e-5); a 2000-step stream drifts further, so fp32 gets
    1e-3, which a wrong kernel still breaks by orders of magnitude. Quantized files get four times the worst
    difference measured at export (chunked, or streamed over the same reference slice as here: quantization
    error accumulates in the state) plus the same slack."""
    if entry.parity.tolerance is not None:
        return 1e-3
    p = entry.parity
    worst = max(p.max_abs_diff_output, p.streaming_max_abs_diff or 0.0, p.streamed_max_abs_diff or 0.0)
    return 4 * worst + 1e-3


def _launcher() -> list[str]:
    return shlex.split(os.environ.get(LAUNCHER_ENV, "")) or [sys.executable]


def probe(bundle: Path, backend: str, precision: str, checkpoint: Path | None = None) -> dict:
    """Import + load + first step in a fresh interpreter (rnnedge.devices.probe): its times, peak RSS and
    whether torch got imported. RnnedgeError with the probe's last error line if it fails."""
    args = [*_launcher(), "-m", "rnnedge.devices.probe", str(bundle), backend, precision]
    done = subprocess.run(args + ([str(checkpoint)] if checkpoint else []), capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise RnnedgeError(f"cold-start probe failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_start(row: BenchRow, bundle: Path, backend: str, precision: str, checkpoint: Path | None = None) -> None:
    """The row's cold start and peak RSS (a failure becomes a note)."""
    try:
        found = probe(bundle, backend, precision, checkpoint)
    except RnnedgeError as exc:
        row.note = str(exc)
        return
    row.cold_start_s, row.peak_rss_mb = found["cold_start_s"], found["peak_rss_mb"]


def pool_rate(model, samples: np.ndarray, size: int, ticks: int) -> float:
    """Stream-steps per second of a pool of `size` streams advanced together (the array fast path)."""
    pool = model.pool(capacity=size)
    for stream_id in range(size):
        pool.add(stream_id)
    batch = np.resize(samples, (size, samples.shape[1]))
    pool.step_array(batch)
    return size * ticks / (sum(timed(lambda: pool.step_array(batch), ticks)) / 1e9)


def _measure_stream(model, ctx: Context, pool_sizes: tuple[int, ...], row: BenchRow) -> None:
    settings, chunk_len = ctx.settings, max(ctx.manifest.chunk_lens or [50])
    samples = ctx.ref.x.reshape(-1, ctx.ref.x.shape[-1])
    stream = model.stream()
    warmup_until = time.perf_counter() + settings.warmup_s
    for sample in itertools.cycle(samples[:50]):  # also lets the first calls allocate and pick kernels
        stream.step(sample)
        if time.perf_counter() > warmup_until:
            break
    steps = iter(np.resize(samples, (settings.steps, samples.shape[1])))
    row.step_us = _percentiles(timed(lambda: stream.step(next(steps)), settings.steps))
    chunk = np.resize(samples, (chunk_len, samples.shape[1]))
    stream.feed(chunk)
    row.chunk_len, row.chunk_us = chunk_len, float(np.median(timed(lambda: stream.feed(chunk),
                                                                    settings.chunks)) / 1e3)
    for size in pool_sizes:
        row.pool_steps_per_s[size] = pool_rate(model, samples, size, max(3, settings.pool_steps // size))
    best = max([*row.pool_steps_per_s.values(), 1e6 / row.step_us[0]])
    row.streams = Budget.for_rate(ctx.sample_rate, best).streams


def _bench_variant(ctx: Context, fmt: str, precision: str, backend: str, pool_sizes: tuple[int, ...],
                   usable: bool) -> BenchRow:
    import rnnedge.runtime as rt

    kind = (fmt, precision, "stream")
    entries = [f for f in ctx.manifest.files if (f.format, f.precision, f.graph) == kind]
    one_step = [f for f in entries if f.chunk_len in (None, 1)]  # what a device that streams ships
    row = BenchRow("stream", fmt, precision, backend, file_bytes=sum(f.size_bytes for f in one_step or entries),
              allowed_diff=min(_allowed_diff(f) for f in entries))
    if not usable:
        row.status = UNAVAILABLE
        return row
    try:
        model = rt.load(ctx.bundle, backend=backend, precision=precision, threads=ctx.settings.threads)
    except RnnedgeError as exc:
        row.status, row.note = LOAD_FAILED, str(exc)
        return row
    stream, outputs = model.stream(), []
    for x in ctx.ref.x:  # each reference sequence from a zero state, as the torch reference ran
        stream.reset()
        outputs.append(stream.feed(x))
    _score(np.stack(outputs), ctx, row)
    if row.max_abs_diff > row.allowed_diff:
        row.status = PARITY_FAILED
    _measure_stream(model, ctx, pool_sizes, row)
    if ctx.settings.cold_start:
        cold_start(row, ctx.bundle, backend, precision)
    return row


def _bench_windowed(ctx: Context, backend: str) -> BenchRow:
    """Naive recompute: every step re-runs the last `window` samples from a zero state."""
    import rnnedge.runtime as rt

    ref, settings, n = ctx.ref, ctx.settings, ctx.settings.window
    row = BenchRow(f"windowed {n}", BACKEND_FORMATS[backend], "fp32", backend)
    stream = rt.load(ctx.bundle, backend=backend, precision="fp32", threads=settings.threads).stream()
    positions = [(i, t) for i in range(len(ref.x)) for t in range(n - 1, ref.x.shape[1])]
    positions = positions[:: max(1, len(positions) // settings.windowed_steps)][: settings.windowed_steps]
    if not positions:
        row.status, row.note = LOAD_FAILED, f"reference sequences are shorter than the window ({n})"
        return row
    outputs, windows = [], (ref.x[i, t - n + 1: t + 1] for i, t in positions)

    def recompute() -> None:
        stream.reset()
        outputs.append(stream.feed(next(windows))[-1])

    row.step_us = _percentiles(timed(recompute, len(positions)))
    picked = tuple(np.array(positions).T)
    sub = ReferenceData(ref.x[picked][:, None], ref.labels[picked][:, None], ref.y[picked][:, None])
    _score(np.stack(outputs)[:, None], ctx, row, sub)
    row.note = f"score on {len(positions)} sampled steps; the diff is what truncating the context costs"
    row.streams = Budget.for_rate(ctx.sample_rate, 1e6 / row.step_us[0]).streams
    return row


def find_checkpoint(bundle: Path, manifest: Manifest) -> Path | None:
    """The source checkpoint recorded in the manifest's provenance, if it is still where it was, unchanged (a
    checkpoint retrained in place is another model: its torch row would compare the wrong weights)."""
    recorded = manifest.provenance.get("checkpoint")
    recorded = recorded.get("path") if isinstance(recorded, dict) else recorded
    if not recorded:
        return None
    expected = manifest.provenance.get("checkpoint_sha256")
    for candidate in (Path(recorded), bundle / recorded):
        if candidate.is_file() and expected in (None, sha256_file(candidate)):
            return candidate
    return None


def _bench_torch(ctx: Context, checkpoint: Path | None) -> BenchRow:
    """The source model in torch eager mode, stepping with a carried state as a naive device app would."""
    row = BenchRow("torch eager", "checkpoint", "fp32", "torch")
    if importlib.util.find_spec("torch") is None:
        row.status, row.note = UNAVAILABLE, "torch is not installed"
        return row
    if checkpoint is None:
        row.status, row.note = UNAVAILABLE, "no checkpoint (pass --checkpoint)"
        return row
    import torch

    from rnnedge.training.checkpoint import Checkpoint

    source = Checkpoint.load(checkpoint)
    model, norm = source.build_model(), source.normalization
    row.file_bytes = checkpoint.stat().st_size
    torch.set_num_threads(ctx.settings.threads)
    with torch.no_grad():
        outputs = np.stack([model(torch.from_numpy(norm.apply(x))[None])[0][0].numpy() for x in ctx.ref.x])
    _score(outputs, ctx, row)
    step = torch_step(model, norm.apply(ctx.ref.x.reshape(-1, ctx.ref.x.shape[-1])))
    timed(step, 50)
    row.step_us = _percentiles(timed(step, ctx.settings.steps))
    row.streams = Budget.for_rate(ctx.sample_rate, 1e6 / row.step_us[0]).streams
    if ctx.settings.cold_start:
        cold_start(row, ctx.bundle, "torch-eager", "fp32", checkpoint)
    return row


def torch_step(model, samples: np.ndarray) -> Callable[[], object]:
    """One torch eager step of `model` (a RecurrentModel) per call, as a naive device app would run it: batch 1,
    the state carried, cycling through `samples` [N, channels] (normalized)."""
    import torch

    inputs = itertools.cycle(torch.from_numpy(np.ascontiguousarray(samples, np.float32))[:, None, None])
    state = [model.initial_state(1)]

    @torch.no_grad()
    def step() -> object:
        y, state[0] = model(next(inputs), state[0])
        return y

    return step


def _bench_cortex_m(bundle: Path, manifest: Manifest, progress: Callable[[str], None]) -> list[BenchRow]:
    """The bundle's plain C on each QEMU Cortex-M target over its reference slice (rnnedge.devices.cortexm):
    no time (QEMU counts instructions, not a core's cycles), the instructions, flash and RAM in the note."""
    from rnnedge.devices import cortexm

    entry = next((f for f in manifest.files if f.mcu is not None and f.mcu.c is not None), None)
    if entry is None:
        return []
    backends = [f"{t.key} (QEMU)" for t in cortexm.TARGETS]
    lacking = cortexm.missing_tools()
    if lacking:
        return [BenchRow("stream", "c", entry.precision, b, UNAVAILABLE, f"{', '.join(lacking)} missing")
                for b in backends]
    progress("plain C on Cortex-M (QEMU)")
    check = cortexm.check_bundle(bundle, entry.precision, "reference", list(cortexm.TARGETS))
    return [BenchRow("stream", "c", entry.precision, backend, OK if row["differing"] == 0 else PARITY_FAILED,
                     f"{row['instructions_per_step']:,} instructions per step ({row['budget_share']:.0%} of the "
                     f"sample period at 64 MHz, one a cycle), RAM {row['ram_bytes']:,} B; {row['differing']} output "
                     "integers differ from TFLite Micro's", file_bytes=row["flash_bytes"])
            for backend, row in zip(backends, check.rows(), strict=True)]


def variants(manifest: Manifest) -> list[tuple[str, str, str]]:
    """(format, precision, backend) for every streaming file precision and every backend of its format; TFLite
    Micro only for the integer-only files (the ones a microcontroller runs)."""
    kinds = sorted({(f.format, f.precision) for f in manifest.files if f.graph == "stream"})
    return [(fmt, precision, backend) for fmt, precision in kinds
            for backend, backend_format in BACKEND_FORMATS.items()
            if backend_format == fmt and (backend != "tflm" or precision in INTEGER_PRECISIONS)]


def run(bundle: str | Path, settings: Settings, checkpoint: Path | None = None,
        only: Callable[[str, str, str], bool] = lambda *_: True,
        progress: Callable[[str], None] = lambda _: None) -> Report:
    """Benchmark every variant of `bundle` on this machine; `progress(label)` is called before each one."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if not manifest.streamable:
        raise BundleError(f"{bundle}: a window (bidirectional) model does not stream; nothing to bench")
    machine = detect_machine()
    usable = {b.name: b.usable for b in detect_backends(machine)}
    device = match(machine)
    ctx = Context(bundle, manifest, load_reference(bundle, manifest), settings)
    rows = []
    for fmt, precision, backend in (v for v in variants(manifest) if only(*v)):
        progress(f"{fmt} {precision} on {backend}")
        target = profile("cuda-gpu") if backend.endswith("cuda") else device  # GPUs get pools up to 8192
        sizes = settings.pool_sizes or target.pool_sizes
        rows.append(_bench_variant(ctx, fmt, precision, backend, sizes, usable[backend]))
    baseline = next((r for r in rows if r.status == OK and r.precision == "fp32"
                     and r.backend in device.backends), None)
    if baseline is not None:
        progress(f"windowed recompute on {baseline.backend}")
        rows.append(_bench_windowed(ctx, baseline.backend))
    if only("c", "a16w8", "qemu"):
        rows += _bench_cortex_m(bundle, manifest, progress)
    progress("torch eager")
    rows.append(_bench_torch(ctx, checkpoint or find_checkpoint(bundle, manifest)))
    return Report(str(bundle), manifest.name, manifest.task, ctx.sample_rate, asdict(machine), device.key,
                  asdict(settings), _versions(), rows)


def _versions() -> dict:
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for name in ("numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "torch"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
