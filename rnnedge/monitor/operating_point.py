"""The operating point: score settings + alarm settings, chosen on validation subjects and kept in a small JSON.

`rnnedge evaluate-alarms` chooses it on the HAPT validation subjects (never the test subjects) and writes
`operating_point.json`; `rnnedge monitor --operating-point FILE` reads it. Without a file the monitor uses
DEFAULT, the point that search chose for the default model (int8, ONNX Runtime and LiteRT agree).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rnnedge.atomic import write_text_atomic
from rnnedge.monitor.alarm import AlarmConfig
from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.score import ScoreConfig

FORMAT = "rnnedge-operating-point"


@dataclass(frozen=True)
class OperatingPoint:
    score: ScoreConfig = ScoreConfig()
    alarm: AlarmConfig = AlarmConfig()
    chosen_on: dict = field(default_factory=dict)  # provenance: bundle, split, rule, validation metrics

    def save(self, path: str | Path) -> Path:
        payload = {"format": FORMAT, "version": 1, **asdict(self)}
        return write_text_atomic(path, json.dumps(payload, indent=2) + "\n")

    @staticmethod
    def load(path: str | Path) -> OperatingPoint:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            if raw.get("format") != FORMAT or raw.get("version") != 1:
                raise MonitorError(f"{path}: not an rnnedge operating point (format/version)")
            return OperatingPoint(ScoreConfig(**raw["score"]), AlarmConfig(**raw["alarm"]), raw.get("chosen_on", {}))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError,
                ValueError) as exc:
            raise MonitorError(f"{path}: unreadable operating point ({exc})") from None


DEFAULT = OperatingPoint(ScoreConfig(smoothing_s=0.1, warmup_s=10.0), AlarmConfig(0.98, 0.49, 20.0),
                         {"note": "evaluate-alarms on HAPT validation subjects (18/18 get-ups, 1 false alarm in "
                                  "0.97 h), default model (60 epochs), ONNX and TFLite int8 agree"})
