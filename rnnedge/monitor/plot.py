"""The PNG trace of one recording: signal, get-up score with thresholds, alarms, and ground truth."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rnnedge.data.hapt import GET_UP_LABELS
from rnnedge.data.recording import Recording
from rnnedge.monitor.events import get_up_events
from rnnedge.monitor.frame import CALIBRATION_S
from rnnedge.monitor.operating_point import OperatingPoint

log = logging.getLogger("rnnedge.monitor")


def plot_trace(recording: Recording, scores: np.ndarray, alarms: list[tuple[int, int]], point: OperatingPoint,
               label_names: list[str], sample_rate_hz: float, path: Path) -> dict | None:
    """Write the PNG; None (logged) where matplotlib is not installed, as on a bare device."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no trace PNG (pip install 'rnnedge[train]')")
        return None
    t = np.arange(len(recording)) / sample_rate_hz
    events = get_up_events(recording.labels, label_names)
    fig, (ax_sig, ax_p, ax_lab) = plt.subplots(3, 1, figsize=(14, 8), sharex=True,
                                               gridspec_kw={"height_ratios": [2, 2, 1.6]})
    for c, name in enumerate(("acc-x", "acc-y", "acc-z")):
        ax_sig.plot(t, recording.signals[:, c], lw=0.6, label=name)
    ax_sig.set_ylabel("acceleration (g)")
    ax_sig.legend(loc="upper right", ncol=3)
    # no alarm before the frame's calibration (an upright frame) and the score's warm-up have passed
    quiet_s = max(point.score.warmup_s, CALIBRATION_S if point.frame is not None else 0.0)
    ax_p.axvspan(0, quiet_s, color="gray", alpha=0.2, label=f"calibration + warm-up ({quiet_s:g} s, no alarm)")
    ax_p.plot(t, scores, lw=0.8, color="black", label="get-up score")
    ax_p.axhline(point.alarm.threshold, color="red", ls="--", lw=1.2, zorder=3,
                 label=f"threshold {point.alarm.threshold:g}")
    ax_p.axhline(point.alarm.release, color="orange", ls=":", lw=1.2, zorder=3,
                 label=f"release {point.alarm.release:g}")
    for i, (a, b) in enumerate(alarms):
        ax_p.axvspan(a / sample_rate_hz, b / sample_rate_hz, color="red", alpha=0.25, label="alarm" if i == 0 else None)
    ax_p.set_ylim(-0.03, 1.15)  # room above 1 so a threshold near it stays visible
    ax_p.set_ylabel("score (0-1)")
    ax_p.legend(loc="upper left", ncol=5, fontsize=8)
    ax_lab.step(t, recording.labels, where="post", lw=0.7, color="gray")
    for i, e in enumerate(events):
        ax_lab.axvspan(e.onset / sample_rate_hz, e.end / sample_rate_hz, color="green", alpha=0.35,
                       label=" / ".join(GET_UP_LABELS) if i == 0 else None)
    ax_lab.set_yticks(range(len(label_names)), label_names, fontsize=7)
    ax_lab.set_ylabel("true activity")
    ax_lab.set_xlabel("time (s)")
    ax_lab.legend(loc="upper right")
    fig.suptitle(f"{recording.name}: {len(events)} get-up events, {len(alarms)} alarms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"recording": recording.name, "path": str(path)}


def plot_sweep(rows: list[dict], path: Path) -> str | None:
    """Recall and false alarms per hour of each sweep condition (evaluate-alarms --sweep), one bar pair each."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no placements PNG (pip install 'rnnedge[train]')")
        return None
    rows = sorted(rows, key=lambda m: m["condition"])
    x = np.arange(len(rows))
    fig, (ax_r, ax_f) = plt.subplots(2, 1, figsize=(max(8, 0.28 * len(rows)), 7), sharex=True)
    ax_r.bar(x, [100 * m["recall"] for m in rows], color="tab:blue")
    ax_r.axhline(97, color="red", ls="--", lw=0.7, label="97%")
    ax_r.set_ylabel("get-ups alarmed within 1.5 s (%)")
    ax_r.set_ylim(0, 102)
    ax_r.legend(loc="lower right", fontsize=7)
    ax_f.bar(x, [m["false_alarms_per_hour"] for m in rows], color="tab:red")
    ax_f.axhline(1, color="black", ls="--", lw=0.7, label="1 per hour")
    ax_f.set_ylabel("false alarms per hour")
    ax_f.legend(loc="upper right", fontsize=7)
    ax_f.set_xticks(x, [m["condition"] for m in rows], rotation=90, fontsize=6)
    fig.suptitle("Test subjects per sensor orientation and rate (operating point chosen on validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
