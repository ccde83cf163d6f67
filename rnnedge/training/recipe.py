"""The training recipe sized to the data: what `rnnedge train` uses for every setting the user did not give.

A fixed recipe is a recipe for one data set: the bundled set's (hours of 50 Hz data, ~155 optimizer steps an
epoch) stopped a 50-series set after ~50 steps, having learnt nothing. These rules count in optimizer steps, not
epochs, and follow the training split's size, so a small set trains long enough and a large one as before (on the
bundled set they give exactly its recipe). Printed at the start of training; docs/design.md states them.

  cells       classify: an LSTM and a GRU, each with either init (below), the best on validation kept (ties: the
              earlier of lstm, gru, lstm+slow, gru+slow); else an LSTM. Neither cell wins everywhere: on Trace an
              LSTM never learnt the detail 150 steps before the end (0.67-0.74 over 3 seeds and 3 learning rates)
              that a GRU did (0.97); on BasicMotions the GRU's validation was 0.75
  lanes       tag/forecast: min(16, recordings // 2), at least 1; classify: min(16, series // 5), at least 4
              (a batch of a few series: more steps per epoch on small sets)
  chunk_len   tag/forecast: 250, or the median recording's length when shorter
  layers      2 when the training split has >= 100,000 samples, else 1 (a small set fits one layer better)
  members     4 below 2,000 training samples, 2 below 100,000, else 1 (and 1 for bidirectional models): that
              many models from different seeds, folded into one that computes their mean (ensemble.py). A small
              set's test accuracy swings with the seed (Coffee 0.96 / 0.57 / 1.00 over seeds 0-2), the mean of two
              much less (worst pair 0.96). Four narrowed the tiniest sets further (UnitTest, 384 samples: worst of
              seeds 0-2 0.77 -> 0.91) but not those of 3,000-9,400 samples (BasicMotions' worst 0.975 -> 0.95,
              Covid3MonthDiscrete's 0.66 -> 0.57). It multiplies training time, where training takes seconds to
              minutes, and the deployed weights (tune offers one model; the exported files run each member apart,
              export/folded.member_layers)
  epochs      60, or as many as make MIN_STEPS optimizer steps (at most MAX_EPOCHS)
  patience    15 epochs, or as many as make PATIENCE_STEPS steps
  spread_limit  10: a channel whose std over all training samples is above 10x the median recording's is
              centred on the median recording and scaled by the geometric mean of the two stds
              (Normalization.fit: PLAID 0.47 -> 0.65), every other by all samples; one constant in every training
              sample is centred and not scaled (its int8 weights, folded with a floor std, fell to chance)
  augmentation  given, else the data set's own (the bundled set's rotation and speed), else for a forecast the
              level shift (each training recording moved by up to LEVEL_SHIFT training stds: a trend's later
              levels are ones training never saw; Airline's worst of seeds 0-2 2320 -> 590), else none
              (_augmentation)
  init        classify: chrono (RecurrentModel.remember_for), the kept gates' time scales spread over octaves up to
              the longest training series (memory_span), or (+slow) drawn as published, most units slow; neither
              suits every set (PLAID's needs fast units, PigCVP's slow), so both train; tag and forecast: PyTorch's
  final_fit   classify below 100,000 training samples, with a test split: the kept model's members trained
              again on the training and validation series together, each for the epochs its validated run kept
              (train.final_fit). A fifth of a small set held out is a fifth less to learn from: Covid3MonthDiscrete's
              worst seed 0.6066 -> 0.6230, JapaneseVowels' 0.9595 -> 0.9703, Trace's 0.99 -> 1.00, UnitTest's
              seeds 0.9091 x3 -> 0.9545 / 0.9091 / 0.9545 (BasicMotions' worst 0.975 -> 0.95, its mean of three
              0.983 -> 0.975). The fit is folded beside the validated model (their mean, twice the width) unless
              it scores clearly below it on the series it trained on (then the validated model alone): nothing
              held out judges the fit, and alone its worst seed on an Intel box was Trace 0.96, Coffee 0.54 (both
              members at chance), Covid3MonthDiscrete 0.59; beside the validated model 1.00, 0.96, 0.62. Without
              a test split, validation is what export and evaluate score: it stays out of training
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnedge.data.recording import SPREAD_LIMIT, Dataset, channel_traits, wide_channels
from rnnedge.tasks import classify_series, get_task
from rnnedge.training.config import GATED, SLOW, TrainConfig, variant_name, variant_parts

MIN_STEPS = 3000
PATIENCE_STEPS = 1000
MAX_EPOCHS = 3000
BASE = {"epochs": 60, "patience": 15, "chunk_len": 250, "hidden": 64}
LARGE_SAMPLES = 100_000
TINY_SAMPLES = 2_000
LEVEL_SHIFT = 2.0  # a forecast's training recordings each moved by up to this many training stds
# Each augmentation and the batches that do it: classify's whole series (per_series), or the stateful chunks of tag
# and forecast. One given to a task whose batches do not do it is refused (prepare.prepared), not silently ignored.
SERIES, CHUNKS = "series", "chunks"
AUGMENTS: dict[str, frozenset[str]] = {"rotate_deg": frozenset({CHUNKS}), "speed": frozenset({SERIES, CHUNKS}),
                                       "jitter": frozenset({SERIES}), "shift": frozenset({CHUNKS})}


def unused_augmentations(per_series: bool) -> list[str]:
    """The augmentations a task's batches do not do."""
    batches = SERIES if per_series else CHUNKS
    return [name for name, used_by in AUGMENTS.items() if batches not in used_by]


@dataclass(frozen=True)
class Recipe:
    cells: tuple[str, ...]  # trained in turn, the best on validation kept
    members: int  # models per cell from different seeds, folded into one (their mean)
    lanes: int
    chunk_len: int
    hidden: int
    layers: int
    epochs: int
    patience: int
    steps_per_epoch: int
    spread_limit: float
    augment: dict[str, float]  # TrainConfig's augmentation settings: rotate_deg, speed, jitter
    final_fit: bool  # the kept model trained again on training + validation (train.final_fit)
    why: tuple[str, ...]  # one line per setting: its value and where it came from

    def describe(self) -> str:
        return "recipe: " + "; ".join(self.why)


def size_recipe(train: Dataset, task: str, given: dict[str, Any], window_len: int = 0,
                bidirectional: bool = False, tested: bool = True) -> Recipe:
    """The settings for `train` (the training split) under `task`; a value in `given` (not None) is kept.
    `tested`: the data has a test split (else validation is the held-out data and never trained on)."""
    spec = get_task(task)
    series = len(train.recordings)
    lengths = [len(r) for r in train.recordings]
    samples = sum(lengths)
    why: list[str] = []

    def pick(name: str, rule: Any, reason: str) -> Any:
        value = given.get(name)
        if value is not None:
            why.append(f"{name} {_words(value)} (given)")
            return value if isinstance(value, tuple | float | bool) else int(value)
        why.append(f"{name} {_words(rule)} ({reason})")
        return rule

    if spec.per_series:
        default_cells = (*GATED, *(variant_name(cell, slow=True) for cell in GATED))  # ties: the earlier
        reason = "the best on validation"
    elif task == "forecast":  # the change input kept only when clearly better (train.kept_cell)
        default_cells = ("lstm", variant_name("lstm", change=True))
        reason = "the second only when clearly better on validation"
    else:
        default_cells, reason = ("lstm",), "default"
    cells = pick("cells", default_cells, reason)
    if spec.per_series:
        lanes = pick("lanes", min(16, max(4, series // 5)), f"{series} series")
        chunk_len = int(given.get("chunk_len") or BASE["chunk_len"])  # classify reads whole series
        changing = any(len(np.unique(r.labels[r.labels > 0])) > 1 for r in train.recordings)
        batches = TrainConfig.windows_per_epoch if changing and not window_len else series
        steps = max(1, math.ceil(batches / lanes))
    else:
        lanes = pick("lanes", min(16, max(1, series // 2)), f"{series} recording{'s' * (series != 1)}")
        median = int(np.median(lengths))
        chunk_len = pick("chunk_len", min(BASE["chunk_len"], max(2, median)), f"median recording {median} samples")
        per_lane = samples / max(1, min(lanes, series))
        steps = max(1, math.ceil(per_lane / chunk_len))
    layers = pick("layers", 2 if samples >= LARGE_SAMPLES else 1, f"{samples} training samples")
    folded = 1 if bidirectional else 4 if samples < TINY_SAMPLES else 2 if samples < LARGE_SAMPLES else 1
    members = pick("members", folded, "bidirectional" if bidirectional else
                   f"{f'{folded} seeds folded into one: ' if folded > 1 else ''}{samples} training samples")
    hidden = pick("hidden", BASE["hidden"], "default" if members == 1 else "each member")
    epochs = pick("epochs", min(MAX_EPOCHS, max(BASE["epochs"], math.ceil(MIN_STEPS / steps))),
                  f"~{steps} steps an epoch, at least {MIN_STEPS} steps")
    patience = pick("patience", max(BASE["patience"], math.ceil(PATIENCE_STEPS / steps)),
                    f"at least {PATIENCE_STEPS} steps")
    spread_limit = given.get("spread_limit")
    spread_limit = SPREAD_LIMIT if spread_limit is None else float(spread_limit)
    why.append(_normalization(train, spread_limit, "given" if given.get("spread_limit") is not None else "default"))
    augment = _augmentation(train, given, why, task)
    why.append(_init(memory_span(train, task, window_len), cells))
    final_fit = pick("final_fit", *_final_fit(spec.per_series, samples, tested, task))
    return Recipe(cells, members, lanes, chunk_len, hidden, layers, epochs, patience, steps, spread_limit, augment,
                  final_fit, tuple(why))


def memory_span(train: Dataset, task: str, window_len: int = 0) -> int:
    """The steps a classify model learns back through, its longest training series: the chrono init's T
    (RecurrentModel.remember_for). 0 for tag and forecast (targets at every step), which keep PyTorch's init."""
    if not get_task(task).per_series:
        return 0
    return max((len(s) for s in classify_series(train.recordings, window_len or None, 1)), default=0)


def _init(span: int, cells: tuple[str, ...]) -> str:
    """The recipe's line on the init: chrono up to `span` steps where there is a gate to keep open, in the draws
    `cells` name (RecurrentModel.remember_for)."""
    if not span:
        return "init PyTorch's (targets at every step)"
    slow = [is_slow for cell, _, is_slow in map(variant_parts, cells) if cell in GATED]
    if not slow:
        return "init PyTorch's (no gate to keep open)"
    draws = ["spread over octaves"] * (not all(slow)) + [f"{SLOW}: as published, most units slow"] * any(slow)
    return f"init chrono (gate time scales from 1 to {span - 1} steps, the longest series {span}: {'; '.join(draws)})"


def _final_fit(per_series: bool, samples: int, tested: bool, task: str) -> tuple[bool, str]:
    """Whether the kept model trains again on training + validation, and why."""
    if not per_series:
        return False, task
    if samples >= LARGE_SAMPLES:
        return False, f"{samples} training samples"
    if not tested:
        return False, "no test split: validation stays held out"
    return True, "training + validation series, a small classify set; beside the validated model, twice the width"


def _augmentation(train: Dataset, given: dict[str, Any], why: list[str], task: str) -> dict[str, float]:
    """Each augmentation setting: given, else the data set's own (its meta's augment_NAME: the bundled set's
    rotation and speed), else the task's rule, else 0 (always 0 where the task's batches do not do it); one line
    on it. A forecast's rule is the level shift (LEVEL_SHIFT); no rule turns on noise (jitter 0.03) or stretching
    (speed 0.1): on the benchmark's small classify sets they cost the worst seed (Coffee 0.96 -> 0.54, BasicMotions
    0.975 -> 0.925; docs/design.md)."""
    rules = {"shift": (LEVEL_SHIFT, "a forecast: any level, a trend's included")} if task == "forecast" else {}
    unused, augment, said = unused_augmentations(get_task(task).per_series), {}, []
    for name in AUGMENTS:
        if name in unused:
            augment[name] = 0.0
            continue
        own = train.meta.get(f"augment_{name}")
        for value, source in ((given.get(name), "given"), (own, "the data set's own"), rules.get(name, (0.0, ""))):
            if value is not None:
                augment[name] = float(value)
                if value:
                    said.append(f"{name} {float(value):g} ({source})")
                break
    why.append("augmentation " + (", ".join(said) if said else "none"))
    return augment


def _normalization(train: Dataset, spread_limit: float, source: str) -> str:
    """The recipe's line on normalization: which channels are centred on the median recording, with each one's
    spread."""
    spread, constant = channel_traits(train.recordings)
    wide = wide_channels(spread, spread_limit)
    limit = f"spread limit {spread_limit:g} ({source})"
    names = [name for name, c in zip(train.channels, constant, strict=True) if c]
    flat = f"; constant in every training sample, centred and not scaled: {', '.join(names)}" if names else ""
    if not wide.any():
        finite = spread[np.isfinite(spread)]
        widest = f"channel spread at most {finite.max():.3g}x" if finite.size else "the median recording constant"
        return f"normalization by all samples ({widest}; {limit}){flat}"
    said = ", ".join(f"{name} {value:.3g}x" for name, value, w in zip(train.channels, spread, wide, strict=True) if w)
    return f"normalization nearer the median recording for {said}, by all samples for the rest ({limit}){flat}"


def _words(value: int | bool | tuple[str, ...]) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " or ".join(value) if isinstance(value, tuple) else str(value)
