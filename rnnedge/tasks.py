"""The three tasks, in one place: what a model's outputs mean, how they are scored, and which score is better.

- tag: a class per time step (label i is model output i - 1; label 0 is unlabelled and never scored);
  metric: accuracy over labelled samples.
- classify: a class per series. A streaming model's output at a step is the class of the series so far, so a
  series is scored by the output at its last step (window models give one output per series); metric: accuracy.
- forecast: the next `horizon` samples of every channel, in the data's own units; metric: mean squared error.

Training, export (verification gates), `rnnedge evaluate` and the benchmark all score through `score`, so a
number means the same everywhere. numpy only: the torch-free runtime side may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rnnedge.data.recording import Normalization, Recording
from rnnedge.errors import DataError

IGNORE = -100  # target value for samples that are not scored (unlabelled, padding)
CLASSIFY_WINDOWS = 2000  # recordings whose label changes are scored on this many random windows
DEFAULT_WINDOW = 128  # window length for classify data whose labels change within a recording


@dataclass(frozen=True)
class Task:
    name: str
    metric: str  # the headline score's name
    higher_is_better: bool
    description: str
    gates: dict  # precision -> largest allowed loss vs torch: accuracy points (fraction) or relative MSE increase
    classes: bool  # outputs are class logits (else values in the data's units, one per channel and horizon step)
    per_series: bool  # one label per series, read at its last step: trained and scored on whole series (so a
    # bidirectional window model may do it); else a target per step, trained on recordings streamed in chunks

    def examples(self, recordings: Sequence[Recording]) -> int:
        """How many examples the score counts on these (scored) recordings: labelled series or labelled samples
        (0: not a count, a forecast's error)."""
        if not self.classes:
            return 0
        if self.per_series:
            return sum(1 for r in recordings if (r.labels > 0).any())
        return int(sum((r.labels > 0).sum() for r in recordings))

    def output_size(self, classes: int, channels: int, horizon: int) -> int:
        return classes if self.classes else channels * horizon

    def targets(self, x: np.ndarray, labels: np.ndarray, horizon: int,
                missing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A recording's per-step (targets, scored?) from its normalized samples and labels (missing samples are
        unlabelled already: data/files.py)."""
        if self.classes:
            return tag_targets(labels), np.ones(len(x), bool)
        return forecast_targets(x, horizon, missing)

    def no_targets(self, shape: tuple[int, ...], channels: int, horizon: int) -> np.ndarray:
        """Targets of `shape` steps that score nothing (padding), to be filled with `targets`."""
        if self.classes:
            return np.full(shape, IGNORE, np.int64)
        return np.zeros((*shape, horizon * channels), np.float32)

    def scored(self, recordings: Sequence[Recording], window_len: int | None) -> list[Recording]:
        """What the task scores on these recordings: themselves, or the series cut from them (classify_series)."""
        return classify_series(recordings, window_len) if self.per_series else list(recordings)

    def best(self, scores: dict[str, float] | dict[str, tuple]) -> str:
        """The key of the best score (or ranking tuple); ties keep the earlier key (the recipe's own before a
        variation)."""
        kept = next(iter(scores))
        for key, score in scores.items():
            if self.better(score, scores[kept]):
                kept = key
        return kept

    def better(self, a: float | tuple, b: float | tuple) -> bool:
        """Is score (or ranking tuple) a better than b? (NaN is never better)."""
        return bool(a > b) if self.higher_is_better else bool(a < b)

    def gate(self, reference: float, value: float, precision: str, examples: int = 0) -> str | None:
        """Why a quantized file fails its gate against the torch score, or None when it passes. Accuracy on
        `examples` scored examples may always lose one of them: on a test split of 40 series one flipped series is
        2.5 points, which a 1-point gate read as damage (a BasicMotions model trained with noise augmentation had
        its int8 file refused for it)."""
        allowed = self.gates.get(precision)
        if allowed is None:
            return None
        if self.higher_is_better:
            loss = reference - value
            if loss <= allowed or (examples and loss * examples <= 1 + 1e-9):
                return None
            one = f", or one of {examples} examples" if examples else ""
            return f"{self.metric} {value:.4f} is {loss * 100:.2f} points below torch ({allowed * 100:g} allowed{one})"
        increase = value / reference - 1 if reference > 0 else (0.0 if value <= reference else np.inf)
        return None if increase <= allowed else (
            f"{self.metric} {value:.4g} is {increase * 100:.1f}% above torch's {reference:.4g} "
            f"({allowed * 100:g}% allowed)")


_ACCURACY_GATES = {"int8": 0.01, "int8_static": 0.01, "fp16": 0.002, "a8w8": 0.01, "a16w8": 0.01}
TASKS = {
    "tag": Task("tag", "accuracy", True, "per-sample accuracy over labelled samples", _ACCURACY_GATES,
                classes=True, per_series=False),
    "classify": Task("classify", "accuracy", True,
                     "per-series accuracy (the streamed output at each series' last step)", _ACCURACY_GATES,
                     classes=True, per_series=True),
    "forecast": Task("forecast", "mse", False,
                     "mean squared error of the forecast, in the data's own units (lower is better)",
                     {"int8": 0.05, "int8_static": 0.05, "fp16": 0.01, "a8w8": 0.05, "a16w8": 0.05},
                     classes=False, per_series=False),
}


def shown(score: float) -> str:
    """A score as training, tune and evaluate print it: 4 decimals, or 4 significant digits below 0.1 (a
    forecast's MSE in small units: solar's 0.0004 and 0.0003 were both printed as 4 decimals)."""
    return f"{score:.4f}" if abs(score) >= 0.1 or score == 0 else f"{score:.4g}"


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name]


def trained_window_len(provenance: dict) -> int | None:
    """The classify window length a checkpoint was trained with (its provenance's train_config); None: whole
    series."""
    return int(provenance.get("train_config", {}).get("window_len", 0)) or None


def tag_targets(labels: np.ndarray) -> np.ndarray:
    """Dataset labels (0 = unlabelled) -> model classes (label - 1), unlabelled -> IGNORE."""
    return np.where(labels > 0, labels - 1, IGNORE)


def forecast_targets(x: np.ndarray, horizon: int, missing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Next `horizon` values after each step, flattened; the last `horizon` steps have no target, nor does a step
    whose next values include a missing sample (held, not measured: data/files.py)."""
    steps, channels = x.shape
    target = np.zeros((steps, horizon * channels), np.float32)
    valid = np.arange(steps) < steps - horizon
    for k in range(1, horizon + 1):
        target[: max(0, steps - k), (k - 1) * channels: k * channels] = x[k:]
        if missing is not None:
            valid[: max(0, steps - k)] &= ~missing[k:]
    return target, valid


def forecast_units(outputs: np.ndarray, norm: Normalization, horizon: int) -> np.ndarray:
    """A model's forecast in normalized units -> the data's units (exported graphs do this inside)."""
    return outputs * np.tile(norm.std, horizon) + np.tile(norm.mean, horizon)


def is_series_data(recordings: Sequence[Recording]) -> bool:
    """Classify data where each recording is one labelled series (its labelled samples share one label)."""
    return all(len(np.unique(r.labels[r.labels > 0])) <= 1 for r in recordings)


def classify_series(recordings: Sequence[Recording], window_len: int | None, count: int = CLASSIFY_WINDOWS,
                    seed: int = 1) -> list[Recording]:
    """The series a classify model is scored (and trained) on. Series data: every labelled recording, cut to
    its last `window_len` samples when that is set. Recordings whose label changes: `count` random windows of
    `window_len` ending on a labelled sample, each labelled by that sample."""
    if is_series_data(recordings):
        return [_tail(r, window_len) for r in recordings if (r.labels > 0).any()]
    length = window_len or DEFAULT_WINDOW
    eligible = [r for r in recordings if len(r) >= length and (r.labels[length - 1:] > 0).any()]
    if not eligible:
        raise DataError(f"no recording has a labelled window of {length} samples (shorter --window-len?)")
    rng = np.random.default_rng(seed)
    series = []
    while len(series) < count:
        rec = eligible[int(rng.integers(len(eligible)))]
        end = int(rng.integers(length, len(rec) + 1))
        if rec.labels[end - 1] > 0:
            labels = np.full(length, rec.labels[end - 1], np.int64)
            series.append(Recording(rec.signals[end - length: end], labels, rec.subject, f"{rec.name}@{end}"))
    return series


def _tail(rec: Recording, window_len: int | None) -> Recording:
    label = rec.labels[rec.labels > 0][-1] if (rec.labels > 0).any() else 0
    keep = slice(-window_len, None) if window_len else slice(None)
    return Recording(rec.signals[keep], np.full(len(rec.signals[keep]), label, np.int64), rec.subject, rec.name)


def batched_outputs(recordings: Sequence[Recording], run: Callable[[np.ndarray], np.ndarray], equal_lengths: bool,
                    batch: int) -> list[np.ndarray]:
    """Per-recording outputs of `run` (x [n, T, channels] float32, raw units -> y [n, T, outputs], or [n, outputs]
    for a window model), recordings batched: of equal length only (a window model must see no padding), else
    `batch` at a time by length, padded at the end by repeating the last sample (a causal model's outputs before
    the padding do not change) and cut back."""
    if equal_lengths:
        groups: dict[int, list[int]] = {}
        for i, rec in enumerate(recordings):
            groups.setdefault(len(rec), []).append(i)
        members_list = list(groups.values())
    else:
        order = sorted(range(len(recordings)), key=lambda i: len(recordings[i]))
        members_list = [order[start: start + batch] for start in range(0, len(order), batch)]
    result: list[np.ndarray] = [np.empty(0)] * len(recordings)
    for members in members_list:
        longest = max(len(recordings[i]) for i in members)
        y = run(np.stack([np.pad(recordings[i].signals, ((0, longest - len(recordings[i])), (0, 0)), "edge")
                          for i in members]).astype(np.float32))
        for row, i in enumerate(members):
            result[i] = y[row] if y.ndim == 2 else y[row, : len(recordings[i])]
    return result


def confusion(predicted: np.ndarray, target: np.ndarray, classes: int) -> np.ndarray:
    """[true, predicted] counts over scored samples (target != IGNORE)."""
    keep = target != IGNORE
    return np.bincount(target[keep] * classes + predicted[keep], minlength=classes * classes).reshape(
        classes, classes)


def score(task: str, outputs: Sequence[np.ndarray], recordings: Sequence[Recording], labels: Sequence[str],
          horizon: int = 1) -> dict:
    """The task's report from per-recording outputs in the data's units: tag/forecast [T, outputs] per
    recording; classify [T, classes] (the last step counts) or [classes] per series. Always has `metric`,
    `value` and `higher_is_better`; plus a confusion matrix for classes, MSE and MAE for forecasts."""
    spec = get_task(task)
    if not spec.classes:
        errors, naive = [], []
        for out, rec in zip(outputs, recordings, strict=True):
            target, valid = forecast_targets(rec.signals, horizon, rec.missing)
            valid[: rec.history] = False  # forecasts from inside the history are the training data's
            errors.append(out[valid] - target[valid])
            # persistence, the baseline a forecast must beat: every future value is the one seen now
            naive.append(np.tile(rec.signals, horizon)[valid] - target[valid])
        err = np.concatenate(errors) if errors else np.zeros((0, 1))
        mse = float(np.mean(err.astype(np.float64) ** 2)) if err.size else float("nan")
        mae = float(np.mean(np.abs(err))) if err.size else float("nan")
        flat = np.concatenate(naive).astype(np.float64) if naive else np.zeros((0, 1))
        persistence = float(np.mean(flat ** 2)) if flat.size else float("nan")
        return {"metric": spec.metric, "value": mse, "higher_is_better": False, "mse": mse, "mae": mae,
                "persistence_mse": persistence, "persistence_mae": float(np.mean(np.abs(flat))) if flat.size
                else float("nan"), "scored_samples": int(len(err))}
    if spec.per_series:
        predicted = np.array([(o[-1] if o.ndim == 2 else o).argmax() for o in outputs], np.int64)
        target = np.array([tag_targets(r.labels[-1:])[0] for r in recordings], np.int64)
        unit = "series"
    else:
        predicted = np.concatenate([o.argmax(-1) for o in outputs]) if outputs else np.zeros(0, np.int64)
        target = np.concatenate([tag_targets(r.labels) for r in recordings]) if recordings else predicted
        unit = "samples"
    matrix = confusion(predicted, target, len(labels))
    accuracy = float(np.trace(matrix) / matrix.sum()) if matrix.sum() else float("nan")
    recall = {name: float(matrix[i, i] / max(1, matrix[i].sum())) for i, name in enumerate(labels)}
    return {"metric": spec.metric, "value": accuracy, "higher_is_better": True, "accuracy": accuracy,
            f"scored_{unit}": int(matrix.sum()), "per_class_recall": recall, "confusion": matrix.tolist(),
            "labels": list(labels)}
