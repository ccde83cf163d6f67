"""`load`: verify a bundle, pick a backend, and hand out streams and pools over its streaming file(s).

Backends, by name: "onnxruntime" (CPU), "onnxruntime-cuda" (CUDA execution provider), "litert"
(ai-edge-litert), "tflm" (TFLite Micro). An explicit backend serves streams and pools alike. "auto" chooses per
use, among the backends that are installed and have a file of that precision in the bundle:
- streams: LiteRT (its single-stream call is the cheaper one on x86 and ARM CPUs: `rnnedge bench` shows it
  per machine), else ONNX Runtime on the CPU (a GPU's launches and copies cost more than one stream's step);
- pools: ONNX Runtime, the one that batches (one call per tick for all rows), on CUDA when onnxruntime-gpu
  starts on a GPU; else the streams' backend (LiteRT loops the rows).
Each backend is imported and its file verified only when its use is first asked for: a process that only
streams never loads ONNX Runtime. `Model.backend` names the streams' backend, `Model.pool_backend` the pools'
(None until the first pool loads it), and every Stream and Pool runs on its own `.model.engine`. So under
"auto" a stream and a pool of one model may run different files (TFLite / ONNX): their outputs agree within
each file's parity to torch (the manifest), not bit for bit.

Snapshots are bound to the sha256 of the file that steps (`Model.sha256`, the streams' file): a snapshot resumes
on a stream of a model loaded with the same options on a machine with the same backends installed; pass the
saved `Model.backend` to `load` to pin it.

Nothing the manifest says about a file's tensors is taken on trust: names, ranks, sizes, fixed time lengths
and types are compared with what the backend reports for the file at load, so a manifest that disagrees with
its model gets a BundleError from `load`, not a backend error at the first step.
"""

from __future__ import annotations

import importlib.util
from _thread import allocate_lock  # not threading: see rnnedge.runtime.litert
from collections.abc import Callable
from functools import partial
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
    """A verified bundle bound to its streams' backend (and, under "auto", the pools' one, loaded at the first
    pool). Cheap to keep; create streams and pools from it."""

    def __init__(self, bundle: Path, manifest: Manifest, engine: Engine, sha256: str,
                 pools: Callable[[Model], Model] | None = None) -> None:
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
        self._load_pools = pools  # auto: loads the batching backend at the first pool (None: this one batches)
        self._pool_model: Model | None = None if pools else self
        self._lock = allocate_lock()

    @property
    def pool_backend(self) -> str | None:
        """The backend pools run on; None until the first `pool()` loads it ("auto" with two backends)."""
        return self._pool_model.backend if self._pool_model else None

    def stream(self, resume: str | Path | None = None, nan_policy: str = "raise") -> Stream:
        """A new stream from zero state, or from the snapshot at `resume` (see Stream.save)."""
        return Stream(self, resume=resume, nan_policy=nan_policy)

    def pool(self, capacity: int = 1024, nan_policy: str = "raise", max_pending: int = 256,
             overflow: str = "drop_oldest") -> Pool:
        """Many streams advanced together, one backend call per tick (see Pool)."""
        if self._pool_model is None:
            with self._lock:
                if self._pool_model is None:
                    self._pool_model = self._load_pools(self)
        return Pool(self._pool_model, capacity=capacity, nan_policy=nan_policy, max_pending=max_pending,
                    overflow=overflow)

    def __repr__(self) -> str:
        pools = "" if self._pool_model is self else f", pool_backend={self.pool_backend!r}"
        return f"Model({self.manifest.name!r}, backend={self.backend!r}{pools}, bundle={str(self.bundle)!r})"


def load(bundle: str | Path, backend: str = "auto", precision: str = "fp32", threads: int = 1,
         verify_key: bytes | None = None) -> Model:
    """Read and verify `bundle` (schema + sha256 of the files used; a tampered file is refused). With
    `verify_key`, the bundle must also be signed with that key (rnnedge.bundle.sign_bundle)."""
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    threads = positive_int(threads, "threads")
    if not isinstance(bundle, str | Path):
        raise BundleError(f"a bundle is a folder path, got {type(bundle).__name__}")
    bundle = Path(bundle)
    manifest = read_manifest(bundle, verify_key)
    if not manifest.streamable:
        raise BundleError(f"{bundle}: a window model (bidirectional) cannot stream")
    if backend != "auto":
        return _load(bundle, manifest, backend, precision, threads)
    streams, pools = _auto(manifest, precision)
    return _load(bundle, manifest, streams, precision, threads, pools=partial(
        _onnx_pools, bundle, manifest, precision, threads) if pools == "onnxruntime" else None)


def _auto(manifest: Manifest, precision: str) -> tuple[str, str]:
    """(the streams' backend, the pools' backend family) for "auto": see the module's docstring."""
    return auto_backends({f.format for f in manifest.files
                          if (f.precision, f.graph) == (precision, "stream") and f.chunk_len in (None, 1)})


def auto_backends(formats: set[str]) -> tuple[str, str]:
    """What "auto" runs on, given the formats ("onnx", "tflite") a bundle has a T=1 stream file in: (streams'
    backend, pools' backend family). `rnnedge devices` recommends from this same rule."""
    litert = "tflite" in formats and importlib.util.find_spec("ai_edge_litert") is not None
    onnx = "onnx" in formats and importlib.util.find_spec("onnxruntime") is not None
    streams = "litert" if litert or not onnx else "onnxruntime"
    return streams, "onnxruntime" if onnx else streams


def _onnx_pools(bundle: Path, manifest: Manifest, precision: str, threads: int, streaming: Model) -> Model:
    """The pools' model for "auto": ONNX Runtime on CUDA if it starts there, else on the CPU (the streams'
    own model when that runs on it already)."""
    from rnnedge.runtime.ort import cuda_available

    if cuda_available():
        try:
            return _load(bundle, manifest, "onnxruntime-cuda", precision, threads)
        except BackendUnavailableError:
            pass  # onnxruntime-gpu is installed, but the GPU (or its libraries) said no
    if streaming.backend == "onnxruntime":
        return streaming
    return _load(bundle, manifest, "onnxruntime", precision, threads)


def _load(bundle: Path, manifest: Manifest, backend: str, precision: str, threads: int,
          pools: Callable[[Model], Model] | None = None) -> Model:
    if backend.startswith("onnxruntime"):
        engine, sha256 = _onnx_engine(bundle, manifest, precision, threads, cuda=backend == "onnxruntime-cuda")
    else:
        engine, sha256 = _tflite_engine(bundle, manifest, precision, threads, tflm=backend == "tflm")
    _check_io(bundle, manifest, engine)
    return Model(bundle, manifest, engine, sha256, pools)


def _onnx_engine(bundle: Path, manifest: Manifest, precision: str, threads: int, cuda: bool) -> tuple[Engine, str]:
    if not importlib.util.find_spec("onnxruntime"):
        raise BackendUnavailableError("onnxruntime is not installed (pip install onnxruntime)")
    from rnnedge.runtime.ort import OrtBackend

    entry = manifest.find("onnx", precision, "stream")
    path = verify_file(bundle, entry)
    names = (manifest.input.name, manifest.state.input, manifest.output.name, manifest.state.output)
    return OrtBackend(path, threads, cuda=cuda, names=names), entry.sha256


def _tflite_engine(bundle: Path, manifest: Manifest, precision: str, threads: int, tflm: bool) -> tuple[Engine, str]:
    from rnnedge.runtime.litert import LiteRTBackend
    from rnnedge.runtime.tflm import TFLMBackend

    entries = {f.chunk_len: f for f in manifest.files
               if (f.format, f.precision, f.graph) == ("tflite", precision, "stream")}
    if 1 not in entries:
        raise BundleError(f"{bundle}: no {precision} TFLite stream file of time length 1 (steps need one; "
                          f"lengths found: {sorted(entries, key=str) or 'none'})")
    paths = {time_len: verify_file(bundle, entry) for time_len, entry in entries.items()}
    return (TFLMBackend(paths) if tflm else LiteRTBackend(paths, threads)), entries[1].sha256


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
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BundleError(f"{bundle}: the manifest does not match its model file: {problems[0]}{more}")
