"""Read-only views of the monitor's per-channel state: the live values tick, the latest values, a
channel's recent history and the counters table (for the console, the API and run reports).

Kept apart from the monitor because none of this changes state or decides an alarm: these
functions take the arrays they show and build JSON-ready dicts and lists.

>>> values_tick(np.array([5.0]), np.array([[True, False]]), ("A", "B"), np.array([1.5, np.nan]),
...             np.array([2, 0], dtype=np.int8), np.zeros(2, dtype=bool))
{'type': 'values', 'time': 5.0, 'channels': ['A'], 'value': [1.5], 'level': [2], 'stale': [False]}
>>> counts = {"received": np.array([3, 1]), "scored": np.array([3, 0]), "missing": np.array([0, 1])}
>>> counter_table(counts, ("received", "scored", "missing"), ("A", "B"), np.array([False, True]), nonzero=True)
({'B': {'received': 1, 'scored': 0, 'missing': 1, 'is_stale': True}}, {'received': 4, 'scored': 3, 'missing': 1})
"""

from __future__ import annotations

import numpy as np

from vigil.monitor.history import Rings, decimate


def values_tick(
    time: np.ndarray,
    finite: np.ndarray,
    channels: tuple[str, ...],
    last_value: np.ndarray,
    last_level: np.ndarray,
    stale: np.ndarray,
) -> dict:
    """The ``{"type": "values", ...}`` tick of a scored block: the latest value, level and staleness
    of each channel that had a finite sample in it (``finite[n, c]``)."""
    idx = np.flatnonzero(finite.any(axis=0))
    return {
        "type": "values",
        "time": float(time[-1]),
        "channels": [channels[j] for j in idx.tolist()],
        "value": last_value[idx].tolist(),
        "level": last_level[idx].tolist(),
        "stale": stale[idx].tolist(),
    }


def latest(
    channels: tuple[str, ...], last_seen: np.ndarray, last_value: np.ndarray, last_level: np.ndarray
) -> dict[str, tuple[float, float, int]]:
    """Per channel that has reported: (time, value, level) of its last sample."""
    seen = np.flatnonzero(np.isfinite(last_value))
    return {channels[j]: (float(last_seen[j]), float(last_value[j]), int(last_level[j])) for j in seen.tolist()}


def history(rings: Rings, j: int, t0: float, t1: float | None, max_points: int) -> dict[str, list]:
    """Channel ``j``'s samples in the rings between ``t0`` and ``t1``, min/max-decimated to ``max_points``.

    Keys: time, value, expected, low, high (NaN where undefined) and level.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    series = decimate(rings.window(j, t0, t1), max_points)
    return {name: a.astype(np.float64 if name != "level" else np.int64).tolist() for name, a in series.items()}


def counter_table(
    counts: dict[str, np.ndarray], names: tuple[str, ...], channels: tuple[str, ...], stale: np.ndarray, nonzero: bool
) -> tuple[dict[str, dict], dict[str, int]]:
    """Per-channel counters ``names`` (with ``is_stale``) and their totals. With ``nonzero``, only
    channels with a problem count (the third counter and up) are listed."""
    table = np.stack([counts[k] for k in names], axis=1).tolist()
    rows = {}
    for j, name in enumerate(channels):
        if nonzero and not any(table[j][2:]):
            continue
        rows[name] = {**dict(zip(names, table[j])), "is_stale": bool(stale[j])}
    return rows, {k: int(counts[k].sum()) for k in names}
