"""The operating point: score settings + alarm settings, chosen on validation subjects and kept in a small JSON.

`rnnedge evaluate-alarms BUNDLE` chooses it on the HAPT validation subjects (never the test subjects), writes
`operating_point.json` beside its report and into the bundle (`write_to_bundle`: the manifest's `operating_point`
entry names the file and its sha256, so the point travels with the model and is checked like its files).
`rnnedge monitor BUNDLE` uses the bundle's point; `--operating-point FILE` overrides it; a bundle without one is
refused with a message saying how to get one: a point tuned for another model is never used silently.
`--operating-point default` (DEFAULT) is the explicit opt-in to the point chosen for the default model recipe
(tests/fixtures/hapt-tag-lstm-2x64.pt; int8, ONNX Runtime and LiteRT agree). The Python API (`Monitor(model)`)
falls back to DEFAULT with a warning when the bundle has no point (documented fallback for embedders that pass
their own point).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rnnedge.atomic import write_text_atomic
from rnnedge.bundle import SIGNATURE_NAME, OperatingPointFile, read_manifest, verify_file, with_changes, write_manifest
from rnnedge.digest import sha256_file
from rnnedge.monitor.alarm import AlarmConfig
from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.score import ScoreConfig

FORMAT = "rnnedge-operating-point"


@dataclass(frozen=True)
class OperatingPoint:
    score: ScoreConfig = ScoreConfig()
    alarm: AlarmConfig = AlarmConfig()
    chosen_on: dict = field(default_factory=dict)  # provenance: bundle, split, rule, validation metrics
    frame: list[float] | None = None  # the model's upright direction: calibrate an upright frame (frame.py)

    def save(self, path: str | Path) -> Path:
        payload = {"format": FORMAT, "version": 1, **asdict(self)}
        return write_text_atomic(path, json.dumps(payload, indent=2) + "\n")

    @staticmethod
    def load(path: str | Path) -> OperatingPoint:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_no_constant)
            if raw.get("format") != FORMAT or raw.get("version") != 1:
                raise MonitorError(f"{path}: not an rnnedge operating point (format/version)")
            frame = raw.get("frame")
            if frame is not None and (len(frame) != 3 or not all(isinstance(v, int | float) for v in frame)
                                      or not 0.5 < sum(v * v for v in frame) < 2):
                raise ValueError(f"frame must be a unit 3-vector, got {frame!r:.60}")
            return OperatingPoint(ScoreConfig(**raw["score"]), AlarmConfig(**raw["alarm"]), raw.get("chosen_on", {}),
                                  frame)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError,
                ValueError, MonitorError) as exc:
            raise MonitorError(f"{path}: unreadable operating point ({exc})") from None


DEFAULT = OperatingPoint(ScoreConfig(smoothing_s=0.2, warmup_s=3.0), AlarmConfig(0.98, 0.49, 20.0),
                         {"note": "evaluate-alarms on HAPT validation subjects with the upright frame (18/18 "
                                  "get-ups, 0 false alarms in 0.93 h), default model (60 epochs, state carried "
                                  "across recordings), ONNX and TFLite int8 agree"},
                         [0.9873, -0.1535, -0.04])


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a setting an operating point may hold")


def bundle_point(model) -> OperatingPoint | None:
    """The operating point in the model's bundle (hash-checked), or None if the bundle has none."""
    entry = model.manifest.operating_point
    if entry is None:
        return None
    return OperatingPoint.load(verify_file(model.bundle, entry.path, entry.sha256))


def resolve_point(model, spec: str | Path | None) -> OperatingPoint:
    """What `rnnedge monitor` runs with: `--operating-point` (a file, or "default"), else the bundle's point."""
    if spec is not None:
        return DEFAULT if str(spec) == "default" else OperatingPoint.load(spec)
    point = bundle_point(model)
    if point is None:
        raise MonitorError(f"{model.bundle}: the bundle has no operating point; run `rnnedge evaluate-alarms "
                           f"{model.bundle}` (it chooses one on validation subjects and writes it into the bundle), "
                           "or pass --operating-point FILE (or 'default' for the default model's)")
    return point


def write_to_bundle(bundle: str | Path, point: OperatingPoint) -> str:
    """Put `point` into the bundle: a file named by its content, then the manifest naming it (atomic), then the
    old file removed, so a kill at any moment leaves a consistent bundle. Returns what was done, in words.
    A signed bundle is left alone (its signature covers the manifest: re-signing needs the key)."""
    bundle = Path(bundle)
    if (bundle / SIGNATURE_NAME).exists():
        return f"{bundle} is signed: the point was not written into it (write it, then sign again with your key)"
    manifest = read_manifest(bundle)
    staged = point.save(bundle / ".operating_point.json.new")
    digest = sha256_file(staged)
    name = f"operating_point-{digest[:12]}.json"
    staged.replace(bundle / name)
    old = manifest.operating_point
    write_manifest(bundle, with_changes(manifest, operating_point=OperatingPointFile(path=name, sha256=digest)))
    if old is not None and old.path != name:
        (bundle / old.path).unlink(missing_ok=True)
    return f"operating point written into {bundle} ({name}, listed in {bundle}/manifest.json)"
