"""Machine detection and profile matching, on this machine and on /proc and /etc files of real boards."""

from __future__ import annotations

from pathlib import Path

import rnnedge.runtime as rt
from rnnedge.bundle import read_manifest
from rnnedge.devices.emulate import CPUINFO_CORE
from rnnedge.devices.info import Gpu, Machine, detect_backends, detect_machine, parse_cpuinfo, read_board
from rnnedge.devices.profiles import PROFILES, Budget, match, recommend

PI4_CORE = CPUINFO_CORE.replace("{index}", "{i}")  # the emulator's Cortex-A72 core, a real Pi 4 text
PI5_CORE = """processor\t: {i}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

"""
PI_TAIL = "Revision\t: c03111\nSerial\t\t: 100000002a5f7b3e\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"
X86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\n" \
      "processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n"


def _machine(arch: str = "x86_64", part: str | None = None, board: str | None = None,
             gpus: tuple[Gpu, ...] = ()) -> Machine:
    return Machine(arch, "cpu", part, 4, 4096, board, gpus, "Linux", "3.11")


def test_cpuinfo_names_arm_cores_by_part_and_counts_processors() -> None:
    assert parse_cpuinfo("".join(PI4_CORE.format(i=i) for i in range(4)) + PI_TAIL) == ("Cortex-A72", "0xd08", 4)
    assert parse_cpuinfo("".join(PI5_CORE.format(i=i) for i in range(4))) == ("Cortex-A76", "0xd0b", 4)
    assert parse_cpuinfo(X86) == ("Intel(R) Xeon(R) CPU @ 2.20GHz", None, 2)


def test_board_from_device_tree_or_tegra_release(tmp_path: Path) -> None:
    assert read_board(tmp_path) is None
    jetson = tmp_path / "jetson"
    (jetson / "etc").mkdir(parents=True)
    (jetson / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, DATE: Fri Jul 19 2024\n")
    assert read_board(jetson) == "NVIDIA Jetson (R36 (release))"
    pi = tmp_path / "pi"
    (pi / "proc" / "device-tree").mkdir(parents=True)
    (pi / "proc" / "device-tree" / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    assert read_board(pi) == "Raspberry Pi 5 Model B Rev 1.0"


def test_profiles_match_boards_cores_and_gpus() -> None:
    gpu = (Gpu("NVIDIA H100", 81559, "550.54"),)
    assert match(_machine()).key == "x86-cpu"
    assert match(_machine(gpus=gpu)).key == "cuda-gpu"
    assert match(_machine("aarch64", "0xd08")).key == "rpi4"
    assert match(_machine("aarch64", "0xd0b")).key == "rpi5"
    assert match(_machine("aarch64", None, "Raspberry Pi 5 Model B Rev 1.0")).key == "rpi5"
    assert match(_machine("aarch64", "0xd42", "NVIDIA Jetson (R36 (release))")).key == "jetson-orin"
    assert match(_machine("aarch64", "0xd0c")).key == "arm64-cpu"
    assert {p.key for p in PROFILES} >= {"x86-cpu", "cuda-gpu", "rpi4", "rpi5", "jetson-orin"}
    assert max(profile.pool_sizes[-1] for profile in PROFILES if "cuda" in profile.backends[0]) >= 8192


def test_this_machine_and_its_backends() -> None:
    machine = detect_machine()
    assert machine.cores >= 1 and machine.memory_mb > 0 and machine.arch
    backends = {b.name: b for b in detect_backends(machine)}
    assert set(backends) == {"onnxruntime", "onnxruntime-cuda", "litert", "tflm"}
    assert backends["onnxruntime"].usable  # a base dependency
    advice = recommend(machine, list(backends.values()))
    # what backend="auto" runs: streams on LiteRT when it is installed, pools on ONNX Runtime; the monitor's int8
    assert (advice.backend, advice.pool_backend, advice.precision) == ("litert", "onnxruntime", "int8")
    assert backends[advice.backend].usable and advice.format == "tflite"
    # with a bundle: a backend and precision that the bundle has a stream file for
    advice = recommend(machine, list(backends.values()), {("tflite", "a16w8"), ("tflite", "fp32")})
    assert (advice.backend, advice.pool_backend, advice.precision) == ("litert", "litert", "fp32")
    advice = recommend(machine, list(backends.values()), {("onnx", "int8"), ("onnx", "fp32")})
    assert (advice.backend, advice.format, advice.precision) == ("onnxruntime", "onnx", "int8")
    assert recommend(machine, list(backends.values()), set()).backend is None


def test_devices_recommends_what_auto_loads(tmp_path) -> None:
    """One source of the fact: the backend `devices` names is the one rt.load(backend="auto") streams on."""
    from rnnedge.export import export_bundle
    from tests.runtime.conftest import held_out, make_checkpoint

    bundle = tmp_path / "b"
    export_bundle(make_checkpoint("gru", 8, seed=1), bundle, formats=("onnx", "tflite"), precisions=("fp32", "int8"),
                  chunk_len=1, eval_data=held_out(samples=50, count=1))
    files = {(f.format, f.precision) for f in read_manifest(bundle).files if f.graph == "stream"}
    machine = detect_machine()
    advice = recommend(machine, detect_backends(machine), files)
    model = rt.load(bundle, backend="auto", precision=advice.precision)
    model.pool(capacity=2)
    assert (model.backend, model.pool_backend) == (advice.backend, advice.pool_backend)


def test_realtime_budget() -> None:
    budget = Budget.for_rate(50.0, steps_per_s=1e6 / 40.0)  # 40 us per step
    assert budget.step_budget_us == 20_000 and budget.streams == 500
    assert Budget.for_rate(100.0).streams is None
