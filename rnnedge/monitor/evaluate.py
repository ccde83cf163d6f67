"""`evaluate-alarms`: stream every HAPT validation and test recording through a bundle on the torch-free
runtime, choose the operating point on validation subjects only, then score it on the test subjects.

Each recording is streamed causally from a zero state as one bed of a ward (ward.py: the monitor's own step, every
recording of a split in one pass), so these numbers are the monitor's: its alarms, its fault detector, its frame.
The point search scores the other points of the grid on the logits the ward computed (GetUpScore and Alarm over a
whole recording, restarted where the ward restarted the score), and `checked` streams the validation split again
with the chosen point: the search's alarms must be the monitor's.

Choosing (`choose`): every point of GRID is scored on validation, a get-up counting as detected only within
SEARCH_LATE_S of its onset (a margin for wearers slower than the five validation subjects); a point is allowed if
its false alarms are at most twice `max_false_alarms_per_hour` x validation other-hours, rounded (validation is
~0.9 h: 1.0/h allows two); among allowed points the best has the most detections minus false alarms (a missed
get-up and a false alarm cost alike), then fewest false alarms, then lowest median delay, then the longest
refractory period and highest threshold (the quietest). Why, measured over five training seeds of the default
recipe: with "highest recall within one false alarm" a seed whose validation subjects had two in-bed movements
that looked like get-ups got a point that caught 3 of 36 test get-ups; one whose validation get-ups all crossed
0.98 within 1.1 s got that threshold and missed 3 test get-ups that crossed it later.

The sensor fault detector (faults.py) runs over every recording as in the monitor: its blocked steps score 0 and
are counted as sensor_check hours, apart from the false-alarm denominator. `--sweep` (sweep.py) scores the test
subjects again in other orientations and at other sensor rates, with the point chosen here, worst case first.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rnnedge.atomic import write_text_atomic
from rnnedge.data.hapt import HAPT_SPLITS, load_hapt
from rnnedge.data.recording import Recording
from rnnedge.monitor.alarm import AlarmConfig, alarm_intervals
from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.events import EARLY_S, LATE_S, get_up_events, score_recording, summarize, unlabelled_get_ups
from rnnedge.monitor.gaps import gap_clock, gap_condition
from rnnedge.monitor.operating_point import OperatingPoint
from rnnedge.monitor.report_md import markdown
from rnnedge.monitor.score import GetUpScore, ScoreConfig
from rnnedge.monitor.splice import fault_conditions
from rnnedge.monitor.sweep import at_rate, axis_rotations, on_feet, random_rotations, rotate
from rnnedge.monitor.ward import Ward

SEARCH_LATE_S = LATE_S - 0.3
SCORE_GRID = [ScoreConfig(smoothing_s=s, lying_gate_s=g, warmup_s=w)
              for s, g, w in itertools.product((0.0, 0.1, 0.2, 0.4), (0.0, 5.0, 30.0), (3.0, 10.0))]
# Thresholds stop at 0.95: the score's ceiling is ~0.995 (the summed get-up probabilities of these models), and a
# threshold within a few thousandths of it is crossed or not by small changes: measured, two seeds whose
# validation chose 0.98 caught 36/36 and 35/36 test get-ups as recorded but a mean 89% / 95% (worst 72% / 89%) in
# the 44 orientations; the same model at 0.95, 99.9% (worst 97%).
# Refractory periods start at 10 s: one get-up, one alarm. The training subjects' labelled get-ups last 2.5-6.5 s
# (median 3.7 s); a 5 s refractory re-alarmed within the same get-up when the score dipped mid-transition (seed 2:
# both of its test false alarms were such second alarms, 5 s after the first).
ALARM_GRID = [AlarmConfig(t, t * r, f) for t, r, f in itertools.product(
    (0.5, 0.6, 0.7, 0.8, 0.9, 0.95), (0.5, 1.0), (10.0, 20.0))]


def upright(label: str = "STANDING") -> list[float]:
    """The model's upright direction: gravity's mean direction in the training subjects while standing."""
    data = load_hapt()
    code = data.label_names.index(label)
    acc = np.concatenate([r.signals[r.labels == code, :3] for r in data.subset(HAPT_SPLITS["train"]).recordings])
    mean = acc.astype(np.float64).mean(axis=0)
    return [round(v, 4) for v in (mean / np.linalg.norm(mean)).tolist()]


def from_lying(recordings: list[Recording]) -> list[Recording]:
    """Each recording from its first LAYING sample on (a sensor attached to a patient in bed); those that never
    lie are left out."""
    code = load_hapt().label_names.index("LAYING")
    firsts = [np.flatnonzero(r.labels == code) for r in recordings]
    return [Recording(r.signals[f[0]:], r.labels[f[0]:], r.subject, f"{r.name} from lying")
            for r, f in zip(recordings, firsts, strict=True) if len(f)]


def streamed(model, recordings: list[Recording], point: OperatingPoint, attach: str = "upright",
             search: bool = False) -> Streamed:
    """The recordings as the beds of one ward (ward.py: the monitor itself), each from a zero state, untimed.
    `search`: keep every step's logits too (the operating-point search scores other points on them)."""
    ward = Ward(model, point, attach=attach, capacity=max(1, len(recordings)))
    taps = Taps([len(r) for r in recordings], model.manifest.output.size if search else 0)
    ward.tap = taps.see
    for i in range(len(recordings)):
        ward.add(i)
    with quiet():
        records = ward.feed({i: (r.signals, None) for i, r in enumerate(recordings)})
    return Streamed(recordings, point, taps, [records[i] for i in range(len(recordings))],
                    model.manifest.input.sample_rate_hz, list(model.manifest.output.labels))


class Taps:
    """What a ward computed at each step of each bed (row = bed): the score, alarms blocked, a fresh score, and
    the logits if asked for (`outputs` > 0)."""

    def __init__(self, lengths: list[int], outputs: int = 0) -> None:
        beds, longest = len(lengths), max(lengths, default=0)
        self.lengths = lengths
        self.scores = np.zeros((beds, longest))
        self.blocked = np.zeros((beds, longest), bool)
        self.fresh = np.zeros((beds, longest), bool)
        self.logits = np.zeros((beds, longest, outputs), np.float32) if outputs else None
        self.seen = np.zeros(beds, np.int64)

    def see(self, rows: np.ndarray, slots: np.ndarray, logits: np.ndarray, scores: np.ndarray, blocked: np.ndarray,
            fresh: np.ndarray) -> None:
        self.scores[rows, slots], self.blocked[rows, slots], self.fresh[rows, slots] = scores, blocked, fresh
        if self.logits is not None:
            self.logits[rows, slots] = logits
        self.seen[rows] += 1

    def bed(self, row: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        """(logits or None, scores, blocked, fresh) of one bed's steps."""
        n = self.lengths[row]
        if self.seen[row] != n:
            raise MonitorError(f"the ward scored {self.seen[row]} of {n} steps of a recording (a model fault?)")
        logits = None if self.logits is None else self.logits[row, :n]
        return logits, self.scores[row, :n], self.blocked[row, :n], self.fresh[row, :n]


class Streamed:
    """A split's recordings as the ward streamed them under `point`: its alarms, and what the operating-point
    search needs to score any other point (logits, blocked steps, where the score restarted)."""

    def __init__(self, recordings: list[Recording], point: OperatingPoint, taps: Taps, records: list[list[dict]],
                 sample_rate_hz: float, labels: list[str]) -> None:
        names = load_hapt().label_names
        self.recordings, self.point, self.rate, self.labels = recordings, point, sample_rate_hz, labels
        self.events = [get_up_events(r.labels, names) for r in recordings]
        self.unlabelled = [unlabelled_get_ups(r.labels, names) for r in recordings]
        tapped = [taps.bed(i) for i in range(len(recordings))]
        self.logits, self.engine_scores, self.blocked, self.fresh = ([t[k] for t in tapped] for k in range(4))
        self.records = records
        self.engine_starts = [[int(r["id"].split(":")[0]) for r in recs if r["event"] == "alarm_start"]
                              for recs in records]
        self._scores: dict[ScoreConfig, list[np.ndarray]] = {}

    def part(self, a: int, b: int) -> Streamed:
        """Recordings a..b-1 alone (one condition of a sweep streamed with others in one ward)."""
        part = copy.copy(self)
        for name in ("recordings", "events", "unlabelled", "logits", "engine_scores", "blocked", "fresh", "records",
                     "engine_starts"):
            setattr(part, name, getattr(self, name)[a:b])
        part._scores = {}
        return part

    def scores(self, config: ScoreConfig) -> list[np.ndarray]:
        """Each recording's score under `config` (the search): the ward's formula restarted where the ward restarted
        it, zero where it blocked alarms."""
        if config == self.point.score:
            return self.engine_scores
        if config not in self._scores:
            out = []
            for logits, blocked, fresh in zip(self.logits, self.blocked, self.fresh, strict=True):
                cuts = [*np.flatnonzero(fresh).tolist(), len(logits)]
                parts = [np.zeros(cuts[0])] + [GetUpScore(config, self.labels, self.rate).feed(logits[a:b])
                                               for a, b in zip(cuts, cuts[1:], strict=False)]
                out.append(np.concatenate(parts) * ~blocked)
            self._scores[config] = out
        return self._scores[config]

    def starts(self, point: OperatingPoint) -> list[list[int]]:
        """Each recording's alarm starts: the ward's own under its point, the search's under another."""
        if point.score == self.point.score and point.alarm == self.point.alarm:
            return self.engine_starts
        return [[a for a, _ in alarm_intervals(s, point.alarm, self.rate)] for s in self.scores(point.score)]

    def alarms(self, point: OperatingPoint) -> list[list[tuple[int, int]]]:
        return [alarm_intervals(s, point.alarm, self.rate) for s in self.scores(point.score)]

    def evaluate(self, point: OperatingPoint | None = None, late_s: float = LATE_S) -> tuple[dict, list]:
        per = [score_recording(starts, events, len(r), self.rate, late_s=late_s, unlabelled=unlabelled,
                               blocked=blocked)
               for starts, events, unlabelled, r, blocked in zip(self.starts(point or self.point), self.events,
                                                                  self.unlabelled, self.recordings, self.blocked,
                                                                  strict=True)]
        return {**summarize(per), **self.lead_times(per)}, per

    def lead_times(self, per: list) -> dict:
        """Seconds from each detecting alarm to the end of the get-up transition and to being on one's feet."""
        names = load_hapt().label_names
        to_end, to_feet = [], []
        for rec, events, result in zip(self.recordings, self.events, per, strict=True):
            for event, delay in zip(events, result.delays_s, strict=True):
                if delay is None:
                    continue
                start = event.onset + round(delay * self.rate)
                to_end.append((event.end - start) / self.rate)
                feet = on_feet(rec.labels, names, event.onset, self.rate)
                if feet is not None:
                    to_feet.append((feet - start) / self.rate)

        def stats(values: list[float]) -> dict | None:
            return {"min": min(values), "median": float(np.median(values)), "n": len(values)} if values else None

        return {"lead_to_transition_end_s": stats(to_end), "lead_to_on_feet_s": stats(to_feet)}


@contextlib.contextmanager
def quiet():
    """The monitor's per-event warnings off: a report says it all (thousands of resets and checks otherwise)."""
    log = logging.getLogger("rnnedge.monitor")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def choose(val: Streamed, max_false_alarms_per_hour: float) -> tuple[OperatingPoint, dict]:
    """The operating point for `val` (the rule in the module's docstring)."""
    points = [OperatingPoint(s, a, {}, val.point.frame) for s, a in itertools.product(SCORE_GRID, ALARM_GRID)]
    rows = [(point, val.evaluate(point, late_s=SEARCH_LATE_S)[0]) for point in points]
    allowed = round(2 * max_false_alarms_per_hour * rows[0][1]["other_hours"])
    feasible = [r for r in rows if r[1]["false_alarms"] <= allowed]

    def rank(row: tuple[OperatingPoint, dict]) -> tuple:
        point, m = row
        return (m["false_alarms"] - m["detected"], m["false_alarms"],
                m["median_delay_s"] if m["median_delay_s"] is not None else 1e9,
                -point.alarm.refractory_s, -point.alarm.threshold)

    point, _ = min(feasible or rows, key=rank)
    rule = {"split": "val", "subjects": list(HAPT_SPLITS["val"]), "points_tried": len(rows),
            "objective": "detections - false alarms", "search_window_s": [-EARLY_S, SEARCH_LATE_S],
            "max_false_alarms_per_hour": max_false_alarms_per_hour, "false_alarms_allowed": allowed,
            "budget_met": bool(feasible)}
    return point, {"rule": rule, "validation": val.evaluate(point)[0]}


def checked(model, val: Streamed, point: OperatingPoint, attach: str) -> Streamed:
    """The validation split streamed again through the ward with the chosen point: its alarms must be the search's
    (one formula, two ways of computing it: a difference is a bug, never a number in a report)."""
    again = streamed(model, val.recordings, point, attach)
    if again.engine_starts != val.starts(point):
        raise MonitorError("evaluate-alarms: the operating-point search and the monitor disagree on the validation "
                           "alarms of the chosen point (a bug in rnnedge: please report it)")
    return again


def evaluate_alarms(model, out_dir: Path, point: OperatingPoint | None = None,
                    max_false_alarms_per_hour: float = 1.0, trace: str | None = None,
                    sweep: dict | None = None, frame: bool = False, long_hours: float = 0.0,
                    faults: bool = False, attach: str = "upright", gaps: bool = False) -> dict:
    """Choose (unless `point` is given) on validation, score on test; write report.json, operating_point.json
    and trace.png (the `trace` HAPT recording, 'hapt:SUBJECT[:EXP]'; default: the first test recording).
    `sweep` ({"random": N, "seed": S, "rates": [Hz...]}): also the placements and rates (sweep.py), in
    report["sweep"] worst first, and placements.png. `frame`: choose a point that calibrates an upright frame
    (frame.py) in every recording; a given `point` brings its own. `long_hours`: also the test subjects streamed
    back to back for that long without a reset,
    each subject a wearer (report["long_stream"]). `faults`: synthetic sensor faults spliced
    into the test recordings, through the monitor (splice.py, report["faults"]). `attach`: the wearer's posture
    when the sensor goes on (frame.py); "lying" streams every recording from its first lying sample (validation and
    test alike). `gaps`: each test subject's recordings back to back through the monitor with the clock jumping
    between them (gaps.py, report["gaps"]). Every figure is the ward's (the monitor's own code, many recordings
    as many beds); the point search scores the validation steps the ward computed, and is checked against it."""
    from rnnedge.data.hapt import hapt_recording
    from rnnedge.monitor.plot import plot_sweep, plot_trace

    started = time.monotonic()
    manifest, dataset = model.manifest, load_hapt()
    rate = manifest.input.sample_rate_hz
    splits = {name: dataset.subset(HAPT_SPLITS[name]).recordings for name in ("val", "test")}
    if attach == "lying":
        splits = {name: from_lying(recs) for name, recs in splits.items()}
    if point is None:
        up = upright() if frame else None
        val = streamed(model, splits["val"], OperatingPoint(frame=up), attach, search=True)
        chosen, provenance = choose(val, max_false_alarms_per_hour)
        point = OperatingPoint(chosen.score, chosen.alarm, {**provenance, "bundle": manifest.name,
                                                            "backend": model.backend, "model_sha256": model.sha256},
                               up)
        val = checked(model, val, point, attach)
    else:
        val = streamed(model, splits["val"], point, attach)
    test = streamed(model, splits["test"], point, attach)
    test_metrics, per = test.evaluate()
    out_dir.mkdir(parents=True, exist_ok=True)
    point.save(out_dir / "operating_point.json")
    report = {
        "bundle": str(model.bundle), "backend": model.backend, "model_sha256": model.sha256, "attach": attach,
        "definitions": {"event": "onset of a LIE_TO_SIT/LIE_TO_STAND run", "detected_window_s": [-EARLY_S, LATE_S],
                        "other_hours": "streamed time outside [onset - early, end of get-up run), unlabelled included"},
        "operating_point": asdict(point),
        "validation": val.evaluate()[0],
        "test": test_metrics,
        "test_subjects": list(HAPT_SPLITS["test"]),
        "test_details": _details(test, per),
    }
    one = streamed(model, [hapt_recording(trace)], point, attach) if trace else test
    report["trace"] = plot_trace(one.recordings[0], one.engine_scores[0], _intervals(one, 0), point,
                                 dataset.label_names, rate, out_dir / "trace.png")
    if long_hours:
        report["long_stream"] = long_stream(model, splits["test"], point, long_hours, attach)
    if faults:
        report["faults"] = fault_conditions(model, splits["test"], point, dataset.label_names, attach)
    if gaps:
        report["gaps"] = gap_condition(model, splits["test"], point, dataset.label_names, attach)
    if sweep is not None:
        report["sweep"] = sweep_conditions(model, splits["test"], point, sweep, attach)
        report["sweep_plot"] = plot_sweep(report["sweep"], out_dir / "placements.png")
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    write_text_atomic(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
    write_text_atomic(out_dir / "report.md", markdown(report))
    return report


def _intervals(split: Streamed, i: int) -> list[tuple[int, int]]:
    """[start, end) steps of the ward's alarms in recording i (an alarm still on ends at the recording's end)."""
    starts, ends = [], []
    for record in split.records[i]:
        if record["event"] in ("alarm_start", "alarm_end"):
            (starts if record["event"] == "alarm_start" else ends).append(int(record["id"].split(":")[0]))
    ends += [len(split.recordings[i])] * (len(starts) - len(ends))
    return list(zip(starts, ends, strict=True))


def sweep_conditions(model, recordings: list[Recording], point: OperatingPoint, options: dict,
                     attach: str = "upright") -> list[dict]:
    """Each orientation and sensor rate's test metrics under `point`, worst first (lowest recall, then most
    false alarms per hour): every condition's recordings as beds of one ward."""
    manifest = model.manifest
    rate, channels = manifest.input.sample_rate_hz, list(manifest.input.channels)
    conditions = [(name, lambda x, r=r: rotate(x, r, channels)) for name, r in
                  axis_rotations() + random_rotations(options.get("random", 20), options.get("seed", 0))]
    conditions += [(f"rate {hz:g} Hz", lambda x, hz=hz: _fit(at_rate(x, rate, hz), len(x)))
                   for hz in options.get("rates", [])]
    moved = [Recording(transform(r.signals), r.labels, r.subject, r.name) for _, transform in conditions
             for r in recordings]
    split, n = streamed(model, moved, point, attach), len(recordings)
    rows = [{"condition": name, **split.part(c * n, (c + 1) * n).evaluate()[0]}
            for c, (name, _) in enumerate(conditions)]
    return sorted(rows, key=lambda m: (m["recall"], -m["false_alarms_per_hour"]))


def long_stream(model, recordings: list[Recording], point: OperatingPoint, hours: float,
                attach: str = "upright") -> dict:
    """Each wearer (subject) all night: their recordings back to back, repeated to `hours` (cut to it), one bed
    each of one ward, streamed without any reset (an upright frame calibrated once per wearer, at the start, as one
    sensor attached to one patient): per-sample accuracy and the largest |state| (looked at every second, over the
    beds) per hour streamed, and the alarms over every bed. The clock jumps GAP_S between recordings, as where a
    sensor was off (gaps.py): the monitor keeps the model's state across it and holds the alarm for a few seconds.
    Measured before it was so: one stream of every subject, seamless, calibrated once on the first, put one
    subject's frame on all (2.4 points of accuracy lost in the first hour) and every false alarm 2.6-5.1 s after a
    seam joining two wearers within a sample."""
    manifest = model.manifest
    rate, labels = manifest.input.sample_rate_hz, list(manifest.output.labels)
    names = load_hapt().label_names
    steps = max(1, round(hours * 3600 * rate))
    wearers = [list(group) for _, group in itertools.groupby(recordings, key=lambda r: r.subject)]
    beds, times = [], []
    for recs in wearers:
        repeats = int(np.ceil(steps / sum(len(r) for r in recs)))
        signals = np.concatenate([r.signals for r in recs] * repeats)[:steps]
        truth = np.concatenate([r.labels for r in recs] * repeats)[:steps]
        times.append(gap_clock([len(r) for r in recs] * repeats, rate)[:steps])
        beds.append(Recording(signals, truth, recs[0].subject, f"subject {recs[0].subject} x{repeats}"))
    ward, taps = Ward(model, point, attach=attach, capacity=len(beds)), Taps([len(b) for b in beds])
    predicted = np.zeros((len(beds), steps), np.int8)

    def see(rows: np.ndarray, slots: np.ndarray, logits: np.ndarray, *rest: np.ndarray) -> None:
        taps.see(rows, slots, logits, *rest)
        predicted[rows, slots] = logits.argmax(axis=1)

    ward.tap = see
    for b in range(len(beds)):
        ward.add(b)
    hour, second, by_hour, records = round(3600 * rate), round(rate), [], [[] for _ in beds]
    with quiet():
        for a in range(0, steps, hour):
            largest = 0.0
            for c in range(a, min(a + hour, steps), second):  # the state looked at every second
                fed = ward.feed({b: (bed.signals[c: c + second], times[b][c: c + second])
                                 for b, bed in enumerate(beds)})
                for b in range(len(beds)):
                    records[b] += fed[b]
                    largest = max(largest, float(np.abs(ward.pool.state(b)).max()))
            by_hour.append(largest)
    split = Streamed(beds, point, taps, records, rate, labels)
    to_model = np.array([labels.index(n) if n in labels else -1 for n in names])
    hits, scored = np.zeros(steps), np.zeros(steps)
    for b, (bed, recs) in enumerate(zip(beds, records, strict=True)):
        start = 0  # accuracy from the frame's calibration on (nothing before it is in the model's frame)
        if point.frame is not None:
            calibrations = [int(r["id"].split(":")[0]) for r in recs if r["id"].endswith(":reset-calibrated")]
            start = calibrations[0] if calibrations else steps
        counted = (bed.labels > 0) & (np.arange(steps) >= start)
        hits += counted & (predicted[b] == to_model[bed.labels])
        scored += counted
    by = [slice(a, a + hour) for a in range(0, steps, hour)]
    return {"hours": steps / rate / 3600, "wearers": len(beds), "per_sample_accuracy": float(hits.sum() / scored.sum()),
            "per_sample_accuracy_by_hour": [float(hits[h].sum() / max(1, scored[h].sum())) for h in by],
            "max_abs_state_by_hour": by_hour, "alarms": split.evaluate()[0]}


def _fit(signals: np.ndarray, steps: int) -> np.ndarray:
    """The model-rate stream cut or padded (last sample held) to the labels' length."""
    if len(signals) >= steps:
        return signals[:steps]
    return np.concatenate([signals, np.repeat(signals[-1:], steps - len(signals), axis=0)])


def _details(split: Streamed, per: list) -> dict:
    """What limits the numbers: each missed event with the best score it reached in its window; each false alarm."""
    early, late = round(EARLY_S * split.rate), round(LATE_S * split.rate)
    missed, false_alarms = [], []
    for rec, events, result, scores in zip(split.recordings, split.events, per, split.engine_scores, strict=True):
        for event, delay in zip(events, result.delays_s, strict=True):
            if delay is None:
                window = scores[max(0, event.onset - early): event.onset + late + 1]
                missed.append({"recording": rec.name, "label": event.label, "t": event.onset / split.rate,
                               "max_score_in_window": round(float(window.max()), 4)})
        false_alarms += [{"recording": rec.name, "t": s / split.rate} for s in result.false_alarms]
    return {"missed": missed, "false_alarms": false_alarms}
