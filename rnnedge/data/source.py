"""Where a model's data came from, and which recordings were train / validation / test.

A `DataSource` says how to read recordings again (the bundled HAPT set, or users' CSV/NPZ files with their column
names, sample rate and unlabelled marker); `Splits` names the recordings of each split by name and content hash.
Both travel in the checkpoint, so `export`, `evaluate` and `bench` find held-out data for any data set without
being told, and notice when the files changed since training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rnnedge.data.recording import Dataset, Recording
from rnnedge.digest import sha256_bytes
from rnnedge.errors import DataError

SPLITS = ("train", "val", "test")
UNLABELLED_NAME = "UNLABELED"  # label 0 of a Dataset: streamed through, never scored
BUNDLED = "hapt"  # the name of the data set the package ships (`rnnedge data` describes it)


def kind_of(data: str) -> str:
    """What the CLI's data words name: the bundled set, an .npz file or CSV data (a DataSource's kind)."""
    return BUNDLED if data == BUNDLED else "npz" if Path(data).suffix == ".npz" else "csv"


@dataclass(frozen=True)
class DataSource:
    """How to load a data set: `kind` hapt (bundled), csv (a file or a folder of files, one per recording) or npz."""

    kind: str
    path: str = ""
    channels: tuple[str, ...] = ()
    label_column: str | None = None
    sample_rate_hz: float | None = None
    unlabelled: str | None = None

    @staticmethod
    def parse(data: str, channels: str | None = None, label_column: str | None = None,
              sample_rate_hz: float | None = None, unlabelled: str | None = None) -> DataSource:
        """From the CLI's words: 'hapt', an .npz file, or a CSV file / folder of CSV files. The CSV options are
        refused for the other two (they carry their own channels, labels and rate), not silently ignored."""
        path, kind = Path(data), kind_of(data)
        if kind != BUNDLED and not path.exists():
            raise DataError(f"{data}: no such file or folder")
        if kind != "csv":
            given = [flag for flag, value in (("--channels", channels), ("--label-column", label_column),
                                              ("--sample-rate", sample_rate_hz), ("--unlabelled", unlabelled)) if value]
            if given:
                raise DataError(f"{data}: {', '.join(given)} for CSV data only: "
                                f"{'the bundled set' if kind == BUNDLED else 'an .npz file'} has its own")
            return DataSource(kind, "" if kind == BUNDLED else str(path.resolve()))
        names = tuple(c.strip() for c in (channels or "").split(",") if c.strip())
        if not names or not sample_rate_hz:
            raise DataError(f"{data}: CSV data needs --channels (comma-separated column names) and --sample-rate")
        label = label_column.strip() if label_column else None
        return DataSource("csv", str(path.resolve()), names, label, float(sample_rate_hz), unlabelled)

    def like(self, data: str) -> DataSource:
        """Another file or folder read the same way (the test split of a CSV set, say)."""
        return DataSource.parse(data, ",".join(self.channels), self.label_column, self.sample_rate_hz,
                                self.unlabelled) if self.kind == "csv" else DataSource.parse(data)

    def load(self, label_names: list[str] | None = None) -> Dataset:
        """The recordings; `label_names` fixes the classes (a test split read with the training split's)."""
        from rnnedge.data.files import load_csv, load_npz

        if self.kind == "hapt":
            from rnnedge.data.hapt import load_hapt

            return load_hapt()
        if self.kind == "npz":
            return load_npz(self.path)
        if self.kind != "csv":
            raise DataError(f"unknown data source kind {self.kind!r}")
        return load_csv(self.path, list(self.channels), float(self.sample_rate_hz or 0), self.label_column,
                        label_names=label_names, unlabelled=self.unlabelled)

    @property
    def description(self) -> str:
        return "bundled HAPT recordings" if self.kind == "hapt" else f"{self.kind}:{self.path}"

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @staticmethod
    def from_dict(d: dict) -> DataSource:
        return DataSource(d["kind"], d.get("path", ""), tuple(d.get("channels", ())), d.get("label_column"),
                          d.get("sample_rate_hz"), d.get("unlabelled"))


def content_sha256(recording: Recording) -> str:
    """Identity of a recording's samples and labels, whatever its file is called."""
    return sha256_bytes(np.ascontiguousarray(recording.signals, np.float32).tobytes()
                        + np.ascontiguousarray(recording.labels, np.int64).tobytes())


@dataclass
class Split:
    """One split: where its recordings are read from and which ones they are. `cut`: for a split in time of one
    recording (time_splits), each piece's name -> (the whole recording's name, first sample, end)."""

    source: DataSource
    recordings: list[Recording] = field(default_factory=list)
    cut: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        def entry(r: Recording) -> dict:
            whole = self.cut.get(r.name)
            cut = {"of": whole[0], "slice": [whole[1], whole[2]]} if whole else {}
            if whole and r.history:
                cut["history"] = True
            return {"name": r.name, "sha256": content_sha256(r), "samples": len(r), **cut}

        return {"source": self.source.to_dict(), "recordings": [entry(r) for r in self.recordings]}


TIME_SPLIT = {"train": 0.7, "val": 0.15, "test": 0.15}  # one recording: the first 70% trains, and so on
MIN_PIECE = 10  # samples each piece of a split in time needs at least


def piece(recording: Recording, a: int, b: int, history: bool = False) -> Recording:
    """Samples a..b-1 of a recording, as a recording of their own; with `history`, samples 0..a-1 come first as
    its history (streamed, never scored)."""
    start = 0 if history else a
    labels = recording.labels[start:b].copy()
    labels[: a - start] = 0
    missing = None if recording.missing is None else recording.missing[start:b]
    return Recording(recording.signals[start:b], labels, recording.subject, f"{recording.name}[{a}:{b}]", missing,
                     a - start)


def time_splits(source: DataSource, recording: Recording, names: tuple[str, ...]) -> dict[str, Split]:
    """One long recording split in time into consecutive pieces (`names` of TIME_SPLIT, in order, their shares
    rescaled to sum to 1): a series that is one file still trains, validates and tests on data it has not seen,
    the later part, as a model deployed on it would meet. The test piece carries the samples before it as history,
    scored from its own first sample, as the deployed model would have streamed them (Airline's forecaster, cold at
    the test piece's start, spent its first months finding the season again: 1.03x persistence's MSE, warm 0.76x).
    Validation starts cold: it checks what the model learned, not what its state remembers of the training months
    (validated warm, 21 months after them, early stopping kept later, overfit epochs: Airline's test 1.21x, Lynx
    0.51x against 0.76x and 0.34x validated cold)."""
    shares = np.array([TIME_SPLIT[n] for n in names])
    ends = np.round(np.cumsum(shares / shares.sum()) * len(recording)).astype(int)
    starts = [0, *ends[:-1].tolist()]
    if min(b - a for a, b in zip(starts, ends, strict=True)) < MIN_PIECE:
        raise DataError(f"{recording.name}: one recording of {len(recording)} samples is too short to split in "
                        f"time into {', '.join(names)} (each needs {MIN_PIECE}); give more samples, or --val with "
                        "other files")
    splits = {}
    for name, a, b in zip(names, starts, ends.tolist(), strict=True):
        part = piece(recording, a, b, history=name == "test")
        splits[name] = Split(source, [part], {part.name: (recording.name, a, b)})
    return splits


def split_record(splits: dict[str, Split]) -> dict:
    """The checkpoint's record of the splits (sources + recording names and hashes)."""
    return {name: split.to_dict() for name, split in splits.items() if split.recordings}


def load_split(record: dict, name: str, label_names: list[str] | None = None) -> Dataset:
    """Read one recorded split again from its source; refuses recordings that changed since training."""
    if name not in record:
        raise DataError(f"the checkpoint records no {name!r} split (has: {', '.join(record) or 'none'})")
    entry = record[name]
    source = DataSource.from_dict(entry["source"])
    dataset = source.load(label_names)
    by_hash = {content_sha256(r): r for r in dataset.recordings}
    by_name = {r.name: r for r in dataset.recordings}

    def found(w: dict) -> Recording | None:
        if "slice" in w and w.get("of") in by_name:  # a piece of a split in time: cut again from its recording
            cut = piece(by_name[w["of"]], *w["slice"], history=w.get("history", False))
            return cut if content_sha256(cut) == w["sha256"] else None
        return by_hash.get(w["sha256"])

    wanted = entry["recordings"]
    recordings = [found(w) for w in wanted]
    missing = [w["name"] for w, r in zip(wanted, recordings, strict=True) if r is None]
    if missing:
        raise DataError(f"{source.description}: {len(missing)} of the {len(wanted)} {name} recordings recorded "
                        f"at training are missing or changed (first: {missing[0]}); pass the held-out data "
                        "explicitly (--data)")
    return Dataset(recordings, dataset.channels, dataset.label_names,
                   dataset.sample_rate_hz, f"{name} split of {source.description}", dict(dataset.meta))


def held_out_split(record: dict) -> str:
    """The split to evaluate an exported model on: test when there is one, else validation."""
    for name in ("test", "val"):
        if name in record:
            return name
    raise DataError("the checkpoint records no held-out recordings (no test or validation split): pass --data")


def make_splits(dataset: Dataset, source: DataSource, val: str | None = None, test: str | None = None,
                stratify: bool = False) -> dict[str, Split]:
    """Train / validation / test for training. A data set may define its own (HAPT: by subject, in
    `meta['subject_splits']`); `val` is another file/folder or comma-separated recording indices (default: every
    fifth recording; `stratify`, for classify: a fifth of each class's series), `test` another file/folder read like
    the training data. One recording alone is split in time (time_splits)."""
    by_subject = dataset.meta.get("subject_splits")
    if by_subject and val is None and test is None:
        return {name: Split(source, dataset.subset(subjects).recordings) for name, subjects in by_subject.items()}
    recordings = list(dataset.recordings)
    splits = {"train": Split(source, recordings)}
    if val is not None and not all(part.strip().isdigit() for part in val.split(",")):
        other = source.like(val)
        splits["val"] = Split(other, other.load(dataset.label_names).recordings)
    elif len(recordings) == 1 and val is None:
        splits = time_splits(source, recordings[0], ("train", "val") if test is not None else SPLITS)
    else:
        if len(recordings) < 2:
            raise DataError("need at least two recordings (one for validation), or --val with other files")
        index = {int(i) for i in val.split(",")} if val else _every_fifth(recordings, stratify)
        if not index <= set(range(len(recordings))):
            raise DataError(f"--val: recording indices must be in 0..{len(recordings) - 1}, got {val}")
        splits["train"] = Split(source, [r for i, r in enumerate(recordings) if i not in index])
        splits["val"] = Split(source, [r for i, r in enumerate(recordings) if i in index])
        if not splits["train"].recordings:
            raise DataError("--val takes every recording: nothing is left to train on")
    if test is not None:
        other = source.like(test)
        splits["test"] = Split(other, other.load(dataset.label_names).recordings)
    return splits


def _every_fifth(recordings: list[Recording], stratify: bool) -> set[int]:
    """Validation indices: every fifth recording; stratified, a fifth of each class's series (by the series'
    last label; at least one of any class with two or more), spread evenly through it."""
    if not stratify:
        return set(range(4, len(recordings), 5)) or {len(recordings) - 1}
    classes: dict[int, list[int]] = {}
    for i, r in enumerate(recordings):
        labelled = r.labels[r.labels > 0]
        classes.setdefault(int(labelled[-1]) if len(labelled) else 0, []).append(i)
    index = set()
    for members in classes.values():
        k = max(1, round(len(members) / 5)) if len(members) >= 2 else 0
        index |= {members[int((j + 0.5) * len(members) / k)] for j in range(k)}
    return index or {len(recordings) - 1}


def recorded_splits(provenance: dict) -> dict:
    """The split record of a checkpoint's provenance ({} when it has none: imported models, old checkpoints of
    users' data). Checkpoints from before splits were recorded name only their source; for the bundled data set
    its own split is rebuilt."""
    data = provenance.get("data")
    if isinstance(data, dict):
        return data.get("splits") or {}
    if isinstance(data, str) and data.startswith("hapt:"):
        source = DataSource("hapt")
        return split_record(make_splits(source.load(), source))
    return {}


def read_like_training(provenance: dict, path: str, channels: list[str], sample_rate_hz: float,
                       labels: list[str], label_column: str | None = None, unlabelled: str | None = None) -> Dataset:
    """Held-out data given by path, read the way the model's training data was (its recorded source: format,
    columns, unlabelled marker), with the model's classes. A model without a recorded source (imported) reads
    CSVs by its own channel names and sample rate, with `label_column` / `unlabelled` as given."""
    data = provenance.get("data")
    recorded = data.get("source") if isinstance(data, dict) else None
    if recorded:
        source = DataSource.from_dict(recorded).like(path)
    elif kind_of(path) == "csv":
        source = DataSource.parse(path, ",".join(channels), label_column, sample_rate_hz, unlabelled)
    else:
        source = DataSource.parse(path)
    if label_column is not None or unlabelled is not None:
        source = DataSource(source.kind, source.path, source.channels, label_column or source.label_column,
                            source.sample_rate_hz, unlabelled if unlabelled is not None else source.unlabelled)
    return source.load([UNLABELLED_NAME, *labels] if labels else None)


def held_out_data(provenance: dict, labels: list[str]) -> Dataset:
    """The held-out split recorded at training (test, else validation), read again with the model's classes."""
    record = recorded_splits(provenance)
    if not record:
        raise DataError("the model records no held-out data (imported, or trained before splits were recorded): "
                        "pass --data")
    split = held_out_split(record)
    return load_split(record, split, [UNLABELLED_NAME, *labels] if labels else None)
