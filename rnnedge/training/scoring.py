"""The torch model's outputs on whole recordings, run causally (a unidirectional model's full-sequence forward
equals step-by-step streaming, which the tests prove), scored by `rnnedge.tasks.score` like every exported file."""

from __future__ import annotations

import math

import numpy as np
import torch

from rnnedge.data.recording import Dataset, Normalization, Recording
from rnnedge.tasks import IGNORE, TASKS, Task, batched_outputs, forecast_units, score, tag_targets
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


def clearly_better(task: Task, score: float, baseline: float, count: int) -> bool:
    """Does `score` beat `baseline` by more than luck on `count` examples (tune: a variation against the recipe's
    model on validation; the final fit: the validated model against the fit, on the series the fit trained on)?
    Picking the best of several candidates on a small validation split favours it. Accuracy: by more than one
    example and more than the standard error of a difference of two scores on n examples (sqrt(2 p (1 - p) / n),
    p the baseline's); a one-series win (JapaneseVowels 54 of 54 against 53, Covid3MonthDiscrete 20 of 28 against
    19) was worse than the recipe's model on test both times (0.9649 against 0.9784, 0.6066 against 0.6557), and so
    was a three-series win (Covid3MonthDiscrete 20 of 28 against 17: 0.5902 against 0.6066), within that error (3.7
    series). An error (MSE): lower by more than twice the baseline's standard error, MSE sqrt(2 / n) over n samples
    (a mean of n squared normal errors); twice, since a series' errors are correlated in time (n overstates them) and
    the best of ten candidates beats the rest by luck alone: picks lower by 30 % on Airline's 21 validation months
    and by 22 % on solar's 44 were 1.36x and 1.08x the recipe's test MSE."""
    if not count:
        return task.better(score, baseline)
    if not task.higher_is_better:
        return baseline - score > 2.0 * baseline * math.sqrt(2.0 / count)
    margin = max(1.0 / count, math.sqrt(2.0 * baseline * (1.0 - baseline) / count))
    return score - baseline > margin + 1e-12


def scored_count(task: Task, data: Dataset, window_len: int) -> int:
    """What a score on `data` counts: series (classify), labelled samples (tag) or forecast samples."""
    if not task.classes:
        return int(sum(len(r) - r.history for r in data.recordings))
    scored = task.scored(data.recordings, window_len or None)
    return len(scored) if task.per_series else int(sum((r.labels > 0).sum() for r in scored))
