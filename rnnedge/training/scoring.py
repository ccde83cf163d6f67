"""The torch model's outputs on whole recordings, run causally (a unidirectional model's full-sequence forward
equals step-by-step streaming, which the tests prove), scored by `rnnedge.tasks.score` like every exported file."""

from __future__ import annotations

import numpy as np
import torch

from rnnedge.data.recording import Normalization, Recording
from rnnedge.tasks import TASKS, forecast_units, score
from rnnedge.training.model import RecurrentModel


@torch.no_grad()
def stream_outputs(model: RecurrentModel, recordings: list[Recording], norm: Normalization,
                   batch: int = 16) -> list[np.ndarray]:
    """Per-step outputs for each recording (padded batches; padding is at the end so it changes nothing)."""
    model.eval()
    outputs: list[np.ndarray] = [np.empty(0)] * len(recordings)
    order = sorted(range(len(recordings)), key=lambda i: len(recordings[i]))
    for start in range(0, len(order), batch):
        group = order[start: start + batch]
        longest = max(len(recordings[i]) for i in group)
        x = np.zeros((len(group), longest, recordings[group[0]].signals.shape[1]), np.float32)
        for row, i in enumerate(group):
            x[row, : len(recordings[i])] = norm.apply(recordings[i].signals)
        y, _ = model(torch.from_numpy(x))
        for row, i in enumerate(group):
            outputs[i] = y[row, : len(recordings[i])].numpy()
    return outputs


@torch.no_grad()
def series_outputs(model: RecurrentModel, series: list[Recording], norm: Normalization) -> list[np.ndarray]:
    """Classify: one output per series (equal-length series batched; a bidirectional model sees no padding)."""
    model.eval()
    outputs: list[np.ndarray] = [np.empty(0)] * len(series)
    by_length: dict[int, list[int]] = {}
    for i, rec in enumerate(series):
        by_length.setdefault(len(rec), []).append(i)
    for members in by_length.values():
        x = np.stack([norm.apply(series[i].signals) for i in members])
        logits = model.window_logits(torch.from_numpy(x)).numpy()
        for row, i in enumerate(members):
            outputs[i] = logits[row]
    return outputs


def report(model: RecurrentModel, recordings: list[Recording], norm: Normalization, labels: list[str],
           window_len: int | None = None) -> dict:
    """The task's report (rnnedge.tasks.score) of the torch model on these recordings."""
    config, task = model.config, TASKS[model.config.task]
    if task.per_series:
        series = task.scored(recordings, window_len)
        return score(config.task, series_outputs(model, series, norm), series, labels)
    outputs = stream_outputs(model, recordings, norm)
    if not task.classes:
        outputs = [forecast_units(o, norm, config.horizon) for o in outputs]
    return score(config.task, outputs, recordings, labels, config.horizon)
