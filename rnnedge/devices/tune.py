"""`rnnedge tune`: a small search over the model (cell, size, layers), chunk length and learning rate, within a time
budget and a device budget, scored on the validation split only; the best model that fits is kept.

Candidates start from the recipe sized to the data (recipe.py): its models first, each with all the time left, as
`rnnedge train` trains them (a classifier: an LSTM and a GRU; on a small set each the recipe's members folded into
one), so the search keeps nothing worse on validation than the defaults do (compared as train compares cells:
`ranked`); then one change each from the recipe's pick, the cell it kept (one model instead of the members' fold
among them; normalization by all samples where the recipe moved a channel nearer its median recording; on PLAID,
where the GRU learned and the LSTM did not, varying the LSTM tried nothing useful), cheapest first,
so a short budget still tries the most likely ones, each with the time left shared among those not yet tried
(train's `max_minutes`, split among a candidate's members). A candidate whose int8 weights or state do not fit the
device, or whose step would take more than half the sample period on its core, is not trained (its footprint and
step are computed from the shape the device runs: `footprint`). Every result is
written to tune.json as it comes, so a stopped search resumes where it stopped (the time already spent counts
against the budget). Given a finished `rnnedge train` run of the recipe on the same data (`--trained`), its models
stand for the recipe's, checked to be them (`recipe_model`), and the whole budget goes to the variations: on a set
whose default training takes longer than the budget (PLAID: 24 minutes) the search otherwise keeps a recipe's model
cut short; where the recipe fits its kept model again on training + validation (`final_fit`), that is the model
taken, compared by its validated score. A variation replaces the recipe's own pick only when clearly better
(`clearly_better`). Where the recipe fits its kept model again, the pick is fitted again too, after the search and
within its budget (each member for the epochs its validated run kept: seconds to minutes on the sets the rule covers),
unless `rnnedge train` did so already: without it, a search run alone kept the recipe's model as validated, not as
`rnnedge train` leaves it. That fit comes out of the budget (`Reserve`): a search with 10 minutes ends in about 10,
where the fit after it took Trace's to 16. The winner's checkpoint is copied to model.pt: export it like any other
(`rnnedge export`, `rnnedge mcu` checks the real fit).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rnnedge.atomic import write_text_atomic
from rnnedge.data.recording import Dataset, channel_traits, wide_channels
from rnnedge.devices.mcu import McuProfile, step_instructions
from rnnedge.errors import RnnedgeError
from rnnedge.tasks import Task, get_task, shown
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.config import ModelConfig, TrainConfig, variant_name, variant_parts, with_variant
from rnnedge.training.ensemble import GATES, member_seeds, runs_apart
from rnnedge.training.scoring import clearly_better, scored_count
from rnnedge.training.train import (
    TrainResult,
    cell_folder,
    final_fit,
    final_kept,
    final_width,
    guess_loss,
    kept_cell,
    ranked,
    refit_seed,
    train_model,
)


@dataclass(frozen=True)
class Candidate:
    cell: str
    hidden: int
    layers: int
    lr: float
    chunk_len: int
    residual: bool | None = None  # forecast: predict the change from the latest value (True) or the values
    members: int = 1  # models from different seeds folded into one (training/ensemble.py)
    spread_limit: float | None = None  # normalization (Normalization.fit): None = the recipe's, 0 = by all samples

    @property
    def name(self) -> str:
        values = "-values" if self.residual is False else ""
        folded = f"-ens{self.members}" if self.members > 1 else ""
        scale = "-scaleall" if self.spread_limit == 0 else ""
        return (f"{self.cell}-{self.layers}x{self.hidden}-lr{self.lr:g}-chunk{self.chunk_len}{values}{folded}"
                f"{scale}")

    def settings(self, config: TrainConfig, max_minutes: float = 0.0) -> TrainConfig:
        """`config` with this candidate's learning rate, chunk length and normalization, and a time limit."""
        return replace(config, lr=self.lr, chunk_len=self.chunk_len, max_minutes=max_minutes,
                       spread_limit=config.spread_limit if self.spread_limit is None else self.spread_limit)

    def shape(self, model: ModelConfig) -> ModelConfig:
        """`model` with this candidate's cell, size, layers and (forecast) outputs: one member's shape."""
        return replace(with_variant(model, self.cell), hidden_size=self.hidden, num_layers=self.layers,
                       residual=model.residual if self.residual is None else self.residual)

    def deployed(self, model: ModelConfig, final: bool = False) -> ModelConfig:
        """The shape the device runs: the members folded side by side; `final`, the final fit's members beside the
        validated ones (train.final_fit; a bidirectional stack is not folded)."""
        kept = final_kept(model) if final else ""
        return replace(self.shape(model), hidden_size=final_width(self.hidden * self.members, kept))

    def blocks(self, model: ModelConfig, final: bool = False) -> int:
        """How many models `deployed` folds side by side (footprint's blocks)."""
        return final_width(self.members, final_kept(model) if final else "")


@dataclass(frozen=True)
class Reserve:
    """The part of the budget kept for the final fit after the search (`tune`'s `final`): the pick's members trained
    again on training + validation, `ratio` times the samples, for the epochs their validated runs kept. Before
    each candidate the longest fit a candidate the search could pick as it stands would need (`contenders`) is set
    aside, and the rest shared as if the fit of the one about to train were `ratio` more candidates: were its last
    epoch kept, its fit takes `ratio` times its own minutes, and so the last candidate and its fit together end
    within the budget."""

    ratio: float  # (training + validation samples) / training samples; 0: no final fit, nothing kept aside

    def available(self, left: float, rows: list[dict]) -> float:
        """The search's minutes of the `left`, the longest fit one of `rows` (`contenders`) would need set aside."""
        return max(0.0, left - max((row.get("fit_minutes", 0.0) for row in rows), default=0.0))

    def share(self, available: float, untried: int) -> float:
        """Minutes for the next candidate, `untried` (it included) sharing the `available` ones."""
        return available / (untried + self.ratio)

    def minutes(self, provenance: dict, metrics: Path) -> float:
        """A final fit's minutes estimated from the validated run (its checkpoint's `provenance`, its metrics.json):
        each member's minutes to its kept epoch, times `ratio`; 0 where it is fitted already."""
        if not self.ratio or "final_fit" in provenance or not metrics.is_file():
            return 0.0
        history = json.loads(metrics.read_text())
        members = provenance.get("members") or [{"seed": None, "best_epoch": provenance.get("best_epoch")}]
        runs = [(history["members"][f"seed {m['seed']}"] if m["seed"] is not None else history, m["best_epoch"])
                for m in members]
        seconds = sum(rows[epoch - 1]["elapsed_s"] for rows, epoch in runs if epoch)
        return round(self.ratio * seconds / 60, 2)


def candidates(base: Candidate, per_series: bool, cells: tuple[str, ...] = ("lstm",),
               rescaled: bool = False) -> list[Candidate]:
    """The recipe's models (`base` in each of the recipe's cells: what `rnnedge train` chooses among), then one
    change at a time from `base` (the recipe's pick, once known; duplicates dropped), smallest first. `rescaled`:
    the recipe normalized some channel nearer its median recording (Normalization.fit), so normalizing by all
    samples is a change too."""
    recipe = [replace(base, cell=cell) for cell in cells]
    cell, change, slow = variant_parts(base.cell)
    # only the cell, input and sizes count here: a config whose task takes the variant (the init changes no size)
    sizes = ModelConfig(task="classify" if slow else "forecast")
    other_cell = variant_name("lstm" if cell == "gru" else "gru", change, slow)  # its input and init kept
    other_layers = 1 if base.layers > 1 else 2
    changes = [replace(base, cell=other_cell), replace(base, hidden=max(8, base.hidden // 2)),
               replace(base, layers=other_layers), replace(base, lr=base.lr / 3),
               replace(base, hidden=base.hidden * 2)]
    if base.members > 1:  # one model: half the device's work
        changes.append(replace(base, members=1))
    if not per_series:  # classify reads whole series: no chunks
        changes += [replace(base, chunk_len=max(2, base.chunk_len // 2)), replace(base, chunk_len=base.chunk_len * 2)]
    if base.residual is not None:  # a forecast: the other kind of output (a trend favours changes, cycles values)
        changes.append(replace(base, residual=not base.residual))
    if rescaled:  # where the magnitude is the class (Covid3MonthDiscrete), the large recordings' detail may count
        changes.append(replace(base, spread_limit=0.0))
    varied = [c for c in dict.fromkeys(changes) if c not in recipe]
    size = {c: footprint(replace(c, residual=None).deployed(sizes))["params"] for c in varied}
    return recipe + sorted(varied, key=size.__getitem__)


def footprint(config: ModelConfig, blocks: int = 1) -> dict:
    """Parameters; the int8 weights the generated C stores and their bytes (one a weight, 4 a bias); state bytes
    (int16, in and out); and the instructions of a step on a Cortex-M (devices/mcu.step_instructions) of a model.
    `blocks`: members folded into it (Candidate.blocks): every exported file runs members large enough apart
    (training/ensemble.runs_apart), each layer's weights from a member's state to its own gates alone, the zeros
    between members left out; the first layer's input weights and the head are dense."""
    gates = GATES[config.cell] * config.hidden_size
    if not runs_apart(GATES[config.cell], config.hidden_size, blocks):
        blocks = 1  # small members stay folded, zeros and all
    weights = stored = biases = 0
    inputs = config.input_size * (2 if config.change_input else 1)  # the change input: the sample before too
    for layer in range(config.num_layers):
        weights += config.directions * gates * (inputs + config.hidden_size)
        stored += config.directions * gates * ((inputs if layer == 0 else inputs // blocks)
                                               + config.hidden_size // blocks)
        biases += config.directions * gates * 2
        inputs = config.hidden_size * config.directions
    weights += inputs * config.output_size
    stored += inputs * config.output_size
    biases += config.output_size
    gate_elements = config.directions * gates * config.num_layers
    return {"params": weights + biases, "weights": stored, "int8_bytes": stored + 4 * biases,
            "state_bytes": 2 * 2 * config.state_size, "step_instructions": step_instructions(stored + biases,
                                                                                            gate_elements)}


def fits(config: ModelConfig, device: McuProfile | None, sample_rate_hz: float, blocks: int = 1) -> tuple[bool, str]:
    """Whether the model's int8 weights fit the device's flash, its state its RAM and its step (estimated from its
    shape) the sample period, with the same reserve for firmware, TFLite Micro and stacks as `rnnedge mcu`
    (devices/mcu.py); `blocks` as footprint's."""
    if device is None:
        return True, "no device budget"
    size = footprint(config, blocks)
    flash, ram = device.budgets
    step_ms, allowed_ms = device.step_ms(size["step_instructions"]), device.step_budget_ms(sample_rate_hz)
    ok = size["int8_bytes"] <= flash and size["state_bytes"] <= ram and step_ms <= allowed_ms
    return ok, (f"{size['int8_bytes'] / 1024:.1f} of {flash / 1024:.0f} KB flash, state "
                f"{size['state_bytes'] / 1024:.1f} of {ram / 1024:.0f} KB RAM, a step ~{step_ms:.2g} ms at "
                f"{device.clock_hz / 1e6:g} MHz, {allowed_ms:.3g} ms allowed (half the sample period)")


def tune(train_data: Dataset, val_data: Dataset, model: ModelConfig, config: TrainConfig, out_dir: Path,
         budget_minutes: float, device: McuProfile | None = None, data_record: dict | None = None,
         say: Callable[[str], None] = print, cells: tuple[str, ...] = ("lstm",), members: int = 1,
         trained: Path | None = None, final: bool = False) -> dict:
    """Search, write out_dir/tune.json and the best fitting candidate's checkpoint as out_dir/model.pt; returns
    the tune.json record. The recipe's models (`model` in each of `cells`) train first, each with all the time
    left, as `rnnedge train` trains them: what the search keeps is at least as good on validation as what training
    with the defaults keeps (ties keep the recipe's); the variations share the time that remains. `trained`: a
    finished `rnnedge train` run of this recipe on this data, whose models stand for the recipe's (`recipe_model`)
    so that the whole budget goes to the variations. `final`: the recipe fits its kept model again on training +
    validation (train.final_fit); so is the pick, after the search, unless `rnnedge train` did already."""
    task = get_task(model.task)
    base = Candidate(model.variant, model.hidden_size, model.num_layers, config.lr, config.chunk_len,
                     model.residual if model.task == "forecast" else None, members)
    rescaled = wide_channels(channel_traits(train_data.recordings).spread, config.spread_limit).any()
    plan = candidates(base, task.per_series, cells, rescaled)
    recipe, total = plan[:len(cells)], len(plan)
    recipe_names = [c.name for c in recipe]
    record_path = out_dir / "tune.json"
    done = {row["name"]: row for row in _load(record_path)}
    reserve = Reserve(val_data.num_samples / max(1, train_data.num_samples) + 1.0 if final else 0.0)
    guess = guess_loss(train_data, task)
    say(f"tune: {total} candidates, {budget_minutes:g} min{' (the final fit of the pick included)' * final}, "
        f"device {device.key if device else 'none'}; {len(done)} done already ({record_path})")

    def attempt(number: int, candidate: Candidate, untried: int) -> None:
        """Train (or take from `trained`) one candidate into out_dir/NAME and record its row."""
        left = budget_minutes - sum(row["minutes"] for row in done.values())
        available = reserve.available(left, contenders(done, recipe_names, task, guess))
        shaped, deployed = candidate.shape(model), candidate.deployed(model, final)
        ok, why = fits(deployed, device, train_data.sample_rate_hz, candidate.blocks(model, final))
        row = {"name": candidate.name, "candidate": asdict(candidate), "params": footprint(deployed)["params"],
               "fits": ok, "footprint": why, "minutes": 0.0, "val_score": None, "val_loss": None, "best_epoch": None,
               "fit_minutes": 0.0}
        if not ok:
            row["status"] = "does not fit the device"
        elif trained is not None and candidate in recipe:
            source = cell_folder(trained, candidate.cell, cells)
            kept = recipe_model(source / "model.pt", candidate.deployed(model), config, members, data_record).provenance
            (out_dir / candidate.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / "model.pt", out_dir / candidate.name / "model.pt")
            row |= {"status": f"trained by rnnedge train ({trained})", "val_score": kept["val_score"],
                    "val_loss": kept.get("val_loss"), "best_epoch": kept.get("best_epoch"),
                    "fit_minutes": reserve.minutes(kept, source / "metrics.json")}
        elif available <= 0.05:
            row["status"] = "not tried: out of time" + (" (the rest kept for the final fit)" if left > 0.05 else "")
        else:
            started = time.monotonic()
            share = reserve.share(available, untried) / candidate.members  # each member trains in turn
            result = train_model(train_data, val_data, shaped, candidate.settings(config, max_minutes=share),
                                 candidate.members, out_dir / candidate.name, data_record, quiet=True)
            kept = result.checkpoint.provenance
            row |= {"status": "trained", "minutes": round((time.monotonic() - started) / 60, 2),
                    "val_score": kept["val_score"], "val_loss": kept.get("val_loss"),
                    "best_epoch": result.best_epoch or None,
                    "fit_minutes": reserve.minutes(kept, out_dir / candidate.name / "metrics.json")}
        done[candidate.name] = row
        _save(record_path, done, task.metric)
        score = "-" if row["val_score"] is None else shown(row['val_score'])
        say(f"[{number}/{total}] {candidate.name}: {row['status']}, validation {task.metric} {score}, "
            f"{row['minutes']:.1f} min, {row['params']} parameters ({why}); "
            f"{max(0.0, left - row['minutes']):.1f} min left")

    for number, candidate in enumerate(recipe, start=1):
        if candidate.name not in done:
            attempt(number, candidate, 1)
    count = scored_count(task, val_data, config.window_len)
    own = _ranks(done, recipe_names, task, guess)
    own_best = kept_cell(task, {name: done[name]["val_score"] for name in own}, own, count) if own else None
    pick = next(c for c in recipe if c.name == own_best) if own else base
    varied = candidates(pick, task.per_series, cells, rescaled)[len(cells):]  # one change each from the recipe's pick
    for number, candidate in enumerate(varied, start=len(cells) + 1):
        if candidate.name not in done:
            attempt(number, candidate, sum(1 for c in varied if c.name not in done))
    rank = _ranks(done, list(done), task, guess)
    if not rank:
        return {"rows": list(done.values()), "best": None}
    best = done[task.best(rank)]
    if own and (best["name"] in own or not clearly_better(task, best["val_score"], done[own_best]["val_score"],
                                                          count)):
        best = done[own_best]  # the recipe's pick, as `rnnedge train` keeps it, unless a variation clearly won
    if final:
        minutes = _fit_again(train_data, val_data, model, config, Candidate(**best["candidate"]),
                             out_dir / best["name"], data_record, say, best.get("fit_minutes", 0.0))
        best["final_fit_minutes"] = best.get("final_fit_minutes", 0.0) if minutes is None else minutes
    shutil.copyfile(out_dir / best["name"] / "model.pt", out_dir / "model.pt.tmp")
    (out_dir / "model.pt.tmp").replace(out_dir / "model.pt")
    record = _save(record_path, done, task.metric, best["name"])
    return record


def _fit_again(train_data: Dataset, val_data: Dataset, model: ModelConfig, config: TrainConfig,
               candidate: Candidate, folder: Path, data_record: dict | None, say: Callable[[str], None],
               estimate: float) -> float | None:
    """The pick in `folder` trained again on training + validation (train.final_fit), as `rnnedge train` does the
    recipe's kept model; nothing to do where that happened already (`rnnedge train`'s model, a resumed search).
    Its own settings, without a time limit: each member trains exactly the epochs its validated run kept. Returns
    the minutes it took (None: nothing done; a fit of a few seconds is not 0); `estimate`: what the search kept
    aside for it (`Reserve`)."""
    checkpoint = Checkpoint.load(folder / "model.pt")
    kept = checkpoint.provenance
    if "final_fit" in kept:
        return None
    say(f"tune: {candidate.name} trained again on training + validation (the recipe's final fit, "
        f"~{estimate * 60:.0f} s kept for it)")
    started = time.monotonic()
    final_fit(train_data, val_data, TrainResult(checkpoint, [], kept["best_epoch"]), candidate.shape(model),
              candidate.settings(config), folder, data_record)
    seconds = time.monotonic() - started
    say(f"tune: final fit {seconds:.0f} s")
    return round(seconds / 60, 4)


def contenders(done: dict[str, dict], recipe: list[str], task: Task, guess: float) -> list[dict]:
    """The rows the search could pick as it stands, whose final fit the reserve must hold: the recipe's best so far
    (ties keep the first) and every row ranked above it (a variation is picked only when clearly better, but the
    reserve does not guess which will be). One ranked below it is never picked: on Coffee the recipe's GRU, tied
    below its LSTM, held 8.7 of the 10 minutes for a fit that never came, and the variations shared 1.1. With none
    of the recipe's rows ranked yet, every row."""
    rank = _ranks(done, list(done), task, guess)
    own = {name: value for name, value in rank.items() if name in recipe}
    if not own:
        return list(done.values())
    lead = task.best(own)
    return [done[name] for name, value in rank.items() if name == lead or task.better(value, own[lead])]


def _ranks(done: dict[str, dict], names: list[str], task: Task, guess: float) -> dict[str, tuple]:
    """How the named rows that trained, fit and scored compare (`ranked`)."""
    rows = [done[name] for name in names if name in done]
    return {row["name"]: ranked(task, row["val_score"], row.get("val_loss"), guess) for row in rows
            if row["status"].startswith("trained") and row["fits"] and row["val_score"] is not None}


def recipe_model(path: Path, shape: ModelConfig, config: TrainConfig, members: int,
                 data_record: dict | None) -> Checkpoint:
    """A checkpoint `rnnedge train` wrote, checked to be the recipe's model (`shape`, twice as wide where its final
    fit sits beside the validated model; `members` seeds of `config.seed`, `config`'s training settings but threads
    and time) on this data; RnnedgeError saying what differs otherwise."""
    if not path.is_file():
        raise RnnedgeError(f"--trained: no {path}: not a finished `rnnedge train` run of this recipe")
    checkpoint = Checkpoint.load(path)
    provenance = checkpoint.provenance
    shape = replace(shape, hidden_size=final_width(shape.hidden_size, provenance.get("final_fit", {}).get("kept", "")))
    recorded, wanted = provenance.get("train_config", {}), config.to_dict()
    ignored = {"seed", "threads", "max_minutes"}  # seeds are checked below; threads and time change no setting
    differs = [f"{key} {recorded.get(key)!r} (here {value!r})" for key, value in wanted.items()
               if key not in ignored and recorded.get(key) != value]
    if json.dumps(provenance.get("data"), sort_keys=True) != json.dumps(data_record, sort_keys=True):
        differs.insert(0, "other data or splits")
    if checkpoint.config != shape:
        differs.append(f"model {checkpoint.config.variant} {checkpoint.config.num_layers}x"
                       f"{checkpoint.config.hidden_size} (the recipe's: {shape.variant} {shape.num_layers}x"
                       f"{shape.hidden_size})")
    seeds = [m.get("seed") for m in provenance.get("members", [])] or [recorded.get("seed")]
    wanted_seeds = member_seeds(config.seed, members)
    if len(seeds) != len(wanted_seeds) or any(seed not in (own, refit_seed(own))  # a member trained again
                                              for seed, own in zip(seeds, wanted_seeds, strict=True)):
        differs.append(f"seeds {seeds} (here {wanted_seeds})")
    if differs:
        raise RnnedgeError(f"--trained {path}: not the recipe's model on this data: {'; '.join(differs)}")
    return checkpoint


def _load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["rows"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise RnnedgeError(f"{path}: not a tune record this version can resume ({exc}); use another --out") from None


def _save(path: Path, rows: dict[str, dict], metric: str, best: str | None = None) -> dict:
    record = {"metric": metric, "rows": list(rows.values()), "best": best}
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    return record
