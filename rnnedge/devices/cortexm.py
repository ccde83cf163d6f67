"""The generated C step (a bundle's `<name>.c/.h`, rnnedge/export/cgen.py) built for a Cortex-M and run under QEMU:
a firmware of our own (rnnedge/devices/firmware: startup, linker script, a main that streams a recording) compiled
with Debian's gcc-arm-none-eabi and newlib (semihosting), run on `qemu-system-arm` boards with deterministic
instruction counting (-icount shift=0), its outputs read back to compare with the host.

Reported per target: the model's flash (text + rodata of the generated object) and RAM (its data + bss, the
caller's state, and the stack the step used, scratch included), and instructions per step. QEMU counts
instructions, not a real core's cycles (no pipeline, no wait states): the figure is instructions, calibrated on
a loop of known length against the board's SysTick."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from rnnedge.errors import RnnedgeError

TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
INSTALL = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


@dataclass(frozen=True)
class Target:
    key: str
    name: str
    machine: str
    cpu: str
    flags: tuple[str, ...]
    flash_origin: int
    ram_origin: int
    ram_length: int
    clock_hz: float  # a typical part's core clock, for the share of the sample period


TARGETS = (
    Target("cortex-m4f", "Cortex-M4F (QEMU mps2-an386)", "mps2-an386", "cortex-m4",
           ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"), 0x0, 0x20000000, 4 << 20, 64e6),
    Target("cortex-m33", "Cortex-M33 (QEMU mps2-an505)", "mps2-an505", "cortex-m33",
           ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"), 0x10000000, 0x38000000,
           2 << 20, 64e6),
)


@dataclass(frozen=True)
class Run:
    target: Target
    outputs: np.ndarray  # int16 [steps, outputs]
    instructions_per_step: float
    worst_instructions: float
    flash_bytes: int  # the model object's text + rodata
    static_ram_bytes: int  # the model object's data + bss
    stack_bytes: int  # the step's stack (scratch included), measured
    state_bytes: int

    @property
    def ram_bytes(self) -> int:
        return self.static_ram_bytes + self.stack_bytes + self.state_bytes


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def recording_header(samples: np.ndarray) -> str:
    rows = ",\n".join("{" + ",".join(str(int(v)) for v in row) + "}" for row in samples)
    return (f"#define RECORDING_STEPS {len(samples)}\n"
            f"static const int16_t recording[{len(samples)}][{samples.shape[1]}] = {{\n{rows}\n}};\n")


def run(c_files: dict[str, str], prefix: str, samples: np.ndarray, target: Target, state_size: int,
        outputs: int, timeout_s: float = 600) -> Run:
    """Build the firmware for `target` around the generated library and stream `samples` (int16, quantized)."""
    lacking = missing_tools()
    if lacking:
        raise RnnedgeError(f"{', '.join(lacking)} not found: {INSTALL}")
    with tempfile.TemporaryDirectory(prefix="rnnedge-fw-") as folder:
        work = Path(folder)
        for name, text in c_files.items():
            (work / name).write_text(text)
        firmware = resources.files("rnnedge.devices") / "firmware"
        for name in ("startup.c", "main.c", "link.ld"):
            (work / name).write_text((firmware / name).read_text())
        (work / "recording.h").write_text(recording_header(samples))
        up = prefix.upper()
        gcc = ["arm-none-eabi-gcc", *target.flags, "-O2", "-std=c99", "-Wall", "-ffunction-sections",
               "-fdata-sections"]
        model_obj = work / f"{prefix}.o"
        _check([*gcc, "-c", f"{prefix}.c", "-o", model_obj.name], work)
        _check([*gcc, "--specs=rdimon.specs", "-nostartfiles", f'-DMODEL_HEADER="{prefix}.h"',
                f"-DMODEL_STEP={prefix}_step", f"-DMODEL_STATE={up}_STATE", f"-DMODEL_OUTPUTS={up}_OUTPUTS",
                "startup.c", "main.c", model_obj.name, "-T", "link.ld", "-Wl,--gc-sections",
                f"-Wl,--defsym=FLASH_ORIGIN={target.flash_origin}", f"-Wl,--defsym=RAM_ORIGIN={target.ram_origin}",
                f"-Wl,--defsym=RAM_LENGTH={target.ram_length}", "-o", "fw.elf"], work)
        flash, static_ram = object_size(model_obj)
        done = subprocess.run(["qemu-system-arm", "-M", target.machine, "-cpu", target.cpu, "-nographic",
                               "-monitor", "none", "-serial", "none", "-icount", "shift=0",
                               "-semihosting-config", "enable=on,target=native", "-kernel", "fw.elf"],
                              cwd=work, capture_output=True, text=True, timeout=timeout_s)
        found = re.search(r"steps (\d+) ticks (\d+) worst (\d+) calibration_ticks (\d+) "
                          r"calibration_instructions (\d+) stack_bytes (\d+)", done.stdout)
        if done.returncode != 0 or found is None:
            raise RnnedgeError(f"the firmware failed under {target.machine} (exit {done.returncode}): "
                               f"{(done.stdout + done.stderr).strip()[-300:]}")
        steps, ticks, worst, cal_ticks, cal_insns, stack = (int(v) for v in found.groups())
        per_tick = cal_insns / cal_ticks
        y = np.fromfile(work / "y.bin", dtype="<i2").reshape(steps, outputs)
    return Run(target, y, ticks * per_tick / steps, worst * per_tick, flash, static_ram, stack, 2 * state_size)


def object_size(obj: Path) -> tuple[int, int]:
    """(text + rodata, data + bss) of one object file, from arm-none-eabi-size's section list."""
    done = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True, check=True)
    flash = ram = 0
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            if parts[0].startswith((".text", ".rodata")):
                flash += int(parts[1])
            elif parts[0].startswith((".data", ".bss")):
                ram += int(parts[1])
    return flash, ram


def _check(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RnnedgeError(f"{command[0]} failed: {done.stderr.strip()[-400:]}")
