"""One small real bundle (LSTM, ONNX + TFLite fp32, T=1 and T=10) exported by the real exporter, and copies of
it to damage: every case of the corpus gets its own folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from rnnedge.export import export_bundle
from tests.edits import write_manifest_json
from tests.runtime.conftest import held_out, make_checkpoint


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reliability") / "lstm"
    export_bundle(make_checkpoint("lstm", 16, seed=3, num_layers=2), out, formats=("onnx", "tflite"),
                  precisions=("fp32",), chunk_len=10, eval_data=held_out(samples=200, count=2))
    return out


@pytest.fixture
def bundle_copy(small_bundle, tmp_path) -> Callable[..., Path]:
    """copy(edit=None, rehash=True) -> a fresh copy of the bundle, its manifest passed through `edit(dict)` if
    given, its checksum recomputed unless `rehash` is False (a hand edit)."""

    def copy(edit: Callable[[dict], object] | None = None, rehash: bool = True) -> Path:
        folder = Path(shutil.copytree(small_bundle, tmp_path / f"bundle{len(list(tmp_path.iterdir()))}"))
        if edit is not None:
            manifest = json.loads((folder / "manifest.json").read_text())
            edit(manifest)
            write_manifest_json(folder, manifest, rehash)
        return folder

    return copy
