"""The bed-exit alarm on a Cortex-M: the bundle's plain C step plus the monitor's score and alarm ported to C
(rnnedge/devices/firmware/alarm_main.c), built and run under QEMU (rnnedge.devices.cortexm), against `Monitor` on
the host with the same integer file (the `tflm` backend carries the device's integer state, runtime/tflm.py).

The firmware takes the sensor as recorded and attached upright: the upright frame's calibration (frame.py) and
the fault detector stay on the host here, so the comparison uses the operating point without its frame."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rnnedge.data.recording import Recording
from rnnedge.devices import cortexm
from rnnedge.monitor.monitor import Monitor
from rnnedge.monitor.operating_point import OperatingPoint
from rnnedge.monitor.score import GetUpScore

MAX_TRANSITIONS = 512


@dataclass(frozen=True)
class AlarmRun:
    recording: str
    steps: int
    monitor: list[tuple[int, bool]]  # (step, start?) of each alarm transition, rnnedge monitor on the host
    firmware: list[tuple[int, bool]]  # the same from the firmware


def alarm_config(point: OperatingPoint, labels: list[str], y_scale: float, sample_rate_hz: float) -> str:
    """alarm_config.h: the point's constants as the host's score and alarm compute them (score.py, alarm.py)."""
    score = GetUpScore(point.score, labels, sample_rate_hz)
    a, b = score.get_up
    refractory = round(point.alarm.refractory_s * sample_rate_hz)
    return (f"#define MAX_TRANSITIONS {MAX_TRANSITIONS}\n#define Y_SCALE {float(np.float32(y_scale))!r}f\n"
            f"#define GET_UP_A {a}\n#define GET_UP_B {b}\n#define LYING {score.lying}\n"
            f"#define SCORE_ALPHA {score.alpha!r}\n#define SCORE_HOLD_STEPS {score.hold}L\n"
            f"#define SCORE_GATE_STEPS {score.gate_steps}L\n#define LYING_MIN {point.score.lying_min!r}\n"
            f"#define ALARM_THRESHOLD {point.alarm.threshold!r}\n#define ALARM_RELEASE {point.alarm.release!r}\n"
            f"#define ALARM_REFRACTORY_STEPS {refractory}L\n")


def compare(bundle: Path, point: OperatingPoint, recordings: list[Recording], target: cortexm.Target) -> list[AlarmRun]:
    """Each recording through `Monitor` (tflm, a16w8) and through the firmware: the alarm transitions of both."""
    import rnnedge.runtime as rt
    from rnnedge.runtime.litert import encoder

    point = replace(point, frame=None)
    _, entry, files = cortexm.plain_c(bundle, "a16w8")
    model = rt.load(bundle, backend="tflm", precision="a16w8")
    labels = list(model.manifest.output.labels)
    q = entry.quantization
    header = alarm_config(point, labels, q["y"].scale, model.manifest.input.sample_rate_hz)
    quantize = encoder({"dtype": np.dtype(np.int16), "quantization": (q["x"].scale, q["x"].zero_point)})
    runs = []
    for recording in recordings:
        monitor = Monitor(model, point, attach="upright")
        events = monitor.feed_chunk(recording.signals.astype(np.float32)) + monitor.flush()
        host = [(int(e["id"].split(":")[0]), e["event"] == "alarm_start") for e in events
                if e["event"] in ("alarm_start", "alarm_end")]
        fw = cortexm.build_and_run(files, entry.mcu.c.step.removesuffix("_step"),
                                   quantize(recording.signals.astype(np.float32)), target, "alarm_main.c",
                                   {"alarm_config.h": header}, ("alarms.bin",))
        pairs = np.frombuffer(fw.files["alarms.bin"], dtype="<i4").reshape(-1, 2)
        runs.append(AlarmRun(recording.name, len(recording), host, [(int(s), bool(k)) for s, k in pairs]))
    return runs

