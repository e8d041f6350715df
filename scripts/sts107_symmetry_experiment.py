"""Experiment (not the shipped detector): would a left/right symmetry check see STS-107 earlier?

The orbiter heats symmetrically in a nominal entry, so for every group of left-side sensors with
right-side counterparts in the scenario (brake lines, actuators, wheel well, tyres, wheels,
hydraulic return lines, wing skin and structure, bondline, gear indications) we watch how much the
difference ``mean(left) - mean(right)`` changed over the last ``W`` seconds (5-s means, causal).
The threshold per group is ``factor`` times the largest absolute change seen in the nominal
training entries; held-out nominal entries and the failed entry are only scored.

    python scripts/sts107_symmetry_experiment.py [--seeds 5] [--window 60] [--factor 1.2]

It prints, per seed, the groups that trip on each held-out entry (false alarms) and the first
group and time that trip on the failed entry (seconds from entry interface).
"""

from __future__ import annotations

import argparse

import numpy as np

from vigil.model import TelemetryBlock
from vigil.scenarios import sts107


def groups() -> dict[str, tuple[list[str], list[str]]]:
    """Left channels and their right counterparts, grouped by channel kind (name without the index)."""
    names = [s.name for s in sts107.SENSORS]
    out: dict[str, tuple[list[str], list[str]]] = {}
    for name in names:
        right = "R" + name[1:]
        if name.startswith("L") and right in names:
            stem, last = name.rsplit("_", 1)
            kind = stem if len(last) == 1 else name  # LMG_BRAKE_LINE_T_A -> LMG_BRAKE_LINE_T
            out.setdefault(kind, ([], []))
            out[kind][0].append(name)
            out[kind][1].append(right)
    return out


def _causal_mean(x: np.ndarray, k: int = 5) -> np.ndarray:
    """Mean of the last ``k`` samples (NaN for the first k - 1); link dropouts are held over."""
    held = x.copy()
    ok = ~np.isnan(held)
    idx = np.where(ok, np.arange(len(held)), 0)
    np.maximum.accumulate(idx, out=idx)
    held = held[idx]
    c = np.cumsum(np.r_[0.0, held])
    out = np.full_like(held, np.nan)
    out[k - 1 :] = (c[k:] - c[:-k]) / k
    return out


def change(block: TelemetryBlock, left: list[str], right: list[str], window: int) -> np.ndarray:
    d = np.mean([block.column(c) for c in left], axis=0) - np.mean([block.column(c) for c in right], axis=0)
    m = _causal_mean(d)
    out = np.full_like(m, np.nan)
    out[window:] = m[window:] - m[:-window]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--factor", type=float, default=1.2)
    args = parser.parse_args()
    pairs = groups()
    print(f"{len(pairs)} left/right groups: {', '.join(pairs)}")
    for seed in range(args.seeds):
        sc = sts107.build_scenario(seed, config=False)
        thr = {
            k: args.factor * max(np.nanmax(np.abs(change(b, lt, rt, args.window))) for b in sc.nominal_train)
            for k, (lt, rt) in pairs.items()
        }
        false = [
            [k for k, (lt, rt) in pairs.items() if np.nanmax(np.abs(change(b, lt, rt, args.window))) > thr[k]]
            for b in sc.nominal_holdout
        ]
        t = sc.failed.time - sc.ei_epoch
        first = []
        for k, (lt, rt) in pairs.items():
            hit = np.flatnonzero(np.abs(np.nan_to_num(change(sc.failed, lt, rt, args.window))) > thr[k])
            if hit.size:
                first.append((float(t[hit[0]]), k))
        first.sort()
        print(f"seed {seed}: held-out false alarms {false}; failed entry first {first[:3]}")


if __name__ == "__main__":
    main()
