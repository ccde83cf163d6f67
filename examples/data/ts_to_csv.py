"""Convert a UEA/UCR `.ts` classification file into one CSV per series, as `rnnedge train --data` reads them.

    python examples/data/ts_to_csv.py BasicMotions_TRAIN.ts examples/data/basicmotions/train \
        --channels acc-x,acc-y,acc-z,gyro-x,gyro-y,gyro-z --rate 10

Each series becomes `NNNN.csv` (in file order, from 0000): a `t` column (seconds from the series' start at
`--rate`), the channel columns, and a `label` column holding the series' class on every row. Values are written
as Python's shortest round-trip form of the float64 read from the `.ts` file, so no precision is lost.
Variable-length series are kept at their own length. Standard library only; the output folder is replaced as
a whole (written beside it first, then renamed), so a failed conversion leaves the old one intact.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import tempfile
from pathlib import Path


class TsFormatError(ValueError):
    """The .ts file is not a classification file this converter understands."""


def parse_ts(path: Path, text: str | None = None) -> tuple[list[list[list[float]]], list[str]]:
    """Series as [dimension][step] lists of floats, and their class labels, in file order (`text`: the file's
    content when it is not on disk, e.g. in a wheel; `path` then only names it in errors)."""
    header: dict[str, str] = {}
    classes: list[str] = []
    series: list[list[list[float]]] = []
    labels: list[str] = []
    in_data = False
    content = path.read_text(encoding="utf-8") if text is None else text
    for line_number, line in enumerate(content.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(("#", "%")):  # comments (aeon's files use both)
            continue
        if not in_data:
            if not line.startswith("@"):
                raise TsFormatError(f"{path}:{line_number}: expected an @keyword before @data")
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
                classes = _classes(path, header)
            else:
                header[key] = value.strip()
            continue
        *dimensions, label = line.split(":")
        try:
            values = [[float(v) for v in dim.split(",")] for dim in dimensions]
        except ValueError:
            raise TsFormatError(f"{path}:{line_number}: a value is missing ('?') or not a number") from None
        if any(not math.isfinite(v) for dim in values for v in dim):
            raise TsFormatError(f"{path}:{line_number}: non-finite value")
        if len({len(dim) for dim in values}) != 1:
            raise TsFormatError(f"{path}:{line_number}: dimensions of one series differ in length")
        if series and len(values) != len(series[0]):
            raise TsFormatError(f"{path}:{line_number}: {len(values)} dimensions, the first series has "
                                f"{len(series[0])}")
        if label not in classes:
            raise TsFormatError(f"{path}:{line_number}: class {label!r} not in @classLabel {' '.join(classes)}")
        series.append(values)
        labels.append(label)
    if not series:
        raise TsFormatError(f"{path}: no series after @data")
    return series, labels


def _classes(path: Path, header: dict[str, str]) -> list[str]:
    """The class names the header declares (`@classLabel true A B C`)."""
    if header.get("timestamps", "false").lower() != "false":
        raise TsFormatError(f"{path}: @timeStamps true is not supported")
    words = header.get("classlabel", "").split()
    if len(words) < 2 or words[0].lower() != "true":
        raise TsFormatError(f"{path}: not a classification file (no '@classLabel true' with class names)")
    return words[1:]


def write_csvs(series: list[list[list[float]]], labels: list[str], out: Path, channels: list[str],
               rate_hz: float) -> int:
    """Write one CSV per series into `out` (replaced as a whole); returns the bytes written."""
    if any(len(s) != len(channels) for s in series):
        raise TsFormatError(f"{len(channels)} channel names for {len(series[0])} dimensions")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for number, (dims, label) in enumerate(zip(series, labels, strict=True)):
            with (staging / f"{number:04d}.csv").open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["t", *channels, "label"])
                for step, values in enumerate(zip(*dims, strict=True)):
                    writer.writerow([f"{step / rate_hz:.10g}", *map(repr, values), label])
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sum(f.stat().st_size for f in out.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ts_file", type=Path)
    parser.add_argument("out", type=Path, help="folder to write NNNN.csv into (replaced)")
    parser.add_argument("--channels", required=True, help="comma-separated names, one per .ts dimension")
    parser.add_argument("--rate", type=float, required=True, help="sample rate in Hz (for the t column)")
    args = parser.parse_args()
    series, labels = parse_ts(args.ts_file)
    size = write_csvs(series, labels, args.out, [c.strip() for c in args.channels.split(",")], args.rate)
    lengths = [len(s[0]) for s in series]
    print(f"{args.out}: {len(series)} files, {size:,} bytes, lengths {min(lengths)}-{max(lengths)}, "
          f"classes {' '.join(sorted(set(labels)))}")


if __name__ == "__main__":
    main()
