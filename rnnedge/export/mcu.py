"""The microcontroller deliverable of an integer-only stream file: C++ source (`<stem>_model_data.cc/.h`: the
file as an aligned array, its I/O quantization, the arena size, the op resolver's registrations), measured by
TFLite Micro itself: the tensor arena is the smallest with which its interpreter allocates and runs the file.

The arena is measured here on a 64-bit host: TFLite Micro's per-node and per-tensor records hold pointers, so a
32-bit Cortex-M needs somewhat less; the host figure is an upper bound. docs/mcu.md has the streaming loop.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from rnnedge.atomic import write_text_atomic
from rnnedge.bundle import Mcu, PlainC, Quantized
from rnnedge.digest import sha256_file
from rnnedge.errors import BundleError, ExportError
from rnnedge.export import cgen
from rnnedge.runtime.tflm import TFLMBackend, interpreter_module

ALIGN = 16  # bytes: TFLite Micro reads the flatbuffer in place; 16 suits every Cortex-M and the Ethos-U's DMA
MAX_ARENA = 16 << 20  # search bound, bytes


def op_names(model: bytes) -> list[str]:
    """The builtin operators the file uses (what its op resolver must register), sorted."""
    runtime = interpreter_module()
    names = {v: k for k, v in vars(runtime.schema_fb.BuiltinOperator).items() if not k.startswith("_")}
    obj = runtime.convert_bytearray_to_object(bytearray(model))
    return sorted({names[runtime.get_builtin_code_from_operator_code(obj.operatorCodes[op.opcodeIndex])]
                   for graph in obj.subgraphs for op in graph.operators or []})


def _runs(model: bytes, arena: int) -> bool:
    runtime = interpreter_module()
    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
        interpreter.invoke()  # zero inputs: allocation is what is measured; invoke proves it suffices
    except RuntimeError:
        return False
    return True


def arena_bytes(model: bytes) -> int:
    """The smallest tensor arena (bytes) with which TFLite Micro allocates and runs `model`, by bisection. TFLite
    Micro's interpreter crashes (SIGSEGV) instead of failing on some arenas too small for a file (an LSTM 1x128's
    a16w8 file at 8 KB), so the bisection runs in a child process (`bisect_arena`); a size it died at counts as too
    small, and a new child goes on from there."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(model)
        low, high, checked = 0, MAX_ARENA, False  # low fails, high runs once checked
        while not checked or high - low > 1:
            child = subprocess.run([sys.executable, "-c", "import sys; from rnnedge.export.mcu import bisect_arena; "
                                    "bisect_arena(*sys.argv[1:])", str(path), str(low), str(high), str(int(checked))],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=900)
            tried = [line.split() for line in child.stdout.splitlines() if line.strip()]
            if not tried:
                raise ExportError(f"TFLite Micro's arena probe exited with {child.returncode} before trying a size")
            for size, *ran in tried:  # a size without a result is where the child died: too small
                fits = ran == ["1"]
                if not checked:
                    if not fits:
                        raise ExportError(f"TFLite Micro cannot run this file even with a {MAX_ARENA >> 20} MB arena")
                    checked = True
                elif fits:
                    high = int(size)
                else:
                    low = int(size)
    return high


def bisect_arena(path: str, low: str, high: str, checked: str) -> None:
    """(A child process of `arena_bytes`.) Bisect between low (fails) and high (runs; tried first unless
    checked), printing each size before trying it and 1 or 0 after, so that a crash leaves the size alone."""
    model, low_bytes, high_bytes = Path(path).read_bytes(), int(low), int(high)

    def tried(size: int) -> bool:
        print(size, end=" ", flush=True)
        fits = _runs(model, size)
        print(int(fits), flush=True)
        return fits

    if checked == "0" and not tried(high_bytes):
        return
    while high_bytes - low_bytes > 1:
        middle = (low_bytes + high_bytes) // 2
        low_bytes, high_bytes = (low_bytes, middle) if tried(middle) else (middle, high_bytes)


def quantization(path: Path) -> dict[str, Quantized]:
    """The file's integer I/O tensors as TFLite Micro reads them (float ones are left out)."""
    backend = TFLMBackend({1: path})
    return {role: Quantized(dtype=dtype, scale=scale, zero_point=zero)
            for role, (dtype, scale, zero) in backend.quantization(1).items() if dtype != "float32"}


def _identifier(stem: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in stem)


def _array(data: bytes) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i: i + 16]) for i in range(0, len(data), 16)]
    return ",\n".join(f"    {row}" for row in rows)


def write_sources(path: Path, arena: int, ops: list[str], quant: dict[str, Quantized]) -> tuple[Path, Path]:
    """`<stem>_model_data.cc` and `.h` beside the file (written atomically); returns their paths."""
    model = path.read_bytes()
    name = _identifier(path.stem)
    header_path = path.with_name(f"{path.stem}_model_data.h")
    source_path = path.with_name(f"{path.stem}_model_data.cc")
    constants = []
    for role, q in quant.items():
        constants += [f"constexpr float {name}_{role}_scale = {q.scale!r}f;",
                      f"constexpr int {name}_{role}_zero_point = {q.zero_point};  // {q.dtype}"]
    registrations = "\n".join(f"  resolver.Add{''.join(w.capitalize() for w in op.split('_'))}();" for op in ops)
    header = f"""// {path.name} for TensorFlow Lite Micro, written by rnnedge (see docs/mcu.md for the streaming loop).
// Inputs: x [1, T, channels], state [1, state_size]; outputs: y [1, T, outputs], state_out [1, state_size].
// real value = (integer - zero_point) * scale
#pragma once

#include <cstddef>

extern const unsigned char g_{name}_model[];
extern const size_t g_{name}_model_len;

// Tensor arena TFLite Micro needed for this model on a 64-bit host (an upper bound on 32-bit targets).
constexpr size_t {name}_arena_bytes = {arena};
{chr(10).join(constants)}

// The {len(ops)} builtin ops the model uses: tflite::MicroMutableOpResolver<{len(ops)}> resolver;
template <typename Resolver>
inline void {name}_add_ops(Resolver& resolver) {{
{registrations}
}}
"""
    source = f"""// {path.name}: {len(model)} bytes, sha256 {sha256_file(path)}
#include "{header_path.name}"

alignas({ALIGN}) const unsigned char g_{name}_model[] = {{
{_array(model)}
}};
const size_t g_{name}_model_len = {len(model)};
"""
    write_text_atomic(header_path, header)
    write_text_atomic(source_path, source)
    return source_path, header_path


def plain_c(path: Path, labels: list[str]) -> tuple[PlainC | None, str]:
    """The file as a plain C library beside it (`<stem>.c/.h`); or None and why the generator does not compute
    it (int8 activations: a8w8; an operator it lacks)."""
    prefix = _identifier(path.stem)
    try:
        files = cgen.generate(path.read_bytes(), prefix, labels, path.name)
    except BundleError as exc:
        return None, str(exc)
    written = {name: write_text_atomic(path.with_name(name), text) for name, text in files.items()}
    source, header = written[f"{prefix}.c"], written[f"{prefix}.h"]
    scratch = int(re.search(r"_SCRATCH_BYTES (\d+)", files[header.name]).group(1))
    return PlainC(source=source.name, source_sha256=sha256_file(source), header=header.name,
                  header_sha256=sha256_file(header), step=f"{prefix}_step", scratch_bytes=scratch), ""


def mcu_build(path: Path, labels: list[str]) -> tuple[Mcu, dict[str, Quantized], str]:
    """Measure an integer-only stream file with TFLite Micro and write its C++ sources (and, for int16
    activations, its plain C library) beside it; the last item says why there is no plain C, if there is none."""
    model = path.read_bytes()
    quant = quantization(path)
    if set(quant) != {"x", "state", "y", "state_out"}:
        raise ExportError(f"{path.name}: not integer-only I/O (integer tensors: {', '.join(quant) or 'none'})")
    state, state_out = quant["state"], quant["state_out"]
    if state.dtype != state_out.dtype:
        raise ExportError(f"{path.name}: state is {state.dtype}, state_out {state_out.dtype}: a device could not "
                          "feed one back as the other")
    arena, ops = arena_bytes(model), op_names(model)
    source, header = write_sources(path, arena, ops, quant)
    c, no_c = plain_c(path, labels)
    return Mcu(source=source.name, source_sha256=sha256_file(source), header=header.name,
               header_sha256=sha256_file(header), ops=ops, arena_bytes=arena, flash_bytes=len(model), c=c), \
        quant, no_c
