"""evaluate-alarms' report.md: the results of report.json as one Markdown table, with the bundle, the backend,
the operating point, the machine and the date on top, so the docs quote what the command measured
(scripts/paste_results.py pastes it)."""

from __future__ import annotations

import time

from rnnedge.devices.info import detect_machine


def _alarms(m: dict) -> list[str]:
    delay = "-" if m.get("median_delay_s") is None else f"{m['median_delay_s']:.2f} / {m['p90_delay_s']:.2f} s"
    return [f"{m['detected']}/{m['events']} ({m['recall']:.1%})",
            f"{m['false_alarms']} in {m['other_hours']:.2f} h ({m['false_alarms_per_hour']:.2f}/h)", delay]


def markdown(report: dict) -> str:
    machine = detect_machine()
    point = report["operating_point"]
    alarm, score = point["alarm"], point["score"]
    head = [f"- bundle `{report['bundle']}` on {report['backend']}, attached {report['attach']}; operating point "
            f"threshold {alarm['threshold']:g}, release {alarm['release']:g}, refractory {alarm['refractory_s']:g} "
            f"s, smoothing {score['smoothing_s']:g} s, {'upright frame' if point.get('frame') else 'no frame'}",
            f"- machine: {machine.arch}, {machine.cpu_model}, {machine.cores} cores; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}; `rnnedge evaluate-alarms` in {report['elapsed_s']:g} s",
            "", "| condition | get-ups alarmed within 1.5 s | false alarms | delay median / p90 |", "|---|---|---|---|"]
    rows = [("validation subjects (chose the point)", report["validation"]), ("test subjects", report["test"])]
    if "gaps" in report:
        gaps = report["gaps"]
        rows.append((f"test, {gaps['gaps']} gaps of 120 s ({gaps['false_alarms_after_gap']} false alarms in the "
                     "30 s after one)", gaps))
    if "long_stream" in report:
        long = report["long_stream"]
        rows.append((f"{long['wearers']} test subjects, each {long['hours']:.1f} h without a reset", long["alarms"]))
    lines = head + [f"| {name} | " + " | ".join(_alarms(m)) + " |" for name, m in rows]
    for f in report.get("faults", []):
        lines.append(f"| fault: {f['fault']} {f['minutes']:g} min, the get-up after it | "
                     f"{f['get_up_after_detected']}/{f['recordings']} | {f['alarms_during']} during the fault | "
                     f"sensor_check in {f['sensor_check']}/{f['recordings']} |")
    sweep = report.get("sweep", [])
    if sweep:
        recalls = [m["recall"] for m in sweep]
        lines.append(f"| {len(sweep)} orientations and rates: mean / worst | {sum(recalls) / len(recalls):.1%} / "
                     f"{min(recalls):.1%} | at most {max(m['false_alarms_per_hour'] for m in sweep):.2f}/h | - |")
    return "\n".join(lines) + "\n"
