"""LiteRT backend (ai-edge-litert): one interpreter per file, each at a fixed shape. (Its deprecated predecessor
tflite-runtime 2.14 is not offered: it needs numpy<2 and cannot load the files the exporter writes.)

The converted files have batch 1 and a fixed time length (1, and the bundle's chunk lengths), and they do
not resize (XNNPACK refuses a new batch), so a batch is a loop of calls. Interpreters are shared by the
streams of a model, hence a lock per interpreter. Inputs and outputs are told apart by rank (x and y are
[batch, time, features], the states [batch, state_size]), whatever names the converter gave them.
"""

from __future__ import annotations

from _thread import allocate_lock  # not threading: 0.2 MB of the device's memory for a lock
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnedge.bundle import one_line
from rnnedge.errors import BackendUnavailableError, BundleError


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BackendUnavailableError("ai-edge-litert is not installed (pip install ai-edge-litert)") from None
    return Interpreter, "litert"


def by_rank(details: list[dict]) -> tuple[dict, dict]:
    """(the rank-3 tensor's details, the rank-2 tensor's details)."""
    ranks = {len(d["shape"]): d for d in details}
    if len(details) != 2 or sorted(ranks) != [2, 3]:
        raise ValueError(f"expected a rank-3 and a rank-2 tensor, got shapes {[list(d['shape']) for d in details]}")
    return ranks[3], ranks[2]


def usable(detail: dict) -> bool:
    """float32, or an integer type with a scale to convert float32 through (static int8 files)."""
    return detail["dtype"] == np.float32 or (np.issubdtype(detail["dtype"], np.integer)
                                             and detail["quantization"][0] > 0)


def encoder(detail: dict) -> Callable[[np.ndarray], np.ndarray]:
    """float32 -> the tensor's type: as is, or quantized with its scale and zero point (static int8 files)."""
    if detail["dtype"] == np.float32:
        return lambda value: value
    (scale, zero), dtype = detail["quantization"], detail["dtype"]
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    return lambda value: np.clip(np.round(value / scale) + zero, low, high).astype(dtype)


def decoder(detail: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The tensor's type -> float32: as is, or dequantized with its scale and zero point."""
    if detail["dtype"] == np.float32:
        return lambda value: value
    scale, zero = detail["quantization"]
    return lambda value: (value.astype(np.float32) - zero) * scale


class LiteRTBackend:
    def __init__(self, paths: dict[int, Path], threads: int) -> None:
        self.interpreter_class, self.name = _interpreter_class()
        self.paths, self.chunk_lens = paths, tuple(sorted(paths))
        self._files = {}  # time length -> (interpreter, its lock, details of x, state, y, state_out)
        for time_len, path in paths.items():
            try:
                interpreter = self.interpreter_class(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
                details = (*by_rank(interpreter.get_input_details()), *by_rank(interpreter.get_output_details()))
            except (ValueError, RuntimeError) as exc:  # not a TFLite file, or not a streaming graph
                raise BundleError(f"{path}: {self.name} cannot load it as a stream file ({one_line(exc)})") from None
            self._files[time_len] = (interpreter, allocate_lock(), details)

    def io(self) -> list[tuple[str, int | None, dict[str, tuple[tuple[int | None, ...], bool]]]]:
        """[(file, the time length it is run at, {role: (shape, usable type?)})], roles x, state, y, state_out
        (told apart by rank)."""
        roles = ("x", "state", "y", "state_out")
        return [(self.paths[t].name, t, {role: (tuple(int(n) for n in d["shape"]), usable(d))
                                         for role, d in zip(roles, details, strict=True)})
                for t, (_, _, details) in self._files.items()]

    def bind(self, x: np.ndarray, state: np.ndarray, y: np.ndarray,
             state_out: np.ndarray) -> Callable[[], None]:
        """A call that runs the file of x's time length on these buffers (batch rows one by one)."""
        interpreter, lock, details = self._files[x.shape[1]]
        set_tensor, get_tensor, invoke = interpreter.set_tensor, interpreter.get_tensor, interpreter.invoke
        acquire, release = lock.acquire, lock.release
        x_i, state_i, y_i, state_out_i = (d["index"] for d in details)
        if len(x) == 1 and all(d["dtype"] == np.float32 for d in details):  # a stream's call: the short path

            def single() -> None:
                acquire()  # half the cost of `with lock`, which shows next to a ~8 us invoke
                try:
                    set_tensor(x_i, x)
                    set_tensor(state_i, state)
                    invoke()
                    y[...] = get_tensor(y_i)
                    state_out[...] = get_tensor(state_out_i)
                finally:
                    release()

            return single
        encode_x, encode_state = encoder(details[0]), encoder(details[1])
        decode_y, decode_state = decoder(details[2]), decoder(details[3])

        def rows() -> None:  # pools (batch > 1) and files with int8 I/O
            with lock:
                for b in range(len(x)):
                    set_tensor(x_i, encode_x(x[b:b + 1]))
                    set_tensor(state_i, encode_state(state[b:b + 1]))
                    invoke()
                    y[b:b + 1] = decode_y(get_tensor(y_i))
                    state_out[b:b + 1] = decode_state(get_tensor(state_out_i))

        return rows
