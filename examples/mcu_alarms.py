"""The bed-exit alarm as Cortex-M firmware against `rnnedge monitor` on the host, over HAPT recordings.

    python examples/mcu_alarms.py artifacts/bundle                  # every test recording (~2 min)
    python examples/mcu_alarms.py artifacts/bundle --recording hapt:2:3

The bundle's a16w8 plain C step plus the monitor's score and alarm in C (rnnedge/devices/firmware/alarm_main.c)
run on a Cortex-M4F under QEMU; `Monitor` streams the same file through TFLite Micro on the host. Both use the
bundle's operating point without its upright frame (the firmware takes the sensor as recorded). Prints, per
recording, whether every alarm starts and ends at the same step, and exits 1 if any does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import rnnedge.runtime as rt
from rnnedge.data.hapt import hapt_recording, hapt_split
from rnnedge.devices.cortexm import TARGETS
from rnnedge.monitor.firmware import compare
from rnnedge.monitor.operating_point import DEFAULT, bundle_point


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--recording", default="test", help="hapt:SUBJECT[:EXPERIMENT], or test (all)")
    args = parser.parse_args()
    point = bundle_point(rt.load(args.bundle, backend="tflm", precision="a16w8")) or DEFAULT
    recordings = hapt_split("test").recordings if args.recording == "test" else [hapt_recording(args.recording)]
    runs = compare(args.bundle, point, recordings, TARGETS[0])
    for run in runs:
        starts = sum(1 for _, start in run.monitor if start)
        print(f"{run.recording}: {run.steps} steps, {starts} alarms, firmware "
              + ("identical" if run.firmware == run.monitor else f"DIFFERS: {run.firmware} vs {run.monitor}"))
    same = sum(run.firmware == run.monitor for run in runs)
    print(f"{same}/{len(runs)} recordings with identical alarms, "
          f"{sum(len(run.monitor) for run in runs)} transitions on the host")
    return 0 if same == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
