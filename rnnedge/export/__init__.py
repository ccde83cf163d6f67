"""Export stage: checkpoint -> verified bundle (ONNX + TFLite, fp32/int8/fp16, manifest, reference data).

Heavy imports (torch, onnx, litert-torch) happen inside `export_bundle`'s modules, never in the runtime."""

from rnnedge.export.build import export_bundle

__all__ = ["export_bundle"]
