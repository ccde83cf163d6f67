"""Task metrics on whole recordings, run causally (a unidirectional model's full-sequence forward equals
step-by-step streaming, which the tests prove), so the numbers are the ones a device would see."""

from __future__ import annotations

import numpy as np
import torch

from rnnedge.data.recording import Normalization, Recording
from rnnedge.training.batches import IGNORE, forecast_targets, random_windows, tag_targets
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


def confusion(predicted: np.ndarray, target: np.ndarray, classes: int) -> np.ndarray:
    """[true, predicted] counts over scored samples (target != IGNORE)."""
    keep = target != IGNORE
    return np.bincount(target[keep] * classes + predicted[keep], minlength=classes * classes).reshape(
        classes, classes)


def tag_report(model: RecurrentModel, recordings: list[Recording], norm: Normalization,
               labels: list[str]) -> dict:
    outputs = stream_outputs(model, recordings, norm)
    predicted = np.concatenate([o.argmax(-1) for o in outputs])
    target = np.concatenate([tag_targets(r.labels) for r in recordings])
    matrix = confusion(predicted, target, len(labels))
    per_class = {name: float(matrix[i, i] / max(1, matrix[i].sum())) for i, name in enumerate(labels)}
    return {"accuracy": float(np.trace(matrix) / max(1, matrix.sum())), "scored_samples": int(matrix.sum()),
            "per_class_recall": per_class, "confusion": matrix.tolist(), "labels": labels}


def forecast_report(model: RecurrentModel, recordings: list[Recording], norm: Normalization,
                    horizon: int) -> dict:
    outputs = stream_outputs(model, recordings, norm)
    errors = []
    for out, rec in zip(outputs, recordings, strict=True):
        target, valid = forecast_targets(norm.apply(rec.signals), horizon)
        errors.append((out[valid] - target[valid]) ** 2)
    mse = float(np.concatenate(errors).mean())
    return {"mse": mse, "accuracy": -mse}  # 'accuracy' = higher-is-better score for early stopping


@torch.no_grad()
def classify_report(model: RecurrentModel, recordings: list[Recording], norm: Normalization,
                    window_len: int, labels: list[str], count: int = 2000, seed: int = 1) -> dict:
    x, y = random_windows(recordings, norm, window_len, count, np.random.default_rng(seed))
    model.eval()
    predicted = model.window_logits(torch.from_numpy(x)).argmax(-1).numpy()
    matrix = confusion(predicted, y, len(labels))
    return {"accuracy": float(np.trace(matrix) / max(1, matrix.sum())), "windows": count,
            "confusion": matrix.tolist(), "labels": labels}


def report(model: RecurrentModel, recordings: list[Recording], norm: Normalization, labels: list[str],
           window_len: int = 128) -> dict:
    task = model.config.task
    if task == "tag":
        return tag_report(model, recordings, norm, labels)
    if task == "forecast":
        return forecast_report(model, recordings, norm, model.config.horizon)
    return classify_report(model, recordings, norm, window_len, labels)
