"""Diagnostics behind BENCHMARKS.md's issue 9 "third round" notes; labels only read to score.

    python3 scripts/detector_diagnostics.py ucr-checks --data /work/data/ucr_anomaly
    python3 scripts/detector_diagnostics.py shape-variants --data /work/data/ucr_anomaly
    python3 scripts/detector_diagnostics.py smap-alarms --data /work/data/smap_msl

* ``ucr-checks``: per series, each check's highest score inside [begin - 100, end + 100] (the shape
  score shifted to its window's middle) and outside it; for the misses, whether any check saw the
  anomaly (>= 1) and which check won elsewhere.
* ``shape-variants``: the shape check alone (its own highest distance, located at the window's
  middle) on the series with a period, for the representation variants compared there.
* ``smap-alarms``: every alarm of the default detector on SMAP/MSL, the check at its peak and
  whether it overlaps a labelled anomaly; the largest score seen.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from vigil.bench.ucr import TOLERANCE, read_series
from vigil.detect.forecast import ForecastDetector
from vigil.detect.shape import _k_centres, _nearest, _thin, dominant_period
from vigil.model import TelemetryBlock


def _series(data: Path):
    for path in sorted(data.glob("*.txt")):
        yield path.name, *read_series(path)


def ucr_checks(data: Path) -> None:
    outcome: collections.Counter = collections.Counter()
    for name, v, tr, b, e in _series(data):
        blk = TelemetryBlock.from_arrays(np.arange(v.size, dtype=float), v[:, None], ["x"])
        det = ForecastDetector().fit(blk.slice(0, tr))
        s = det.score(blk.slice(tr, v.size))
        lo, hi = b - 1 - TOLERANCE - tr, e - 1 + TOLERANCE - tr
        width = int(det.shape_.block_[0] * det.shape_.points)
        best: dict[str, tuple[float, float]] = {}
        for code, check in enumerate(det.CHECKS):
            x = np.where(s.by[:, 0] == code, s.score[:, 0], np.nan)
            shift = (width - 1) // 2 if check.endswith("shape") else 0
            a, z = max(lo + shift, 0), hi + shift + 1
            inside, outside = x[a:z], np.r_[x[:a], x[z:]]
            best[check] = (np.nanmax(inside, initial=0.0), np.nanmax(outside, initial=0.0))
        seen = max(i for i, _ in best.values())
        if seen > max(o for _, o in best.values()):
            outcome["hit"] += 1
            continue
        winner = max(best, key=lambda k: best[k][1])
        outcome[(winner, "anomaly flagged" if seen >= 1 else "anomaly not seen")] += 1
        print(name, {k.split(".")[-1]: (round(i, 2), round(o, 2)) for k, (i, o) in best.items()})
    print(dict(outcome))


def _windows(z, b, points, ends, znorm):
    csum = np.concatenate(([0.0], np.cumsum(z)))
    means = (csum[b:] - csum[:-b]) / b
    w = means[ends[:, None] - b * np.arange(points - 1, -1, -1)[None, :] - (b - 1)]
    w = w - w.mean(axis=1, keepdims=True)
    return w / np.maximum(w.std(axis=1, keepdims=True), znorm) if znorm else w


def shape_variants(data: Path) -> None:
    series = list(_series(data))
    variants = [{}, {"centres": 128}, {"points": 64}, {"points": 16}, {"znorm": 0.05}, {"points": 64, "znorm": 0.05},
                {"min_acf": 0.3}, {"period": 0.5}, {"period": 2.0}]  # fmt: skip
    for opts in variants:
        points, centres, znorm = opts.get("points", 32), opts.get("centres", 32), opts.get("znorm", 0.0)
        ok = n = 0
        for _, v, tr, b, e in series:
            p = dominant_period(v[:tr], min(2000, tr // 4), opts.get("min_acf", 0.5))
            if p == 0:
                continue
            n += 1
            blk = -(-int(p * opts.get("period", 1.0)) // points)
            z = (v - v[:tr].mean()) / v[:tr].std()
            ends = np.arange(blk * points - 1, tr)
            held = (ends // (2 * p)) % 2 == 1
            dictionary = _k_centres(_windows(z[:tr], blk, points, _thin(ends[~held]), znorm), centres)
            tends = np.arange(tr + blk - 1, v.size, blk)
            w = _windows(z, blk, points, tends, znorm)
            d = np.concatenate([_nearest(w[i : i + 2000], dictionary) for i in range(0, len(w), 2000)])
            at = tends[np.argmax(d)] - (blk * points - 1) // 2
            ok += b - 1 - TOLERANCE <= at <= e - 1 + TOLERANCE
        print(opts or "default", f"{ok} of {n} series with a period")


def smap_alarms(data: Path) -> None:
    from vigil.detect import build_detector
    from vigil.detect.events import runs
    from vigil.ingest.telemanom import load_telemanom

    counts: collections.Counter = collections.Counter()
    largest = 0.0
    for ch in load_telemanom(data).channels:
        s = build_detector(None).fit(ch.train).score(ch.test)
        largest = max(largest, float(np.nanmax(s.score[:, 0], initial=0.0)))
        for a, z in runs(s.level[:, 0] > 0):
            i = a + int(np.nanargmax(s.score[a : z + 1, 0]))
            hit = any(not (z < la or a > lb) for la, lb in ch.anomalies)
            counts[(s.detector[s.by[i, 0]], "labelled" if hit else "not labelled")] += 1
    for key, n in sorted(counts.items()):
        print(key, n)
    print("largest score", largest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("ucr-checks", "shape-variants", "smap-alarms"))
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    {"ucr-checks": ucr_checks, "shape-variants": shape_variants, "smap-alarms": smap_alarms}[args.what](args.data)


if __name__ == "__main__":
    main()
