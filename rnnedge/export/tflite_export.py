"""TFLite (LiteRT) export: litert-torch converts the graph module at a fixed batch (1) and time length, and
ai-edge-quantizer derives the smaller variants from that fp32 flatbuffer."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

import numpy as np
from torch import nn

SIGNATURE = "serving_default"  # litert-torch's signature key; inputs/outputs keep the graph module's names

NOTES = {
    "fp32": "float32 weights and compute; recurrence unrolled over the fixed time length",
    "int8": "dynamic-range int8: FULLY_CONNECTED weights int8, activations quantized on the fly inside the "
            "int8 kernels; I/O and states float32",
    "fp16": "weights stored float16 and dequantized to float32; compute, I/O and states float32",
    "int8_static": "int8 weights and activations (calibrated on training data); x, state, y and state_out are "
                   "int8 tensors: quantize inputs and dequantize outputs with each tensor's (scale, zero_point), "
                   "and re-quantize the state between calls",
}


@contextlib.contextmanager
def native_stderr_held() -> Iterator[None]:
    """Importing litert-torch and converting write TensorFlow/absl/torchao start-up notices ("oneDNN custom
    operations are on", "Failed to load .../torchao/_C_mxfp8...so", pytree deprecations) straight to file
    descriptor 2 from C++, where no Python switch reaches. Send fd 2 to a temp file meanwhile, and replay it
    if the step fails, so real errors still show."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def convert_tflite(module: nn.Module, inputs: dict) -> bytes:
    """fp32 flatbuffer of `module` at the example inputs' fixed shapes (batch 1, time T)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_held():
        import litert_torch

        litert_torch.config.show_progress = False
        return bytes(litert_torch.convert(module, sample_kwargs=inputs).model_content())


def quantize_tflite(fp32: bytes, precision: str, calibration: list[dict[str, np.ndarray]] | None = None,
                    per_channel: bool = False) -> bytes:
    """int8 (dynamic range), fp16 (weights) or int8_static (calibrated int8 activations) from the fp32 model.

    int8 weights get one scale per tensor unless `per_channel`: per-channel scales come with an int64 zero
    point each, ~12 bytes per output channel, which on a 2x64 LSTM is a sixth of the int8 file."""
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import QuantGranularity, TFLOperationName

    logging.getLogger("absl").setLevel(logging.ERROR)
    q = quantizer.Quantizer(bytearray(fp32))
    if precision == "int8":
        granularity = QuantGranularity.CHANNELWISE if per_channel else QuantGranularity.TENSORWISE
        q.add_dynamic_config(".*", TFLOperationName.ALL_SUPPORTED, 8, granularity=granularity)
    elif precision == "fp16":
        q.add_weight_only_config(".*", TFLOperationName.ALL_SUPPORTED, 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    elif precision == "int8_static":
        q.load_quantization_recipe(recipe.static_wi8_ai8())
    else:
        raise ValueError(f"unknown TFLite precision {precision!r}")
    # The quantizer draws its own tqdm bars on stderr (TQDM_DISABLE is read when tqdm is imported, too early
    # to set here); they would tear our progress display. Its failures still arrive as exceptions.
    with contextlib.redirect_stderr(io.StringIO()):
        calibrated = q.calibrate({SIGNATURE: calibration}, num_threads=1) if q.need_calibration else None
        result = q.quantize(calibrated, enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)


def finish_tflite(model: bytes, summary: str) -> bytes:
    """Write the human summary into the flatbuffer's `description` field (shown by Netron and flatc), so a
    file found alone still says what it is (the signature names carry the I/O contract), and shorten the
    tensor names: the converter's ('rnnedge.export.graphs.StreamGraph/...LSTM_rnn;6', ~110 bytes each, one
    per tensor per unrolled step) outweigh the int8 weights of a small model."""
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    obj.description = summary
    io_names = {}  # (subgraph, tensor index) -> signature name: graph inputs and outputs keep their names
    for signature in obj.signatureDefs or []:
        for tensor in [*signature.inputs, *signature.outputs]:
            io_names[(signature.subgraphIndex, tensor.tensorIndex)] = tensor.name
    for g, subgraph in enumerate(obj.subgraphs):
        for i, tensor in enumerate(subgraph.tensors):
            tensor.name = io_names.get((g, i), f"t{i}")
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))
