"""What this machine is, and which inference backends are usable on it.

Linux-first: /proc/cpuinfo (ARM boards name their cores by "CPU part"), /proc/device-tree/model (Raspberry
Pi), /etc/nv_tegra_release (Jetson), /proc/meminfo, and nvidia-smi for discrete GPUs. Never imports torch.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ARM_PARTS = {  # ARM Ltd (implementer 0x41) core part numbers, as in the Linux kernel's cputype.h
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
}
# Backends the runtime knows, with the file format each one runs and the module that provides it.
BACKEND_FORMATS = {"onnxruntime": "onnx", "onnxruntime-cuda": "onnx", "litert": "tflite", "tflm": "tflite"}
_MODULES = {  # backend -> (module to import, distribution name)
    "onnxruntime": ("onnxruntime", "onnxruntime"), "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflm": ("tflite_micro", "tflite-micro"),
}


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mb: int
    driver: str


@dataclass(frozen=True)
class Machine:
    arch: str  # platform.machine(): x86_64, aarch64, ...
    cpu_model: str
    cpu_part: str | None  # ARM "CPU part" (0xd08 = Cortex-A72), None elsewhere
    cores: int
    memory_mb: int
    board: str | None  # "Raspberry Pi 4 Model B Rev 1.5", "NVIDIA Jetson ...", None for PCs and servers
    gpus: tuple[Gpu, ...]
    os: str
    python: str

    @property
    def is_arm(self) -> bool:
        return self.arch.lower() in ("aarch64", "arm64")


@dataclass(frozen=True)
class Backend:
    name: str  # as rnnedge.runtime.load(backend=...) spells it
    format: str  # the bundle file format it runs
    version: str | None  # None = not installed
    usable: bool
    detail: str  # providers, or why it is not usable


def parse_cpuinfo(text: str) -> tuple[str, str | None, int]:
    """(CPU model, ARM CPU part or None, processor count) from /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    processors = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep:
            continue
        processors += key == "processor"
        fields.setdefault(key, value)  # first core describes the model; big.LITTLE shows the first cluster
    part = fields.get("CPU part") if fields.get("CPU implementer") == "0x41" else None
    model = fields.get("model name") or ARM_PARTS.get(part or "") or fields.get("Hardware") or ""
    return model, part, processors


def read_board(root: Path = Path("/")) -> str | None:
    """The board's name from the device tree (Raspberry Pi, Jetson) or Jetson's L4T release file."""
    model = root / "proc" / "device-tree" / "model"
    if model.is_file():
        return model.read_bytes().rstrip(b"\0\n").decode(errors="replace") or None
    release = root / "etc" / "nv_tegra_release"  # "# R36 (release), REVISION: 3.0, ..."
    if release.is_file():
        return f"NVIDIA Jetson ({release.read_text().split(',')[0].strip('# ')})"
    return None


def detect_gpus() -> tuple[Gpu, ...]:
    """NVIDIA GPUs from nvidia-smi; empty when it is absent or finds none."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    gpus = []
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        name, memory, driver = (part.strip() for part in line.split(","))
        gpus.append(Gpu(name, int(float(memory)) if memory.replace(".", "").isdigit() else 0, driver))
    return tuple(gpus)


def _memory_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def detect_machine() -> Machine:
    try:
        model, part, processors = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        model, part, processors = "", None, 0
    return Machine(
        arch=platform.machine(), cpu_model=model or platform.processor() or "unknown", cpu_part=part,
        cores=processors or os.cpu_count() or 1, memory_mb=_memory_mb(), board=read_board(),
        gpus=detect_gpus(), os=f"{platform.system()} {platform.release()}", python=platform.python_version(),
    )


def _version(distribution: str) -> str | None:
    for name in (distribution, distribution + "-gpu"):  # onnxruntime-gpu provides the onnxruntime module
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def detect_backends(machine: Machine) -> list[Backend]:
    """Every backend the runtime knows, whether it imports here, and (ORT) which execution providers."""
    found = []
    for name, fmt in BACKEND_FORMATS.items():
        module, distribution = _MODULES["onnxruntime" if name.startswith("onnxruntime") else name]
        try:
            imported = importlib.import_module(module)
        except Exception as exc:  # a broken install (e.g. a numpy ABI clash) is "not usable" too
            version = _version(distribution)
            why = "not installed" if version is None else f"import failed: {str(exc).splitlines()[0]}"
            found.append(Backend(name, fmt, version, False, why))
            continue
        version = getattr(imported, "__version__", None) or _version(distribution)
        if name.startswith("onnxruntime"):
            providers = imported.get_available_providers()
            usable, detail = True, "providers: " + ", ".join(providers)
            if name == "onnxruntime-cuda":
                has_gpu = bool(machine.gpus) or "jetson" in (machine.board or "").lower()
                usable = "CUDAExecutionProvider" in providers and has_gpu
                detail = ("CUDA execution provider + GPU" if usable else
                          "no CUDA execution provider (install onnxruntime-gpu)"
                          if "CUDAExecutionProvider" not in providers else "CUDA provider but no GPU found")
            found.append(Backend(name, fmt, version, usable, detail))
        else:
            found.append(Backend(name, fmt, version, True, "Interpreter"))
    return found
