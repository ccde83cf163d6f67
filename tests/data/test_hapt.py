import numpy as np

from rnnedge.data.hapt import HAPT_PATH, HAPT_SHA256, HAPT_SPLITS, hapt_sha256


def test_bundled_file_is_the_published_one_with_its_attribution():
    assert hapt_sha256() == HAPT_SHA256
    notice = (HAPT_PATH.parent / "README.md").read_text()
    assert "CC BY 4.0" in notice and "Reyes-Ortiz" in notice


def test_recordings_in_physical_units(hapt):
    assert len(hapt.recordings) == 61 and hapt.num_samples == 1_122_772
    assert hapt.sample_rate_hz == 50.0 and hapt.channels[:3] == ["acc-x", "acc-y", "acc-z"]
    signals = np.concatenate([r.signals for r in hapt.recordings])
    assert signals.dtype == np.float32
    gravity = np.linalg.norm(signals[:, :3], axis=1)
    assert 0.9 < np.median(gravity) < 1.1  # accelerometer in g: a body at rest feels ~1 g


def test_splits_are_disjoint_by_subject_and_cover_everyone(hapt):
    train, val, test = (set(HAPT_SPLITS[k]) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(1, 31))
    assert HAPT_SPLITS["test"] == (2, 4, 9, 10, 12, 13, 18, 20, 24)
    for split in HAPT_SPLITS.values():
        assert set(hapt.subset(split).subjects) == set(split)
