"""`load`: verify a bundle, pick a backend, and hand out streams and pools over its streaming file(s).

Backends, by name: "onnxruntime" (CPU), "onnxruntime-cuda" (CUDA execution provider), "litert"
(ai-edge-litert). "auto": ONNX Runtime if it is
installed and the bundle has an ONNX file of that precision (on CUDA when onnxruntime-gpu starts on a GPU),
LiteRT otherwise. Only the chosen backend is imported.

Nothing the manifest says about a file's tensors is taken on trust: names, ranks, sizes, fixed time lengths
and types are compared with what the backend reports for the file at load, so a manifest that disagrees with
its model gets a BundleError from `load`, not a backend error at the first step.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from rnnedge.bundle import Manifest, read_manifest, verify_file
from rnnedge.errors import BackendUnavailableError, BundleError
from rnnedge.runtime.health import StateCheck
from rnnedge.runtime.inputs import InputCheck, positive_int
from rnnedge.runtime.pool import Pool
from rnnedge.runtime.stream import Stream

BACKENDS = ("auto", "onnxruntime", "onnxruntime-cuda", "litert", "tflm")  # tflm: TFLite Micro (runtime/tflm.py)


class Engine(Protocol):
    """What a backend offers: calls pre-bound to caller-owned buffers (x, state) -> (y, state_out)."""

    name: str
    chunk_lens: tuple[int, ...] | None  # the time lengths its files run; None: any

    def bind(self, x: np.ndarray, state: np.ndarray, y: np.ndarray,
             state_out: np.ndarray) -> Callable[[], None]: ...

    def io(self) -> list[tuple[str, int | None, dict[str, tuple[tuple[int | None, ...], bool]]]]: ...


class Model:
    """A verified bundle bound to one backend. Cheap to keep; create streams and pools from it."""

    def __init__(self, bundle: Path, manifest: Manifest, engine: Engine, sha256: str) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.engine = engine
        self.backend: str = engine.name
        self.sha256 = sha256  # of the file that steps (snapshots are bound to it)
        self.channels = len(manifest.input.channels)
        self.outputs = manifest.output.size
        self.state_size = manifest.state.size
        self.mean = np.asarray(manifest.input.normalization.mean, np.float32)  # the neutral raw sample
        self.inputs = InputCheck(manifest.input.valid_range)
        self.state_check = StateCheck(manifest.state, manifest.model.get("cell"))

    def stream(self, resume: str | Path | None = None, nan_policy: str = "raise") -> Stream:
        """A new stream from zero state, or from the snapshot at `resume` (see Stream.save)."""
        return Stream(self, resume=resume, nan_policy=nan_policy)

    def pool(self, capacity: int = 1024, nan_policy: str = "raise", max_pending: int = 256,
             overflow: str = "drop_oldest") -> Pool:
        """Many streams advanced together, one backend call per tick (see Pool)."""
        return Pool(self, capacity=capacity, nan_policy=nan_policy, max_pending=max_pending, overflow=overflow)

    def __repr__(self) -> str:
        return f"Model({self.manifest.name!r}, backend={self.backend!r}, bundle={str(self.bundle)!r})"


def load(bundle: str | Path, backend: str = "auto", precision: str = "fp32", threads: int = 1,
         verify_key: bytes | None = None) -> Model:
    """Read and verify `bundle` (schema + sha256 of the files used; a tampered file is refused). With
    `verify_key`, the bundle must also be signed with that key (rnnedge.bundle.sign_bundle)."""
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    threads = positive_int(threads, "threads")
    bundle = Path(bundle)
    manifest = read_manifest(bundle, verify_key)
    if not manifest.streamable:
        raise BundleError(f"{bundle}: a window model (bidirectional) cannot stream")
    chosen = _auto(manifest, precision) if backend == "auto" else backend
    if chosen.startswith("onnxruntime"):
        return _load_onnx(bundle, manifest, precision, threads, cuda=chosen == "onnxruntime-cuda",
                          cpu_fallback=backend == "auto")
    return _load_tflite(bundle, manifest, precision, threads, tflm=chosen == "tflm")


def _auto(manifest: Manifest, precision: str) -> str:
    has_onnx = any((f.format, f.precision, f.graph) == ("onnx", precision, "stream") for f in manifest.files)
    if not (has_onnx and importlib.util.find_spec("onnxruntime")):
        return "litert"
    from rnnedge.runtime.ort import cuda_available

    return "onnxruntime-cuda" if cuda_available() else "onnxruntime"


def _load_onnx(bundle: Path, manifest: Manifest, precision: str, threads: int, cuda: bool,
               cpu_fallback: bool) -> Model:
    if not importlib.util.find_spec("onnxruntime"):
        raise BackendUnavailableError("onnxruntime is not installed (pip install onnxruntime)")
    from rnnedge.runtime.ort import OrtBackend

    entry = manifest.find("onnx", precision, "stream")
    path = verify_file(bundle, entry)
    names = (manifest.input.name, manifest.state.input, manifest.output.name, manifest.state.output)
    try:
        engine = OrtBackend(path, threads, cuda=cuda, names=names)
    except BackendUnavailableError:
        if not (cuda and cpu_fallback):
            raise
        engine = OrtBackend(path, threads, cuda=False, names=names)  # "auto" tried CUDA; the GPU said no
    _check_io(bundle, manifest, engine)
    return Model(bundle, manifest, engine, entry.sha256)


def _load_tflite(bundle: Path, manifest: Manifest, precision: str, threads: int, tflm: bool = False) -> Model:
    from rnnedge.runtime.litert import LiteRTBackend
    from rnnedge.runtime.tflm import TFLMBackend

    entries = {f.chunk_len: f for f in manifest.files
               if (f.format, f.precision, f.graph) == ("tflite", precision, "stream")}
    if 1 not in entries:
        raise BundleError(f"{bundle}: no {precision} TFLite stream file of time length 1 (steps need one; "
                          f"lengths found: {sorted(entries, key=str) or 'none'})")
    paths = {time_len: verify_file(bundle, entry) for time_len, entry in entries.items()}
    engine = TFLMBackend(paths) if tflm else LiteRTBackend(paths, threads)
    _check_io(bundle, manifest, engine)
    return Model(bundle, manifest, engine, entries[1].sha256)


def _check_io(bundle: Path, manifest: Manifest, engine: Engine) -> None:
    """The file's tensors against the manifest: x [batch, time, channels], state [batch, state_size] ->
    y [batch, time, outputs], state_out [batch, state_size], float32 (ONNX: dynamic batch and time;
    TFLite: batch 1 and the entry's chunk_len). Tensors are named as the manifest says (LiteRT: by rank)."""
    m, problems = manifest, []
    names = {"x": m.input.name, "state": m.state.input, "y": m.output.name, "state_out": m.state.output}
    for file, time_len, tensors in engine.io():
        batch = None if time_len is None else 1
        expected = {"x": (batch, time_len, len(m.input.channels)), "state": (batch, m.state.size),
                    "y": (batch, time_len, m.output.size), "state_out": (batch, m.state.size)}
        if time_len is None and set(tensors) != {names[role] for role in expected}:
            problems.append(f"{file}: tensors {sorted(tensors)}, the manifest names {sorted(names.values())}")
            continue
        for role, shape in expected.items():
            actual, usable = tensors[names[role] if time_len is None else role]
            if actual != shape or not usable:
                wanted = "[" + ", ".join("any" if n is None else str(n) for n in shape) + "]"
                got = "[" + ", ".join("any" if n is None else str(n) for n in actual) + "]"
                problems.append(f"{file}: {role} is {got}{'' if usable else ' of an unusable type'}, "
                                f"the manifest says {wanted}")
    if problems:
        raise BundleError(f"{bundle}: the manifest does not match its model file: {'; '.join(problems[:4])}")
