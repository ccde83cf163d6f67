"""The runtime's own targets, on one bundle, in one run, on one machine (`rnnedge bench BUNDLE` measures them
after the format x precision table: runtime.json / runtime.md): Stream.step vs the bare backend call on the same
file and vs a torch eager step; a 1024-stream pool; chunks of 50; a fresh process's import + load time and peak
RSS (the bench's cold-start probe).

Timings are the best of interleaved rounds (a shared machine is noisy: compare the ratios). Torch is imported
only for its own row, and only if installed.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np

import rnnedge.runtime as rt
from rnnedge.devices.bench import probe, timed, torch_step


def per_call_us(fns: dict[str, Callable[[], object]], rounds: int = 15, min_seconds: float = 0.02
                ) -> dict[str, float]:
    """Microseconds per call of each function: rounds interleaved, so that all see the same machine load,
    and the best round's mean kept (on a shared machine, other work only ever adds time)."""
    calls = {}
    for name, fn in fns.items():  # calibrate: enough calls per round to outlast the timer's noise
        calls[name] = 1
        while sum(timed(fn, calls[name])) < min_seconds * 1e9:
            calls[name] *= 2
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], sum(timed(fn, calls[name])) / calls[name] / 1e3)
    return best


def bare_call(model: rt.Model) -> Callable[[], object]:
    """The backend's plain API on the same file, carrying the state as the caller would."""
    sample = np.zeros((1, 1, model.channels), np.float32)
    state = [np.zeros((1, model.state_size), np.float32)]
    if model.backend.startswith("onnxruntime"):
        run, x_name, state_name = model.engine.session.run, model.manifest.input.name, model.manifest.state.input

        def call() -> object:
            y, state[0] = run(None, {x_name: sample, state_name: state[0]})
            return y

        return call
    from rnnedge.runtime.litert import by_rank

    interpreter = model.engine.interpreter_class(model_path=str(model.engine.paths[1]), num_threads=1)
    interpreter.allocate_tensors()
    x_i, state_i, y_i, state_out_i = (d["index"] for d in (*by_rank(interpreter.get_input_details()),
                                                           *by_rank(interpreter.get_output_details())))

    def call() -> object:
        interpreter.set_tensor(x_i, sample)
        interpreter.set_tensor(state_i, state[0])
        interpreter.invoke()
        state[0] = interpreter.get_tensor(state_out_i)
        return interpreter.get_tensor(y_i)

    return call


def torch_call(model: rt.Model) -> Callable[[], object] | None:
    """A torch eager step of the source model's architecture (weights do not change speed), if torch is here."""
    if not importlib.util.find_spec("torch"):
        return None
    import torch

    from rnnedge.training.config import ModelConfig
    from rnnedge.training.model import RecurrentModel

    torch.set_num_threads(1)
    net = RecurrentModel(ModelConfig.from_dict(model.manifest.model)).eval()
    return torch_step(net, np.zeros((1, model.channels), np.float32))


def process_cost(bundle: Path, backend: str) -> dict:
    """A fresh process that imports the runtime, loads the bundle and steps once: wall time and peak RSS."""
    found = probe(bundle, backend, "fp32")
    return {"import_load_s": found["cold_start_s"], "peak_rss_mb": found["peak_rss_mb"],
            "torch_imported": found["torch_imported"]}


def speeds(model: rt.Model, torch_eager: Callable[[], object] | None) -> dict:
    stream, sample = model.stream(), np.zeros(model.channels, np.float32)
    chunk = np.zeros((50, model.channels), np.float32)
    calls = {"bare_call_us": bare_call(model), "stream_step_us": lambda: stream.step(sample),
             "feed50_us_per_step": lambda: stream.feed(chunk)}
    row = per_call_us(calls | ({"torch_step_us": torch_eager} if torch_eager else {}))
    row["feed50_us_per_step"] /= 50
    row["step_over_bare"] = row["stream_step_us"] / row["bare_call_us"]
    row["torch_over_step"] = row["torch_step_us"] / row["stream_step_us"] if torch_eager else None
    if model.backend.startswith("onnxruntime"):  # LiteRT files do not batch: a pool is a loop there
        pool = model.pool(1024)
        for i in range(1024):
            pool.add(i)
        batch, run = np.zeros((1024, model.channels), np.float32), model.engine.session.run
        feeds = {model.manifest.input.name: batch[:, None],
                 model.manifest.state.input: np.zeros((1024, model.state_size), np.float32)}
        ticks = per_call_us({"pool": lambda: pool.step_array(batch), "bare": lambda: run(None, feeds)}, rounds=5)
        row["pool1024_steps_per_s"] = 1024 / ticks["pool"] * 1e6
        row["bare1024_steps_per_s"] = 1024 / ticks["bare"] * 1e6
    return row


def measure_targets(bundle: str | Path, backends: tuple[str, ...] = ("onnxruntime", "litert")) -> dict:
    bundle = Path(bundle)
    results: dict = {"bundle": str(bundle), "machine": platform.machine(),
                     "python": platform.python_version(), "backends": {}}
    models = [rt.load(bundle, backend=backend) for backend in backends]
    torch_eager = torch_call(models[0])
    for backend, model in zip(backends, models, strict=True):
        results["backends"][model.backend] = speeds(model, torch_eager) | process_cost(bundle, backend)
    return results


COLUMNS = (  # (heading with the target, key, format)
    ("bare call us", "bare_call_us", "{:.1f}"), ("Stream.step us", "stream_step_us", "{:.1f}"),
    ("torch eager step us", "torch_step_us", "{:.0f}"),
    ("step / bare (<= 1.3)", "step_over_bare", "{:.2f}"),
    ("torch / step (>= 20)", "torch_over_step", "{:.1f}"),
    ("feed 50, us/step (<= 5)", "feed50_us_per_step", "{:.2f}"),
    ("pool 1024, steps/s (>= 550k)", "pool1024_steps_per_s", "{:,.0f}"),
    ("bare batched run, steps/s", "bare1024_steps_per_s", "{:,.0f}"),
    ("import + load s (<= 0.3)", "import_load_s", "{:.2f}"), ("peak RSS MB (<= 60)", "peak_rss_mb", "{:.0f}"),
)


def table(results: dict) -> str:
    lines = ["| backend | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in results["backends"].items():
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

