"""Held-out data and task metrics for exported files: the evaluation set (HAPT test subjects by default), the
bounded reference slice shipped in the bundle, calibration samples for static int8, and the task metric
computed the way rnnedge.training.evaluate does (model class i = label i + 1, label 0 unscored)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnedge.data.recording import Dataset, Normalization, Recording
from rnnedge.errors import ExportError
from rnnedge.export.runners import FileRunner, stream, windows
from rnnedge.training.batches import IGNORE, forecast_targets, random_windows, tag_targets
from rnnedge.training.checkpoint import Checkpoint

REFERENCE_RECORDINGS = 3
REFERENCE_STEPS = 2000  # per recording: 3 x 2000 steps of raw x + outputs is ~0.5 MB
REFERENCE_WINDOWS = 64
EVAL_WINDOWS = 2000  # classify: as many random windows as training's classify_report
METRICS = {"tag": "per-sample accuracy over labelled samples", "classify": "window accuracy",
           "forecast": "mse of next-step prediction in normalized units (lower is better)"}
_RAW = Normalization(np.zeros(1, np.float32), np.ones(1, np.float32))  # broadcasts: leaves signals raw


@dataclass
class EvalSet:
    description: str
    recordings: list[Recording]
    windows: tuple[np.ndarray, np.ndarray] | None = None  # classify: raw x [n, time, channels], class ids [n]

    @property
    def samples(self) -> int:
        return len(self.windows[0]) if self.windows else sum(len(r) for r in self.recordings)


def eval_set(checkpoint: Checkpoint, data: Dataset | None) -> EvalSet:
    """The caller's data, or the HAPT test subjects when the checkpoint was trained on HAPT."""
    if data is None:
        if not str(checkpoint.provenance.get("data", "")).startswith("hapt:"):
            raise ExportError("this checkpoint was not trained on HAPT: pass held-out evaluation data")
        from rnnedge.data.hapt import TEST_SUBJECTS, hapt_split

        data = hapt_split("test")
        subjects = ", ".join(map(str, TEST_SUBJECTS))
        description = f"HAPT test subjects {subjects} ({len(data.recordings)} recordings)"
    else:
        description = f"{data.source}: {len(data.recordings)} recordings"
    if not data.recordings:
        raise ExportError("the evaluation data has no recordings")
    if len(data.channels) != checkpoint.config.input_size:
        raise ExportError(f"evaluation data has {len(data.channels)} channels, the model takes "
                          f"{checkpoint.config.input_size}")
    if checkpoint.config.task != "classify":
        return EvalSet(description, data.recordings)
    window_len = int(checkpoint.provenance.get("train_config", {}).get("window_len", 128))
    x, y = random_windows(data.recordings, _RAW, window_len, EVAL_WINDOWS, np.random.default_rng(1))
    return EvalSet(f"{description}, {EVAL_WINDOWS} random windows of {window_len}", data.recordings, (x, y))


def torch_runner(module: nn.Module, float64: bool = False) -> FileRunner:
    """The torch graph module behind the same interface as the exported files: the reference they match.
    `float64`: the same model in double precision (a copy), to measure float32's own rounding noise."""
    dtype = torch.float64 if float64 else torch.float32
    if float64:
        module = copy.deepcopy(module).double()

    @torch.no_grad()
    def call(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = module(**{k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}

    return FileRunner(call, None, None)


def outputs(runner: FileRunner, data: EvalSet, state_size: int, group: int = 64) -> list[np.ndarray]:
    """Per-recording outputs of a stream file (recordings of similar length batched, padded at the end), or
    the window outputs of a window file."""
    if data.windows is not None:
        return [windows(runner, data.windows[0])]
    order = sorted(range(len(data.recordings)), key=lambda i: len(data.recordings[i]))
    result: list[np.ndarray] = [np.empty(0)] * len(order)
    size = 1 if runner.batch is not None else group
    for start in range(0, len(order), size):
        members = order[start: start + size]
        longest = max(len(data.recordings[i]) for i in members)
        pads = [((0, longest - len(data.recordings[i])), (0, 0)) for i in members]
        x = np.stack([np.pad(data.recordings[i].signals, pad, "edge") for i, pad in zip(members, pads, strict=True)])
        x = x.astype(np.float32)
        y, _ = stream(runner, x, np.zeros((len(members), state_size), np.float32))
        for row, i in enumerate(members):
            result[i] = y[row, : len(data.recordings[i])]
    return result


def score(task: str, outputs_: list[np.ndarray], data: EvalSet, norm: Normalization, horizon: int) -> float:
    if task == "classify":
        return float((outputs_[0].argmax(-1) == data.windows[1]).mean())
    if task == "forecast":
        errors = []
        for out, rec in zip(outputs_, data.recordings, strict=True):
            target, valid = forecast_targets(norm.apply(rec.signals), horizon)
            errors.append((out[valid] - target[valid]) ** 2)
        return float(np.concatenate(errors).mean())
    predicted = np.concatenate([o.argmax(-1) for o in outputs_])
    target = np.concatenate([tag_targets(r.labels) for r in data.recordings])
    keep = target != IGNORE
    return float((predicted[keep] == target[keep]).mean()) if keep.any() else float("nan")


def reference_inputs(data: EvalSet, chunk_len: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A bounded slice of the held-out data: raw x [n, time, channels], labels [n, time] (0 = unscored).
    Stream tasks: the first REFERENCE_STEPS of recordings from different subjects, cut to whole chunks so that
    fixed-length files end exactly on the slice's end. Classify: windows, their label repeated per step."""
    if data.windows is not None:
        x, y = data.windows[0][:REFERENCE_WINDOWS], data.windows[1][:REFERENCE_WINDOWS]
        labels = np.repeat((y + 1)[:, None], x.shape[1], axis=1).astype(np.int64)
        return x, labels, f"{len(x)} windows of {x.shape[1]} steps from {data.description}"
    chosen: dict[int, Recording] = {}
    for rec in data.recordings:
        chosen.setdefault(rec.subject, rec)
    picks = list(chosen.values())[:REFERENCE_RECORDINGS] or data.recordings[:REFERENCE_RECORDINGS]
    steps = min(REFERENCE_STEPS, *(len(r) for r in picks))
    if steps >= chunk_len:
        steps -= steps % chunk_len
    x = np.stack([r.signals[:steps] for r in picks]).astype(np.float32)
    labels = np.stack([r.labels[:steps] for r in picks]).astype(np.int64)
    names = ", ".join(r.name for r in picks)
    return x, labels, f"first {steps} steps of {names} ({data.description}); raw sensor units"


def calibration_samples(module: nn.Module, recordings: list[Recording], graph: str, time: int,
                        state_size: int, count: int = 64, steps: int = 4000) -> list[dict[str, np.ndarray]]:
    """Representative inputs for static int8 at the file's fixed shape: real x with the states the model
    actually reaches there (the torch model streamed through the first `steps` of each recording)."""
    reference = torch_runner(module)
    stride = max(time, 50)
    samples: list[dict[str, np.ndarray]] = []
    for rec in recordings:
        x = rec.signals[None, :steps].astype(np.float32)
        state = np.zeros((1, state_size), np.float32)
        for start in range(0, x.shape[1] - time + 1, stride):
            if graph == "window":
                samples.append({"x": x[:, start: start + time]})
                continue
            samples.append({"x": x[:, start: start + time], "state": state})
            state = reference(x=x[:, start: start + stride], state=state)["state_out"]
    if not samples:
        raise ExportError("no calibration samples: the recordings are shorter than the file's time length")
    keep = np.linspace(0, len(samples) - 1, min(count, len(samples))).astype(int)
    return [samples[i] for i in keep]
