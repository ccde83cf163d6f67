"""LiteRT backend (ai-edge-litert, else tflite-runtime): one interpreter per file, each at a fixed shape.

The converted files have batch 1 and a fixed time length (1, and the bundle's chunk lengths), and they do
not resize (XNNPACK refuses a new batch), so a batch is a loop of calls. Interpreters are shared by the
streams of a model, hence a lock per interpreter. Inputs and outputs are told apart by rank (x and y are
[batch, time, features], the states [batch, state_size]), whatever names the converter gave them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnedge.errors import BackendUnavailableError


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise BackendUnavailableError("litert: neither ai-edge-litert nor tflite-runtime is installed "
                                      "(pip install ai-edge-litert)") from None


def _by_rank(details: list[dict]) -> tuple[int, int]:
    """(index of the rank-3 tensor, index of the rank-2 tensor)."""
    ranks = {len(d["shape"]): d["index"] for d in details}
    return ranks[3], ranks[2]


class LiteRTBackend:
    def __init__(self, paths: dict[int, Path], threads: int) -> None:
        interpreter_class, self.name = _interpreter_class()
        self.chunk_lens = tuple(sorted(paths))
        self._files = {}
        for time_len, path in paths.items():
            interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
            indices = (*_by_rank(interpreter.get_input_details()), *_by_rank(interpreter.get_output_details()))
            self._files[time_len] = (interpreter, threading.Lock(), indices)

    def bind(self, x: np.ndarray, state: np.ndarray, y: np.ndarray,
             state_out: np.ndarray) -> Callable[[], None]:
        """A call that runs the file of x's time length on these buffers (batch rows one by one)."""
        interpreter, lock, (x_i, state_i, y_i, state_out_i) = self._files[x.shape[1]]
        set_tensor, get_tensor, invoke = interpreter.set_tensor, interpreter.get_tensor, interpreter.invoke
        rows = [(x[b:b + 1], state[b:b + 1], y[b:b + 1], state_out[b:b + 1]) for b in range(len(x))]

        def call() -> None:
            with lock:
                for x_b, state_b, y_b, state_out_b in rows:
                    set_tensor(x_i, x_b)
                    set_tensor(state_i, state_b)
                    invoke()
                    y_b[...] = get_tensor(y_i)
                    state_out_b[...] = get_tensor(state_out_i)

        return call
