"""`evaluate-alarms`: stream every HAPT validation and test recording through a bundle on the torch-free
runtime, choose the operating point on validation subjects only, then score it on the test subjects.

Each recording is streamed causally from a zero state (`stream.feed` over the whole recording gives the same
outputs as stepping, which the runtime's tests prove) and scored with the same GetUpScore and Alarm classes the
live monitor steps, so these numbers are the monitor's.

Choosing (`choose`): every point of GRID is scored on validation; a point is allowed if its false alarms are
at most `max_false_alarms_per_hour` x validation other-hours, rounded to the nearest whole alarm (validation
is ~1 hour: 1.0/h allows one); among allowed points the best has the highest recall, then fewest false
alarms, then lowest median delay, then the longest refractory period and highest threshold (the quietest).

The sensor fault detector (faults.py) runs over every recording as in the monitor: its blocked steps score 0 and
are counted as sensor_check hours, apart from the false-alarm denominator. `--sweep` (sweep.py) scores the test
subjects again in other orientations and at other sensor rates, with the point chosen here, worst case first.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rnnedge.atomic import write_text_atomic
from rnnedge.data.hapt import HAPT_SPLITS, load_hapt
from rnnedge.data.recording import Recording
from rnnedge.monitor.alarm import AlarmConfig, alarm_intervals
from rnnedge.monitor.events import EARLY_S, LATE_S, get_up_events, score_recording, summarize, unlabelled_get_ups
from rnnedge.monitor.faults import FaultDetector
from rnnedge.monitor.frame import UprightFrame
from rnnedge.monitor.gaps import gap_condition
from rnnedge.monitor.operating_point import OperatingPoint
from rnnedge.monitor.report_md import markdown
from rnnedge.monitor.score import GetUpScore, ScoreConfig
from rnnedge.monitor.splice import fault_conditions
from rnnedge.monitor.sweep import at_rate, axis_rotations, on_feet, random_rotations, rotate

SCORE_GRID = [ScoreConfig(smoothing_s=s, lying_gate_s=g, warmup_s=w)
              for s, g, w in itertools.product((0.0, 0.1, 0.2, 0.4), (0.0, 5.0, 30.0), (3.0, 10.0))]
ALARM_GRID = [AlarmConfig(t, t * r, f) for t, r, f in itertools.product(
    (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98), (0.5, 1.0), (0.0, 5.0, 20.0))]


def recording_logits(model, recordings: list[Recording], starts: list[int] | None = None,
                     frames: list | None = None) -> list[np.ndarray]:
    """Per-step logits of each recording, each streamed from a fresh zero state (from `starts`, in `frames`)."""
    if starts is None:
        return [model.stream().feed(r.signals) for r in recordings]
    return [model.stream().feed(f.apply(r.signals[s:])) if s < len(r) else np.zeros((0, model.outputs), np.float32)
            for r, s, f in zip(recordings, starts, frames, strict=True)]


def upright(label: str = "STANDING") -> list[float]:
    """The model's upright direction: gravity's mean direction in the training subjects while standing."""
    data = load_hapt()
    code = data.label_names.index(label)
    acc = np.concatenate([r.signals[r.labels == code, :3] for r in data.subset(HAPT_SPLITS["train"]).recordings])
    mean = acc.astype(np.float64).mean(axis=0)
    return [round(v, 4) for v in (mean / np.linalg.norm(mean)).tolist()]


def calibrated(recordings: list[Recording], channels: list[str], rate: float, up: list[float],
               attach: str = "upright") -> tuple[list, list]:
    """Each recording's calibration step (len if never: no alarm in it) and its calibrated frame (frame.py)."""
    frames = [UprightFrame(channels, rate, up, attach) for _ in recordings]
    starts = [f.calibrate(r.signals) for r, f in zip(recordings, frames, strict=True)]
    return [len(r) if s is None else s for r, s in zip(recordings, starts, strict=True)], frames


def from_lying(recordings: list[Recording]) -> list[Recording]:
    """Each recording from its first LAYING sample on (a sensor attached to a patient in bed); those that never
    lie are left out."""
    code = load_hapt().label_names.index("LAYING")
    firsts = [np.flatnonzero(r.labels == code) for r in recordings]
    return [Recording(r.signals[f[0]:], r.labels[f[0]:], r.subject, f"{r.name} from lying")
            for r, f in zip(recordings, firsts, strict=True) if len(f)]


def scored_split(model, recordings: list[Recording], up: list[float] | None, attach: str = "upright") -> Scored:
    """A split streamed as the monitor would: from the start, or from its frame's calibration (attached `attach`)."""
    manifest = model.manifest
    labels, rate, channels = list(manifest.output.labels), manifest.input.sample_rate_hz, list(manifest.input.channels)
    if up is None:
        return Scored(recordings, recording_logits(model, recordings), labels, rate, channels)
    starts, frames = calibrated(recordings, channels, rate, up, attach)
    if attach == "upright":
        return Scored(recordings, recording_logits(model, recordings, starts, frames), labels, rate, channels, starts)
    # lying: the frame is the sensor's own, so the model streams from the start and keeps its state at calibration,
    # which stands only if the model saw the wearer lying over the still window (frame.confirm, as the monitor does)
    logits, p_lying = recording_logits(model, recordings), GetUpScore(ScoreConfig(), labels, rate).p_lying
    for i, (start, frame, y) in enumerate(zip(starts, frames, logits, strict=True)):
        window = [p_lying(row) for row in y[max(0, start - frame.window):start]]
        if frame.calibrated and not frame.confirm(float(np.mean(window or [0.0]))):
            starts[i] = len(recordings[i])
    return Scored(recordings, [y[s:] for y, s in zip(logits, starts, strict=True)], labels, rate, channels, starts)


class Scored:
    """A split's recordings with their logits, scored under any operating point (scores cached per config)."""

    def __init__(self, recordings: list[Recording], logits: list[np.ndarray], labels: list[str],
                 sample_rate_hz: float, channels: list[str] | None = None, starts: list[int] | None = None) -> None:
        """`starts`: where each recording's logits begin (an upright frame's calibration): no alarm before."""
        names = load_hapt().label_names
        self.recordings, self.logits, self.labels, self.rate = recordings, logits, labels, sample_rate_hz
        self.events = [get_up_events(r.labels, names) for r in recordings]
        self.unlabelled = [unlabelled_get_ups(r.labels, names) for r in recordings]
        channels = channels or load_hapt().channels
        self.blocked = [FaultDetector(channels, sample_rate_hz).mask(r.signals) for r in recordings]
        self.starts = starts or [0] * len(recordings)
        for blocked, start in zip(self.blocked, self.starts, strict=True):
            blocked[:start] = True  # waiting for calibration: no alarm, counted with sensor_check time
        self._scores: dict[ScoreConfig, list[np.ndarray]] = {}

    def scores(self, config: ScoreConfig) -> list[np.ndarray]:
        if config not in self._scores:  # a sensor fault blocks alarms, as in the monitor
            self._scores[config] = [
                np.concatenate([np.zeros(start), GetUpScore(config, self.labels, self.rate).feed(y)]) * ~blocked
                for y, blocked, start in zip(self.logits, self.blocked, self.starts, strict=True)]
        return self._scores[config]

    def alarms(self, point: OperatingPoint) -> list[list[tuple[int, int]]]:
        return [alarm_intervals(s, point.alarm, self.rate) for s in self.scores(point.score)]

    def evaluate(self, point: OperatingPoint) -> tuple[dict, list]:
        per = [score_recording([a for a, _ in alarms], events, len(r), self.rate, unlabelled=unlabelled,
                               blocked=blocked)
               for alarms, events, unlabelled, r, blocked in zip(self.alarms(point), self.events, self.unlabelled,
                                                                  self.recordings, self.blocked, strict=True)]
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


def choose(val: Scored, max_false_alarms_per_hour: float) -> tuple[OperatingPoint, dict]:
    rows = [(OperatingPoint(s, a), val.evaluate(OperatingPoint(s, a))[0])
            for s, a in itertools.product(SCORE_GRID, ALARM_GRID)]
    allowed = round(max_false_alarms_per_hour * rows[0][1]["other_hours"])
    feasible = [r for r in rows if r[1]["false_alarms"] <= allowed]

    def rank(row: tuple[OperatingPoint, dict]) -> tuple:
        point, m = row
        return (-m["recall"], m["false_alarms"], m["median_delay_s"] if m["median_delay_s"] is not None else 1e9,
                -point.alarm.refractory_s, -point.alarm.threshold)

    point, metrics = min(feasible or rows, key=rank)
    rule = {"split": "val", "subjects": list(HAPT_SPLITS["val"]), "points_tried": len(rows),
            "max_false_alarms_per_hour": max_false_alarms_per_hour, "false_alarms_allowed": allowed,
            "budget_met": bool(feasible)}
    return point, {"rule": rule, "validation": metrics}


def evaluate_alarms(model, out_dir: Path, point: OperatingPoint | None = None,
                    max_false_alarms_per_hour: float = 1.0, trace: str | None = None,
                    sweep: dict | None = None, frame: bool = False, long_hours: float = 0.0,
                    faults: bool = False, attach: str = "upright", gaps: bool = False) -> dict:
    """Choose (unless `point` is given) on validation, score on test; write report.json, operating_point.json
    and trace.png (the `trace` HAPT recording, 'hapt:SUBJECT[:EXP]'; default: the first test recording).
    `sweep` ({"random": N, "seed": S, "rates": [Hz...]}): also the placements and rates (sweep.py), in
    report["sweep"] worst first, and placements.png. `frame`: choose a point that calibrates an upright frame
    (frame.py) in every recording; a given `point` brings its own. `long_hours`: also the test subjects streamed
    back to back for that long without a reset (report["long_stream"]). `faults`: synthetic sensor faults spliced
    into the test recordings, through the monitor (splice.py, report["faults"]). `attach`: the wearer's posture
    when the sensor goes on (frame.py); "lying" streams every recording from its first lying sample (validation and
    test alike). `gaps`: each test subject's recordings back to back through the monitor with the clock jumping
    between them (gaps.py, report["gaps"])."""
    from rnnedge.data.hapt import hapt_recording
    from rnnedge.monitor.plot import plot_sweep, plot_trace

    started = time.monotonic()
    manifest, dataset = model.manifest, load_hapt()
    rate = manifest.input.sample_rate_hz
    splits = {name: dataset.subset(HAPT_SPLITS[name]).recordings for name in ("val", "test")}
    if attach == "lying":
        splits = {name: from_lying(recs) for name, recs in splits.items()}
    up = point.frame if point is not None else (upright() if frame else None)
    scored = {name: scored_split(model, recs, up, attach) for name, recs in splits.items()}
    if point is None:
        chosen, provenance = choose(scored["val"], max_false_alarms_per_hour)
        point = OperatingPoint(chosen.score, chosen.alarm, {**provenance, "bundle": manifest.name,
                                                            "backend": model.backend, "model_sha256": model.sha256},
                               up)
    test_metrics, per = scored["test"].evaluate(point)
    out_dir.mkdir(parents=True, exist_ok=True)
    point.save(out_dir / "operating_point.json")
    report = {
        "bundle": str(model.bundle), "backend": model.backend, "model_sha256": model.sha256, "attach": attach,
        "definitions": {"event": "onset of a LIE_TO_SIT/LIE_TO_STAND run", "detected_window_s": [-EARLY_S, LATE_S],
                        "other_hours": "streamed time outside [onset - early, end of get-up run), unlabelled included"},
        "operating_point": asdict(point),
        "validation": scored["val"].evaluate(point)[0],
        "test": test_metrics,
        "test_subjects": list(HAPT_SPLITS["test"]),
        "test_details": _details(scored["test"], per, point),
    }
    recording = hapt_recording(trace) if trace else splits["test"][0]
    one = scored_split(model, [recording], point.frame, attach) if trace else scored["test"]  # with point.frame
    report["trace"] = plot_trace(recording, one.scores(point.score)[0], one.alarms(point)[0], point,
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


def sweep_conditions(model, recordings: list[Recording], point: OperatingPoint, options: dict,
                     attach: str = "upright") -> list[dict]:
    """Each orientation and sensor rate's test metrics under `point`, worst first (lowest recall, then most
    false alarms per hour)."""
    manifest = model.manifest
    rate, channels = manifest.input.sample_rate_hz, list(manifest.input.channels)
    conditions = [(name, lambda x, r=r: rotate(x, r, channels)) for name, r in
                  axis_rotations() + random_rotations(options.get("random", 20), options.get("seed", 0))]
    conditions += [(f"rate {hz:g} Hz", lambda x, hz=hz: _fit(at_rate(x, rate, hz), len(x)))
                   for hz in options.get("rates", [])]
    rows = []
    for name, transform in conditions:
        moved = [Recording(transform(r.signals), r.labels, r.subject, r.name) for r in recordings]
        metrics = scored_split(model, moved, point.frame, attach).evaluate(point)[0]
        rows.append({"condition": name, **metrics})
    return sorted(rows, key=lambda m: (m["recall"], -m["false_alarms_per_hour"]))


def long_stream(model, recordings: list[Recording], point: OperatingPoint, hours: float,
                attach: str = "upright") -> dict:
    """The recordings back to back, repeated to at least `hours`, streamed once without any reset (as a monitor
    runs all night; an upright frame calibrated once, at the start): per-sample accuracy and the largest |state|
    (looked at every second) per hour streamed, and the alarms over the whole stream."""
    manifest = model.manifest
    rate, labels = manifest.input.sample_rate_hz, list(manifest.output.labels)
    names = load_hapt().label_names
    repeats = max(1, int(np.ceil(hours * 3600 * rate / sum(len(r) for r in recordings))))
    signals = np.concatenate([r.signals for r in recordings] * repeats)
    truth = np.concatenate([r.labels for r in recordings] * repeats)
    whole = Recording(signals, truth, 0, f"test subjects x{repeats}")
    start, frame = 0, None
    if point.frame is not None:
        starts, frames = calibrated([whole], list(manifest.input.channels), rate, point.frame, attach)
        start, frame = starts[0], frames[0]
    stream, hour, second = model.stream(), round(3600 * rate), round(rate)
    logits, by_hour = [], []
    for a in range(start, len(signals), hour):
        piece = signals[a: a + hour]
        piece, largest = frame.apply(piece) if frame is not None else piece, 0.0
        for b in range(0, len(piece), second):  # the state looked at every second
            logits.append(stream.feed(piece[b: b + second]))
            largest = max(largest, float(np.abs(stream.state).max()))
        by_hour.append(largest)
    y = np.concatenate(logits) if logits else np.zeros((0, len(labels)), np.float32)
    to_model = np.array([labels.index(n) if n in labels else -1 for n in names])
    hit = y.argmax(axis=1) == to_model[truth[start:]]
    scored = truth[start:] > 0
    accuracy = [float(hit[a: a + hour][scored[a: a + hour]].mean()) for a in range(0, len(y), hour)]
    metrics = Scored([whole], [y], labels, rate, list(manifest.input.channels), [start]).evaluate(point)[0]
    return {"hours": len(signals) / rate / 3600, "repeats": repeats, "per_sample_accuracy": float(hit[scored].mean()),
            "per_sample_accuracy_by_hour": accuracy, "max_abs_state_by_hour": by_hour, "alarms": metrics}


def _fit(signals: np.ndarray, steps: int) -> np.ndarray:
    """The model-rate stream cut or padded (last sample held) to the labels' length."""
    if len(signals) >= steps:
        return signals[:steps]
    return np.concatenate([signals, np.repeat(signals[-1:], steps - len(signals), axis=0)])


def _details(scored: Scored, per: list, point: OperatingPoint) -> dict:
    """What limits the numbers: each missed event with the best score it reached in its window; each false alarm."""
    early, late = round(EARLY_S * scored.rate), round(LATE_S * scored.rate)
    missed, false_alarms = [], []
    for rec, events, result, scores in zip(scored.recordings, scored.events, per, scored.scores(point.score),
                                           strict=True):
        for event, delay in zip(events, result.delays_s, strict=True):
            if delay is None:
                window = scores[max(0, event.onset - early): event.onset + late + 1]
                missed.append({"recording": rec.name, "label": event.label, "t": event.onset / scored.rate,
                               "max_score_in_window": round(float(window.max()), 4)})
        false_alarms += [{"recording": rec.name, "t": s / scored.rate} for s in result.false_alarms]
    return {"missed": missed, "false_alarms": false_alarms}

