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

A manifest is not trusted further than it is checked: file names are plain names inside the bundle (checked
before anything is opened; symlinks out of the folder are refused), its size, nesting and every count are
bounded, its sizes must agree with each other (and the runtime checks them against the model file at load), and
a deployment that wants more can sign it (`sign_bundle`, then `rnnedge.runtime.load(..., verify_key=KEY)`): an
HMAC-SHA256 over the manifest's exact bytes, which hold every file's sha256. Unsigned, a manifest still carries
its own `checksum` (sha256 of its content), so an edit by hand (channels swapped, labels renamed, the sample rate
halved: every alarm would change without a word) is refused; an edit on purpose is a re-export, or a signature.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from rnnedge.atomic import write_bytes_atomic, write_text_atomic
from rnnedge.digest import sha256_bytes, sha256_file
from rnnedge.errors import BundleError, brief

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 2  # 2: task scores named by their metric (score/torch_score), output units
MANIFEST_NAME = "manifest.json"
REFERENCE_NAME = "reference.npz"
SIGNATURE_NAME = "manifest.sig"  # hex HMAC-SHA256 of manifest.json's bytes (sign_bundle)

# Structural limits: a hostile manifest gets a BundleError, never a RecursionError or a MemoryError.
MAX_MANIFEST_BYTES = 1 << 20  # the default bundle's is ~14 KB
MAX_DEPTH = 32  # JSON nesting (provenance and model are free-form dicts)
MAX_CHANNELS = 4096
MAX_OUTPUTS = 1 << 16
MAX_STATE = 1 << 20  # floats: 4 MB a stream, twice (alternating buffers)
MAX_CHUNK_LEN = 1 << 16
MAX_FILES = 256

Format = Literal["onnx", "tflite"]
Precision = Literal["fp32", "fp16", "int8", "int8_static", "a8w8", "a16w8"]  # a8w8/a16w8: integer only (MCU, NPU)
INTEGER_PRECISIONS = ("a8w8", "a16w8")  # no float op in the file: what TFLite Micro and NPUs run


Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
# A plain file name inside the bundle: no separator, not "." or "..", not hidden, not absolute.
FileName = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")]
Range = Annotated[list[float], msgspec.Meta(min_length=2, max_length=2)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Unknown fields refused, immutable; subclasses say kw_only=True (msgspec does not inherit it) so that
    fields with defaults may precede required ones."""


class Normalization(_Strict, kw_only=True):
    mean: Annotated[list[float], msgspec.Meta(max_length=MAX_CHANNELS)]
    std: Annotated[list[float], msgspec.Meta(max_length=MAX_CHANNELS)]


class InputSpec(_Strict, kw_only=True):
    name: str = "x"
    channels: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_CHANNELS)]
    sample_rate_hz: Positive
    normalization: Normalization  # applied inside each graph: callers feed raw units
    # per channel [low, high] in raw units: what the sensor can physically report (from the training data, with a
    # margin). Samples outside it are handled like non-finite ones (rnnedge.runtime.inputs); None: no range check
    valid_range: Annotated[list[Range], msgspec.Meta(max_length=MAX_CHANNELS)] | None = None


class OutputSpec(_Strict, kw_only=True):
    name: str = "y"
    size: Annotated[int, msgspec.Meta(gt=0, le=MAX_OUTPUTS)]
    kind: Literal["logits", "forecast"]
    labels: Annotated[list[str], msgspec.Meta(max_length=MAX_OUTPUTS)] = []  # class names (logits); empty: forecast
    names: list[str] = []  # forecast: what each output is, e.g. "acc-x t+1" (the next sample of acc-x)
    units: str = ""  # forecast: "the input channels' units" (de-normalized inside the graph)


class StateSpec(_Strict, kw_only=True):
    input: str = "state"
    output: str = "state_out"
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_STATE)]
    parts: list[Literal["h", "c"]]  # packed in this order: ("h", "c") for LSTM, ("h",) otherwise
    layers: Annotated[int, msgspec.Meta(ge=1, le=1024)]
    directions: Literal[1, 2]
    hidden_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_STATE)]
    previous: Annotated[int, msgspec.Meta(ge=0, le=MAX_STATE)] = 0  # after the parts: a forecast with the change
    # input keeps its last sample (normalized) and a seen flag per channel (1 once a sample was seen)
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


class Quantized(_Strict, kw_only=True):
    """An integer I/O tensor: real value = (integer - zero_point) * scale."""

    dtype: Literal["int8", "int16"]
    scale: Positive
    zero_point: int


class PlainC(_Strict, kw_only=True):
    """The same integer-only file as a plain C99 library (rnnedge.export.cgen): TFLite Micro's integers without
    its interpreter: `void <step>(int16_t *state, const int16_t *x, int16_t *y)`, the state owned by the caller."""

    source: FileName
    source_sha256: Sha256
    header: FileName  # sizes, I/O scales, labels, the step's declaration
    header_sha256: Sha256
    step: str  # the step function's name
    scratch_bytes: Count  # on the stack during a step


class Mcu(_Strict, kw_only=True):
    """A microcontroller build of an integer-only file (rnnedge.export.mcu, docs/mcu.md)."""

    source: FileName  # C++ source: the file as an aligned byte array
    source_sha256: Sha256
    header: FileName  # declarations, arena size, I/O quantization, the op resolver's registrations
    header_sha256: Sha256
    ops: list[str]  # the builtin ops the resolver must register
    arena_bytes: Count  # tensor arena TFLite Micro allocated to run it (measured on a 64-bit host: an upper bound
    # for 32-bit Cortex-M, whose pointers are half the size)
    flash_bytes: Count  # the model array (the .tflite file's bytes)
    c: PlainC | None = None  # a16w8 files; None where the generator does not compute the file (int8 activations)


class ModelFile(_Strict, kw_only=True):
    path: FileName
    format: Format
    precision: Precision
    graph: Literal["stream", "window"]
    chunk_len: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHUNK_LEN)] | None = None  # fixed time length, or None
    # when the file takes any length
    sha256: Sha256
    size_bytes: Count
    runtimes: list[str]  # runtimes known to load it, e.g. "onnxruntime>=1.18", "ai-edge-litert>=2.0"
    parity: Parity
    score: float | None = None  # the task metric (Evaluation.metric) on the evaluation data
    notes: str = ""
    quantization: dict[Literal["x", "state", "y", "state_out"], Quantized] | None = None  # integer I/O (else float32)
    mcu: Mcu | None = None


class Rejected(_Strict, kw_only=True):
    """A variant that was built and measured but not shipped (e.g. static int8 that loses accuracy)."""

    format: Format
    precision: Precision
    reason: str
    score: float | None = None


class Evaluation(_Strict, kw_only=True):
    data: str  # what the held-out data is (subjects, recordings)
    metric: str
    higher_is_better: bool = True  # accuracy: yes; mse: no
    torch_score: float | None = None
    samples: Count = 0
    # torch fp32 vs the same model in float64 on the reference slice, per chunk from the same state: the
    # model's own rounding noise, part of each fp32 file's parity bound (rnnedge/export/verify.py)
    float32_noise_output: float | None = None
    float32_noise_state: float | None = None


class Reference(_Strict, kw_only=True):
    """Held-out real data (raw units) with the torch model's outputs: accuracy and parity on any device.
    Arrays: x [N, T, C] float32, labels [N, T] int64 (0 = unscored), y [N, T, outputs] float32."""

    path: FileName = REFERENCE_NAME
    sha256: Sha256
    description: str


class OperatingPointFile(_Strict, kw_only=True):
    """The bed-exit alarm's operating point chosen for this model on validation data (`rnnedge evaluate-alarms`
    writes it; `rnnedge monitor` uses it): a JSON file in the bundle, covered by its sha256 here."""

    path: FileName = "operating_point.json"
    sha256: Sha256


class Manifest(_Strict, kw_only=True):
    schema_version: Literal[2] = SCHEMA_VERSION
    name: str
    created: str
    rnnedge_version: str
    task: Literal["tag", "classify", "forecast"]
    model: dict[str, Any]  # the training ModelConfig, as saved in the checkpoint
    streamable: bool
    input: InputSpec
    output: OutputSpec
    state: StateSpec
    # time lengths every stream file supports (ONNX supports any)
    chunk_lens: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=MAX_CHUNK_LEN)]], msgspec.Meta(max_length=64)]
    files: Annotated[list[ModelFile], msgspec.Meta(max_length=MAX_FILES)]
    rejected: list[Rejected] = []
    evaluation: Evaluation
    reference: Reference | None = None
    provenance: dict[str, Any] = {}
    operating_point: OperatingPointFile | None = None
    # sha256 of the rest (manifest_checksum), written by every rnnedge that writes a manifest; None only in
    # bundles from before it (rnnedge < 0.2), whose edits therefore go unseen unless signed
    checksum: Sha256 | None = None

    def find(self, fmt: str, precision: str = "fp32", graph: str = "stream",
             chunk_len: int | None = None) -> ModelFile:
        for f in self.files:
            if (f.format, f.precision, f.graph) == (fmt, precision, graph) and (
                    chunk_len is None or f.chunk_len in (None, chunk_len)):
                return f
        have = ", ".join(f"{f.format}/{f.precision}/{f.graph}" for f in self.files) or "none"
        raise BundleError(f"bundle has no {fmt}/{precision}/{graph} file (has: {have})")


def read_manifest(bundle: str | Path, verify_key: bytes | None = None) -> Manifest:
    """Parse and validate `bundle/manifest.json` (schema, limits, consistency; see `verify_file` for hashes).
    With `verify_key`, the manifest must carry a valid signature by that key (sign_bundle)."""
    path = Path(bundle) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle}: not a bundle (no {MANIFEST_NAME})")
    _inside(Path(bundle), path)
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"{path}: unreadable manifest ({exc.strerror or exc})") from None
    if len(text) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES} bytes; refused")
    if verify_key is not None:
        _verify_signature(Path(bundle), text, verify_key)
    manifest = _decode(text, str(path))
    if manifest.checksum is not None and manifest.checksum != manifest_checksum(json.loads(text)):
        raise BundleError(f"{path}: the manifest was edited after rnnedge wrote it (its checksum no longer "
                          "matches): re-export the bundle, or sign the bundles you edit on purpose")
    return manifest


def manifest_checksum(raw: dict) -> str:
    """sha256 of a manifest's content without its own checksum: key order and spacing do not count, values do."""
    body = {key: value for key, value in raw.items() if key != "checksum"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


class _Versioned(msgspec.Struct):
    """Just the version: read when a manifest fails validation, so a newer one gets that message instead."""

    schema_version: Any = None


def _decode(text: bytes, where: str) -> Manifest:
    _check_depth(text, where)
    try:
        manifest = msgspec.json.decode(text, type=Manifest)
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
    _check_consistency(manifest, where)
    return manifest


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def _check_depth(text: bytes, where: str) -> None:
    """Refuse nesting beyond MAX_DEPTH before a decoder recurses into it (brackets inside strings ignored)."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub(b"", text)):
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_DEPTH:
            raise BundleError(f"{where}: invalid manifest: nested deeper than {MAX_DEPTH} levels")


def _check_consistency(m: Manifest, where: str) -> None:
    """The sizes a manifest states must agree with each other (the runtime then checks them against the file)."""
    channels = len(m.input.channels)
    problems = []
    if not len(m.input.normalization.mean) == len(m.input.normalization.std) == channels:
        problems.append(f"normalization has {len(m.input.normalization.mean)}/{len(m.input.normalization.std)} "
                        f"values for {channels} channels")
    if not all(math.isfinite(v) for v in (*m.input.normalization.mean, *m.input.normalization.std)):
        problems.append("normalization is not finite")
    if m.input.valid_range is not None and (len(m.input.valid_range) != channels or not all(
            math.isfinite(low) and math.isfinite(high) and low < high for low, high in m.input.valid_range)):
        problems.append(f"valid_range needs one finite [low, high] with low < high for each of {channels} channels")
    if m.output.labels and len(m.output.labels) != m.output.size:
        problems.append(f"{len(m.output.labels)} labels for {m.output.size} outputs")
    s = m.state
    if len(set(s.parts)) != len(s.parts) or s.parts[:1] != ["h"] or \
            s.size != len(s.parts) * s.layers * s.directions * s.hidden_size + s.previous or \
            s.previous not in (0, 2 * channels):
        problems.append(f"state size {s.size} is not parts {s.parts} x {s.layers} layers x {s.directions} "
                        f"directions x {s.hidden_size} hidden + previous {s.previous} (0, or 2 x {channels} "
                        "channels)")
    for f in m.files:
        if f.format == "tflite" and f.graph == "stream" and f.chunk_len is None:
            problems.append(f"{f.path}: a TFLite stream file needs its chunk_len")
    if problems:
        raise BundleError(f"{where}: inconsistent manifest: {'; '.join(problems)}")


def verify_file(bundle: str | Path, entry: ModelFile | str, sha256: str | None = None) -> Path:
    """Return the file's path if it is a plain name inside the bundle and its sha256 matches the manifest;
    refuse it otherwise."""
    rel, expected = (entry.path, entry.sha256) if isinstance(entry, ModelFile) else (entry, sha256)
    path = Path(bundle) / rel
    if "/" in rel or "\\" in rel or rel in ("", ".", "..") or Path(rel).is_absolute():
        raise BundleError(f"{bundle}: file name {brief(rel)} is not a plain name inside the bundle; refused")
    if not path.is_file():
        raise BundleError(f"{path}: listed in the manifest but missing")
    _inside(Path(bundle), path)
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(f"{path}: sha256 mismatch (manifest {str(expected)[:12]}..., file {actual[:12]}...): "
                          "the file was modified or corrupted; re-export the bundle")
    return path


def _inside(bundle: Path, path: Path) -> None:
    """Refuse a symlink that leads out of the bundle folder."""
    if path.is_symlink() and path.resolve().parent != bundle.resolve():
        raise BundleError(f"{path}: a symlink out of the bundle; refused")


def read_reference(bundle: str | Path, manifest: Manifest) -> dict[str, np.ndarray]:
    """The reference arrays (x, labels, y), hash-checked; BundleError if missing, corrupt or mis-shaped."""
    import numpy as np

    if manifest.reference is None:
        raise BundleError(f"{bundle}: has no reference data, so accuracy and parity cannot be checked")
    path = verify_file(bundle, manifest.reference.path, manifest.reference.sha256)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ("x", "labels", "y")}
    except Exception as exc:  # zlib.error, BadZipFile, KeyError, ValueError...: numpy has no error type of its own
        raise BundleError(f"{path}: unreadable reference data ({one_line(exc)})") from None
    x, labels, y = arrays["x"], arrays["labels"], arrays["y"]
    if x.ndim != 3 or x.shape[2] != len(manifest.input.channels) or labels.shape[:1] != x.shape[:1] or \
            y.shape[:1] != x.shape[:1]:
        raise BundleError(f"{path}: reference arrays of shapes x {x.shape}, labels {labels.shape}, y {y.shape} "
                          f"do not fit {len(manifest.input.channels)} channels")
    return arrays


def one_line(exc: BaseException) -> str:
    """An exception as one short line (backends raise multi-line messages): its type and first line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def sign_bundle(bundle: str | Path, key: bytes) -> Path:
    """Write `manifest.sig`: the HMAC-SHA256 of manifest.json's exact bytes under `key` (which the manifest's
    sha256 of every file extends to the whole bundle). Re-sign after any change to the manifest."""
    path = Path(bundle) / MANIFEST_NAME
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot sign ({exc.strerror or exc})") from None
    _decode(text, str(path))  # sign only what a consumer would accept
    return write_bytes_atomic(Path(bundle) / SIGNATURE_NAME, (_hmac(_key(key), text) + "\n").encode())


def read_key(path: str | Path) -> bytes:
    """A signing key from a file (its bytes, surrounding whitespace removed); BundleError if unusable."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the key ({exc.strerror or exc})") from None
    return _key(key, str(path))


def _key(key: bytes, where: str = "key") -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise BundleError(f"{where}: a signing key must be at least 16 bytes")
    return bytes(key)


def _hmac(key: bytes, text: bytes) -> str:
    import hmac  # here, not at the top: hashlib maps OpenSSL, 4 MB that only signing deployments pay for

    return hmac.new(key, text, "sha256").hexdigest()


def _verify_signature(bundle: Path, text: bytes, key: bytes) -> None:
    import hmac

    key, path = _key(key), bundle / SIGNATURE_NAME
    try:
        signature = path.read_bytes()[:256].strip()
    except FileNotFoundError:
        raise BundleError(f"{bundle}: unsigned bundle (no {SIGNATURE_NAME}) and a verify key was given") from None
    except OSError as exc:
        raise BundleError(f"{path}: unreadable signature ({exc.strerror or exc})") from None
    if not hmac.compare_digest(signature, _hmac(key, text).encode()):
        raise BundleError(f"{bundle}: manifest signature mismatch: the manifest was edited, or signed with "
                          "another key; refused")


def write_manifest(bundle: str | Path, manifest: Manifest) -> Path:
    """Write atomically, after checking that what is written reads back as a valid manifest (Struct
    construction does not check types: a numpy scalar or a wrong type would otherwise reach the file)."""
    try:
        text = msgspec.json.encode(msgspec.structs.replace(manifest, checksum=None), enc_hook=_plain)
    except TypeError as exc:
        raise BundleError(f"manifest not serializable: {exc}") from None
    _decode(text, "manifest to write")
    text = msgspec.json.encode(msgspec.structs.replace(manifest, checksum=manifest_checksum(json.loads(text))),
                               enc_hook=_plain)
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
