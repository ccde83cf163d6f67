"""The torch model's outputs on whole recordings, run causally (a unidirectional model's full-sequence forward
equals step-by-step streaming, which the tests prove), scored by `rnnedge.tasks.score` like every exported file."""

from __future__ import annotations

import numpy as np
import torch

from rnnedge.data.recording import Normalization, Recording
from rnnedge.tasks import TASKS, batched_outputs, forecast_units, score
from rnnedge.training.model import RecurrentModel


@torch.no_grad()
def torch_outputs(model: RecurrentModel, recordings: list[Recording], norm: Normalization, series: bool,
                  batch: int = 16) -> list[np.ndarray]:
    """Per-step outputs for each recording, or (series) one output per series from the whole series."""
    model.eval()
    forward = model.window_logits if series else (lambda x: model(x)[0])
    return batched_outputs(recordings, lambda x: forward(torch.from_numpy(norm.apply(x))).numpy(), series, batch)


def report(model: RecurrentModel, recordings: list[Recording], norm: Normalization, labels: list[str],
           window_len: int | None = None) -> dict:
    """The task's report (rnnedge.tasks.score) of the torch model on these recordings."""
    config, task = model.config, TASKS[model.config.task]
    if task.per_series:
        series = task.scored(recordings, window_len)
        return score(config.task, torch_outputs(model, series, norm, series=True), series, labels)
    outputs = torch_outputs(model, recordings, norm, series=False)
    if not task.classes:
        outputs = [forecast_units(o, norm, config.horizon) for o in outputs]
    return score(config.task, outputs, recordings, labels, config.horizon)
