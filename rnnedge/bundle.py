"""The bundle: the one contract between export, runtime, devices and apps.

A bundle is a folder holding `manifest.json` plus model files (and `reference.npz`, held-out real data with
reference outputs). This module is the manifest's schema, written down once as msgspec Structs (typed, strict:
unknown fields are refused; `rnnedge schema` prints the JSON Schema generated from them), and is imported by
the torch-free runtime, so it must stay light: msgspec validates while it parses, in ~1 MB of memory where
pydantic's schema machinery cost ~15 MB of the runtime's budget.

Model graph I/O, identical for every streaming file whatever the cell:
  inputs  x [batch, time, channels] float32 in RAW sensor units (normalization is inside the graph),
          state [batch, state_size] float32
  outputs y [batch, time, outputs] float32, state_out [batch, state_size] float32
Window files (bidirectional or window tasks) take only x [batch, time, channels] and return y [batch, outputs].
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from rnnedge.atomic import write_text_atomic
from rnnedge.digest import sha256_file
from rnnedge.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REFERENCE_NAME = "reference.npz"

Format = Literal["onnx", "tflite"]
Precision = Literal["fp32", "fp16", "int8", "int8_static"]


Positive = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Unknown fields refused, immutable; subclasses say kw_only=True (msgspec does not inherit it) so that
    fields with defaults may precede required ones."""


class Normalization(_Strict, kw_only=True):
    mean: list[float]
    std: list[float]


class InputSpec(_Strict, kw_only=True):
    name: str = "x"
    channels: list[str]
    sample_rate_hz: Positive
    normalization: Normalization  # applied inside each graph: callers feed raw units


class OutputSpec(_Strict, kw_only=True):
    name: str = "y"
    size: PositiveInt
    kind: Literal["logits", "forecast"]
    labels: list[str] = []  # class names for logits; empty for forecast


class StateSpec(_Strict, kw_only=True):
    input: str = "state"
    output: str = "state_out"
    size: Count
    parts: list[str]  # packed in this order: ("h", "c") for LSTM, ("h",) otherwise
    layers: int
    directions: int
    hidden_size: int
    dtype: Literal["float32"] = "float32"


class Parity(_Strict, kw_only=True):
    """How closely this file reproduces the torch model on held-out real data."""

    samples: Count  # time steps compared
    max_abs_diff_output: float
    max_abs_diff_state: float | None = None
    streaming_max_abs_diff: float | None = None  # step-by-step with carried state vs full sequence
    streamed_max_abs_diff: float | None = None  # vs torch, the whole reference slice streamed from zero state,
    # as a device runs it: quantization error accumulates in the state, so this exceeds the chunked figure
    argmax_agreement: float | None = None
    tolerance: float | None = None  # the bound this file was held to (fp32 only; plus 3x the model's float32
    # noise, see Evaluation); None = reported only


class ModelFile(_Strict, kw_only=True):
    path: str
    format: Format
    precision: Precision
    graph: Literal["stream", "window"]
    chunk_len: int | None = None  # fixed time length, or None when the file takes any length
    sha256: str
    size_bytes: Count
    runtimes: list[str]  # runtimes known to load it, e.g. "onnxruntime>=1.18", "ai-edge-litert>=2.0"
    parity: Parity
    accuracy: float | None = None  # task metric on the evaluation data (per-sample accuracy for tag)
    notes: str = ""


class Rejected(_Strict, kw_only=True):
    """A variant that was built and measured but not shipped (e.g. static int8 that loses accuracy)."""

    format: Format
    precision: Precision
    reason: str
    accuracy: float | None = None


class Evaluation(_Strict, kw_only=True):
    data: str  # what the held-out data is (subjects, recordings)
    metric: str
    torch_accuracy: float | None = None
    samples: Count = 0
    # torch fp32 vs the same model in float64 on the reference slice, per chunk from the same state: the
    # model's own rounding noise, part of each fp32 file's parity bound (rnnedge/export/verify.py)
    float32_noise_output: float | None = None
    float32_noise_state: float | None = None


class Reference(_Strict, kw_only=True):
    """Held-out real data (raw units) with the torch model's outputs: accuracy and parity on any device.
    Arrays: x [N, T, C] float32, labels [N, T] int64 (0 = unscored), y [N, T, outputs] float32."""

    path: str = REFERENCE_NAME
    sha256: str
    description: str


class Manifest(_Strict, kw_only=True):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    created: str
    rnnedge_version: str
    task: Literal["tag", "classify", "forecast"]
    model: dict[str, Any]  # the training ModelConfig, as saved in the checkpoint
    streamable: bool
    input: InputSpec
    output: OutputSpec
    state: StateSpec
    chunk_lens: list[int]  # time lengths every stream file supports (ONNX supports any)
    files: list[ModelFile]
    rejected: list[Rejected] = []
    evaluation: Evaluation
    reference: Reference | None = None
    provenance: dict[str, Any] = {}

    def find(self, fmt: str, precision: str = "fp32", graph: str = "stream",
             chunk_len: int | None = None) -> ModelFile:
        for f in self.files:
            if (f.format, f.precision, f.graph) == (fmt, precision, graph) and (
                    chunk_len is None or f.chunk_len in (None, chunk_len)):
                return f
        have = ", ".join(f"{f.format}/{f.precision}/{f.graph}" for f in self.files) or "none"
        raise BundleError(f"bundle has no {fmt}/{precision}/{graph} file (has: {have})")


def read_manifest(bundle: str | Path) -> Manifest:
    """Parse and validate `bundle/manifest.json` (schema only; see `verify_file` for hashes)."""
    path = Path(bundle) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle}: not a bundle (no {MANIFEST_NAME})")
    try:
        return _decode(path.read_bytes(), str(path))
    except OSError as exc:
        raise BundleError(f"{path}: unreadable manifest ({exc})") from None


class _Versioned(msgspec.Struct):
    """Just the version: read when a manifest fails validation, so a newer one gets that message instead."""

    schema_version: Any = None


def _decode(text: bytes, where: str) -> Manifest:
    try:
        return msgspec.json.decode(text, type=Manifest)
    except msgspec.ValidationError as exc:  # e.g. "Expected `int`, got `str` - at `$.state.size`"
        try:
            version = msgspec.json.decode(text, type=_Versioned).schema_version
        except msgspec.DecodeError:
            version = None
        if version not in (None, SCHEMA_VERSION):
            raise BundleError(f"{where}: schema_version {version} is not supported (this rnnedge reads "
                              f"{SCHEMA_VERSION})") from None
        raise BundleError(f"{where}: invalid manifest: {exc}") from None
    except msgspec.DecodeError as exc:  # not JSON at all
        raise BundleError(f"{where}: unreadable manifest ({exc})") from None


def verify_file(bundle: str | Path, entry: ModelFile | str, sha256: str | None = None) -> Path:
    """Return the file's path if its sha256 matches the manifest; refuse it otherwise."""
    rel, expected = (entry.path, entry.sha256) if isinstance(entry, ModelFile) else (entry, sha256)
    path = Path(bundle) / rel
    if not path.is_file():
        raise BundleError(f"{path}: listed in the manifest but missing")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(f"{path}: sha256 mismatch (manifest {expected[:12]}..., file {actual[:12]}...): "
                          "the file was modified or corrupted; re-export the bundle")
    return path


def write_manifest(bundle: str | Path, manifest: Manifest) -> Path:
    """Write atomically, after checking that what is written reads back as a valid manifest (Struct
    construction does not check types: a numpy scalar or a wrong type would otherwise reach the file)."""
    try:
        text = msgspec.json.encode(manifest, enc_hook=_plain)
    except TypeError as exc:
        raise BundleError(f"manifest not serializable: {exc}") from None
    _decode(text, "manifest to write")
    return write_text_atomic(Path(bundle) / MANIFEST_NAME, msgspec.json.format(text, indent=2).decode() + "\n")


def _plain(value: Any) -> Any:
    """numpy scalars (float32 diffs, int64 counts) as Python numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def with_changes(struct: msgspec.Struct, **changes: Any) -> Any:
    """A copy of a manifest (or one of its parts) with some fields changed."""
    return msgspec.structs.replace(struct, **changes)


def json_schema() -> dict:
    return msgspec.json.schema(Manifest)
