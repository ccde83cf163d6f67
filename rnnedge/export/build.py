"""`export_bundle`: checkpoint -> verified bundle folder (ONNX and TFLite files, quantized variants, manifest)

Everything is built in a temporary folder beside the destination, each file is verified against the torch
model on held-out real data, and only then is the folder moved into place: an export that fails leaves no
bundle, and an existing bundle at the destination stays intact.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import msgspec
import numpy as np

import rnnedge
from rnnedge.atomic import process_running
from rnnedge.bundle import (
    MANIFEST_NAME,
    REFERENCE_NAME,
    Evaluation,
    InputSpec,
    Manifest,
    ModelFile,
    Normalization,
    OutputSpec,
    Reference,
    Rejected,
    StateSpec,
    read_manifest,
    sha256_file,
    sign_bundle,
    verify_file,
    write_manifest,
)
from rnnedge.data.recording import Dataset, Recording
from rnnedge.errors import ExportError
from rnnedge.export import integer, mcu, onnx_weights, tflite_export
from rnnedge.export.graphs import build_graph, default_graphs, example_inputs
from rnnedge.export.heldout import (
    EvalSet,
    calibration_recordings,
    calibration_samples,
    eval_set,
    file_score,
    reference_inputs,
    torch_runner,
)
from rnnedge.export.onnx_export import export_onnx, serialize_onnx
from rnnedge.export.onnx_stream import OPSET
from rnnedge.export.runners import load_runner
from rnnedge.export.tflite_stream import UnrolledStream
from rnnedge.export.verify import FP32_TOLERANCE, Expected, expected_from, float32_noise, measure
from rnnedge.tasks import get_task
from rnnedge.training.checkpoint import Checkpoint

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8", "fp16", "int8_static", *integer.PRECISIONS)
RUNTIMES = {"onnx": ["onnxruntime>=1.18"], "tflite": ["ai-edge-litert>=2.0"]}
TFLITE_RUNTIME_NOTE = ("not for tflite-runtime 2.14 (it cannot load the new FULLY_CONNECTED op versions and "
                       "computes ai-edge-quantizer models wrongly): use ai-edge-litert")
Progress = Callable[[str, int, int], None]  # (what is being done, steps done, total steps)


@dataclass(frozen=True)
class Variant:
    graph: str
    format: str
    precision: str
    time: int | None  # fixed time length (TFLite), None = any (ONNX)
    per_channel: bool = False  # TFLite int8: one weight scale per output channel instead of per tensor

    @property
    def label(self) -> str:
        if (self.format, self.precision) != ("tflite", "int8"):
            return self.filename
        return f"{self.filename} ({'per-channel' if self.per_channel else 'per-tensor'} scales)"

    @property
    def key(self) -> tuple:
        """Variants with the same key are alternatives for one file: the first that passes ships."""
        return self.graph, self.format, self.precision, self.time

    @property
    def filename(self) -> str:
        fixed = f"_t{self.time}" if self.time is not None else ""
        return f"{self.graph}{fixed}_{self.precision}.{self.format}"


def export_bundle(checkpoint: str | Path | Checkpoint, out_dir: str | Path,
                  formats: Sequence[str] = ("onnx", "tflite"),
                  precisions: Sequence[str] = ("fp32", "int8", "fp16"), chunk_len: int = 50,
                  eval_data: Dataset | None = None, progress: Progress | None = None,
                  graphs: Sequence[str] | None = None, tolerance: float = FP32_TOLERANCE,
                  sign_key: bytes | None = None) -> Manifest:
    """Export, quantize and verify every requested variant; return the manifest of the bundle now in out_dir.

    `eval_data`: held-out data; by default the test (else validation) split recorded in the checkpoint.
    fp32 is always built (it is the base of the others and the parity reference); an fp32 file off the torch
    model by more than `tolerance` (relative to the output's magnitude, plus the model's own float32 noise) fails
    the export. Asking for int8 also tries TFLite static int8. Every other variant is best effort: one that fails
    to build or load, loses more than its task's gate, or is not smaller than fp32 is listed in `rejected`.
    `sign_key`: also write manifest.sig (HMAC-SHA256), for deployments that load with `verify_key`.
    """
    started = time.monotonic()
    source = Path(checkpoint) if not isinstance(checkpoint, Checkpoint) else None
    ckpt = Checkpoint.load(source) if source is not None else checkpoint
    out = Path(out_dir)
    _check_destination(out)
    if not tolerance > 0:
        raise ExportError(f"tolerance must be positive, got {tolerance}")
    graphs = tuple(graphs) if graphs else default_graphs(ckpt)
    modules = {graph: build_graph(ckpt, graph) for graph in graphs}  # refuses bidirectional streaming
    report = progress or (lambda message, done, total: None)
    report("evaluating the torch model on held-out data", 0, 1)
    data = eval_set(ckpt, eval_data)
    variants, rejected = _plan(ckpt, graphs, formats, precisions, chunk_len, _window_time(data))
    total = len(variants) + 2
    config = ckpt.config
    task = get_task(config.task)
    torch_score = {g: file_score(ckpt, torch_runner(m), data, g == "window") for g, m in modules.items()}
    examples = task.examples(data.recordings)  # what an accuracy gate may lose one of
    main_graph = graphs[0]
    x_ref, labels_ref, ref_description = reference_inputs(data, chunk_len)
    expected = {g: expected_from(torch_runner(m), x_ref, config.state_size if g == "stream" else None,
                                 min(chunk_len, x_ref.shape[1]), task.classes,
                                 len(config.state_tensors), exact=torch_runner(m, float64=True),
                                 levels=m.output_levels())
                for g, m in modules.items()}
    work = _Work(ckpt, modules, data, expected)

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(out)}{os.getpid()}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be read by others
    try:
        files: list[ModelFile] = []
        shipped: set[tuple] = set()
        for done, variant in enumerate(variants, start=1):
            if variant.key in shipped:
                continue
            report(f"{variant.format} {variant.precision} {variant.graph}"
                   + (f" T={variant.time}" if variant.time else "")
                   + (" per-channel" if variant.per_channel else ""), done, total)
            path = staging / variant.filename
            if variant.precision == "fp32":
                entry = _verified(work, variant, path, None, tolerance)
            else:
                base = next(f for f in files if (f.graph, f.format, f.chunk_len, f.precision) ==
                            (variant.graph, variant.format, variant.time, "fp32"))  # built first, or no export
                try:
                    entry = _verified(work, variant, path, base, None)
                    reason = task.gate(torch_score[variant.graph], entry.score, variant.precision, examples) \
                        or _not_smaller(entry, base)
                    if not reason and variant.precision in integer.PRECISIONS:  # C++ sources, only if shipped
                        entry = _integer_entry(entry, path, list(ckpt.labels))
                except Exception as exc:  # noqa: BLE001 - a best-effort variant never fails the export
                    entry, reason = None, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                if reason:
                    rejected.append(Rejected(format=variant.format, precision=variant.precision,
                                             reason=f"{variant.label}: {reason}",
                                             score=entry.score if entry else None))
                    path.unlink(missing_ok=True)
                    continue
            files.append(entry)
            shipped.add(variant.key)
        report("writing the reference data and manifest", total - 1, total)
        reference = _write_reference(staging, x_ref, labels_ref, expected[main_graph], ref_description)
        noise = float32_noise(expected[main_graph])
        manifest = Manifest(
            name=f"{config.task}-{config.cell}-{config.num_layers}x{config.hidden_size}",
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            rnnedge_version=rnnedge.__version__, task=config.task, model=config.to_dict(),
            streamable=config.streamable,
            input=InputSpec(channels=list(ckpt.channels), sample_rate_hz=ckpt.sample_rate_hz,
                            normalization=Normalization(**ckpt.normalization.to_dict()),
                            valid_range=_valid_range(ckpt)),
            output=_output_spec(ckpt),
            state=StateSpec(size=config.state_size, parts=list(config.state_tensors),
                            layers=config.num_layers, directions=config.directions,
                            hidden_size=config.hidden_size, previous=config.previous_size),
            chunk_lens=sorted({f.chunk_len for f in files if f.graph == "stream" and f.chunk_len}),
            files=files, rejected=rejected,
            evaluation=Evaluation(data=data.description, metric=task.metric, higher_is_better=task.higher_is_better,
                                  torch_score=torch_score[main_graph], samples=data.samples,
                                  float32_noise_output=noise[0], float32_noise_state=noise[1]),
            reference=reference,
            provenance=_provenance(ckpt, source, time.monotonic() - started),
        )
        write_manifest(staging, manifest)
        manifest = read_manifest(staging)  # as written: with its checksum
        if sign_key is not None:
            sign_bundle(staging, sign_key)
        _recheck(staging)
        _publish(staging, out)
        report("done", total, total)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _staging_prefix(out: Path) -> str:
    """Where a bundle is built before it is published: beside `out`, named after it and (next) the exporting
    process's id."""
    return f".{out.name}.export-"


def _remove_abandoned(out: Path) -> None:
    """Remove the staging folders of earlier exports to `out` whose process is gone (killed, or out of memory:
    no `finally` ran); those of a running export stay."""
    prefix = _staging_prefix(out)
    for folder in out.parent.glob(f"{prefix}*"):
        pid = folder.name[len(prefix):].split("-")[0]
        if folder.is_dir() and pid.isdigit() and not process_running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class _Work:
    """What every variant of one export reads: the checkpoint, its graph modules, the evaluation data, the torch
    outputs to match, and a cache (the fp32 models the other precisions derive from, calibration pairs)."""

    ckpt: Checkpoint
    modules: dict
    data: EvalSet
    expected: dict
    cache: dict = field(default_factory=dict)

    @cached_property
    def calibration(self) -> list[Recording]:
        """Training-like recordings for static and integer-only files, read once."""
        return calibration_recordings(self.ckpt, self.data)


def _verified(work: _Work, variant: Variant, path: Path, base: ModelFile | None, tolerance: float | None
              ) -> ModelFile:
    """Build the file, load it back with its real runtime, measure parity and the task score. With a
    tolerance (fp32), a file off the torch model fails the export. `base`: the shipped fp32 file it derives
    from (None for fp32 files)."""
    ckpt = work.ckpt
    path.write_bytes(_build(work, variant))
    runner = load_runner(path, variant.format, variant.graph, variant.time, ckpt.config.output_size)
    parity, wrong = measure(runner, work.expected[variant.graph], tolerance)
    if wrong:
        raise ExportError(f"{variant.filename} failed verification against the torch model "
                          f"({'; '.join(wrong)}; tolerance {tolerance:g}; --tolerance overrides): nothing was "
                          "written")
    return _entry(variant, path, parity, file_score(ckpt, runner, work.data, variant.graph == "window"), base)


def _not_smaller(entry: ModelFile, base: ModelFile) -> str | None:
    if entry.size_bytes >= base.size_bytes:
        return f"{entry.size_bytes / 1024:.1f} KB is not smaller than the fp32 file ({base.size_bytes / 1024:.1f} KB)"
    return None


def _valid_range(ckpt: Checkpoint) -> list[list[float]] | None:
    """Per channel, the training data's [min, max] widened by its span on each side: values further out are not
    a sensor reading the model has any business scoring (the runtime treats them like non-finite ones)."""
    seen = ckpt.provenance.get("input_range")
    if not seen:
        return None
    return [[lo - max(hi - lo, 1e-3), hi + max(hi - lo, 1e-3)] for lo, hi in seen]


def _window_time(data: EvalSet) -> int | None:
    """The fixed time length of TFLite window files: the series' common length (None when lengths vary)."""
    lengths = {len(r) for r in data.recordings}
    return lengths.pop() if len(lengths) == 1 else None


def _output_spec(ckpt: Checkpoint) -> OutputSpec:
    config = ckpt.config
    if get_task(config.task).classes:
        return OutputSpec(size=config.output_size, kind="logits", labels=list(ckpt.labels))
    names = [f"{channel} t+{k}" for k in range(1, config.horizon + 1) for channel in ckpt.channels]
    return OutputSpec(size=config.output_size, kind="forecast", names=names,
                      units="the input channels' own units (de-normalized inside the graph)")


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise ExportError(f"{out}: a non-empty folder that is not a bundle; refusing to replace it")


def _plan(ckpt: Checkpoint, graphs: Sequence[str], formats: Sequence[str], precisions: Sequence[str],
          chunk_len: int, window_time: int | None) -> tuple[list[Variant], list[Rejected]]:
    unknown = sorted(set(formats) - set(FORMATS)) + sorted(set(precisions) - set(PRECISIONS))
    if unknown or not formats:
        raise ExportError(f"unknown or no format/precision {', '.join(unknown)} (formats: "
                          f"{', '.join(FORMATS)}; precisions: {', '.join(PRECISIONS)})")
    if chunk_len < 1:
        raise ExportError(f"chunk length must be >= 1, got {chunk_len}")
    wanted = ["fp32", *[p for p in PRECISIONS[1:] if p in precisions]]
    variants, rejected = [], []
    for graph in graphs:
        for fmt in FORMATS:
            if fmt not in formats:
                continue
            if (fmt, graph) == ("tflite", "window") and window_time is None:
                rejected.append(Rejected(format="tflite", precision="fp32", reason=(
                    "window files: TFLite fixes the time length and the evaluation series vary in length; "
                    "use the ONNX file (any length)")))
                continue
            lengths = [None] if fmt == "onnx" else [window_time] if graph == "window" else sorted({1, chunk_len})
            for length in lengths:
                for precision in wanted:
                    if precision in integer.PRECISIONS and (fmt, graph, length) != ("tflite", "stream", 1):
                        continue  # integer-only files are TFLite Micro's: T=1 stream files
                    variants.append(Variant(graph, fmt, precision, length))
                    if (fmt, precision) == ("tflite", "int8"):  # per tensor is smaller; per channel if it loses
                        variants.append(Variant(graph, fmt, precision, length, per_channel=True))
                if fmt == "tflite" and "int8" in wanted and "int8_static" not in wanted:
                    variants.append(Variant(graph, fmt, "int8_static", length))
    if "int8_static" in precisions and "onnx" in formats:
        variants = [v for v in variants if (v.format, v.precision) != ("onnx", "int8_static")]
        rejected.append(Rejected(format="onnx", precision="int8_static",
                                 reason="not offered: static int8 activations on the recurrent state lose "
                                        "most of the accuracy (measured 62% argmax agreement); use int8"))
    return variants, rejected


def _build(work: _Work, variant: Variant) -> bytes:
    """The file's bytes; fp32 is built first for each (graph, format, time) and the others derive from it."""
    ckpt, module, cache = work.ckpt, work.modules[variant.graph], work.cache
    key = (variant.graph, variant.format, variant.time)
    summary = _summary(ckpt, variant)
    if variant.format == "onnx":
        if key not in cache:
            cache[key] = export_onnx(ckpt, module, variant.graph, {"rnnedge": summary})
        model = cache[key]
        if variant.precision != "fp32":
            model = onnx_weights.compress_weights(model, variant.precision)
        return serialize_onnx(model)
    if key not in cache:
        inputs = example_inputs(ckpt, variant.graph, variant.time)
        source = UnrolledStream(ckpt) if variant.graph == "stream" else module
        cache[key] = tflite_export.convert_tflite(source.eval(), inputs)
    model = cache[key]
    if variant.precision in integer.PRECISIONS:
        model = integer.integer_tflite(ckpt, model, variant.precision, work.calibration, variant.time, cache)
    elif variant.precision != "fp32":
        calibration = None
        if variant.precision == "int8_static":
            calibration = calibration_samples(module, work.calibration, variant.graph, variant.time,
                                              ckpt.config.state_size)
        model = tflite_export.quantize_tflite(model, variant.precision, calibration, variant.per_channel)
    return tflite_export.finish_tflite(model, summary)


def _summary(ckpt: Checkpoint, variant: Variant) -> str:
    c = ckpt.config
    what = "logits " + "/".join(ckpt.labels) if get_task(c.task).classes else f"next {c.horizon} step(s) forecast"
    what += " (the latest value plus a change)" if c.residual else ""
    io = ("x [batch, time, channels] -> y [batch, outputs]" if variant.graph == "window" else
          f"x [batch, time, channels], state [batch, {c.state_size}] -> y [batch, time, {c.output_size}], "
          f"state_out [batch, {c.state_size}] (packs {','.join(c.state_tensors)} x {c.num_layers} layers)")
    fixed = f"batch 1, time {variant.time}" if variant.time else "any batch and time"
    return (f"rnnedge {rnnedge.__version__} {variant.graph} graph, {variant.precision}: {c.cell} "
            f"{c.num_layers}x{c.hidden_size} {c.task} model; {io}; {fixed}; x in raw units of "
            f"{','.join(ckpt.channels)} at {ckpt.sample_rate_hz:g} Hz (normalization inside); {what}")


def _entry(variant: Variant, path: Path, parity, score: float, base: ModelFile | None) -> ModelFile:
    notes = (onnx_weights.NOTES if variant.format == "onnx" else {**tflite_export.NOTES, **integer.NOTES}
             )[variant.precision]
    if variant.format == "tflite" and variant.precision == "int8":
        notes += "; one scale per output channel" if variant.per_channel else "; one scale per weight tensor"
    size = path.stat().st_size
    if base is not None:  # the shipped fp32 file, as the size gate (_not_smaller) compares
        notes += f"; {size / base.size_bytes:.0%} of the fp32 file"
    if variant.format == "tflite":
        notes += f"; signature '{tflite_export.SIGNATURE}'; {TFLITE_RUNTIME_NOTE}"
    return ModelFile(path=path.name, format=variant.format, precision=variant.precision, graph=variant.graph,
                     chunk_len=variant.time, sha256=sha256_file(path), size_bytes=size,
                     runtimes=RUNTIMES[variant.format], parity=parity, score=score, notes=notes)


def _integer_entry(entry: ModelFile, path: Path, labels: list[str]) -> ModelFile:
    """An integer-only file's I/O quantization, TFLite Micro build (C++ sources beside it, and plain C where the
    generator computes it: the reason in the notes where not) and runtimes."""
    build, quantization, no_c = mcu.mcu_build(path, labels)
    notes = "; ".join(n for n in (entry.notes, no_c and f"no plain C: {no_c}") if n)
    return msgspec.structs.replace(entry, quantization=quantization, mcu=build, notes=notes,
                                   runtimes=["tflite-micro", *entry.runtimes])


def _write_reference(staging: Path, x: np.ndarray, labels: np.ndarray, expected: Expected,
                     description: str) -> Reference:
    arrays = {"x": x, "labels": labels, "y": expected.y.astype(np.float32)}
    if expected.states is not None:
        arrays["state_out"] = expected.states[-1].astype(np.float32)
        description += "; arrays x, labels, y, state_out (the state after the slice, from zeros)"
    else:
        description += "; arrays x, labels, y"
    path = staging / REFERENCE_NAME
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Reference(sha256=sha256_file(path), description=description)


def _provenance(ckpt: Checkpoint, source: Path | None, seconds: float) -> dict:
    weights = hashlib.sha256()
    for name, tensor in sorted(ckpt.state_dict.items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    tools = {}
    for package in ("torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-quantizer", "ai-edge-litert"):
        try:
            tools[package] = version(package)
        except PackageNotFoundError:
            tools[package] = None
    return {"checkpoint": str(source) if source else None,
            "checkpoint_sha256": sha256_file(source) if source else None,
            "weights_sha256": weights.hexdigest(), "training": ckpt.provenance, "exporters": tools,
            "onnx_opset": OPSET, "export_seconds": round(seconds, 1)}


def _recheck(staging: Path) -> None:
    """Read the staged bundle back exactly as a consumer will before publishing it."""
    manifest = read_manifest(staging)
    for entry in manifest.files:
        verify_file(staging, entry)
    if manifest.reference is not None:
        verify_file(staging, manifest.reference.path, manifest.reference.sha256)


def _publish(staging: Path, out: Path) -> None:
    """Swap the staged folder into place; an old bundle there is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
