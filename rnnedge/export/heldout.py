"""Held-out data for exported files: the evaluation set (the checkpoint's recorded test split by default), the
bounded reference slice shipped in the bundle, calibration samples for static int8, and each file's task score
(rnnedge.tasks.score, as training computes it)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnedge.data.recording import Dataset, Recording
from rnnedge.data.source import UNLABELLED_NAME, held_out_data, load_split, recorded_splits
from rnnedge.errors import DataError, ExportError
from rnnedge.export.runners import FileRunner, stream, windows
from rnnedge.tasks import batched_outputs, get_task, score, trained_window_len
from rnnedge.training.checkpoint import Checkpoint

REFERENCE_STEPS = 2000  # longest slice per recording
REFERENCE_TARGET = 6000  # steps in the whole slice when the data has them (3 x 2000 of x + outputs: ~0.5 MB)
REFERENCE_MAX_RECORDINGS = 256  # short series: up to this many of them


@dataclass
class EvalSet:
    """What files are scored on: whole recordings (tag, forecast) or series (classify), raw units."""

    description: str
    recordings: list[Recording]

    @property
    def samples(self) -> int:
        return sum(len(r) for r in self.recordings)


def held_out(checkpoint: Checkpoint, data: Dataset | None = None) -> Dataset:
    """The caller's data, or the held-out split recorded in the checkpoint (test, else validation)."""
    if data is not None:
        return data
    try:
        return held_out_data(checkpoint.provenance, checkpoint.labels)
    except DataError as exc:
        raise ExportError(f"held-out data: {exc}") from None


def eval_set(checkpoint: Checkpoint, data: Dataset | None) -> EvalSet:
    data = held_out(checkpoint, data)
    if not data.recordings:
        raise ExportError("the evaluation data has no recordings")
    if len(data.channels) != checkpoint.config.input_size:
        raise ExportError(f"evaluation data has {len(data.channels)} channels, the model takes "
                          f"{checkpoint.config.input_size}")
    description = f"{data.source}: {len(data.recordings)} recordings"
    series = get_task(checkpoint.config.task).scored(data.recordings, trained_window_len(checkpoint.provenance))
    if len(series) != len(data.recordings):
        description += f", {len(series)} windows of {series[0].signals.shape[0]} samples"
    return EvalSet(description, series)


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


def outputs(runner: FileRunner, data: EvalSet, state_size: int, window: bool = False,
            group: int = 64) -> list[np.ndarray]:
    """Per-recording outputs of a stream file, or one output per series of a window file (tasks.batched_outputs)."""
    if window:
        return batched_outputs(data.recordings, lambda x: windows(runner, x), True, group)
    return batched_outputs(data.recordings, lambda x: stream(runner, x, np.zeros((len(x), state_size), np.float32))[0],
                           False, 1 if runner.batch is not None else group)


def file_score(checkpoint: Checkpoint, runner: FileRunner, data: EvalSet, window: bool = False) -> float:
    """The task metric of one file (or the torch reference) on the evaluation set."""
    config = checkpoint.config
    return score(config.task, outputs(runner, data, config.state_size, window), data.recordings,
                 checkpoint.labels, config.horizon)["value"]


def reference_inputs(data: EvalSet, chunk_len: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A bounded slice of the held-out data: raw x [n, steps, channels], labels [n, steps] (0 = unscored).
    Several recordings (different subjects first), each from its start and all cut to one length, chosen so the
    slice holds about REFERENCE_TARGET steps where the data has them: 3 x 2000 steps of long recordings, or
    hundreds of short series. Lengths of at least chunk_len are cut to whole chunks, so fixed-length files end
    exactly on the slice's end."""
    lengths = sorted({min(len(r), REFERENCE_STEPS) for r in data.recordings})

    def count(steps: int) -> int:
        eligible = sum(len(r) >= steps for r in data.recordings)
        return min(eligible, REFERENCE_MAX_RECORDINGS, math.ceil(REFERENCE_TARGET / steps))

    steps = max(lengths, key=lambda s: (min(s * count(s), REFERENCE_TARGET), s))
    if steps >= chunk_len:
        steps -= steps % chunk_len
    eligible = [r for r in data.recordings if len(r) >= steps]
    by_subject: dict[int, list[Recording]] = {}
    for rec in eligible:
        by_subject.setdefault(rec.subject, []).append(rec)
    picks: list[Recording] = []  # round robin over subjects: as many different people as possible
    while len(picks) < count(steps):
        for group in by_subject.values():
            if group and len(picks) < count(steps):
                picks.append(group.pop(0))
    x = np.stack([r.signals[:steps] for r in picks]).astype(np.float32)
    labels = np.stack([r.labels[:steps] for r in picks]).astype(np.int64)
    names = ", ".join(r.name for r in picks[:3]) + (f" and {len(picks) - 3} more" if len(picks) > 3 else "")
    return x, labels, f"first {steps} steps of {names} ({data.description}); raw sensor units"


def calibration_recordings(checkpoint: Checkpoint, data: EvalSet) -> list[Recording]:
    """Training-like data for static int8: the checkpoint's training split when it can be read again, else the
    evaluation recordings."""
    record = recorded_splits(checkpoint.provenance)
    if "train" in record:
        try:
            return load_split(record, "train", [UNLABELLED_NAME, *checkpoint.labels]).recordings[:8]
        except DataError:
            pass  # moved or changed since training: the held-out data is still real data
    return data.recordings[:8]


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
