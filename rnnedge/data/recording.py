"""The in-memory form every loader returns: continuous recordings in physical units with per-sample labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNLABELED = 0  # label 0 marks samples that are streamed through but never scored or trained on


@dataclass(frozen=True)
class Recording:
    """One continuous recording: never split across train/validation/test."""

    signals: np.ndarray  # (T, C) float32, physical units
    labels: np.ndarray  # (T,) int64, index into Dataset.label_names; 0 = unlabelled
    subject: int
    name: str
    missing: np.ndarray | None = None  # (T,) bool: samples that were missing in the file, held (data/files.py)
    history: int = 0  # the first samples came before it (a later piece of a split in time): streamed to bring the
    # state up to date, never scored (their labels are 0, unlabelled)

    def __len__(self) -> int:
        return len(self.signals)


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine normalization, computed on training data only and shipped with the model."""

    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32

    @staticmethod
    def fit(recordings: list[Recording]) -> Normalization:
        stacked = np.concatenate([r.signals for r in recordings]).astype(np.float64)
        std = stacked.std(axis=0)
        return Normalization(stacked.mean(axis=0).astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))

    def apply(self, signals: np.ndarray) -> np.ndarray:
        return ((signals - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @staticmethod
    def from_dict(d: dict) -> Normalization:
        return Normalization(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


@dataclass(frozen=True)
class Dataset:
    recordings: list[Recording]
    channels: list[str]
    label_names: list[str]
    sample_rate_hz: float
    source: str  # provenance: where the samples came from
    meta: dict = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(len(r) for r in self.recordings)

    def subset(self, subjects: set[int] | list[int] | tuple[int, ...]) -> Dataset:
        wanted = set(subjects)
        return Dataset(
            [r for r in self.recordings if r.subject in wanted],
            self.channels, self.label_names, self.sample_rate_hz, self.source, dict(self.meta),
        )

    @property
    def subjects(self) -> list[int]:
        return sorted({r.subject for r in self.recordings})
