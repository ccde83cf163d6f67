"""Snapshots: a restored stream continues bit-identically; snapshots of another model, of another version, or
damaged, are refused with SnapshotError; writes leave no partial file behind."""

from __future__ import annotations

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.errors import SnapshotError
from rnnedge.runtime.snapshot import MAGIC


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_restore_continues_bit_identically(bundle, signals, tmp_path, backend):
    model = rt.load(bundle, backend=backend)
    whole = model.stream(nan_policy="hold")
    expected = np.stack([whole.step(s) for s in signals])

    first = model.stream(nan_policy="hold")
    for sample in signals[:237]:
        first.step(sample)
    first.save(tmp_path / "state.snap")
    resumed = model.stream(resume=tmp_path / "state.snap", nan_policy="hold")
    assert resumed.steps == 237
    np.testing.assert_array_equal(resumed.state, first.state)
    continued = np.stack([resumed.step(s) for s in signals[237:]])
    np.testing.assert_array_equal(continued, expected[237:])
    assert [p.name for p in tmp_path.iterdir()] == ["state.snap"]  # no temp file left behind


def test_hold_value_survives_restore(bundle, signals, tmp_path):
    """The last good sample is part of the snapshot: a NaN right after resuming holds the same value."""
    model = rt.load(bundle)
    stream = model.stream(nan_policy="hold")
    stream.feed(signals[:100])
    stream.save(tmp_path / "s.snap")
    gap = np.full(signals.shape[1], np.nan, np.float32)
    expected = stream.step(gap)
    np.testing.assert_array_equal(model.stream(resume=tmp_path / "s.snap", nan_policy="hold").step(gap), expected)


def test_snapshot_of_another_model_is_refused(bundle, other_bundle, tmp_path):
    other = rt.load(other_bundle).stream()
    other.step(np.zeros(6, np.float32))
    other.save(tmp_path / "gru.snap")
    with pytest.raises(SnapshotError, match="another model"):
        rt.load(bundle).stream(resume=tmp_path / "gru.snap")
    with pytest.raises(SnapshotError, match="another model"):  # same bundle, other file: another state
        rt.load(bundle, backend="litert").stream(resume=_saved(rt.load(bundle, backend="onnxruntime"),
                                                               tmp_path / "ort.snap"))


def _saved(model: rt.Model, path):
    stream = model.stream()
    stream.step(np.ones(model.channels, np.float32))
    return stream.save(path)


def test_damaged_snapshots_are_refused(bundle, tmp_path):
    model = rt.load(bundle)
    good = _saved(model, tmp_path / "good.snap").read_bytes()
    cases = {
        "missing.snap": None,
        "truncated.snap": good[:-5],
        "flipped.snap": good[:-1] + bytes([good[-1] ^ 1]),
        "foreign.snap": b"hello world\n",
        "header.snap": MAGIC + b"{not json\n",
        "version.snap": good.replace(b'"version":2', b'"version":99'),
    }
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(SnapshotError):
            model.stream(resume=tmp_path / name)
    with pytest.raises(SnapshotError, match="version 99"):
        model.stream(resume=tmp_path / "version.snap")
