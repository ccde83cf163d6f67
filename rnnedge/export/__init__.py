"""Export stage: checkpoint -> verified bundle (ONNX + TFLite, fp32/int8/fp16, manifest, reference data).

`export_bundle` is imported on first use: the `rnnedge` CLI loads every stage's commands, and a device with
only the base install (no torch, onnx or litert-torch) must still run `rnnedge devices`, `bench`, `monitor`."""

from __future__ import annotations

from typing import Any

__all__ = ["export_bundle"]


def export_bundle(*args: Any, **kwargs: Any):
    """See rnnedge.export.build.export_bundle."""
    from rnnedge.export.build import export_bundle as build

    return build(*args, **kwargs)
