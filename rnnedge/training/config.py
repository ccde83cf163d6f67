"""Configuration dataclasses for the model family and for training (plain data: saved in checkpoints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from rnnedge.data.recording import SPREAD_LIMIT
from rnnedge.tasks import TASKS

Cell = Literal["rnn_tanh", "rnn_relu", "lstm", "gru"]
CELLS: tuple[str, ...] = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GATED: tuple[str, ...] = ("lstm", "gru")  # the cells with a gate that keeps state (RecurrentModel.remember_for)
CHANGE = "+change"  # a forecast's cell fed the change since the last sample beside the level (ModelConfig.variant)
SLOW = "+slow"  # a classify model's gated cell started with most units slow (ModelConfig.slow_init)


@dataclass
class ModelConfig:
    cell: Cell = "lstm"
    input_size: int = 6
    hidden_size: int = 64
    num_layers: int = 2
    output_size: int = 12  # classes for tag/classify; input_size * horizon for forecast
    dropout: float = 0.1  # between stacked layers (ignored with one layer)
    bidirectional: bool = False  # window tasks only: a streaming model cannot see the future
    task: str = "tag"  # a key of rnnedge.tasks.TASKS
    horizon: int = 1  # forecast: values predicted per step
    residual: bool = False  # forecast: each output is the latest input plus the head's change (0: persistence)
    change_input: bool = False  # forecast: the first layer also sees each channel's change since the last sample
    # (the state then carries that sample: `previous_size`)
    slow_init: bool = False  # classify, a gated cell: the chrono init as published, time scales uniform up to the
    # longest series (most units slow), instead of spread evenly over octaves (RecurrentModel.remember_for)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not 1 <= self.num_layers <= 4:
            raise ValueError(f"num_layers must be 1-4, got {self.num_layers}")
        if self.hidden_size < 1 or self.input_size < 1 or self.output_size < 1:
            raise ValueError("input_size, hidden_size and output_size must be positive")
        if self.bidirectional and not TASKS[self.task].per_series:
            raise ValueError(f"bidirectional models need the future: use them for classify, not {self.task!r}")
        if self.residual and self.task != "forecast":
            raise ValueError(f"residual outputs add the latest input to a forecast, not to {self.task!r} outputs")
        if self.change_input and self.task != "forecast":
            raise ValueError(f"the change input is a forecast's, not a {self.task!r} model's")
        if self.slow_init and (self.cell not in GATED or not TASKS[self.task].per_series):
            raise ValueError(f"the slow init keeps a classify model's gates open, not a {self.task!r} {self.cell}'s")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_tensors(self) -> tuple[str, ...]:
        """The recurrent state's parts, in the order they are packed into the one flat state vector."""
        return ("h", "c") if self.cell == "lstm" else ("h",)

    @property
    def previous_size(self) -> int:
        """State after the recurrent parts for `change_input`: the last sample (normalized), then per channel 1
        once a sample was seen (a fresh state's first change is 0, not the level)."""
        return 2 * self.input_size if self.change_input else 0

    @property
    def state_size(self) -> int:
        """Length of the flat per-stream state vector: parts x layers x directions x hidden (+ previous_size)."""
        return len(self.state_tensors) * self.num_layers * self.directions * self.hidden_size + self.previous_size

    @property
    def state_parts(self) -> tuple[slice, slice, slice]:
        """Where the flat state holds the recurrent parts, the last sample and the seen flags (the last two empty
        without the change input): torch, the ONNX graph and the TFLite stream slice it alike."""
        recurrent = self.state_size - self.previous_size
        last = recurrent + self.previous_size // 2
        return slice(0, recurrent), slice(recurrent, last), slice(last, self.state_size)

    @property
    def variant(self) -> str:
        """The cell's name as the recipe and tune name a model: the cell, + CHANGE with the change input, + SLOW with
        the slow init."""
        return variant_name(self.cell, self.change_input, self.slow_init)

    @property
    def streamable(self) -> bool:
        return not self.bidirectional

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def with_variant(model: ModelConfig, variant: str) -> ModelConfig:
    """`model` as the recipe's `variant` names it: a cell, + CHANGE, + SLOW (`ModelConfig.variant`)."""
    cell, change, slow = variant_parts(variant)
    return replace(model, cell=cell, change_input=change, slow_init=slow)


def variant_name(cell: str, change: bool = False, slow: bool = False) -> str:
    """The variant `variant_parts` reads back."""
    return cell + (CHANGE if change else "") + (SLOW if slow else "")


def variant_parts(variant: str) -> tuple[str, bool, bool]:
    """A variant's cell, whether it has the change input, and whether the slow init."""
    rest = variant.removesuffix(SLOW)
    cell = rest.removesuffix(CHANGE)
    return cell, cell != rest, rest != variant


@dataclass
class TrainConfig:
    epochs: int = 60  # with the cosine schedule; the bundled data's validation accuracy still climbs past 40
    chunk_len: int = 250  # truncated-BPTT length in samples (5 s at 50 Hz)
    batch_size: int = 16  # parallel lanes (recordings) for tag/forecast, windows for classify
    window_len: int = 0  # classify: last samples of each series used (0 = whole series; windows of 128 when
    # labels change within recordings)
    windows_per_epoch: int = 4096  # classify on recordings whose label changes: random windows per epoch
    lr: float = 3e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    patience: int = 15  # early stopping: epochs without improvement (validation swings +-0.1 between epochs)
    spread_limit: float = SPREAD_LIMIT  # a channel whose std over all samples is above this many times the median
    # recording's is centred on the median recording and scaled nearer it (Normalization.fit; 0 = never)
    class_weight_power: float = 0.5  # weight = (1 / frequency) ** power, rare classes count more
    rotate_deg: float = 0.0  # augmentation: random rotation of 3-axis sensors about x (0 = off)
    carry_state: bool = True  # tag/forecast: keep each lane's state across the recordings packed into it (one
    # long stream, as a monitor runs all night) instead of zeroing it at each recording's start: a model trained
    # only on minutes-old states from zero drifts (|c| in the thousands) over hours of streaming
    state_penalty: float = 1e-3  # weight of mean(state^2) at each chunk's end in the loss: keeps the state bounded
    average_epochs: float = 1.0  # the weights validated and kept are a moving average over about this many
    # epochs of optimizer steps (train.WeightAverage; 0 = the last step's weights)
    speed: float = 0.0  # augmentation: each training recording (classify: series) played up to (1 + speed) times
    # faster or slower (log-uniform; 0 = off)
    jitter: float = 0.0  # classify augmentation: Gaussian noise of this std (normalized units) on every sample
    shift: float = 0.0  # tag/forecast augmentation: each recording's level moved by a random offset up to this
    # (normalized units; 0 = off): a forecast's residual head then learns changes that hold at any level
    seed: int = 0
    threads: int = 1  # torch intra-op threads (0 = torch's default): small recurrent models train fastest on one,
    # and torch's default on a busy 2-core machine was measured 20-50x slower per epoch
    max_minutes: float = 0.0  # wall-clock budget; 0 = none

    def to_dict(self) -> dict:
        return asdict(self)
