"""Per-channel ring buffers of recent samples and the one-pass kernel that fills them.

After a block is scored, :func:`absorb` walks it once (numba, row by row) and, for every
finite sample, writes value/expected/band/level into the channel's ring, updates the channel's
latest value and last-seen time, and tracks staleness row by row: a channel is stale at a row
when the row's time is more than its limit past the channel's last sample (also when that row
brings its next sample: the gap is reported, stale then fresh at once). Staleness is therefore
decided on the stream's own clock, so it does not depend on how the stream was chunked.
"""

from __future__ import annotations

import numba
import numpy as np

#: Fields kept per sample, and their dtypes (time float64; the rest compact).
FIELDS = (("time", np.float64), ("value", np.float64), ("expected", np.float32), ("low", np.float32),
          ("high", np.float32), ("level", np.int8))  # fmt: skip


class Rings:
    """``[size, c]`` ring buffers, one column per channel, written at row ``head[c]``.

    Time-major, so that writing one block row for many channels (which usually share a head)
    touches contiguous memory.
    """

    def __init__(self, n_channels: int, size: int) -> None:
        if size < 1:
            raise ValueError(f"history size must be >= 1, got {size}")
        self.size = size
        # Written now (np.full, not the lazily mapped np.zeros): the memory is claimed at start,
        # and the first scored blocks do not pay a page fault every 4 KiB.
        self.arrays = {name: np.full((size, n_channels), 0, dtype=dt) for name, dt in FIELDS}
        self.head = np.zeros(n_channels, dtype=np.int64)
        self.count = np.zeros(n_channels, dtype=np.int64)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values()) + self.head.nbytes + self.count.nbytes

    def window(self, j: int, t0: float | None, t1: float | None) -> dict[str, np.ndarray]:
        """Channel ``j``'s samples in time order, limited to ``t0 <= time <= t1``."""
        n = int(min(self.count[j], self.size))
        idx = (int(self.head[j]) - n + np.arange(n)) % self.size
        out = {name: a[idx, j] for name, a in self.arrays.items()}
        keep = np.ones(n, dtype=bool)
        if t0 is not None:
            keep &= out["time"] >= t0
        if t1 is not None:
            keep &= out["time"] <= t1
        return {name: a[keep] for name, a in out.items()}


def decimate(series: dict[str, np.ndarray], max_points: int) -> dict[str, np.ndarray]:
    """At most ``max_points`` samples: per bucket the minimum and maximum value, in time order.

    The kept samples carry their bucket's highest level, so decimation never hides an alarm
    (below, the level-3 sample at t=3 marks both samples kept from the first bucket).

    >>> s = {"time": np.arange(8.0), "value": np.array([0, 5, 1, 2, 9, 3, 4, 4.0]),
    ...      "level": np.array([0, 0, 0, 3, 0, 0, 0, 0], dtype=np.int8)}
    >>> d = decimate(s, 4)
    >>> d["time"].tolist(), d["value"].tolist(), d["level"].tolist()
    ([0.0, 1.0, 4.0, 5.0], [0.0, 5.0, 9.0, 3.0], [3, 3, 0, 0])
    """
    n = series["time"].size
    if n <= max_points:
        return series
    n_buckets = max(1, max_points // 2)
    bucket = np.arange(n) * n_buckets // n  # non-decreasing: buckets are runs of samples
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], n]
    value, counts = series["value"], ends - starts
    lo = _first_where(value == np.repeat(np.minimum.reduceat(value, starts), counts), bucket)
    hi = _first_where(value == np.repeat(np.maximum.reduceat(value, starts), counts), bucket)
    top = np.maximum.reduceat(series["level"], starts)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    idx = np.stack([first, second], axis=1).ravel()
    levels = np.repeat(top, 2)
    keep = np.stack([np.ones_like(first, dtype=bool), second != first], axis=1).ravel()
    out = {name: a[idx[keep]] for name, a in series.items()}
    out["level"] = levels[keep].astype(series["level"].dtype)
    return out


def _first_where(mask: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """Index of the first True of ``mask`` in each bucket (every bucket has one)."""
    pos = np.flatnonzero(mask)
    _, first = np.unique(bucket[pos], return_index=True)
    return pos[first]


@numba.njit(cache=True)
def absorb(
    time, values, level, expected, low, high, last_seen, last_value, last_level, limit, stale,
    h_time, h_value, h_expected, h_low, h_high, h_level, head, count,
):  # fmt: skip  # pragma: no cover - numba
    """Fill rings, latest values and staleness from one scored block; returns staleness changes.

    Each change is ``(kind, row, channel, last_seen)`` with kind 1 = went stale, 0 = fresh again.
    """
    n, c = values.shape
    size = h_time.shape[0]
    changes = [(np.int64(0), np.int64(0), np.int64(0), np.float64(0.0)) for _ in range(0)]
    if n > 0:
        for j in range(c):
            if np.isnan(last_seen[j]):
                last_seen[j] = time[0]  # never seen: the stream's start is the reference
    # Row by row, channels inner: reads and ring writes run along contiguous memory.
    for i in range(n):
        t = time[i]
        for j in range(c):
            x = values[i, j]
            if np.isfinite(x):
                p = head[j]
                h_time[p, j] = t
                h_value[p, j] = x
                h_expected[p, j] = expected[i, j]
                h_low[p, j] = low[i, j]
                h_high[p, j] = high[i, j]
                h_level[p, j] = level[i, j]
                head[j] = (p + 1) % size
                count[j] += 1
                last_value[j] = x
                last_level[j] = level[i, j]
                if not stale[j] and t - last_seen[j] > limit[j]:  # a gap no row fell in: stale, then fresh
                    stale[j] = True
                    changes.append((np.int64(1), np.int64(i), np.int64(j), last_seen[j]))
                if stale[j]:
                    stale[j] = False
                    changes.append((np.int64(0), np.int64(i), np.int64(j), last_seen[j]))
                last_seen[j] = t
            elif not stale[j] and t - last_seen[j] > limit[j]:
                stale[j] = True
                changes.append((np.int64(1), np.int64(i), np.int64(j), last_seen[j]))
    return changes
