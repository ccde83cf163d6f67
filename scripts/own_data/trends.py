"""Two synthetic series whose test split lies wholly above the training range: a check that a forecast holds past
the levels it trained on (the level shift, docs/design.md), on data no benchmark set or held-out series is.

    python scripts/own_data/trends.py --out artifacts/trends
    rnnedge train --data artifacts/trends/monthly.csv --channels value --sample-rate 1 --task forecast --seed 0 \
        --out artifacts/trends/monthly-run            # add --shift 0 to train without the level shift

`rnnedge train` prints the test split's MSE beside persistence's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def monthly(rng: np.random.Generator, n: int = 520) -> np.ndarray:
    """A Keeling-like curve: a quadratic trend, a yearly cycle of 12 steps with its first harmonic, white noise."""
    t = np.arange(n)
    season = 3.0 * np.sin(2 * np.pi * t / 12) + 0.55 * np.sin(4 * np.pi * t / 12) + 0.83 * np.cos(4 * np.pi * t / 12)
    return 315.0 + 0.08 * t + 1.2e-4 * t**2 + season + rng.normal(0.0, 0.3, n)


def weekly(rng: np.random.Generator, n: int = 2200) -> np.ndarray:
    """A slower trend, a yearly cycle of 52 steps and correlated noise (AR(1), 0.75) larger than a week's change."""
    t = np.arange(n)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = 0.75 * noise[i - 1] + rng.normal(0.0, 0.6)
    return 315.0 + 0.025 * t + 2.9 * np.sin(2 * np.pi * t / 52 - 0.46) + noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/trends"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, make in (("monthly", monthly), ("weekly", weekly)):
        values = make(rng)
        path = args.out / f"{name}.csv"
        path.write_text("t,value\n" + "".join(f"{i},{v:.4f}\n" for i, v in enumerate(values)))
        print(f"{path}: {len(values)} steps, {values.min():.1f} to {values.max():.1f}")


if __name__ == "__main__":
    main()
