"""From the command line's words to what training needs: the data loaded and split, the recipe sized to it (the
settings given kept), the model shaped. Shared by `rnnedge train` and `rnnedge tune`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnedge.data.recording import Dataset
from rnnedge.data.source import DataSource, make_splits, split_record
from rnnedge.errors import RnnedgeError
from rnnedge.tasks import TASKS, get_task
from rnnedge.training.batches import vector_groups
from rnnedge.training.config import ModelConfig, TrainConfig, with_variant
from rnnedge.training.recipe import Recipe, size_recipe, unused_augmentations


@dataclass
class Run:
    """What training needs from the command line's data and model words."""

    part: dict  # split name -> Dataset
    record: dict  # the checkpoint's data record (source and splits)
    recipe: Recipe
    model: ModelConfig

    def train_config(self, **given: Any) -> TrainConfig:
        """The recipe's settings (its augmentation where `given` leaves it None), then `given`."""
        recipe = self.recipe
        given |= {name: value for name, value in recipe.augment.items() if given.get(name) is None}
        return TrainConfig(**{"epochs": recipe.epochs, "chunk_len": recipe.chunk_len, "batch_size": recipe.lanes,
                              "patience": recipe.patience, "spread_limit": recipe.spread_limit} | given)


def prepared(data: str, val: str | None, test: str | None, channels: str | None, label_column: str | None,
              sample_rate: float | None, unlabelled: str | None, cell: str | None, task: str, bidirectional: bool,
              horizon: int, dropout: float, given: dict, window_len: int, residual: bool = True) -> Run:
    """Load the data, make its splits, size the recipe (given settings kept) and shape the model (the recipe's
    first cell unless `cell` is given; a forecast predicts changes from the latest value unless `residual` is
    False)."""
    spec = get_task(task)
    for name in unused_augmentations(spec.per_series):
        if given.get(name):
            users = [other for other, t in TASKS.items() if name not in unused_augmentations(t.per_series)]
            raise RnnedgeError(f"--{name.replace('_', '-')}: {task} training does not use it (it is for "
                               f"{' and '.join(users)})")
    source = DataSource.parse(data, channels, label_column, sample_rate, unlabelled)
    dataset = source.load()
    if given.get("rotate_deg") and not vector_groups(dataset.channels):
        raise RnnedgeError(f"--rotate-deg: no 3-axis sensor among the channels ({', '.join(dataset.channels)}) to "
                           "rotate: it rotates each channel triple named NAME-x, NAME-y, NAME-z")
    splits = make_splits(dataset, source, val, test, stratify=spec.per_series)
    classes = len(dataset.label_names) - 1
    if spec.classes and classes < 2:
        raise RnnedgeError(f"{source.description}: {classes} class(es) found; a {task} model needs at least 2 "
                           "(is --label-column right?)")
    part = {name: _dataset(dataset, split.recordings) for name, split in splits.items()}
    if spec.classes:  # e.g. one series a class: the validation split took one class's only one
        trained = {int(c) for r in part["train"].recordings for c in np.unique(r.labels[r.labels > 0])}
        if len(trained) < 2:
            raise RnnedgeError(f"{source.description}: the training split holds {len(trained)} class(es) of "
                               f"{classes} after validation took its share; give each class at least two series, or "
                               "--val other files")
    recipe = size_recipe(part["train"], task, given | {"cells": (cell,) if cell else None}, window_len, bidirectional,
                         tested="test" in part)
    if recipe.final_fit and "test" not in part:
        raise RnnedgeError("--final-fit trains on the validation split, which export and evaluate score when there "
                           "is no test split: give --test (or a data set with its own)")
    if bidirectional and recipe.members > 1:
        raise RnnedgeError("--members: bidirectional models do not fold into one (their layers interleave the two "
                           "directions); train one with --members 1")
    try:
        shape = ModelConfig(input_size=len(dataset.channels), hidden_size=recipe.hidden, num_layers=recipe.layers,
                            output_size=spec.output_size(classes, len(dataset.channels), horizon), dropout=dropout,
                            bidirectional=bidirectional, task=task, horizon=horizon,
                            residual=residual and task == "forecast")
        model = with_variant(shape, recipe.cells[0])
    except ValueError as exc:
        raise RnnedgeError(str(exc)) from None
    return Run(part, {"source": source.to_dict(), "splits": split_record(splits)}, recipe, model)


def _dataset(dataset: Dataset, recordings: list) -> Dataset:
    return Dataset(recordings, dataset.channels, dataset.label_names, dataset.sample_rate_hz, dataset.source,
                   dict(dataset.meta))
