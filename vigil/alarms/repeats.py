"""Since when each channel's value has repeated exactly: what an explanation of a stuck value says.

Kept by the alarm manager per channel in two arrays (the latest value, and the time it began
repeating), updated once per block in a few vectorised passes, and read only when a stuck check
raises or escalates an alarm. Missing samples (NaN) neither count nor break a repeat.

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> r = Repeats()
>>> r.add_channels(1)
>>> r.update(TelemetryBlock.from_arrays([0.0, 1.0, 2.0], [1.0, 5.0, 5.0], ["a"]), np.array([0]))
>>> later = TelemetryBlock.from_arrays([3.0, 4.0], [np.nan, 5.0], ["a"])
>>> r.since(later, 1, 0, 0)
1.0
"""

from __future__ import annotations

import numpy as np

from vigil.model import TelemetryBlock


class Repeats:
    """Per channel: the latest value seen and the time it began repeating exactly."""

    def __init__(self) -> None:
        self.value_ = np.zeros(0)
        self.since_ = np.zeros(0)

    def add_channels(self, m: int) -> None:
        self.value_ = np.concatenate([self.value_, np.full(m, np.nan)])
        self.since_ = np.concatenate([self.since_, np.full(m, np.nan)])

    def update(self, block: TelemetryBlock, idx: np.ndarray) -> None:
        """Take in a block whose columns are channels ``idx``."""
        v = block.values
        n, c = v.shape
        ok = np.isfinite(v)
        cols = np.arange(c)
        seen = ok.any(axis=0)
        last = v[n - 1] if ok[n - 1].all() else v[n - 1 - np.argmax(ok[::-1], axis=0), cols]
        differs = ok & (v != last[None, :]) if n > 1 else np.zeros((1, c), dtype=bool)
        moved = differs.any(axis=0)
        first = np.zeros(c, dtype=np.int64)
        if n > 1:  # the first valid row after the last one that differs
            start = np.where(moved, n - np.argmax(differs[::-1], axis=0), 0)
            first = np.argmax((np.arange(n)[:, None] >= start[None, :]) & ok, axis=0)
        old_v, old_t = self.value_[idx], self.since_[idx]
        kept = ~moved & (old_v == last)
        since = np.where(kept, old_t, block.time[first])
        self.since_[idx] = np.where(seen, since, old_t)
        self.value_[idx] = np.where(seen, last, old_v)

    def since(self, block: TelemetryBlock, i: int, k: int, j: int) -> float:
        """When the value at row ``i`` of column ``k`` (channel ``j``) began repeating, looking back
        into earlier blocks (call before :meth:`update` takes in this block)."""
        col = block.values[: i + 1, k]
        rows = np.flatnonzero(np.isfinite(col))
        differ = np.flatnonzero(col[rows] != col[i])
        if differ.size:
            return float(block.time[rows[differ[-1] + 1]])
        return float(self.since_[j]) if self.value_[j] == col[i] else float(block.time[rows[0]])
