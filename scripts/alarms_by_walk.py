"""Attached lying, in every non-documented orientation of `evaluate-alarms --sweep`: where the monitor's alarm
starts (true and false) fall against each test recording's first labelled walk, the walk that resolves the frame.

    .venv/bin/python scripts/alarms_by_walk.py BUNDLE OPERATING_POINT.json [--precision int8]
"""

from __future__ import annotations

import argparse

import numpy as np

import rnnedge.runtime as rt
from rnnedge.data.hapt import HAPT_SPLITS, load_hapt
from rnnedge.data.recording import Recording
from rnnedge.monitor.evaluate import from_lying, streamed
from rnnedge.monitor.operating_point import OperatingPoint
from rnnedge.monitor.sweep import axis_rotations, random_rotations, rotate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("operating_point")
    parser.add_argument("--precision", default="int8")
    args = parser.parse_args()
    model = rt.load(args.bundle, precision=args.precision, backend="onnxruntime")
    point = OperatingPoint.load(args.operating_point)
    hapt = load_hapt()
    recordings = from_lying(hapt.subset(HAPT_SPLITS["test"]).recordings)
    channels, up = list(model.manifest.input.channels), np.asarray(point.frame) / np.linalg.norm(point.frame)
    walks = [np.flatnonzero(r.labels == hapt.label_names.index("WALKING")) for r in recordings]
    first_walk = [w[0] if len(w) else len(r) for w, r in zip(walks, recordings, strict=True)]
    total = [0, 0]
    for name, rotation in axis_rotations() + random_rotations(20, 0):  # the sweep's orientations (seed 0)
        if name.startswith("axes +x"):  # the documented placement and its turns about the long axis
            continue
        moved = [Recording(rotate(r.signals, rotation, channels), r.labels, r.subject, r.name) for r in recordings]
        starts = streamed(model, moved, point, "lying").engine_starts
        before = sum(sum(t < w for t in s) for s, w in zip(starts, first_walk, strict=True))
        after = sum(len(s) for s in starts) - before
        total = [total[0] + before, total[1] + after]
        off = np.degrees(np.arccos(np.clip((rotation @ up) @ up, -1, 1)))
        print(f"{name:16s} long axis {off:5.1f} deg off: {before} alarm starts before the first walk, {after} after")
    print(f"all: {total[0]} before the first walk, {total[1]} after")


if __name__ == "__main__":
    main()
