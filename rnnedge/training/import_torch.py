"""`rnnedge import-torch`: a recurrent model trained elsewhere in plain PyTorch -> an rnnedge Checkpoint.

What is taken: the state_dict of a module holding ONE `nn.LSTM` / `nn.GRU` / `nn.RNN` (any number of stacked
layers, bias=True; bidirectional only for task classify) followed by ONE `nn.Linear` head, under any attribute
names (`lstm.weight_ih_l0`, `encoder.rnn.*`, `fc.weight`, ...). batch_first does not show in a state_dict and
does not matter. The user's forward is assumed to be rnnedge's: `head(rnn(x)[0])` at every step (tag,
forecast), at the last step for classify (bidirectional: the forward direction's last step joined with the
backward direction's first, i.e. `cat(h_n[-2], h_n[-1])`). A state_dict cannot tell `nn.RNN`'s nonlinearity:
it is given (tanh by default). A forecast head is taken to predict the next `horizon` inputs in the units the
model was fed (normalized when a normalization is given), laid out [t+1 channels..., t+2 channels..., ...].

Everything that does not fit (a projection, bias=False, a second recurrent module, layers between the recurrent
module and the head, ...) is refused with a CheckpointError that names the module or key. An imported checkpoint
records no data splits: `rnnedge export` needs held-out data for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from rnnedge.data.recording import Normalization
from rnnedge.errors import CheckpointError, DataError
from rnnedge.tasks import TASKS
from rnnedge.training.checkpoint import FORMAT, Checkpoint
from rnnedge.training.config import ModelConfig

NONLINEARITIES = ("tanh", "relu")
_CELLS = {4: "lstm", 3: "gru", 1: "rnn"}  # gate rows per hidden unit -> cell
_RNN_PARAM = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?")
_FIRST = "weight_ih_l0"
_PICKLED_CLASS = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


@dataclass
class ImportSpec:
    """What a state_dict cannot say: the inputs' names and rate, the task, the labels, the normalization."""

    channels: list[str]
    sample_rate_hz: float
    task: str = "tag"
    labels: list[str] | None = None
    normalization: Normalization | None = None  # None: the model takes raw inputs (mean 0, std 1)
    nonlinearity: str = "tanh"  # nn.RNN only
    horizon: int = 1  # forecast only
    window_len: int | None = None  # classify: the window it was trained on (None: whole series)

    @staticmethod
    def from_dict(values: Mapping, where: str = "spec") -> ImportSpec:
        """From JSON-like values: lists or comma-separated strings for channels and labels, normalization
        "none" or {"mean": [...], "std": [...]}. Unknown keys are refused."""
        known = [f.name for f in fields(ImportSpec)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DataError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
        missing = [k for k in ("channels", "sample_rate_hz") if values.get(k) is None]
        if missing:
            raise DataError(f"{where}: {' and '.join(missing)} must be given")
        kwargs = {k: v for k, v in values.items() if v is not None}
        kwargs["channels"] = _names(values["channels"], "channels", where)
        if values.get("labels") is not None:
            kwargs["labels"] = _names(values["labels"], "labels", where)
        if values.get("normalization") is not None:
            kwargs["normalization"] = _normalization(values["normalization"], where)
        for key, kind in (("sample_rate_hz", (int, float)), ("horizon", int), ("window_len", int), ("task", str),
                          ("nonlinearity", str)):
            if key in kwargs and (not isinstance(kwargs[key], kind) or isinstance(kwargs[key], bool)):
                raise DataError(f"{where}: {key} must be a {'number' if key == 'sample_rate_hz' else kind.__name__}, "
                                f"got {kwargs[key]!r}")
        return ImportSpec(**kwargs)


def read_json(path: str | Path) -> dict:
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


def _names(value, key: str, where: str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise DataError(f"{where}: {key} must be a list of names or a comma-separated string, got {value!r}")
    return [v.strip() for v in items]


def _normalization(value, where: str) -> Normalization | None:
    if value == "none":
        return None
    if not isinstance(value, Mapping) or set(value) != {"mean", "std"}:
        raise DataError(f"{where}: normalization must be \"none\" or {{\"mean\": [...], \"std\": [...]}}")
    try:
        return Normalization.from_dict(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: normalization mean and std must be lists of numbers") from None


def load_normalization(path: str | Path) -> Normalization | None:
    """A JSON file {"mean": [...], "std": [...]} (per channel, in input order), or the word "none"."""
    return None if str(path) == "none" else _normalization(read_json(path), str(path))


# --- the state_dict -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """The recurrent module and head found in a state_dict, and their shapes."""

    rnn: str  # module name in the user's model ("" at top level)
    head: str
    cell: str  # lstm | gru | rnn
    input_size: int
    hidden_size: int
    num_layers: int
    directions: int
    output_size: int


def _module(prefix: str) -> str:
    return prefix.removesuffix(".") or "(top level)"


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def _find_rnn(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, dict[tuple[str, int, bool], torch.Tensor]]:
    """The one recurrent module's key prefix and its parameters by (kind, layer, reverse)."""
    prefixes = sorted({k.removesuffix(_FIRST) for k in state_dict
                       if k == _FIRST or k.endswith("." + _FIRST)})
    if not prefixes:
        raise CheckpointError(f"no recurrent module: no key ends in {_FIRST} (expected the state_dict of a model "
                              "with one nn.LSTM, nn.GRU or nn.RNN and an nn.Linear head)")
    if len(prefixes) > 1:
        raise CheckpointError(f"more than one recurrent module ({', '.join(map(_module, prefixes))}): rnnedge "
                              "takes one (stack layers in it with num_layers)")
    prefix = prefixes[0]
    params = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        match = _RNN_PARAM.fullmatch(key[len(prefix):])
        if match is None:
            if prefix:  # at top level the other keys belong to other modules
                raise CheckpointError(f"recurrent module {_module(prefix)}: unexpected key {key} (not an "
                                      "nn.LSTM/nn.GRU/nn.RNN parameter)")
            continue
        kind, layer, reverse = match.group(1), int(match.group(2)), match.group(3) is not None
        if kind == "weight_hr":
            raise CheckpointError(f"recurrent module {_module(prefix)}: an LSTM with proj_size ({key}) is not "
                                  "supported")
        params[(kind, layer, reverse)] = tensor
    return prefix, params


def _rnn_shape(prefix: str, params: dict) -> tuple[str, int, int, int, int]:
    """(cell, input size, hidden size, layers, directions); every parameter's shape checked."""
    name = _module(prefix)
    w_ih, w_hh = params[("weight_ih", 0, False)], params[("weight_hh", 0, False)]
    if w_ih.dim() != 2 or w_hh.dim() != 2:
        raise CheckpointError(f"recurrent module {name}: {prefix}weight_ih_l0 / weight_hh_l0 are not matrices")
    hidden = w_hh.shape[1]
    gates, rest = divmod(w_hh.shape[0], hidden) if hidden else (0, 1)
    if rest or gates not in _CELLS:
        raise CheckpointError(f"recurrent module {name}: {prefix}weight_hh_l0 is {_shape(w_hh)}; expected 4H x H "
                              "(LSTM), 3H x H (GRU) or H x H (RNN)")
    layers = 1 + max(layer for _, layer, _ in params)
    directions = 2 if any(reverse for _, _, reverse in params) else 1
    inputs = w_ih.shape[1]
    rows = gates * hidden
    for layer in range(layers):
        for reverse in (False, True)[:directions]:
            layer_in = inputs if layer == 0 else hidden * directions
            expected = {"weight_ih": (rows, layer_in), "weight_hh": (rows, hidden), "bias_ih": (rows,),
                        "bias_hh": (rows,)}
            for kind, shape in expected.items():
                key = f"{prefix}{kind}_l{layer}{'_reverse' if reverse else ''}"
                tensor = params.get((kind, layer, reverse))
                if tensor is None:
                    why = ": bias=False is not supported (rnnedge cells have biases)" if "bias" in kind else ""
                    raise CheckpointError(f"recurrent module {name}: {key} is missing{why}")
                if tuple(tensor.shape) != shape:
                    raise CheckpointError(f"recurrent module {name}: {key} is {_shape(tensor)}, expected "
                                          f"{'x'.join(map(str, shape))}")
    return _CELLS[gates], inputs, hidden, layers, directions


def _find_head(state_dict: Mapping[str, torch.Tensor], rnn_prefix: str, features: int) -> str:
    """The one nn.Linear left besides the recurrent module; anything else there is refused by name."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        if key.startswith(rnn_prefix) and _RNN_PARAM.fullmatch(key[len(rnn_prefix):]):
            continue
        module, _, param = key.rpartition(".")
        modules.setdefault(module, {})[param] = tensor
    rnn = _module(rnn_prefix)
    for module, params in modules.items():
        weight = params.get("weight")
        if set(params) == {"weight"} and weight is not None and weight.dim() == 2:
            raise CheckpointError(f"{module}: an nn.Linear without bias ({module}.bias missing) is not supported")
    linear = {m: p for m, p in modules.items() if set(p) == {"weight", "bias"} and p["weight"].dim() == 2
              and p["bias"].shape == p["weight"].shape[:1]}
    extra = [f"{m or '(top level)'} ({', '.join(f'{k} {_shape(v)}' for k, v in p.items())})"
             for m, p in modules.items() if m not in linear]
    if len(linear) > 1:
        extra = [f"{m} (Linear {p['weight'].shape[1]}->{p['weight'].shape[0]})" for m, p in linear.items()] + extra
    if extra:
        raise CheckpointError(f"layers besides recurrent module {rnn} and one nn.Linear head: {'; '.join(extra)} "
                              "(rnnedge models are one recurrent module followed by one nn.Linear)")
    if not linear:
        raise CheckpointError(f"no nn.Linear head after recurrent module {rnn} (expected NAME.weight, 2-D, and "
                              "NAME.bias)")
    head, params = next(iter(linear.items()))
    if params["weight"].shape[1] != features:
        raise CheckpointError(f"head {head} takes {params['weight'].shape[1]} inputs, but recurrent module {rnn} "
                              f"gives {features} per step")
    return head


def _inspect(state_dict: Mapping[str, torch.Tensor]) -> tuple[_Found, dict[str, torch.Tensor]]:
    """What the state_dict holds, and its tensors under rnnedge's names (rnn.*, head.*) as float32."""
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{key}: not a tensor (got {type(value).__name__})")
    prefix, params = _find_rnn(state_dict)
    cell, inputs, hidden, layers, directions = _rnn_shape(prefix, params)
    head = _find_head(state_dict, prefix, hidden * directions)
    for key in [f"{head}.weight", f"{head}.bias", *(k for k in state_dict if k.startswith(prefix))]:
        if not state_dict[key].is_floating_point():
            raise CheckpointError(f"{key}: not a floating-point tensor ({state_dict[key].dtype})")
    weights = {f"rnn.{kind}_l{layer}{'_reverse' if reverse else ''}": tensor
               for (kind, layer, reverse), tensor in params.items()}
    weights |= {f"head.{p}": state_dict[f"{head}.{p}"] for p in ("weight", "bias")}
    weights = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in weights.items()}
    found = _Found(prefix.removesuffix("."), head, cell, inputs, hidden, layers, directions,
                   state_dict[f"{head}.weight"].shape[0])
    return found, weights


def import_state_dict(state_dict: Mapping[str, torch.Tensor], *, channels: list[str], sample_rate_hz: float,
                      task: str = "tag", labels: list[str] | None = None,
                      normalization: Normalization | None = None, nonlinearity: str = "tanh", horizon: int = 1,
                      window_len: int | None = None, source: str = "") -> Checkpoint:
    """A plain-torch state_dict (recurrent module + nn.Linear head) -> a Checkpoint that `rnnedge export` takes.
    Raises CheckpointError naming the module or key that does not fit."""
    found, weights = _inspect(state_dict)
    rnn, head = _module(found.rnn + "."), found.head
    channels = [c.strip() for c in channels]
    if not all(channels) or len(set(channels)) != len(channels):
        raise CheckpointError(f"channel names must be non-empty and distinct, got {','.join(channels)!r}")
    if len(channels) != found.input_size:
        raise CheckpointError(f"{len(channels)} channel(s) given ({', '.join(channels)}), but recurrent module "
                              f"{rnn} takes {found.input_size} inputs")
    if not (isinstance(sample_rate_hz, (int, float)) and math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise CheckpointError(f"sample rate must be a positive number of Hz, got {sample_rate_hz!r}")
    if task not in TASKS:
        raise CheckpointError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if found.directions == 2 and not TASKS[task].per_series:
        raise CheckpointError(f"recurrent module {rnn} is bidirectional: only task classify takes it (a {task} "
                              "model streams, and a stream cannot see the future)")
    if nonlinearity not in NONLINEARITIES:
        raise CheckpointError(f"nonlinearity must be tanh or relu, got {nonlinearity!r}")
    if found.cell != "rnn" and nonlinearity != "tanh":
        raise CheckpointError(f"nonlinearity {nonlinearity} is for nn.RNN, but recurrent module {rnn} is a "
                              f"{found.cell.upper()}")
    if window_len is not None and (not TASKS[task].per_series or window_len < 1):
        raise CheckpointError(f"window length {window_len}: only a classify model takes one (>= 1)")
    if not TASKS[task].classes:
        need = TASKS[task].output_size(0, len(channels), horizon)
        if found.output_size != need:
            raise CheckpointError(f"head {head} gives {found.output_size} outputs; a forecast of {len(channels)} "
                                  f"channel(s) x horizon {horizon} needs {need}")
        if labels:
            raise CheckpointError("a forecast model has no labels")
        labels = []
    elif labels is None:
        labels = [f"class{i}" for i in range(found.output_size)]
    elif len(labels) != found.output_size:
        raise CheckpointError(f"{len(labels)} label(s) given ({', '.join(labels)}), but head {head} gives "
                              f"{found.output_size} outputs")
    norm = normalization or Normalization(np.zeros(len(channels), np.float32), np.ones(len(channels), np.float32))
    if norm.mean.shape != (len(channels),) or norm.std.shape != (len(channels),):
        raise CheckpointError(f"normalization has {norm.mean.size} mean / {norm.std.size} std values for "
                              f"{len(channels)} channels")
    if not (np.isfinite(norm.mean).all() and np.isfinite(norm.std).all() and (norm.std > 0).all()):
        raise CheckpointError("normalization mean must be finite and std finite and positive")
    cell = f"rnn_{nonlinearity}" if found.cell == "rnn" else found.cell
    try:
        config = ModelConfig(cell=cell, input_size=found.input_size, hidden_size=found.hidden_size,
                             num_layers=found.num_layers, output_size=found.output_size, dropout=0.0,
                             bidirectional=found.directions == 2, task=task, horizon=horizon)
    except ValueError as exc:
        raise CheckpointError(f"recurrent module {rnn}: {exc}") from None
    provenance = {"imported": {"file": source or None, "sha256": None, "rnn": found.rnn, "head": head},
                  "data": None}
    if window_len is not None:  # where export looks for the classify window (as for rnnedge-trained models)
        provenance["train_config"] = {"window_len": window_len}
    checkpoint = Checkpoint(config, weights, norm, channels, list(labels), float(sample_rate_hz), provenance)
    checkpoint.build_model()  # the shapes were checked above; this is the same check export makes
    return checkpoint


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A file written by `torch.save(model.state_dict())` (or a dict holding exactly one state_dict, as training
    scripts often save beside the optimizer), loaded without running pickled code."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{file}: no such file")
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _PICKLED_CLASS.search(str(exc))  # a torch file whose pickle names a class: a whole object
        if found is None:
            raise CheckpointError(f"{file}: not a file written by torch.save (unreadable as weights only)") from None
        raise CheckpointError(f"{file}: holds a pickled {found.group(1)} (a whole module?) and is refused: save "
                              "model.state_dict(), not the module") from None
    except Exception as exc:  # torch.load raises many kinds on a file that is not its own
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{file}: not a file written by torch.save ({why})") from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{file}: holds a {type(loaded).__name__}, not a state_dict: save model.state_dict()")
    if loaded.get("format") == FORMAT:
        raise CheckpointError(f"{file}: already an rnnedge checkpoint: pass it to rnnedge export")
    if all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded)
    nested = [k for k, v in loaded.items()
              if isinstance(v, Mapping) and v and all(isinstance(t, torch.Tensor) for t in v.values())]
    if len(nested) != 1:
        raise CheckpointError(f"{file}: a dict of {', '.join(map(str, list(loaded)[:6]))}, not a state_dict: save "
                              "model.state_dict()")
    return dict(loaded[nested[0]])


def import_file(path: str | Path, spec: ImportSpec) -> Checkpoint:
    """`import_state_dict` on a saved state_dict; the provenance records the file and its sha256."""
    state_dict = load_state_dict(path)
    checkpoint = import_state_dict(state_dict, channels=spec.channels, sample_rate_hz=spec.sample_rate_hz,
                                   task=spec.task, labels=spec.labels, normalization=spec.normalization,
                                   nonlinearity=spec.nonlinearity, horizon=spec.horizon,
                                   window_len=spec.window_len, source=str(path))
    checkpoint.provenance["imported"]["sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return checkpoint
