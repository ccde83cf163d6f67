"""Run an exported file on numpy arrays and stream long sequences through it with the state carried between
calls. Stream files run through the runtime's own engines (rnnedge.runtime: ONNX Runtime with IOBinding, LiteRT
with its quantized-I/O handling), so what verification measures is what a device computes; window files, which
the runtime does not stream, through a plain session or interpreter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.export.tflite_export import SIGNATURE


@dataclass
class FileRunner:
    """One loaded file. `batch`/`time` are fixed sizes (TFLite) or None (any)."""

    call: Any  # dict of input arrays -> dict of output arrays
    batch: int | None
    time: int | None

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        return self.call(inputs)


def engine_runner(path: Path, fmt: str, time: int | None, outputs: int) -> FileRunner:
    """A stream file on the engine `rnnedge.runtime.load` would give a device: any batch (the engine loops rows
    where the file has batch 1, as a Pool does), the file's time length."""
    if fmt == "onnx":
        from rnnedge.runtime.ort import OrtBackend

        engine = OrtBackend(path)
    else:
        from rnnedge.runtime.litert import LiteRTBackend

        engine = LiteRTBackend({time: path}, threads=1)

    def call(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(feeds["x"], np.float32)
        state = np.ascontiguousarray(feeds["state"], np.float32)
        y = np.empty((*x.shape[:2], outputs), np.float32)
        state_out = np.empty_like(state)
        engine.bind(x, state, y, state_out)()
        return {"y": y, "state_out": state_out}

    return FileRunner(call, None, time)


def onnx_runner(path: Path) -> FileRunner:
    """A window file (x -> y) in a plain session, with the runtime's session options."""
    import onnxruntime as ort

    from rnnedge.runtime.ort import session_options  # verify with the device runtime's own settings

    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return FileRunner(lambda feeds: dict(zip(names, session.run(None, feeds), strict=True)), None, None)


def tflite_runner(path: Path) -> FileRunner:
    """A window file (x -> y) in a plain interpreter; quantized I/O encoded as the runtime's LiteRT engine does."""
    from ai_edge_litert.interpreter import Interpreter

    from rnnedge.runtime.litert import decoder, encoder

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    signature = interpreter.get_signature_runner(SIGNATURE)
    inputs, outputs = signature.get_input_details(), signature.get_output_details()
    del signature  # a live SignatureRunner makes invoke() refuse to run
    interpreter.allocate_tensors()

    encode = {name: (d["index"], encoder(d)) for name, d in inputs.items()}
    decode = {name: (d["index"], decoder(d)) for name, d in outputs.items()}

    def call(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, (index, to_tensor) in encode.items():
            interpreter.set_tensor(index, to_tensor(np.ascontiguousarray(feeds[name], np.float32)))
        interpreter.invoke()
        return {name: from_tensor(interpreter.get_tensor(index).copy())
                for name, (index, from_tensor) in decode.items()}

    x_shape = inputs["x"]["shape"]
    return FileRunner(call, int(x_shape[0]), int(x_shape[1]))


def load_runner(path: Path, fmt: str, graph: str, time: int | None, outputs: int) -> FileRunner:
    if graph == "stream":
        return engine_runner(path, fmt, time, outputs)
    return onnx_runner(path) if fmt == "onnx" else tflite_runner(path)


def stream(runner: FileRunner, x: np.ndarray, state: np.ndarray, chunk: int | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Feed x [batch, time, channels] in calls of `chunk` steps (the file's fixed time, else `chunk`, else all
    at once), carrying the state. A short last chunk is padded by repeating the last sample: causal outputs
    before the padding are exact, but the returned state then includes the padded steps."""
    if runner.batch is not None and x.shape[0] != runner.batch:
        rows = [stream(runner, x[i: i + 1], state[i: i + 1], chunk) for i in range(x.shape[0])]
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    step = runner.time or chunk or x.shape[1]
    outputs = []
    for start in range(0, x.shape[1], step):
        piece = x[:, start: start + step]
        real = piece.shape[1]
        if runner.time is not None and real < step:
            piece = np.concatenate([piece, np.repeat(piece[:, -1:], step - real, axis=1)], axis=1)
        result = runner(x=piece, state=state)
        outputs.append(result["y"][:, :real])
        state = result["state_out"]
    return np.concatenate(outputs, axis=1), state


def windows(runner: FileRunner, x: np.ndarray) -> np.ndarray:
    """Window files: x [n, time, channels] -> y [n, outputs] (one call per window on fixed-batch files)."""
    if runner.batch is None:
        return runner(x=x)["y"]
    return np.concatenate([runner(x=x[i: i + 1])["y"] for i in range(len(x))])
