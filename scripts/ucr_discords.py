"""Peer for ``vigil bench ucr``: plain matrix-profile discords (stumpy, window 100), same protocol.

For each series of the UCR anomaly archive: the z-normalised distance of every test window (100
points) to its nearest training window (stumpy's AB-join, ``stumpy.stump(test, 100, train,
ignore_trivial=False)``); the prediction is the start of the test window farthest from everything
in the training part (the top discord against history), correct within 100 points of the labelled
anomaly, as in :mod:`vigil.bench.ucr`. Prints the summary and writes the same JSON keys.

    python3 scripts/ucr_discords.py --data /work/data/ucr_anomaly --out discords.json [--per-series FILE.csv]

``--window period`` sets each series' window to its training part's dominant period, found by the
rule Vigil's shape check uses (:func:`vigil.detect.shape.dominant_period`: the highest
autocorrelation peak after the first zero crossing, at least 0.5, at most a quarter of the training
part and 2,000 points), and 100 where there is none: the stronger peer the issue quotes.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import stumpy
from tqdm import tqdm

from vigil.bench.ucr import TOLERANCE, read_series, top1
from vigil.detect.shape import dominant_period
from vigil.errors import DataError

WINDOW = 100


def window_of(train: np.ndarray, rule: str) -> int:
    """The window for one series: ``WINDOW``, or (``rule == "period"``) the training part's dominant period."""
    if rule != "period":
        return WINDOW
    return dominant_period(train, min(2000, train.size // 4), 0.5) or WINDOW


def discord(values: np.ndarray, train_end: int, window: int = WINDOW) -> int:
    """0-based index (into the series) of the middle of the test window farthest from the training part."""
    test, train = values[train_end:], values[:train_end]
    profile = stumpy.stump(test, window, T_B=train, ignore_trivial=False)[:, 0].astype(np.float64)
    return train_end + top1(profile) + (window - 1) // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("discords.json"))
    parser.add_argument("--per-series", type=Path, default=None)
    parser.add_argument("--window", choices=("100", "period"), default="100", help="100, or each series' period")
    args = parser.parse_args()
    stumpy.stump(np.random.default_rng(0).normal(size=300), WINDOW)  # compile outside the timing
    rows, errors, seconds = [], {}, 0.0
    for path in tqdm(sorted(args.data.glob("*.txt")), desc="series", unit="series"):
        try:
            values, train_end, begin, end = read_series(path)
            window = window_of(values[:train_end], args.window)
            if values.size - train_end < window or train_end < window:
                raise DataError(f"a part shorter than the window of {window}", source=str(path))
        except (DataError, OSError, UnicodeDecodeError) as err:
            errors[path.name] = str(err)
            continue
        started = time.perf_counter()
        predicted = discord(values, train_end, window)
        took = time.perf_counter() - started
        seconds += took
        correct = begin - 1 - TOLERANCE <= predicted <= end - 1 + TOLERANCE
        rows.append(
            {"file": path.name, "window": window, "predicted": predicted, "correct": correct, "seconds": round(took, 4)}
        )
    correct = sum(r["correct"] for r in rows)
    report = {
        "series": len(rows),
        "correct": correct,
        "top1_accuracy": round(correct / len(rows), 4) if rows else 0.0,
        "seconds": round(seconds, 2),
        "errors": errors,
        "detector": f"stumpy {stumpy.__version__} AB-join discord, window {args.window}",
        "tolerance": TOLERANCE,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.per_series is not None:
        with open(args.per_series, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["file"])
            writer.writeheader()
            writer.writerows(rows)
    print(f"{correct}/{len(rows)} correct, top-1 accuracy {report['top1_accuracy']:.3f}, {seconds:.1f} s")


if __name__ == "__main__":
    main()
