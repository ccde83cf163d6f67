"""Shared fixtures: small slices of the real bundled HAPT data."""

from __future__ import annotations

import pytest

from rnnedge.data.hapt import hapt_split, load_hapt
from rnnedge.data.recording import Dataset, Recording


def short(dataset: Dataset, samples: int, count: int) -> Dataset:
    """The first `count` recordings, each cut to its first `samples` samples (real data, small work)."""
    recordings = [Recording(r.signals[:samples], r.labels[:samples], r.subject, r.name)
                  for r in dataset.recordings[:count]]
    return Dataset(recordings, dataset.channels, dataset.label_names, dataset.sample_rate_hz, dataset.source)


@pytest.fixture(scope="session")
def hapt() -> Dataset:
    return load_hapt()


@pytest.fixture(scope="session")
def hapt_small_train() -> Dataset:
    return short(hapt_split("train"), samples=3000, count=4)


@pytest.fixture(scope="session")
def hapt_small_val() -> Dataset:
    return short(hapt_split("val"), samples=2000, count=2)
