"""Integer-only (a8w8, a16w8) files of the default HAPT tagger, measured: per-sample test accuracy vs fp32 through
LiteRT (the export's own scoring) and through TFLite Micro (rnnedge.runtime backend "tflm"), TFLite Micro vs
LiteRT agreement, tensor arena and flash. The issue-15 numbers in docs/mcu.md come from this script:

    OMP_NUM_THREADS=1 .venv/bin/python examples/mcu_hapt.py [CHECKPOINT] [--out artifacts/mcu_bundle]

then `rnnedge evaluate-alarms artifacts/mcu_bundle --backend tflm --precision a16w8` for the bed-exit alarms.
Takes ~5 minutes on one core (TFLite Micro's reference kernels: ~170 us a step in Python).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import rnnedge.runtime as rt
from rnnedge.export import export_bundle
from rnnedge.export.heldout import eval_set
from rnnedge.tasks import score
from rnnedge.training.checkpoint import Checkpoint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", nargs="?", default="tests/fixtures/hapt-tag-lstm-2x64.pt")
    parser.add_argument("--out", default="artifacts/mcu_bundle")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.monotonic()
    manifest = export_bundle(args.checkpoint, args.out, formats=("tflite",), precisions=("fp32", "a8w8", "a16w8"),
                             chunk_len=1)
    print(f"export {time.monotonic() - started:.0f} s; torch accuracy {manifest.evaluation.torch_score:.4f} on "
          f"{manifest.evaluation.data} ({manifest.evaluation.samples} samples)")
    for f in manifest.files:
        line = f"{f.path}: {f.size_bytes / 1024:.1f} KB, LiteRT accuracy {f.score:.4f}"
        if f.mcu:
            line += (f", arena {f.mcu.arena_bytes} B ({f.mcu.arena_bytes / 1024:.1f} KB), flash "
                     f"{f.mcu.flash_bytes / 1024:.1f} KB, ops {','.join(f.mcu.ops)}, state scale in/out "
                     f"{f.quantization['state'].scale:.6g}/{f.quantization['state_out'].scale:.6g}")
        print(line)
    for r in manifest.rejected:
        print(f"rejected {r.precision}: {r.reason}")
    checkpoint = Checkpoint.load(args.checkpoint)
    recordings = eval_set(checkpoint, None).recordings
    for f in manifest.files:
        if f.precision not in ("a8w8", "a16w8"):
            continue
        outputs = {}
        for backend in ("tflm", "litert"):
            model = rt.load(args.out, backend=backend, precision=f.precision)
            t = time.monotonic()
            outputs[backend] = [model.stream().feed(r.signals.astype(np.float32)) for r in recordings]
            accuracy = score("tag", outputs[backend], recordings, checkpoint.labels)["value"]
            print(f"{f.precision} {backend}: accuracy {accuracy:.4f} ({time.monotonic() - t:.0f} s)")
        y_scale = f.quantization["y"].scale
        lsb = max(float(np.abs(a - b).max()) for a, b in zip(outputs["tflm"], outputs["litert"], strict=True)) / y_scale
        agree = np.mean(np.concatenate([a.argmax(-1) == b.argmax(-1)
                                        for a, b in zip(outputs["tflm"], outputs["litert"], strict=True)]))
        print(f"{f.precision} TFLite Micro vs LiteRT, streamed over every test recording: max |y| diff {lsb:.1f} LSB, "
              f"argmax agreement {agree:.5f}")


if __name__ == "__main__":
    main()
