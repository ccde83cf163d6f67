"""Sensor recordings: the bundled HAPT data set and loaders for users' own CSV/NPZ files."""

from rnnedge.data.files import load_csv, load_npz
from rnnedge.data.hapt import HAPT_SPLITS, load_hapt
from rnnedge.data.recording import Dataset, Normalization, Recording

__all__ = ["Dataset", "Normalization", "Recording", "HAPT_SPLITS", "load_hapt", "load_csv", "load_npz"]
