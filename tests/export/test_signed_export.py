"""`rnnedge export --sign KEY`: a signed bundle loads with its key and is refused edited or unsigned; the
manifest carries each channel's valid input range from the training data."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

import rnnedge.runtime as rt
from rnnedge.bundle import read_manifest
from rnnedge.errors import BundleError


@pytest.mark.slow
def test_signed_export_loads_with_its_key_only(tiny, tmp_path):
    checkpoint = copy.deepcopy(tiny)  # the fixture is shared by the session
    checkpoint.provenance["input_range"] = [[-2.0, 2.0]] * 3 + [[-5.0, 5.0]] * 3
    checkpoint.save(tmp_path / "model.pt")
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef-deployment-key\n")
    result = subprocess.run([sys.executable, "-m", "rnnedge.cli", "export", str(tmp_path / "model.pt"), "--out",
                             str(tmp_path / "b"), "--formats", "onnx", "--precisions", "fp32", "--sign", str(key)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert read_manifest(tmp_path / "b").input.valid_range[0] == [-6.0, 6.0]  # widened by the span each side
    rt.load(tmp_path / "b", verify_key=key.read_bytes().strip())
    with pytest.raises(BundleError):
        rt.load(tmp_path / "b", verify_key=b"another-key-of-16-bytes")
    manifest = tmp_path / "b" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"sample_rate_hz": 50.0', '"sample_rate_hz": 25.0'))
    with pytest.raises(BundleError):
        rt.load(tmp_path / "b", verify_key=key.read_bytes().strip())
