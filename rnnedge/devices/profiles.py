"""Device profiles: where to start for each kind of target (backend, precision, threads), as plain data.

A profile is a starting point, not a measurement: `rnnedge bench BUNDLE` on the device says what actually
wins there. The real-time budget turns a sample rate and a measured step cost into "how many streams fit".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnedge.devices.info import Backend, Machine


@dataclass(frozen=True)
class Profile:
    key: str
    name: str
    backends: tuple[str, ...]  # preference order; the first usable one is recommended
    precision: str
    threads: int  # intra-op threads per model; one stream per core scales better than threads per stream
    pool_sizes: tuple[int, ...]  # stream counts the bench tries for the batched pool
    why: str


PROFILES = (
    Profile(
        "x86-cpu", "x86-64 CPU", backends=("onnxruntime", "litert"), precision="fp32", threads=1,
        pool_sizes=(1, 64, 1024),
        why="ONNX Runtime's batched recurrent kernels serve many streams best (one call per tick for a whole "
            "pool); a device with a single stream steps faster on LiteRT (fewer fixed costs per call; `rnnedge "
            "bench` measures both here); int8 brings no latency gain at batch 1 on x86 (call overhead "
            "dominates), so keep fp32's exact outputs"),
    Profile(
        "cuda-gpu", "CUDA GPU", backends=("onnxruntime-cuda", "onnxruntime", "litert"), precision="fp32",
        threads=1, pool_sizes=(1, 1024, 4096, 8192),
        why="a GPU pays off for large pools (thousands of streams per tick); a single stream is faster on "
            "the CPU, where a step costs less than the GPU's launches and copies"),
    Profile(
        "rpi4", "Raspberry Pi 4 (Cortex-A72)", backends=("litert", "onnxruntime"),
        precision="fp32", threads=1, pool_sizes=(1, 64, 256),
        why="LiteRT (XNNPACK) targets ARM NEON; the A72 has no fp16 arithmetic and a small recurrent model "
            "fits its 1 MB L2, so fp32 costs little; try int8 when the model outgrows the cache"),
    Profile(
        "rpi5", "Raspberry Pi 5 (Cortex-A76)", backends=("litert", "onnxruntime"),
        precision="fp32", threads=1, pool_sizes=(1, 64, 1024),
        why="LiteRT (XNNPACK) on NEON; fp32 keeps outputs exact, int8 cuts memory traffic for larger models"),
    Profile(
        "jetson-orin", "NVIDIA Jetson Orin (aarch64 + CUDA)",
        backends=("onnxruntime-cuda", "litert", "onnxruntime"), precision="fp32", threads=1,
        pool_sizes=(1, 1024, 4096, 8192),
        why="the integrated GPU serves large pools through ONNX Runtime's CUDA execution provider; single "
            "streams run on the Cortex-A78AE cores with LiteRT"),
    Profile(
        "arm64-cpu", "Other 64-bit ARM CPU", backends=("litert", "onnxruntime"),
        precision="fp32", threads=1, pool_sizes=(1, 64, 1024),
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
    profile: Profile
    backend: str | None  # None when none of the profile's backends is usable here
    format: str | None
    precision: str
    threads: int


def recommend(machine: Machine, backends: list[Backend],
              files: set[tuple[str, str]] | None = None) -> Recommendation:
    """The profile's first usable backend and precision; with `files` (a bundle's (format, precision) stream
    files), the first that the bundle can feed: the profile's precision, else fp32, else any it has."""
    chosen = match(machine)
    usable = [b for name in chosen.backends for b in backends if b.usable and b.name == name]
    if files is None:
        backend = usable[0] if usable else None
        return Recommendation(chosen, backend and backend.name, backend and backend.format, chosen.precision,
                              chosen.threads)
    for precision in (chosen.precision, "fp32", *sorted({p for _, p in files})):
        backend = next((b for b in usable if (b.format, precision) in files), None)
        if backend is not None:
            return Recommendation(chosen, backend.name, backend.format, precision, chosen.threads)
    return Recommendation(chosen, None, None, chosen.precision, chosen.threads)


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
