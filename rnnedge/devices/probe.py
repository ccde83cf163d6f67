"""Cold start in a fresh process: `python -m rnnedge.devices.probe BUNDLE BACKEND PRECISION [CHECKPOINT]`.

The bench runs this in a new interpreter so that import + load time and peak RSS are those a device app
sees at boot, not those of a process that already imported everything. Prints one JSON line.
Backend "torch-eager" loads the source checkpoint with torch instead (the comparison row).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    """This process image's peak RSS. Linux: VmHWM, because ru_maxrss survives exec and so would count the
    parent that forked us (the bench, with torch loaded)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def main(argv: list[str]) -> None:
    bundle, backend, precision, *checkpoint = argv
    start = time.perf_counter()
    if backend == "torch-eager":
        import torch

        from rnnedge.training.checkpoint import Checkpoint

        imported = time.perf_counter()
        model = Checkpoint.load(checkpoint[0]).build_model()
        with torch.no_grad():
            model(torch.zeros(1, 1, model.config.input_size))
    else:
        import rnnedge.runtime as rt

        imported = time.perf_counter()
        model = rt.load(bundle, backend=backend, precision=precision, threads=1)
        model.stream().step(model.mean)  # the first step: lazy allocations and kernel selection happen here
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "load_s": done - imported, "cold_start_s": done - start,
                      "peak_rss_mb": _peak_rss_mb(), "torch_imported": "torch" in sys.modules}))


if __name__ == "__main__":
    main(sys.argv[1:])
