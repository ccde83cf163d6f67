"""A corpus of bad inputs for the runtime API, the bundle and the snapshots (issue 12): each row reproduces a
field fault or a tampering seen in an audit and names its expected outcome, a typed one-line error or a flagged
step. Nothing may end in another exception (a raw traceback for a CLI user)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.bundle import read_manifest, read_reference, sign_bundle
from rnnedge.digest import sha256_bytes, sha256_file
from rnnedge.errors import (
    BackendUnavailableError,
    BundleError,
    InputError,
    PoolError,
    RnnedgeError,
    SnapshotError,
    UnknownStreamError,
    brief,
)
from rnnedge.runtime.snapshot import MAGIC, Snapshot, save_snapshot
from tests.edits import set_at, write_manifest_json

GLITCH = 1e30  # finite: LiteRT's fp32 kernels turn it into a NaN state (ONNX Runtime saturates)
KEY = b"k" * 32


class Ctx:
    """What a case works with: fresh bundle copies, a real sample, a folder of its own."""

    def __init__(self, copy: Callable[..., Path], tmp: Path) -> None:
        self.copy, self.tmp = copy, tmp
        with np.load(copy() / "reference.npz") as npz:
            self.x = npz["x"][0].astype(np.float32)  # real HAPT samples, raw units

    def model(self, edit: Callable[[dict], object] | None = None, **load) -> rt.Model:
        return rt.load(self.copy(edit), **({"backend": "onnxruntime"} | load))

    def glitched(self, t: int = 5) -> np.ndarray:
        x = self.x[:20].copy()
        x[t, 2] = GLITCH
        return x

    def snapshot(self, header: Callable[[dict], object] | None = None,
                 payload: Callable[[np.ndarray], np.ndarray] | None = None, rehash: bool = True) -> Path:
        """A real snapshot of this bundle's ONNX stream, its header and payload edited, checksum recomputed."""
        model = rt.load(self.copy(), backend="onnxruntime")
        stream = model.stream()
        stream.feed(self.x[:30])
        path = stream.save(self.tmp / "s.snap")
        body = path.read_bytes()[:-64]
        line, _, data = body[len(MAGIC):].partition(b"\n")
        fields = json.loads(line)
        values = np.frombuffer(data, "<f4").copy()
        if header:
            header(fields)
        if payload:
            values = payload(values)
        body = MAGIC + json.dumps(fields).encode() + b"\n" + values.astype("<f4").tobytes()
        path.write_bytes(body + (sha256_bytes(body).encode() if rehash else path.read_bytes()[-64:]))
        return path

    def resume(self, path: Path) -> rt.Stream:
        return rt.load(self.copy(), backend="onnxruntime").stream(resume=path)


def _onnx_entry(m: dict) -> dict:
    return next(f for f in m["files"] if f["format"] == "onnx")


def _tflite_entry(m: dict, time_len: int) -> dict:
    return next(f for f in m["files"] if f["format"] == "tflite" and f["chunk_len"] == time_len)


def _rename_onnx(name: str) -> Callable[[dict], None]:
    return lambda m: _onnx_entry(m).update(path=name)


def _symlinked_model(c: Ctx) -> Path:
    """The ONNX file replaced by a symlink to an identical copy outside the bundle (the hash still matches)."""
    folder = c.copy()
    target = folder / _onnx_entry(json.loads((folder / "manifest.json").read_text()))["path"]
    outside = c.tmp / "outside.onnx"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    return folder


def _symlinked_manifest(c: Ctx) -> Path:
    folder = c.copy()
    outside = c.tmp / "elsewhere.json"
    outside.write_bytes((folder / "manifest.json").read_bytes())
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").symlink_to(outside)
    return folder


def _garbage_model(c: Ctx) -> Path:
    """The ONNX file's bytes replaced and its hash recomputed: only loading it can tell."""
    folder = c.copy()
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = _onnx_entry(manifest)
    (folder / entry["path"]).write_bytes(b"\x08\x07garbage" * 100)
    entry.update(sha256=sha256_file(folder / entry["path"]), size_bytes=800)
    write_manifest_json(folder, manifest)
    return folder


def _swapped_tflite(m: dict) -> None:
    """The T=1 entry names the T=10 file (hash and all): the file's time length disagrees with chunk_len 1."""
    one, ten = _tflite_entry(m, 1), _tflite_entry(m, 10)
    one.update(path=ten["path"], sha256=ten["sha256"], size_bytes=ten["size_bytes"])


def _nested_provenance(c: Ctx, depth: int = 100_000) -> Path:
    folder = c.copy(set_at("provenance", "NEST"))
    text = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(text.replace('"NEST"', "[" * depth + "]" * depth))
    return folder


def _huge_manifest(c: Ctx) -> Path:
    return c.copy(set_at("provenance", {"padding": "x" * (2 << 20)}))


def _corrupt_reference(c: Ctx, data: bytes) -> None:
    folder = c.copy()
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "reference.npz").write_bytes(data)
    manifest["reference"]["sha256"] = sha256_file(folder / "reference.npz")
    write_manifest_json(folder, manifest)
    read_reference(folder, read_manifest(folder))


def _truncated_npz(c: Ctx) -> bytes:
    data = (c.copy() / "reference.npz").read_bytes()
    return data[:len(data) // 2]


def _flipped_npz(c: Ctx) -> bytes:
    """A bit flipped inside the compressed data: zlib.error or a bad CRC in numpy's reader."""
    data = bytearray((c.copy() / "reference.npz").read_bytes())
    data[len(data) // 3] ^= 0xFF
    return bytes(data)


def _signed(c: Ctx, edit: Callable[[dict], object] | None = None, key: bytes = KEY) -> rt.Model:
    folder = c.copy()
    sign_bundle(folder, KEY)
    if edit is not None:
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        write_manifest_json(folder, manifest)
    return rt.load(folder, verify_key=key)


def _stream_then(c: Ctx, action: Callable[[rt.Stream], object], **load) -> None:
    stream = rt.load(c.copy(), **load).stream()
    stream.feed(c.x[:10])
    action(stream)


def _pool(c: Ctx, nan_policy: str = "raise", backend: str = "onnxruntime", **options) -> rt.Pool:
    pool = rt.load(c.copy(), backend=backend).pool(capacity=4, nan_policy=nan_policy, **options)
    pool.add("a")
    pool.add("b")
    return pool


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _masked(c: Ctx) -> np.ma.MaskedArray:
    mask = np.zeros(6, bool)
    mask[3] = True
    return np.ma.MaskedArray(c.x[0] * 0 + 1e9, mask=mask)  # the masked value is garbage; masked = missing


RAISES = [  # (case, action, exception, message)
    # --- the runtime API: samples (obs 1, 9) -------------------------------------------------------------------
    ("step NaN", lambda c: c.model().stream().step(np.full(6, np.nan)), InputError, "non-finite value nan"),
    ("step +inf", lambda c: c.model().stream().step([0, 0, np.inf, 0, 0, 0]), InputError, "inf at channel 2"),
    ("step -inf", lambda c: c.model().stream().step([0, 0, 0, 0, 0, -np.inf]), InputError, "-inf at channel 5"),
    ("step float64 beyond float32", lambda c: c.model().stream().step([1e39, 0, 0, 0, 0, 0]), InputError,
     "non-finite value inf"),
    ("step wrong length", lambda c: c.model().stream().step(np.zeros(5)), InputError, r"expected shape \(6,\)"),
    ("step 2-D", lambda c: c.model().stream().step(np.zeros((1, 6))), InputError, r"got \(1, 6\)"),
    ("step strings", lambda c: c.model().stream().step(["1"] * 6), InputError, "dtype <U1"),
    ("step complex", lambda c: c.model().stream().step(np.zeros(6, complex)), InputError, "dtype complex128"),
    ("step ragged", lambda c: c.model().stream().step([[1.0], [1.0, 2.0]]), InputError, "ragged"),
    ("step None", lambda c: c.model().stream().step(None), InputError, "dtype object"),
    ("step dict", lambda c: c.model().stream().step({"ax": 1.0}), InputError, "dtype object"),
    ("feed 1-D", lambda c: c.model().stream().feed(np.zeros(6)), InputError, r"expected shape \(T, 6\)"),
    ("feed NaN inside", lambda c: c.model().stream().feed(np.where(np.arange(60)[:, None] == 33, np.nan, c.x[:60])),
     InputError, "step 33, channel 0"),
    ("masked value", lambda c: c.model().stream().step(_masked(c)), InputError, "non-finite value nan at channel 3"),
    ("LiteRT glitch drives the state to NaN", lambda c: [c.model(backend="litert").stream().step(s)
                                                         for s in c.glitched()], InputError, "drove the state"),
    ("LiteRT glitch inside a chunk", lambda c: c.model(backend="litert").stream().feed(c.glitched(13)), InputError,
     r"Stream.feed \(step 13\).*drove the state"),
    ("glitch beyond the valid range (ONNX)", lambda c: c.model(set_at("input.valid_range", [[-20, 20]] * 6))
     .stream().step(c.glitched()[5]), InputError, r"1e\+30 at channel 2 is outside the sensor's valid range"),
    ("chunk beyond the valid range", lambda c: c.model(set_at("input.valid_range", [[-20, 20]] * 6))
     .stream().feed(c.x[:30] * 100), InputError, "outside the sensor's valid range"),
    ("pool: glitch under raise", lambda c: [_pool(c, backend="litert").step({"a": s, "b": c.x[0]})
                                            for s in c.glitched()], InputError, r"Pool.step\['a'\]: its sample drove"),
    ("pool: NaN submitted", lambda c: _pool(c).submit("b", np.full(6, np.nan)), InputError, r"Pool.submit\['b'\]"),
    ("pool: unknown stream", lambda c: _pool(c).submit("zz", c.x[0]), KeyError, "no stream 'zz'"),
    # --- the runtime API: arguments -----------------------------------------------------------------------------
    ("threads=-1", lambda c: c.model(threads=-1), InputError, "threads must be a positive integer, got -1"),
    ("threads=0", lambda c: c.model(threads=0), InputError, "threads must be a positive integer"),
    ("threads=True", lambda c: c.model(threads=True), InputError, "got True"),
    ("threads='2'", lambda c: c.model(threads="2"), InputError, "got '2'"),
    ("nan_policy", lambda c: c.model().stream(nan_policy="zero"), InputError, "nan_policy must be one of"),
    ("pool capacity 0", lambda c: c.model().pool(capacity=0), InputError, "capacity must be a positive integer"),
    ("pool max_pending -5", lambda c: c.model().pool(max_pending=-5), InputError, "max_pending"),
    ("pool overflow policy", lambda c: c.model().pool(overflow="block"), InputError, "overflow must be one of"),
    ("unknown backend", lambda c: c.model(backend="tensorrt"), BackendUnavailableError, "unknown backend"),
    # --- the bundle: file names (obs 6) -------------------------------------------------------------------------
    ("file name ../../outside", lambda c: c.model(_rename_onnx("../../outside/x.onnx")), BundleError,
     r"Expected `str` matching regex .* at `\$.files\[\d+\].path`"),
    ("file name /etc/passwd", lambda c: c.model(_rename_onnx("/etc/passwd")), BundleError, r"files\[\d+\].path"),
    ("file name ..", lambda c: c.model(_rename_onnx("..")), BundleError, r"files\[\d+\].path"),
    ("file name in a subfolder", lambda c: c.model(_rename_onnx("sub/stream_fp32.onnx")), BundleError, "path"),
    ("file name with a backslash", lambda c: c.model(_rename_onnx("..\\x.onnx")), BundleError, "path"),
    ("reference name ../x", lambda c: c.model(set_at("reference.path", "../reference.npz")), BundleError,
     r"reference.path"),
    ("model file: symlink out of the bundle", lambda c: rt.load(_symlinked_model(c), backend="onnxruntime"),
     BundleError, "a symlink out of the bundle"),
    ("manifest: symlink out of the bundle", lambda c: rt.load(_symlinked_manifest(c)), BundleError,
     "a symlink out of the bundle"),
    # --- the bundle: sizes against the model file (obs 6) -------------------------------------------------------
    ("state size (consistent, wrong)", lambda c: c.model(lambda m: m["state"].update(hidden_size=17, size=68)),
     BundleError, r"state is \[any, 64\], the manifest says \[any, 68\]"),
    ("state size (LiteRT)", lambda c: c.model(lambda m: m["state"].update(hidden_size=17, size=68),
                                              backend="litert"), BundleError, r"state is \[1, 64\]"),
    ("one channel more", lambda c: c.model(lambda m: (m["input"]["channels"].append("temp"),
                                                      m["input"]["normalization"]["mean"].append(0.0),
                                                      m["input"]["normalization"]["std"].append(1.0))),
     BundleError, r"x is \[any, any, 6\], the manifest says \[any, any, 7\]"),
    ("one output more", lambda c: c.model(lambda m: (m["output"].update(size=m["output"]["size"] + 1),
                                                     m["output"]["labels"].append("EXTRA"))),
     BundleError, r"y is \[any, any, 12\]"),
    ("chunk length edited", lambda c: c.model(lambda m: _tflite_entry(m, 10).update(chunk_len=20), backend="litert"),
     BundleError, r"x is \[1, 10, 6\], the manifest says \[1, 20, 6\]"),
    ("TFLite files swapped", lambda c: c.model(_swapped_tflite, backend="litert"), BundleError,
     r"x is \[1, 10, 6\], the manifest says \[1, 1, 6\]"),
    ("tensor name edited", lambda c: c.model(set_at("input.name", "input")), BundleError,
     "tensors .* the manifest names"),
    ("model file not a model", lambda c: rt.load(_garbage_model(c), backend="onnxruntime"), BundleError,
     "onnxruntime cannot load it"),
    ("labels count", lambda c: c.model(lambda m: m["output"]["labels"].pop()), BundleError,
     "11 labels for 12 outputs"),
    ("normalization length", lambda c: c.model(lambda m: m["input"]["normalization"]["std"].pop()), BundleError,
     "normalization has 6/5 values for 6 channels"),
    ("valid_range length", lambda c: c.model(set_at("input.valid_range", [[-1, 1]] * 5)), BundleError,
     "valid_range needs one finite"),
    ("valid_range low > high", lambda c: c.model(set_at("input.valid_range", [[1, -1]] * 6)), BundleError,
     "valid_range needs one finite"),
    ("valid_range pair of 3", lambda c: c.model(set_at("input.valid_range", [[0, 1, 2]] * 6)), BundleError,
     "length <= 2"),
    ("state parts unknown", lambda c: c.model(set_at("state.parts", ["h", "x"])), BundleError, r"state.parts"),
    # --- the bundle: structural limits (obs 6) ------------------------------------------------------------------
    ("state.size 2**40", lambda c: c.model(set_at("state.size", 2**40)), BundleError,
     r"<= 1048576 - at `\$.state.size`"),
    ("provenance nested 100k deep", lambda c: rt.load(_nested_provenance(c)), BundleError, "nested deeper than 32"),
    ("manifest of 2 MB", lambda c: rt.load(_huge_manifest(c)), BundleError, "manifest larger than"),
    ("70k labels", lambda c: c.model(set_at("output.labels", ["x"] * 70_000)), BundleError, r"output.labels"),
    ("sha256 not hex", lambda c: c.model(lambda m: _onnx_entry(m).update(sha256="../" * 20 + "ab")), BundleError,
     r"sha256"),
    # --- the bundle: edits by hand, unsigned (issue 27): the manifest's own checksum -------------------------------
    *((f"unsigned, {name} by hand", lambda c, edit=edit: rt.load(c.copy(edit, rehash=False), backend="onnxruntime"),
       BundleError, "edited after rnnedge wrote it") for name, edit in (
        ("channels swapped", lambda m: m["input"]["channels"].reverse()),
        ("labels swapped", lambda m: m["output"]["labels"].reverse()),
        ("sample rate halved", lambda m: m["input"].update(sample_rate_hz=m["input"]["sample_rate_hz"] / 2)),
        ("normalization edited", set_at("input.normalization.std.0", 2.0)),
        ("torch accuracy edited", set_at("evaluation.torch_score", 0.99)),
        ("a file's parity edited", set_at("files.0.parity.max_abs_diff_output", 0.0)),
        ("checksum garbled", set_at("checksum", "0" * 64)))),
    # --- the bundle: signatures (obs 6) -------------------------------------------------------------------------
    ("signed, then labels edited", lambda c: _signed(c, lambda m: m["output"]["labels"].reverse()), BundleError,
     "signature mismatch"),
    ("signed, then normalization edited", lambda c: _signed(c, set_at("input.normalization.mean.0", 0.5)),
     BundleError, "signature mismatch"),
    ("signed with another key", lambda c: _signed(c, key=b"x" * 32), BundleError, "signature mismatch"),
    ("unsigned bundle, key required", lambda c: c.model(verify_key=KEY), BundleError, "unsigned bundle"),
    ("key too short", lambda c: c.model(verify_key=b"short"), BundleError, "at least 16 bytes"),
    # --- reference data (obs 8) ---------------------------------------------------------------------------------
    ("reference.npz truncated", lambda c: _corrupt_reference(c, _truncated_npz(c)), BundleError,
     "unreadable reference data"),
    ("reference.npz bit flip", lambda c: _corrupt_reference(c, _flipped_npz(c)), BundleError,
     "unreadable reference data"),
    ("reference.npz not a zip", lambda c: _corrupt_reference(c, b"PK\x03\x04" + b"\0" * 100), BundleError,
     "unreadable reference data"),
    # --- snapshots (obs 7, 8) -----------------------------------------------------------------------------------
    ("snapshot steps 'abc'", lambda c: c.resume(c.snapshot(set_at("steps", "abc"))), SnapshotError,
     r"Expected `int`, got `str` - at `\$.steps`"),
    ("snapshot steps Infinity", lambda c: c.resume(c.snapshot(set_at("steps", float("inf")))), SnapshotError,
     "corrupt snapshot header"),
    ("snapshot steps 1e308", lambda c: c.resume(c.snapshot(set_at("steps", 1e308))), SnapshotError,
     "Expected `int`, got `float`"),
    ("snapshot steps -1", lambda c: c.resume(c.snapshot(set_at("steps", -1))), SnapshotError, "Expected `int` >= 0"),
    ("snapshot steps edited, not rehashed", lambda c: c.resume(c.snapshot(set_at("steps", 10**6), rehash=False)),
     SnapshotError, "checksum mismatch"),
    ("snapshot payload short", lambda c: c.resume(c.snapshot(payload=lambda v: v[:-3])), SnapshotError,
     "payload of .* bytes, the header says"),
    ("snapshot payload long", lambda c: c.resume(c.snapshot(payload=lambda v: np.r_[v, v])), SnapshotError,
     "payload of"),
    ("snapshot NaN state", lambda c: c.resume(c.snapshot(payload=lambda v: v * np.nan)), SnapshotError,
     "non-finite state"),
    ("snapshot h out of range", lambda c: c.resume(c.snapshot(payload=lambda v: v + 50)), SnapshotError,
     "out of range for this model"),
    ("snapshot unknown header field", lambda c: c.resume(c.snapshot(set_at("owner", "x"))), SnapshotError,
     "unknown field `owner`"),
    ("snapshot model hash not hex", lambda c: c.resume(c.snapshot(set_at("model_sha256", "../x"))), SnapshotError,
     r"model_sha256"),
    ("snapshot huge file", lambda c: c.resume(_written(c.tmp / "big.snap", MAGIC + b"x" * (1 << 20))),
     SnapshotError, "longer than a snapshot"),
    ("save to a folder", lambda c: _stream_then(c, lambda s: s.save(c.tmp)), SnapshotError,
     "cannot write snapshot"),
    ("save under a file", lambda c: _stream_then(c, lambda s: s.save(_written(c.tmp / "f", b"") / "x.snap")),
     SnapshotError, r"f/x.snap: cannot write snapshot \(.*/f is not a folder\)"),
    ("save where nobody may write", lambda c: _stream_then(c, lambda s: s.save("/sys/rnnedge-state.snap")),
     SnapshotError, "/sys/rnnedge-state.snap: cannot write snapshot"),
    ("save onto a device node", lambda c: _stream_then(c, lambda s: s.save("/dev/null")), SnapshotError,
     r"/dev/null: cannot write snapshot \(not a regular file"),
    ("save into a missing folder", lambda c: _stream_then(c, lambda s: s.save(c.tmp / "none" / "x.snap")),
     SnapshotError, r"none/x.snap: cannot write snapshot \(.*none is not a folder\)"),
    # --- the API's own mistakes ---------------------------------------------------------------------------------
    ("load(None)", lambda c: rt.load(None), BundleError, "a bundle is a folder path, got NoneType"),
    ("load(a number)", lambda c: rt.load(3), BundleError, "a bundle is a folder path, got int"),
    ("pool: an id twice", lambda c: _pool_then(c, lambda p: (p.add("a"), p.add("a"))), PoolError,
     "stream 'a' is already in the pool"),
    ("pool: full", lambda c: _pool_then(c, lambda p: [p.add(i) for i in range(3)]), PoolError,
     r"pool is full \(capacity 2\)"),
    ("pool: an unknown id", lambda c: _pool_then(c, lambda p: p.remove("ghost")), UnknownStreamError,
     "no stream 'ghost' in the pool"),
    ("pool: an id that is no key", lambda c: _pool_then(c, lambda p: p.add(["a"])), PoolError,
     "must be hashable"),
    ("pool: step an unknown id", lambda c: _pool_then(c, lambda p: p.step({"ghost": np.zeros(6)})),
     UnknownStreamError, "no stream 'ghost'"),
    ("save a NaN state", lambda c: save_snapshot(c.tmp / "n.snap", "0" * 64, Snapshot(np.full(4, np.nan, np.float32),
                                                                                       np.zeros(6, np.float32), 3)),
     SnapshotError, "refusing to save a non-finite state"),
]


@pytest.mark.parametrize(("action", "error", "message"), [case[1:] for case in RAISES],
                         ids=[case[0] for case in RAISES])
def test_bad_input_raises_a_typed_one_line_error(bundle_copy, tmp_path, action, error, message):
    with pytest.raises(error) as caught:
        action(Ctx(bundle_copy, tmp_path))
    text = str(caught.value)
    assert re.search(message, text), text
    assert "\n" not in text and len(text.replace(str(tmp_path), "TMP")) < 400, text  # wherever pytest's tmp is
    if error is not KeyError:
        assert isinstance(caught.value, RnnedgeError)


@pytest.mark.parametrize("value", ["bed-1", "/" + "a" * 300 + "/bed-17.csv", "x" * 159, "x" * 10_000])
def test_an_id_in_a_message_keeps_its_start_and_end_within_the_limit(value):
    text = brief(value)
    assert len(text) <= 160 and text[:20] == repr(value)[:20] and text[-12:] == repr(value)[-12:]
    assert (text == repr(value)) == (len(repr(value)) <= 160)


def _pool_then(c, act: Callable) -> None:
    act(c.model().pool(2))


def _channel(k: int, value) -> Callable[[np.ndarray], np.ndarray]:
    return lambda s: np.where(np.arange(6) == k, value, s)


def _keep_channel(k: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """What "hold" feeds when channel k is bad: that channel's last good value, the others as they came."""
    return lambda previous, now: np.where(np.arange(6) == k, previous, now)


WHOLE = lambda previous, now: previous  # noqa: E731 - a bad state: the whole last good sample is repeated
RANGED = set_at("input.valid_range", [[-20, 20]] * 6)
FLAGGED = [  # (case, backend, bundle edit, the bad sample made from a good one, what the held step ran on)
    ("NaN held", "onnxruntime", None, _channel(1, np.nan), _keep_channel(1)),
    ("masked values held", "onnxruntime", None, lambda s: np.ma.MaskedArray(s + 1e9, mask=np.arange(6) > 3),
     lambda previous, now: np.where(np.arange(6) > 3, previous, now + 1e9)),
    ("LiteRT glitch held (state check)", "litert", None, _channel(2, GLITCH), WHOLE),
    ("glitch held (valid_range)", "onnxruntime", RANGED, _channel(2, 1e26), _keep_channel(2)),
    ("LiteRT glitch held (valid_range)", "litert", RANGED, lambda s: np.full(6, -1e26), WHOLE),
]


@pytest.mark.parametrize(("backend", "edit", "make_bad", "held"), [case[1:] for case in FLAGGED],
                         ids=[case[0] for case in FLAGGED])
def test_bad_sample_under_hold_is_flagged_and_repeats_the_last_good_value(bundle_copy, tmp_path, backend, edit,
                                                                         make_bad, held):
    c = Ctx(bundle_copy, tmp_path)
    model = rt.load(c.copy(edit), backend=backend)
    stream, clean = model.stream(nan_policy="hold"), model.stream()
    stream.feed(c.x[:5])
    clean.feed(c.x[:5])
    out = stream.step(make_bad(c.x[5]))
    assert stream.last_held.tolist() == [True] and stream.steps == 6
    np.testing.assert_allclose(out, clean.step(held(c.x[4], c.x[5])), atol=1e-6)
    np.testing.assert_array_equal(stream.state, clean.state)
    stream.save(tmp_path / "after.snap")  # a held step leaves a state that may be saved and resumed


def test_glitch_under_raise_leaves_the_stream_untouched(bundle_copy, tmp_path):
    """Stepping and feeding alike: the stream keeps its state, steps and last good sample, and continues as if
    the glitch had never come (obs 1: the state is never carried on, never saved)."""
    c = Ctx(bundle_copy, tmp_path)
    model = rt.load(c.copy(), backend="litert")
    stream, clean = model.stream(), model.stream()
    stream.feed(c.x[:10])
    clean.feed(c.x[:10])
    for bad in (lambda: stream.step(c.glitched()[5]), lambda: stream.feed(c.glitched(7))):
        with pytest.raises(InputError):
            bad()
        assert stream.steps == 10
        np.testing.assert_array_equal(stream.state, clean.state)
    np.testing.assert_array_equal(stream.feed(c.x[10:40]), clean.feed(c.x[10:40]))


def test_feed_holds_only_the_glitched_step(bundle_copy, tmp_path):
    c = Ctx(bundle_copy, tmp_path)
    model = rt.load(c.copy(), backend="litert")
    glitched = c.glitched(13)
    fixed = glitched.copy()
    fixed[13] = fixed[12]
    stream = model.stream(nan_policy="hold")
    out = stream.feed(glitched)
    assert np.flatnonzero(stream.last_held).tolist() == [13] and stream.steps == 20
    np.testing.assert_allclose(out, model.stream().feed(fixed), atol=1e-6)


@pytest.mark.parametrize(("backend", "edit"), [("litert", None), ("onnxruntime", RANGED)])
def test_pool_hold_repairs_only_the_glitched_stream(bundle_copy, tmp_path, backend, edit):
    """LiteRT: the state check catches the glitch; ONNX Runtime (which saturates) needs the valid range."""
    c = Ctx(bundle_copy, tmp_path)
    model = rt.load(c.copy(edit), backend=backend)
    pool = model.pool(capacity=4, nan_policy="hold")
    pool.add("a")
    pool.add("b")
    a, b = model.stream(), model.stream()
    held = WHOLE if edit is None else _keep_channel(2)
    for t, s in enumerate(c.glitched()):
        out = pool.step({"a": s, "b": c.x[t]} if t % 2 else {"b": c.x[t], "a": s})  # both tick paths' orders
        assert pool.last_held == (["a"] if t == 5 else [])
        np.testing.assert_allclose(out["a"], a.step(held(c.x[4], s) if t == 5 else s), atol=1e-5)
        np.testing.assert_allclose(out["b"], b.step(c.x[t]), atol=1e-5)
    pool.add("c")  # a partial tick (gather, run, scatter) repairs the same way
    out = pool.step({"a": c.glitched()[5], "c": c.x[0]})
    assert pool.last_held == ["a"]
    np.testing.assert_allclose(out["a"], a.step(held(c.x[19], c.glitched()[5])), atol=1e-5)


def test_pool_submit_is_bounded_and_counts_what_it_drops(bundle_copy, tmp_path):
    """obs 9: a producer that outruns the ticks no longer grows the queue without bound, nor gets answers about
    samples a million steps old: the oldest queued samples are dropped, and counted."""
    c = Ctx(bundle_copy, tmp_path)
    pool = _pool(c, max_pending=4)
    for s in c.x[:10]:
        pool.submit("a", s)
    assert pool.dropped == {"a": 6}
    served = [pool.tick()["a"] for _ in range(4)]
    assert pool.tick() == {}
    stream = pool.model.stream()  # the pool served the 4 newest samples
    np.testing.assert_allclose(np.stack(served), stream.feed(c.x[6:10]), atol=1e-5)
    with pytest.raises(InputError, match="4 samples already queued"):
        strict = _pool(c, max_pending=4, overflow="raise")
        for s in c.x[:5]:
            strict.submit("b", s)
    buffer = c.x[0].copy()  # a producer reusing one buffer: each submit keeps its own copy
    pool.submit("b", buffer)
    buffer[:] = 0
    np.testing.assert_allclose(pool.tick()["b"], pool.model.stream().step(c.x[0]), atol=1e-5)


def test_an_interrupted_feed_keeps_steps_and_state_together(bundle_copy, tmp_path):
    """obs 9: KeyboardInterrupt in the middle of a long feed (injected at the third backend call) leaves the
    stream as it was before the call, so `steps` always counts the samples in the state."""
    c = Ctx(bundle_copy, tmp_path)
    model = rt.load(c.copy(), backend="litert")
    stream, clean = model.stream(), model.stream()
    stream.feed(c.x[:10])
    clean.feed(c.x[:10])
    x, y, calls = stream._buffers(10)
    count = [0]

    def interrupted(call):
        def run() -> None:
            count[0] += 1
            if count[0] == 3:
                raise KeyboardInterrupt
            call()
        return run

    stream._pieces[10] = (x, y, tuple(interrupted(call) for call in calls))
    with pytest.raises(KeyboardInterrupt):
        stream.feed(c.x[10:60])
    assert stream.steps == 10
    np.testing.assert_array_equal(stream.state, clean.state)


def test_stale_temp_files_are_swept_at_the_next_save(bundle_copy, tmp_path):
    """obs 9: temp files of killed saves (dead writer pid) go at the next save; a live writer's stays."""
    from rnnedge import atomic

    c = Ctx(bundle_copy, tmp_path)
    folder = tmp_path / "snaps"
    folder.mkdir()
    dead = folder / ".m.snap.120.stream.rnnedge-999999999-0badc0de.tmp"  # no such pid
    live = folder / f".m.snap.rnnedge-{os.getppid()}-0badc0de.tmp"
    legacy = folder / ".m.snap.abcd1234.tmp"
    other = folder / "notes.tmp"
    for path in (dead, live, legacy, other):
        path.write_bytes(b"partial")
    os.utime(legacy, (0, 0))  # an old mkstemp name of the same target
    atomic._swept.discard(str(folder.resolve()))
    _stream_then(c, lambda s: s.save(folder / "m.snap"))
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, other.name, "m.snap"])
