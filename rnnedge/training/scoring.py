"""The torch model's outputs on whole recordings, run causally (a unidirectional model's full-sequence forward
equals step-by-step streaming, which the tests prove), scored by `rnnedge.tasks.score` like every exported file."""

from __future__ import annotations

import numpy as np
import torch

from rnnedge.data.recording import Normalization, Recording
from rnnedge.tasks import IGNORE, TASKS, batched_outputs, forecast_units, score, tag_targets
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
    """The task's report (rnnedge.tasks.score) of the torch model on these recordings; for classes also `loss`,
    the mean cross-entropy of the scored outputs (unweighted), recorded beside each validation score."""
    config, task = model.config, TASKS[model.config.task]
    if task.per_series:
        series = task.scored(recordings, window_len)
        outputs = torch_outputs(model, series, norm, series=True)
        return score(config.task, outputs, series, labels) | {"loss": _cross_entropy(outputs, series, last=True)}
    outputs = torch_outputs(model, recordings, norm, series=False)
    if not task.classes:
        outputs = [forecast_units(o, norm, config.horizon) for o in outputs]
        return score(config.task, outputs, recordings, labels, config.horizon)
    return score(config.task, outputs, recordings, labels) | {"loss": _cross_entropy(outputs, recordings, last=False)}


def _cross_entropy(outputs: list[np.ndarray], recordings: list[Recording], last: bool) -> float:
    """Mean cross-entropy of logits against the labels (each series' last step where `last`), unlabelled
    samples skipped."""
    logits = [(o if o.ndim == 1 else o[-1])[None] if last else o for o in outputs]
    targets = [tag_targets(r.labels[-1:] if last else r.labels) for r in recordings]
    flat, target = torch.from_numpy(np.concatenate(logits)).float(), torch.from_numpy(np.concatenate(targets))
    if not (target != IGNORE).any():
        return float("nan")
    return float(torch.nn.functional.cross_entropy(flat, target, ignore_index=IGNORE))
