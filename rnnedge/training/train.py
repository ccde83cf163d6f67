"""The training loop: stateful truncated BPTT for tag and forecast, whole series for `classify`.

Classify trains on whole series (equal-length batches, loss at the last step), which is what a stream reads.
AdamW with weight decay, gradient-norm clipping, dropout between layers, class weights for rare classes,
early stopping on validation (the best epoch's weights are kept), per-epoch metrics JSON and a curve PNG.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from rnnedge.atomic import write_atomic, write_bytes_atomic, write_text_atomic
from rnnedge.data.recording import Dataset, Normalization
from rnnedge.tasks import IGNORE, Task, classify_series, get_task, shown, tag_targets
from rnnedge.training.batches import series_batches, stateful_chunks, vector_groups
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.config import ModelConfig, TrainConfig, with_variant
from rnnedge.training.ensemble import fold, member_seeds
from rnnedge.training.model import RecurrentModel
from rnnedge.training.recipe import PATIENCE_STEPS, memory_span
from rnnedge.training.scoring import clearly_better, report, scored_count

REFIT_SEED_OFFSET = 1_000_000
STUCK = 0.9  # a training loss above this share of chance_loss never left chance (train_fitted)


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    history: list[dict]
    best_epoch: int


def class_weights(labels: np.ndarray, classes: int, power: float) -> torch.Tensor:
    """(1 / frequency) ** power per class over dataset labels (0 = unlabelled), normalized to mean 1."""
    targets = tag_targets(labels)
    counts = np.bincount(targets[targets != IGNORE], minlength=classes).astype(np.float64)
    weights = (counts.sum() / np.maximum(counts, 1) / classes) ** power
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def _epoch_stateful(model, optimizer, loss_fn, train: Dataset, norm, cfg: TrainConfig, rng, progress, task_id,
                    average: WeightAverage):
    total, count = 0.0, 0
    state = None
    chunks = list(stateful_chunks(train.recordings, norm, model.config.task, cfg.batch_size, cfg.chunk_len, rng,
                                  model.config.horizon, cfg.rotate_deg, vector_groups(train.channels),
                                  cfg.carry_state, cfg.speed, cfg.shift))
    progress.update(task_id, total=len(chunks), completed=0)
    average.steps_per_epoch = len(chunks)
    for chunk in chunks:
        x = torch.from_numpy(chunk.x)
        if state is None:
            state = model.initial_state(x.shape[0])
        state = state * torch.from_numpy(~chunk.reset).float()[:, None]  # fresh state where a recording starts
        out, state = model(x, state)
        penalized = state
        state = state.detach()  # truncate backprop at the chunk boundary, keep the value
        loss = loss_fn(out, torch.from_numpy(chunk.target), torch.from_numpy(chunk.mask))
        if loss is None:  # nothing scored in this chunk (unlabelled gap or padding): state still advanced
            continue
        if cfg.state_penalty:
            loss = loss + cfg.state_penalty * penalized.pow(2).mean()
        total, count = total + _descend(model, optimizer, loss, cfg.grad_clip, average), count + 1
        progress.advance(task_id)
    return total / max(1, count)


def _epoch_series(model, optimizer, loss_fn, train: Dataset, norm, cfg: TrainConfig, rng, progress, task_id,
                  average: WeightAverage):
    """Classify: whole series (or fresh random windows when labels change within recordings), loss on the
    output at each series' last step."""
    series = classify_series(train.recordings, cfg.window_len or None, cfg.windows_per_epoch,
                             seed=int(rng.integers(2**31)))
    batches = list(series_batches(series, norm, cfg.batch_size, rng, model.config.bidirectional, cfg.speed,
                                  cfg.jitter))
    progress.update(task_id, total=len(batches), completed=0)
    average.steps_per_epoch = len(batches)
    total = 0.0
    for x, y, lengths in batches:
        logits = model.window_logits(torch.from_numpy(x), torch.from_numpy(lengths))
        loss = loss_fn.ce(logits, torch.from_numpy(y))
        total += _descend(model, optimizer, loss, cfg.grad_clip, average)
        progress.advance(task_id)
    return total / max(1, len(batches))


def _descend(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float,
             average: WeightAverage) -> float:
    """One optimizer step on `loss`, gradients clipped, the weight average following; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    average.update(model)
    return loss.item()


class WeightAverage:
    """An exponential moving average of the weights over about the last `epochs` epochs (0 = the weights
    themselves), one update per optimizer step. It is what is validated and kept: single epochs' weights swing with
    the last few batches (the bundled data's validation accuracy moved +-1 point from epoch to epoch, and which
    epoch won decided whether a seed's alarm caught 12 or 36 of 36 get-ups); their average is one model, so the
    device pays nothing for it. Its horizon is counted in epochs, not steps, so that a data set of 8 steps an epoch
    averages as much of its training as one of 200 (a fixed decay of 0.995 froze a small set at its first
    weights); early on it follows the weights closely ((1 + t) / (10 + t), the usual warm-up)."""

    def __init__(self, model: nn.Module, epochs: float) -> None:
        self.epochs, self.steps_per_epoch, self.updates = epochs, 1, 0
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        horizon = self.epochs * self.steps_per_epoch
        decay = min(1.0 - 1.0 / horizon, (1 + self.updates) / (10 + self.updates)) if horizon > 1 else 0.0
        for key, value in model.state_dict().items():
            if decay and value.dtype.is_floating_point:
                self.weights[key].mul_(decay).add_(value, alpha=1.0 - decay)
            else:
                self.weights[key].copy_(value)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The averaged weights in `model` for the block, its own weights back after."""
        own = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.weights)
        try:
            yield
        finally:
            model.load_state_dict(own)


class _Loss:
    """Masked per-step loss: weighted cross-entropy for classes, MSE for forecasts."""

    def __init__(self, task: Task, weights: torch.Tensor | None) -> None:
        self.task = task
        self.ce = nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)

    def __call__(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        if not self.task.classes:
            err = ((out - target) ** 2).mean(-1)
            return (err * mask).sum() / mask.sum() if mask.any() else None
        if not (target != IGNORE).any():
            return None
        return self.ce(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def train(train_data: Dataset, val_data: Dataset, model_config: ModelConfig, cfg: TrainConfig,
          out_dir: str | Path | None = None, quiet: bool = False, data_record: dict | None = None,
          fixed_epochs: int = 0) -> TrainResult:
    """Train, early-stop on validation, and return the best checkpoint (also saved to out_dir if given).
    `data_record` (source and splits, rnnedge.data.source) is kept in the checkpoint for export and evaluate.
    `fixed_epochs`: train exactly that many epochs of cfg's schedule and keep the last (`final_fit`: validation
    is then part of the training data, nothing to stop on)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task = get_task(model_config.task)
    norm = Normalization.fit(train_data.recordings, cfg.spread_limit)
    scored_labels = train_data.label_names[1:]  # label 0 is 'unlabelled': streamed through, never a class
    model = RecurrentModel(model_config)
    span = memory_span(train_data, model_config.task, cfg.window_len)
    if span:  # classify learns from each series' last step back through the whole series
        model.remember_for(span)
    if model_config.change_input:
        model.fit_change_scale([norm.apply(r.signals) for r in train_data.recordings])
    weights = None
    if task.classes:
        train_labels = [r.labels[-1:] if task.per_series else r.labels for r in train_data.recordings]
        weights = class_weights(np.concatenate(train_labels), model_config.output_size, cfg.class_weight_power)
    loss_fn = _Loss(task, weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs), eta_min=cfg.lr / 20)
    run_epoch = _epoch_series if task.per_series else _epoch_stateful
    history: list[dict] = []
    best = (np.nan, 0, {k: v.clone() for k, v in model.state_dict().items()}, None)
    average = WeightAverage(model, cfg.average_epochs)
    started = time.monotonic()
    columns = (TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    # on a terminal a live bar; elsewhere (a log, CI, `make export | tee`) one line per epoch on stderr
    lines = not quiet and not sys.stderr.isatty()
    with Progress(*columns, disable=quiet or lines, transient=False) as progress:
        task_id = progress.add_task("train", epoch=0, info="", total=1)
        last = fixed_epochs or cfg.epochs
        for epoch in range(1, last + 1):
            progress.update(task_id, epoch=f"{epoch}/{last}")
            model.train()
            train_loss = run_epoch(model, optimizer, loss_fn, train_data, norm, cfg, rng, progress, task_id, average)
            scheduler.step()
            row = {"epoch": epoch, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0],
                   "steps": average.updates, "elapsed_s": round(time.monotonic() - started, 1)}
            if fixed_epochs:  # the validation series are training data here: a score on them would mean nothing
                said = "validation trained on, not scored"
            else:
                with average.applied(model):
                    checked = report(model, val_data.recordings, norm, scored_labels, cfg.window_len or None)
                val = checked["value"]
                row |= {"val_score": val} | ({"val_loss": checked["loss"]} if "loss" in checked else {})
                # ties go to the later epoch (small validation sets tie often; the later weights have seen more
                # training)
                if best[1] == 0 or not task.better(best[0], val):
                    best = (val, epoch, {k: v.clone() for k, v in average.weights.items()}, checked.get("loss"))
                said = f"val {task.metric} {shown(val)} (best {shown(best[0])} at epoch {best[1]})"
            history.append(row)
            progress.update(task_id, info=f"loss {train_loss:.4f}  {said}")
            if lines:
                elapsed = time.monotonic() - started
                print(f"epoch {epoch}/{last}: loss {train_loss:.4f}, {said}, {elapsed:.0f} s, at most "
                      f"{_left(elapsed, epoch, last, cfg.max_minutes)} left", file=sys.stderr, flush=True)
            if out_dir:
                write_text_atomic(Path(out_dir) / "metrics.json", json.dumps(history, indent=1))
            over_time = cfg.max_minutes and time.monotonic() - started > cfg.max_minutes * 60
            if (not fixed_epochs and epoch - best[1] >= cfg.patience) or over_time:
                break
    if fixed_epochs:  # the last epoch's weights
        best = (None, len(history), average.weights, None)
    model.load_state_dict(best[2])
    checkpoint = Checkpoint(
        model_config, model.state_dict(), norm, train_data.channels,
        scored_labels if task.classes else [], train_data.sample_rate_hz,
        provenance={"data": data_record or {"description": train_data.source}, "train_config": cfg.to_dict(),
                    "best_epoch": best[1], "val_metric": task.metric, "val_score": best[0], "val_loss": best[3],
                    "train_loss": history[best[1] - 1]["train_loss"] if best[1] else None,
                    "input_range": input_range(train_data), "meta": train_data.meta},
    )
    if out_dir:
        checkpoint.save(Path(out_dir) / "model.pt")
        plot_history({"": (history, best[1])}, Path(out_dir) / "training_curve.png",
                     f"{model_config.variant} {model_config.num_layers}x{model_config.hidden_size}, {task.name} on "
                     f"{train_data.source}", task.metric, "cross-entropy" if task.classes else "MSE")
    return TrainResult(checkpoint, history, best[1])


def train_fitted(train_data: Dataset, val_data: Dataset, model_config: ModelConfig, cfg: TrainConfig,
                 out_dir: Path, quiet: bool, data_record: dict | None, folder: str = "",
                 fixed_epochs: int = 0, judged: bool = False) -> TrainResult:
    """`train` into out_dir/FOLDER (FOLDER formatted with the seed; "" = out_dir), and once more from the seed
    `refit_seed(seed)` when the model never left chance: its training loss at the kept epoch still above
    STUCK of `chance_loss` (a model that learned nothing) after PATIENCE_STEPS optimizer steps or more (the
    recipe's patience; a run of `--epochs 2` is a quick look, not a failure). A small set's LSTM can sit at chance
    for its whole run (Coffee: loss 0.685-0.700 against ln 2 for hundreds of epochs); its validation split of 6
    series cannot tell, and a fold of two such members scored 0.54-0.68 on test where those that learned scored
    0.96-1.00. Half of a guess's loss was too wide a net: it caught Covid3MonthDiscrete's members that had learned
    what they could (0.52-0.93 against 1.08), and refitting them cost that set's worst seed 2 of 61 series. The lower
    training loss is kept. A run with a time limit (`max_minutes`, tune's shares) is not repeated. `fixed_epochs`:
    as `train`'s (a final fit's run); `judged`: as many epochs were shown to be enough (the run's validated twin
    left chance in them), so a run of fewer steps is judged too."""
    def run(seed: int, where: str) -> TrainResult:
        return train(train_data, val_data, model_config, replace(cfg, seed=seed), out_dir / where.format(seed=seed),
                     quiet=quiet, data_record=data_record, fixed_epochs=fixed_epochs)

    first = run(cfg.seed, folder)
    chance = chance_loss(train_data, get_task(model_config.task), cfg.class_weight_power)
    short = first.history[-1]["steps"] < PATIENCE_STEPS and not judged
    if cfg.max_minutes or short or not stuck(fit_loss(first), chance):
        return first  # (no classes: chance is nan, never exceeded)
    if not quiet:
        print(f"seed {cfg.seed} never left chance (training loss {fit_loss(first):.3f}, a constant guess's "
              f"{chance:.3f}): again from seed {refit_seed(cfg.seed)}", file=sys.stderr, flush=True)
    again = run(refit_seed(cfg.seed), folder or "refit-seed-{seed}")
    if not fit_loss(again) < fit_loss(first):
        return first
    if not folder:  # the run folder shows the model kept
        copy_run(out_dir / f"refit-seed-{refit_seed(cfg.seed)}", out_dir, ("model.pt", "metrics.json",
                                                                          "training_curve.png"))
    return again


def chance_loss(data: Dataset, task: Task, power: float) -> float:
    """The training loss of a model that learned nothing: the class-weighted cross-entropy of the best constant
    guess, the entropy of the class shares times their weights (nan without classes)."""
    if not task.classes:
        return float("nan")
    labels = np.concatenate([r.labels[-1:] if task.per_series else r.labels for r in data.recordings])
    counts = np.bincount(tag_targets(labels)[labels > 0]).astype(np.float64)
    share = counts * class_weights(labels, len(counts), power).numpy()
    share = share[share > 0] / share.sum()
    return float(-(share * np.log(share)).sum())


def stuck(loss: float, chance: float) -> bool:
    """A training loss that never left chance: above STUCK of `chance_loss` (never, where chance is nan)."""
    return loss > STUCK * chance


def fit_loss(result: TrainResult) -> float:
    """The training loss of the epoch whose weights were kept (`train` records it in the provenance)."""
    loss = result.checkpoint.provenance.get("train_loss")
    return float("nan") if loss is None else loss


def refit_seed(seed: int) -> int:
    """The seed a run of `seed` trains again from when it never fit (`train_fitted`): shared with no run's own."""
    return seed + REFIT_SEED_OFFSET


def train_model(train_data: Dataset, val_data: Dataset, model_config: ModelConfig, cfg: TrainConfig,
                members: int, out_dir: Path, data_record: dict | None = None, quiet: bool = False) -> TrainResult:
    """One model: `train` it, or (members > 1) train that many from different seeds (each in out_dir/seed-N) and
    fold them into one model that computes their mean output (ensemble.py), validated as a whole; its
    metrics.json holds each member's history and its curve each member's lines."""
    if members == 1:
        return train_fitted(train_data, val_data, model_config, cfg, out_dir, quiet, data_record)
    results = []
    for number, seed in enumerate(member_seeds(cfg.seed, members), start=1):
        if not quiet:
            print(f"member {number} of {members} (seed {seed}):", file=sys.stderr, flush=True)
        results.append(train_fitted(train_data, val_data, model_config, replace(cfg, seed=seed), out_dir, quiet,
                                    data_record, folder="seed-{seed}"))
    seeds = [r.checkpoint.provenance["train_config"]["seed"] for r in results]
    runs = list(zip(seeds, results, strict=True))
    folded = fold([r.checkpoint for r in results])
    checked = report(folded.build_model(), val_data.recordings, folded.normalization, folded.labels,
                     cfg.window_len or None)
    folded.provenance |= {"val_score": checked["value"], "val_loss": checked.get("loss"), "best_epoch": None}
    task = get_task(model_config.task)
    if not quiet:
        said = ", ".join(f"seed {seed} {shown(r.checkpoint.provenance['val_score'])} (epoch {r.best_epoch})"
                         for seed, r in runs)
        print(f"members (validation {task.metric}): {said}; folded into one {model_config.variant} "
              f"{model_config.num_layers}x{folded.config.hidden_size}: {shown(checked['value'])}", file=sys.stderr,
              flush=True)
    folded.save(out_dir / "model.pt")
    histories = {f"seed {seed}": r.history for seed, r in runs}
    write_text_atomic(out_dir / "metrics.json", json.dumps({"members": histories, "val_score": checked["value"],
                                                            "val_loss": checked.get("loss")}, indent=1))
    plot_history({f"seed {seed} ": (r.history, r.best_epoch) for seed, r in runs},
                 out_dir / "training_curve.png", f"{members} x {model_config.variant} {model_config.num_layers}x"
                 f"{model_config.hidden_size}, folded into one, {task.name} on {train_data.source}", task.metric,
                 "cross-entropy" if task.classes else "MSE")
    return TrainResult(folded, [], 0)


def train_cells(train_data: Dataset, val_data: Dataset, model_config: ModelConfig, cfg: TrainConfig,
                cells: tuple[str, ...], out_dir: Path, data_record: dict | None = None,
                members: int = 1, final: bool = False) -> TrainResult:
    """`train_model` once per cell and keep the best on validation (`ranked`; ties: the earlier cell); with
    `final`, the kept model then trained again on training + validation (`final_fit`). One cell trains straight
    into out_dir; several train into out_dir/cells/CELL, and the kept one's checkpoint (recording every cell's
    validation score), metrics and curve are copied into out_dir."""
    task, results = get_task(model_config.task), {}
    for number, cell in enumerate(cells, start=1):
        if len(cells) > 1:
            print(f"cell {number} of {len(cells)}: {cell}", file=sys.stderr, flush=True)
        results[cell] = train_model(train_data, val_data, with_variant(model_config, cell), cfg, members,
                                    cell_folder(out_dir, cell, cells), data_record)
    kept = cells[0]
    if len(cells) > 1:
        provenances = {cell: result.checkpoint.provenance for cell, result in results.items()}
        guess = guess_loss(train_data, task)
        ranks = {cell: ranked(task, p["val_score"], p.get("val_loss"), guess) for cell, p in provenances.items()}
        kept = kept_cell(task, {cell: p["val_score"] for cell, p in provenances.items()}, ranks,
                         scored_count(task, val_data, cfg.window_len))
        said = [f"{cell} {shown(p['val_score'])}" + (f" (loss {p['val_loss']:.4f})" if p.get("val_loss") is not None
                                                    else "") for cell, p in provenances.items()]
        print(f"cells (validation {task.metric}): {', '.join(said)}; kept {kept}", file=sys.stderr, flush=True)
        results[kept].checkpoint.provenance["cells"] = {cell: p["val_score"] for cell, p in provenances.items()}
    result = results[kept]
    if final:
        result = final_fit(train_data, val_data, result, with_variant(model_config, kept), cfg,
                           cell_folder(out_dir, kept, cells), data_record)
    if len(cells) > 1:
        result.checkpoint.save(out_dir / "model.pt")
        copy_run(cell_folder(out_dir, kept, cells), out_dir, ("metrics.json", "training_curve.png"))
    return result


def kept_cell(task: Task, scores: dict[str, float], ranks: dict[str, tuple], count: int) -> str:
    """The cell the recipe keeps of those it trained (`ranks`: `ranked`, in the recipe's order): the best on
    validation; but a forecast's second model (the change input) must beat its first by more than luck on the
    `count` validation samples (`clearly_better`): on Lynx (seed 1, 16 validation years) the change input was 2.5 %
    lower on validation and 1.71x the first's MSE on test."""
    best, first = task.best(ranks), next(iter(ranks))
    if task.classes or best == first or clearly_better(task, scores[best], scores[first], count):
        return best
    return first


def final_fit(train_data: Dataset, val_data: Dataset, validated: TrainResult, model_config: ModelConfig,
              cfg: TrainConfig, folder: Path, data_record: dict | None = None) -> TrainResult:
    """The validated model trained again on the training and validation series together: each member (or the one
    model) from its own seed for the epochs its validated run kept, on the same schedule, folded as before. A fifth
    of a small set held out for validation is a fifth less to learn from (recipe.py: Covid3MonthDiscrete's worst
    seed 0.6066 -> 0.6230). Nothing held out judges the fit, and it is another draw from the same seeds: the
    deployed model is the fit folded beside the validated model (their mean; twice the width), which swings less
    than either alone (recipe.py). The series the fit trained on still tell a fit that failed to learn: one that
    scores clearly below the validated model on them (`clearly_better`), a model that never saw a fifth of them, is
    dropped and the validated model kept alone (Coffee: both refitted members at chance, 0.61 on their own series
    and 0.54 on test). Saved as folder/model.pt (the validated model kept as folder/validated.pt, each member's run
    in folder/final/seed-N); its provenance keeps the validated scores and members (what tune and the printout
    compare) and says what was refitted and kept under "final_fit". A member
    that never left chance there trains once more from another seed, as in training (`train_fitted`), however few
    its steps when its validated run left chance in as many epochs: a run's loss spikes (BasicMotions: a member
    ended its final fit at 1.58, above a guess's 1.39, after 595 steps; its validated run was near 0.18 there)."""
    before = validated.checkpoint.provenance
    runs = before.get("members") or [{"seed": before["train_config"]["seed"], "best_epoch": before["best_epoch"],
                                      "train_loss": before.get("train_loss")}]
    whole, task = train_data.joined(val_data), get_task(model_config.task)
    chance = chance_loss(train_data, task, cfg.class_weight_power)
    validated.checkpoint.save(folder / "validated.pt")
    refitted = []
    for run in runs:
        seed, epochs = run["seed"], run["best_epoch"]
        print(f"final fit: seed {seed} on all {len(whole.recordings)} training and validation "
              f"{'series' if task.per_series else 'recordings'} for {epochs} epochs", file=sys.stderr, flush=True)
        result = train_fitted(whole, val_data, model_config, replace(cfg, seed=seed), folder / "final", True,
                              data_record, folder="seed-{seed}", fixed_epochs=epochs,
                              judged=run.get("train_loss") is not None and not stuck(run["train_loss"], chance))
        if result.checkpoint.provenance["train_config"]["seed"] != seed:
            print(f"final fit: seed {seed} never left chance: seed {refit_seed(seed)} kept", file=sys.stderr,
                  flush=True)
        refitted.append(result.checkpoint)
    fitted = fold(refitted) if len(refitted) > 1 else refitted[0]
    own = {name: report(c.build_model(), whole.recordings, c.normalization, c.labels, cfg.window_len or None)["value"]
           for name, c in (("fit", fitted), ("validated", validated.checkpoint))}
    if clearly_better(task, own["validated"], own["fit"], scored_count(task, whole, cfg.window_len)):
        kept, checkpoint = "validated", validated.checkpoint
        print(f"final fit: its {task.metric} on the series it trained on, {own['fit']:.4f}, is clearly below the "
              f"validated model's, {own['validated']:.4f}: the validated model kept", file=sys.stderr, flush=True)
    else:
        kept = final_kept(model_config)
        checkpoint = fold([fitted, validated.checkpoint]) if kept == BESIDE else fitted
    checkpoint = replace(checkpoint, provenance=dict(checkpoint.provenance))
    checkpoint.provenance |= {key: before[key] for key in ("val_score", "val_loss", "best_epoch", "members", "cells")
                              if key in before}
    checkpoint.provenance["final_fit"] = {"series": len(whole.recordings),
                                          "epochs": [run["best_epoch"] for run in runs],
                                          "seeds": [c.provenance["train_config"]["seed"] for c in refitted],
                                          f"{task.metric}_on_all": own, "kept": kept}
    checkpoint.save(folder / "model.pt")
    return TrainResult(checkpoint, validated.history, validated.best_epoch)


BESIDE = "fit and validated"  # final_fit's kept model: the refitted fold beside the validated one, their mean


def final_kept(model: ModelConfig) -> str:
    """What final_fit keeps of a fit that learned: the fit beside the validated model, or the fit alone for a
    bidirectional stack (it does not fold)."""
    return "fit" if model.bidirectional else BESIDE


def final_width(hidden: int, kept: str) -> int:
    """The hidden size final_fit leaves of a model `hidden` wide, `kept` as its provenance says: twice it beside
    the validated model."""
    return 2 * hidden if kept == BESIDE else hidden


def copy_run(source: Path, target: Path, names: tuple[str, ...]) -> None:
    """A run folder's files (`names`) written atomically over those in `target`: it shows the run kept."""
    for name in names:
        write_bytes_atomic(target / name, (source / name).read_bytes())


def cell_folder(out_dir: Path, cell: str, cells: tuple[str, ...]) -> Path:
    """Where `train_cells` leaves a cell's model: out_dir itself with one cell, out_dir/cells/CELL with several."""
    return out_dir / "cells" / cell if len(cells) > 1 else out_dir


def guess_loss(data: Dataset, task: Task) -> float:
    """The cross-entropy of always guessing the training split's class frequencies (nan without classes): the
    unweighted `chance_loss`."""
    return chance_loss(data, task, power=0.0)


def ranked(task: Task, score: float, loss: float | None, guess: float) -> tuple[float, bool] | tuple[float]:
    """What models are compared by (cells here, candidates in tune): the validation score; between equal scores,
    one that learned beats one that did not (whose validation cross-entropy is above half of `guess`, always
    guessing the class frequencies). A small validation split lets luck score: on Coffee (6 validation series) two LSTMs
    stuck at chance (training loss ln 2) scored 6 of 6 at one epoch, and their fold won the tie against a GRU that
    had learned (test 0.57 against 0.96). Lower cross-entropy alone is no tie-break: there the surer GRU of another
    seed was the worse on test (0.89 against 0.96)."""
    if not task.higher_is_better:
        return (score,)
    return score, loss is not None and loss < guess / 2


def _left(elapsed: float, epoch: int, last: int, max_minutes: float) -> str:
    """The time the epochs up to `last` take at this pace (early stopping may end sooner), in words."""
    left = elapsed / epoch * (last - epoch)
    if max_minutes:
        left = min(left, max(0.0, max_minutes * 60 - elapsed))
    return f"{left / 60:.1f} min" if left >= 60 else f"{left:.0f} s"


def input_range(data: Dataset) -> list[list[float]]:
    """Per channel [min, max] of the training data: what the model has seen (export adds a margin)."""
    stacked = np.concatenate([r.signals for r in data.recordings])
    return [[float(lo), float(hi)] for lo, hi in zip(stacked.min(axis=0), stacked.max(axis=0), strict=True)]


def plot_history(runs: dict[str, tuple[list[dict], int]], path: Path, title: str, metric: str, loss: str) -> None:
    """Train loss and the validation metric per epoch, the kept (best) epoch marked: one set of lines per run
    (label -> history, best epoch; the label "" for a single run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=(7, 4))
    right = left.twinx()
    lines = []
    for number, (label, (history, best_epoch)) in enumerate(runs.items()):
        epochs = [h["epoch"] for h in history]
        dim = 1.0 / (1 + number)  # later runs paler
        lines += left.plot(epochs, [h["train_loss"] for h in history], "o-", ms=3, color="tab:blue", alpha=dim,
                           label=f"{label}train loss ({loss})")
        if any("val_score" in h for h in history):  # a final fit's run scores none
            lines += right.plot(epochs, [h["val_score"] for h in history], "s-", ms=3, color="tab:orange",
                                alpha=dim, label=f"{label}validation {metric}")
        lines.append(left.axvline(best_epoch, color="green", ls="--", lw=1, alpha=dim,
                                  label=f"{label}kept: epoch {best_epoch}"))
    left.set_xlabel("epoch")
    left.set_ylabel(f"train loss ({loss})", color="tab:blue")
    right.set_ylabel(f"validation {metric}", color="tab:orange")
    left.legend(handles=lines, loc="center right", fontsize=8)
    left.set_title(title, fontsize=9)
    fig.tight_layout()
    write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
    plt.close(fig)
