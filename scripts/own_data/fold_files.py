"""What running a fold's members apart (export/folded.member_layers) buys: the stream files of a folded checkpoint
built both ways, their sizes and one call's time in onnxruntime and LiteRT (one thread, batch 1), one sample a call
(T=1) and a chunk of 50; with --scores also each way's exported and verified fp32 / int8 files' test scores (ONNX,
TFLite at T=1: export_bundle on the checkpoint's test split).

    make bench-own-data SETS=Coffee SEEDS=0
    python scripts/own_data/fold_files.py artifacts/bench-own-data/Coffee/seed-0/train/model.pt [--scores]

"whole" is the fold as the files ran it before 2026-12-07: every member's units in one recurrence, zeros included
(member_count held at 1 for the run). Times are the mean of a few hundred to a few thousand calls after ten.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def mean_us(call: Callable[[], object], calls: int) -> float:
    """The mean of `calls` calls after ten, timed by the benchmarks' one timer (devices/bench.timed)."""
    from rnnedge.devices.bench import timed

    timed(call, 10)
    return round(float(np.mean(timed(call, calls))) / 1e3, 1)


def files_row(checkpoint, rng: np.random.Generator) -> dict[str, float]:
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from rnnedge.export.onnx_stream import build_stream_onnx
    from rnnedge.export.tflite_export import convert_tflite, finish_tflite, quantize_tflite
    from rnnedge.export.tflite_stream import UnrolledStream

    config = checkpoint.config
    onnx_file = build_stream_onnx(checkpoint, {}).SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
    state = np.zeros((1, config.state_size), np.float32)
    row = {"onnx fp32 KB": round(len(onnx_file) / 1024, 1)}
    for time_len in (1, 50):
        calls = 2000 if time_len == 1 else 200
        x = rng.normal(size=(1, time_len, config.input_size)).astype(np.float32)
        row[f"onnx T{time_len} us"] = mean_us(lambda x=x: session.run(None, {"x": x, "state": state}), calls)
        inputs = {"x": torch.zeros(1, time_len, config.input_size), "state": torch.zeros(1, config.state_size)}
        fp32 = finish_tflite(convert_tflite(UnrolledStream(checkpoint).eval(), inputs), "fold_files")
        for precision, model in (("fp32", fp32), ("int8", finish_tflite(quantize_tflite(fp32, "int8"), "fold_files"))):
            interpreter = Interpreter(model_content=model, num_threads=1)
            interpreter.allocate_tensors()
            run = interpreter.get_signature_runner()
            row[f"tflite T{time_len} {precision} KB"] = round(len(model) / 1024, 1)
            row[f"tflite T{time_len} {precision} us"] = mean_us(lambda x=x, run=run: run(x=x, state=state), calls)
    return row


def scores_row(checkpoint, out: Path) -> dict[str, float]:
    from rnnedge.export.build import export_bundle

    manifest = export_bundle(checkpoint, out, formats=("onnx", "tflite"), precisions=("fp32", "int8"), chunk_len=1)
    return {f"{f.format} {f.precision} score": round(f.score, 4) for f in manifest.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a folded model.pt (rnnedge train's on a small set)")
    parser.add_argument("--scores", action="store_true", help="also export both ways and score the files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from rnnedge.export import folded
    from rnnedge.training.checkpoint import Checkpoint

    checkpoint = Checkpoint.load(args.checkpoint)
    members = len(folded.member_layers(checkpoint)[0])
    print(f"{checkpoint.config.cell} {checkpoint.config.num_layers}x{checkpoint.config.hidden_size}: "
          f"{members} member(s) run apart")
    apart = folded.member_count
    for way, count in (("apart", apart), ("whole", lambda layers, gates: 1)):
        folded.member_count = count
        row = files_row(checkpoint, np.random.default_rng(0))
        if args.scores:
            with tempfile.TemporaryDirectory() as scratch:
                row |= scores_row(checkpoint, Path(scratch) / "bundle")
        print(way, json.dumps(row), flush=True)
    folded.member_count = apart


if __name__ == "__main__":
    main()
