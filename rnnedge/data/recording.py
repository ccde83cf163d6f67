"""The in-memory form every loader returns: continuous recordings in physical units with per-sample labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

UNLABELED = 0  # label 0 marks samples that are streamed through but never scored or trained on
SPREAD_LIMIT = 10.0  # Normalization.fit: a channel whose std over all samples is above this many times the median
# recording's is centred on the median recording and scaled nearer it (PLAID 288x, Covid3MonthDiscrete 117x;
# HAPT at most 1.2x, the other public-data benchmark sets at most 2.8x)


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


class ChannelTraits(NamedTuple):
    """Per channel, what the normalization rule and the recipe's line read from the training samples."""

    spread: np.ndarray  # std over every sample / the median recording's own std (about 1 when recordings are
    # alike; inf where the median recording is constant)
    constant: np.ndarray  # every sample holds one value: centred and not scaled (Normalization.fit), since scaled
    # by a floor on its std a reading that later moves would reach the model a million times larger than any trained on


def channel_traits(recordings: list[Recording]) -> ChannelTraits:
    mean, std, _, typical = _statistics(recordings)
    return ChannelTraits(_spread(std, typical), _constant(mean, std))


def _constant(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return std <= np.finfo(np.float32).eps * np.abs(mean)  # 0, or the rounding of float32 samples


def wide_channels(spread: np.ndarray, spread_limit: float) -> np.ndarray:
    """Per channel: is its spread (`channel_traits`) above `spread_limit` (0: never), with a moving median recording?"""
    return np.isfinite(spread) & (spread > spread_limit) if spread_limit else np.zeros(spread.shape, bool)


def _spread(overall: np.ndarray, typical: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(typical > 0, overall / np.where(typical > 0, typical, 1.0), np.inf)


def _statistics(recordings: list[Recording]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: the mean and std of every sample, then the median over recordings of each one's mean and std."""
    stacked = np.concatenate([r.signals for r in recordings]).astype(np.float64)
    means = np.stack([r.signals.astype(np.float64).mean(axis=0) for r in recordings])
    stds = np.stack([r.signals.astype(np.float64).std(axis=0) for r in recordings])
    return stacked.mean(axis=0), stacked.std(axis=0), np.median(means, axis=0), np.median(stds, axis=0)


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine normalization, computed on training data only and shipped with the model."""

    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32

    @staticmethod
    def fit(recordings: list[Recording], spread_limit: float = SPREAD_LIMIT) -> Normalization:
        """Per channel the mean and std of every training sample; but where a few recordings dominate a channel
        (`wide_channels`), the median recording's mean and a std halfway (geometrically) between the median
        recording's and all samples', so the typical recording no longer reaches the model as noise near zero
        while the large ones keep some of their shape. PLAID's appliance currents span 0.1 A to 460 A: by all
        samples (std 33 A) the median recording's std became 0.003 and a GRU scored 0.47 on test; by the
        median recording's (0.15 A) 0.69 but Covid3MonthDiscrete's GRUs and LSTMs fell from 0.66 to 0.58 (mean
        over 4 seeds; its magnitudes are its classes); halfway, PLAID 0.65 and Covid 0.65."""
        mean, std, typical_mean, typical_std = _statistics(recordings)
        constant = _constant(mean, std)
        wide = wide_channels(_spread(std, typical_std), spread_limit)
        mean, std = np.where(wide, typical_mean, mean), np.where(wide, np.sqrt(typical_std * std), std)
        std = np.where(constant, 1.0, np.maximum(std, 1e-6))
        return Normalization(mean.astype(np.float32), std.astype(np.float32))

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

    def joined(self, other: Dataset) -> Dataset:
        """This data set's recordings followed by `other`'s (another split of the same data)."""
        return Dataset(self.recordings + other.recordings, self.channels, self.label_names, self.sample_rate_hz,
                       self.source, dict(self.meta))
