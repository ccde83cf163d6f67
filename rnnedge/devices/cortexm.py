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

from rnnedge.bundle import Manifest, ModelFile
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


@dataclass(frozen=True)
class Firmware:
    """What one firmware run left: its standard output, the files it wrote on the host, the model object's size."""

    stdout: str
    files: dict[str, bytes]
    flash_bytes: int
    static_ram_bytes: int


def build_and_run(c_files: dict[str, str], prefix: str, samples: np.ndarray, target: Target, main: str,
                  headers: dict[str, str] | None = None, outputs: tuple[str, ...] = (),
                  timeout_s: float = 600) -> Firmware:
    """Build `main` (a file of rnnedge/devices/firmware) with the generated library, the recording and `headers`
    for `target`, run it under QEMU, and read back the host files it wrote (`outputs`); the tools must be there
    (check_bundle checks)."""
    with tempfile.TemporaryDirectory(prefix="rnnedge-fw-") as folder:
        work = Path(folder)
        for name, text in {**c_files, **(headers or {}), "recording.h": recording_header(samples)}.items():
            (work / name).write_text(text)
        firmware = resources.files("rnnedge.devices") / "firmware"
        for name in ("startup.c", main, "link.ld"):
            (work / name).write_text((firmware / name).read_text())
        up = prefix.upper()
        gcc = ["arm-none-eabi-gcc", *target.flags, "-O2", "-std=c99", "-Wall", "-ffunction-sections",
               "-fdata-sections"]
        model_obj = work / f"{prefix}.o"
        _check([*gcc, "-c", f"{prefix}.c", "-o", model_obj.name], work)
        _check([*gcc, "--specs=rdimon.specs", "-nostartfiles", f'-DMODEL_HEADER="{prefix}.h"',
                f"-DMODEL_STEP={prefix}_step", f"-DMODEL_STATE={up}_STATE", f"-DMODEL_OUTPUTS={up}_OUTPUTS",
                "startup.c", main, model_obj.name, "-T", "link.ld", "-Wl,--gc-sections", "-lm",
                f"-Wl,--defsym=FLASH_ORIGIN={target.flash_origin}", f"-Wl,--defsym=RAM_ORIGIN={target.ram_origin}",
                f"-Wl,--defsym=RAM_LENGTH={target.ram_length}", "-o", "fw.elf"], work)
        flash, static_ram = object_size(model_obj)
        done = subprocess.run(["qemu-system-arm", "-M", target.machine, "-cpu", target.cpu, "-nographic",
                               "-monitor", "none", "-serial", "none", "-icount", "shift=0",
                               "-semihosting-config", "enable=on,target=native", "-kernel", "fw.elf"],
                              cwd=work, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0 or not all((work / name).is_file() for name in outputs):
            raise RnnedgeError(f"the firmware failed under {target.machine} (exit {done.returncode}): "
                               f"{(done.stdout + done.stderr).strip()[-300:]}")
        return Firmware(done.stdout, {name: (work / name).read_bytes() for name in outputs}, flash, static_ram)


def run(c_files: dict[str, str], prefix: str, samples: np.ndarray, target: Target, state_size: int,
        outputs: int, timeout_s: float = 600) -> Run:
    """Stream `samples` (int16, quantized) through the generated step on `target` (firmware/main.c): its outputs,
    instructions per step, flash and RAM."""
    fw = build_and_run(c_files, prefix, samples, target, "main.c", outputs=("y.bin",), timeout_s=timeout_s)
    found = re.search(r"steps (\d+) ticks (\d+) worst (\d+) calibration_ticks (\d+) "
                      r"calibration_instructions (\d+) stack_bytes (\d+)", fw.stdout)
    if found is None:
        raise RnnedgeError(f"the firmware under {target.machine} did not report its run: {fw.stdout[-300:]}")
    steps, ticks, worst, cal_ticks, cal_insns, stack = (int(v) for v in found.groups())
    per_tick = cal_insns / cal_ticks
    y = np.frombuffer(fw.files["y.bin"], dtype="<i2").reshape(steps, outputs)
    return Run(target, y, ticks * per_tick / steps, worst * per_tick, fw.flash_bytes, fw.static_ram_bytes, stack,
               2 * state_size)


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


@dataclass(frozen=True)
class Check:
    """A bundle's plain C on each target against TFLite Micro on this machine, over one recording."""

    bundle: str
    file: str
    recording: str
    steps: int
    flatbuffer_bytes: int
    arena_bytes: int
    runs: list[tuple[Run, int]]  # (run, output integers differing from TFLite Micro's)

    def rows(self) -> list[dict]:
        rate = self.sample_rate_hz
        return [{"target": run.target.key, "name": run.target.name, "steps": self.steps, "differing": differing,
                 "flash_bytes": run.flash_bytes, "ram_bytes": run.ram_bytes, "stack_bytes": run.stack_bytes,
                 "state_bytes": run.state_bytes, "instructions_per_step": round(run.instructions_per_step),
                 "worst_instructions": round(run.worst_instructions),
                 "budget_share": run.instructions_per_step * rate / run.target.clock_hz}
                for run, differing in self.runs]

    sample_rate_hz: float = 50.0


def recordings_of(bundle: Path, manifest: Manifest, recording: str) -> tuple[list[np.ndarray], str]:
    """Float samples in raw units, one array per recording (each streamed from a zero state): the bundle's
    reference slice (its first sequence), its recorded held-out split ('test': the data the export scored), or one
    recording of that split by name."""
    if recording == "reference":
        with np.load(bundle / "reference.npz") as reference:
            return [reference["x"][0].astype(np.float32)], "the bundle's reference.npz, first sequence"
    from rnnedge.data.source import held_out_data

    data = held_out_data(manifest.provenance.get("training", {}), list(manifest.output.labels))
    chosen = data.recordings if recording == "test" else [r for r in data.recordings if r.name == recording]
    if not chosen:
        raise RnnedgeError(f"{recording}: not a recording of {data.source} (have: "
                           f"{', '.join(r.name for r in data.recordings[:6])}, ...)")
    described = f"every recording of the {data.source} ({len(chosen)})" if recording == "test" else recording
    return [r.signals.astype(np.float32) for r in chosen], described


def plain_c(bundle: Path, precision: str) -> tuple[Manifest, ModelFile, dict[str, str]]:
    """The bundle's manifest, its file of that precision with plain C, and the C files' texts (hash-checked); the
    tools checked too, before any work."""
    from rnnedge.bundle import read_manifest, verify_file

    manifest = read_manifest(bundle)
    entry = next((f for f in manifest.files if f.precision == precision and f.mcu is not None), None)
    if entry is None or entry.mcu.c is None:
        raise RnnedgeError(f"{bundle}: no {precision} file with plain C (export with --precisions ...,a16w8)")
    lacking = missing_tools()
    if lacking:
        raise RnnedgeError(f"{', '.join(lacking)} not found: {INSTALL}")
    c = entry.mcu.c
    return manifest, entry, {name: verify_file(bundle, name, digest).read_text()
                             for name, digest in ((c.source, c.source_sha256), (c.header, c.header_sha256))}


def check_bundle(bundle: Path, precision: str, recording: str, targets: list[Target]) -> Check:
    """Build and run the bundle's plain C for each target; compare every output integer with TFLite Micro's."""
    from rnnedge.runtime.fixed_point import carry_params, carry_state
    from rnnedge.runtime.tflm import interpreter_module

    manifest, entry, files = plain_c(bundle, precision)
    c = entry.mcu.c
    q = entry.quantization
    recordings, described = recordings_of(bundle, manifest, recording)
    model = (bundle / entry.path).read_bytes()
    micro = interpreter_module().Interpreter.from_bytes(model, arena_size=max(entry.mcu.arena_bytes * 2, 1 << 16))
    carry = carry_params(q["state_out"].scale, q["state"].scale)
    prefix = c.step.removesuffix("_step")
    totals = {t.key: [] for t in targets}
    for samples in recordings:
        x = np.clip(np.round(samples / q["x"].scale) + q["x"].zero_point, -32768, 32767).astype(np.int16)
        state = np.zeros(manifest.state.size, np.int16)
        expected = []
        for row in x:
            micro.set_input(row.reshape(1, 1, -1), 0)
            micro.set_input(state.reshape(1, -1), 1)
            micro.invoke()
            expected.append(micro.get_output(0).ravel().copy())
            state = carry_state(micro.get_output(1).ravel(), carry)
        for target in targets:
            result = run(files, prefix, x, target, manifest.state.size, manifest.output.size)
            totals[target.key].append((result, int((result.outputs != np.array(expected)).sum())))
    runs = [(_pooled([r for r, _ in totals[t.key]]), sum(d for _, d in totals[t.key])) for t in targets]
    return Check(str(bundle), entry.path, described, sum(len(r) for r in recordings), entry.mcu.flash_bytes,
                 entry.mcu.arena_bytes, runs, manifest.input.sample_rate_hz)


def _pooled(runs: list[Run]) -> Run:
    """Several recordings' runs on one target as one: instructions averaged over all steps, the worst of each."""
    steps = [len(r.outputs) for r in runs]
    per_step = sum(r.instructions_per_step * n for r, n in zip(runs, steps, strict=True)) / sum(steps)
    first = runs[0]
    return Run(first.target, np.concatenate([r.outputs for r in runs]), per_step,
               max(r.worst_instructions for r in runs), first.flash_bytes, first.static_ram_bytes,
               max(r.stack_bytes for r in runs), first.state_bytes)


def markdown(check: Check) -> str:
    """The table docs/mcu.md and the README paste (scripts/paste_results.py), machine and date on top."""
    import platform
    import time

    lines = [f"- bundle `{check.bundle}`, file `{check.file}`; {check.steps:,} steps of {check.recording}, each "
             "step's output integers compared with TFLite Micro's reference kernels on the host",
             f"- machine: {platform.machine()} host, QEMU {_qemu_version()}, arm-none-eabi-gcc {_gcc_version()} -O2; "
             f"{time.strftime('%Y-%m-%d %H:%M %Z')}",
             f"- TFLite Micro for the same file: flatbuffer {check.flatbuffer_bytes / 1024:.1f} KB, tensor arena "
             f"{check.arena_bytes / 1024:.1f} KB (measured on the host; its interpreter and kernels come on top)",
             "", "| target | outputs differing | model flash KB (text + rodata) | RAM KB (state + stack of a step) | "
             "instructions per step | share of 20 ms at 64 MHz |", "|---|---|---|---|---|---|"]
    for row in check.rows():
        lines.append(f"| {row['name']} | {row['differing']} of {check.steps * _outputs(check):,} | "
                     f"{row['flash_bytes'] / 1024:.1f} | {row['ram_bytes'] / 1024:.2f} ({row['state_bytes']} + "
                     f"{row['stack_bytes']} B) | {row['instructions_per_step']:,} (worst "
                     f"{row['worst_instructions']:,}) | {row['budget_share']:.1%} |")
    return "\n".join(lines) + "\n"


def _outputs(check: Check) -> int:
    return check.runs[0][0].outputs.shape[1] if check.runs else 0


def _qemu_version() -> str:
    done = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True)
    found = re.search(r"version ([\d.]+)", done.stdout)
    return found.group(1) if found else "?"


def _gcc_version() -> str:
    done = subprocess.run(["arm-none-eabi-gcc", "-dumpversion"], capture_output=True, text=True)
    return done.stdout.strip() or "?"
