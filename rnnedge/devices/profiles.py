"""Device profiles: where to start for each kind of target (backend, precision, threads), as plain data.

A profile is a starting point, not a measurement: `rnnedge bench BUNDLE` on the device says what actually
wins there. The real-time budget turns a sample rate and a measured step cost into "how many streams fit".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnedge.choices import STREAMING_PRECISION
from rnnedge.devices.info import Backend, Machine
from rnnedge.runtime.model import auto_backends


@dataclass(frozen=True)
class Profile:
    key: str
    name: str
    backends: tuple[str, ...]  # the backends worth measuring here, best first (the bench's baseline is the first)
    threads: int  # intra-op threads per model; one stream per core scales better than threads per stream
    pool_sizes: tuple[int, ...]  # stream counts the bench tries for the batched pool
    why: str


PROFILES = (
    Profile(
        "x86-cpu", "x86-64 CPU", backends=("onnxruntime", "litert"), threads=1,
        pool_sizes=(1, 64, 1024),
        why="ONNX Runtime's batched recurrent kernels serve many streams best (one call per tick for a whole "
            "pool); a device with a single stream steps faster on LiteRT (fewer fixed costs per call; `rnnedge "
            "bench` measures both here); int8 brings no latency gain at batch 1 on x86 (call overhead "
            "dominates) but is 4x smaller, within a point of fp32, and the file the alarm's point was chosen on"),
    Profile(
        "cuda-gpu", "CUDA GPU", backends=("onnxruntime-cuda", "onnxruntime", "litert"), threads=1,
        pool_sizes=(1, 1024, 4096, 8192),
        why="a GPU pays off for large pools (thousands of streams per tick); a single stream is faster on "
            "the CPU, where a step costs less than the GPU's launches and copies"),
    Profile(
        "rpi4", "Raspberry Pi 4 (Cortex-A72)", backends=("litert", "onnxruntime"),
        threads=1, pool_sizes=(1, 64, 256),
        why="LiteRT (XNNPACK) targets ARM NEON; the A72 has no fp16 arithmetic, and int8 weights keep a small "
            "recurrent model well inside its 1 MB L2"),
    Profile(
        "rpi5", "Raspberry Pi 5 (Cortex-A76)", backends=("litert", "onnxruntime"),
        threads=1, pool_sizes=(1, 64, 1024),
        why="LiteRT (XNNPACK) on NEON; int8 weights cut memory traffic, more so for larger models"),
    Profile(
        "jetson-orin", "NVIDIA Jetson Orin (aarch64 + CUDA)",
        backends=("onnxruntime-cuda", "litert", "onnxruntime"), threads=1,
        pool_sizes=(1, 1024, 4096, 8192),
        why="the integrated GPU serves large pools through ONNX Runtime's CUDA execution provider; single "
            "streams run on the Cortex-A78AE cores with LiteRT"),
    Profile(
        "arm64-cpu", "Other 64-bit ARM CPU", backends=("litert", "onnxruntime"),
        threads=1, pool_sizes=(1, 64, 1024),
        why="an ARM core without a profile of its own: LiteRT first, as on the Raspberry Pis"),
)


def profile(key: str) -> Profile:
    for candidate in PROFILES:
        if candidate.key == key:
            return candidate
    raise KeyError(f"no device profile {key!r} (have: {', '.join(p.key for p in PROFILES)})")


def match(machine: Machine) -> Profile:
    """The profile describing this machine: board name first, then CPU core, then GPU."""
    board = (machine.board or "").lower()
    if "jetson" in board or (machine.is_arm and machine.gpus):
        return profile("jetson-orin")
    if machine.is_arm:
        if "raspberry pi 5" in board or machine.cpu_part == "0xd0b":
            return profile("rpi5")
        if "raspberry pi 4" in board or machine.cpu_part == "0xd08":
            return profile("rpi4")
        return profile("arm64-cpu")
    return profile("cuda-gpu") if machine.gpus else profile("x86-cpu")


@dataclass(frozen=True)
class Recommendation:
    """What `rt.load(bundle, backend="auto")` runs here: its streams (one bed: `rnnedge monitor`) and its pools
    (many streams per call), at the precision the monitor streams by default."""

    profile: Profile
    backend: str | None  # the streams'; None when no usable backend has a file for the bundle
    pool_backend: str | None
    format: str | None
    precision: str
    threads: int


FORMAT_OF = {"onnxruntime": "onnx", "onnxruntime-cuda": "onnx", "litert": "tflite", "tflm": "tflite"}


def recommend(machine: Machine, backends: list[Backend],
              files: set[tuple[str, str]] | None = None) -> Recommendation:
    """The runtime's own "auto" rule (rnnedge.runtime.model.auto_backends) over what is usable here, at the
    monitor's precision if the bundle has it, else fp32, else any it has; `files` (a bundle's (format, precision)
    stream files) defaults to every format at every precision."""
    chosen = match(machine)
    usable = {b.name for b in backends if b.usable}
    formats = {FORMAT_OF[name] for name in usable if name != "tflm"}  # tflm: integer-only files, chosen by name
    files = files if files is not None else {(f, STREAMING_PRECISION) for f in formats}
    for precision in (STREAMING_PRECISION, "fp32", *sorted({p for _, p in files})):
        have = {f for f, p in files if p == precision} & formats
        if have:
            streams, pools = auto_backends(have)
            if pools == "onnxruntime" and "onnxruntime-cuda" in usable:
                pools = "onnxruntime-cuda"  # auto's pools start on CUDA when it works
            return Recommendation(chosen, streams, pools, FORMAT_OF[streams], precision, chosen.threads)
    return Recommendation(chosen, None, None, None, STREAMING_PRECISION, chosen.threads)


@dataclass(frozen=True)
class Budget:
    """Real-time budget for streams sampled at `sample_rate_hz`: every step must finish within one period."""

    sample_rate_hz: float
    step_budget_us: float  # 1 / sample rate
    steps_per_s: float | None  # measured throughput of the engine (one stream, or a batched pool)
    streams: int | None  # streams whose steps fit in that throughput, in real time

    @staticmethod
    def for_rate(sample_rate_hz: float, steps_per_s: float | None = None) -> Budget:
        streams = None if steps_per_s is None else math.floor(steps_per_s / sample_rate_hz)
        return Budget(sample_rate_hz, 1e6 / sample_rate_hz, steps_per_s, streams)
