"""Shared fixtures: small slices of the real bundled HAPT data."""

from __future__ import annotations

import os

# One thread per test process, set before any library starts its pools: `make test` runs a pytest-xdist worker per
# core, and libraries that start a thread per core in every worker (torch, TensorFlow's converter) make the workers
# fight over the cores. Subprocesses inherit it; a test that wants more threads asks for them.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
              "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_name, "1")

import pytest  # noqa: E402

from rnnedge.data.hapt import hapt_split, load_hapt  # noqa: E402
from rnnedge.data.recording import Dataset, Recording  # noqa: E402


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
