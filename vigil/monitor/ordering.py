"""Records into rows: the reorder buffer between the arrival order and the rows the monitor scores.

Records ``(time, channel index, value)`` arrive in any order. :class:`PendingRecords` holds those
whose row is not final yet (a row is final once a record more than ``lateness_s`` later has
arrived), keeps the first of repeated ``(time, channel)`` pairs, and sorts out late records: one
for a row already final is a ``duplicate`` when that time and channel already had a sample (within
:data:`DUPLICATE_WINDOW_S` of the latest time), else ``out_of_order``. It also notes which pending
times hold *playback* records (received long after generation), so that the alarms they raise are
marked. :func:`grid` lays final records out as ``[rows, channels]`` blocks for the detector.

Kept apart from the monitor because this is the one place where arrival order matters: every rule
here depends only on the order records arrived in, never on how the stream was chunked. The
buffer is part of the monitor's checkpoint; the monitor exposes its fields under the attribute
names the checkpoint has always used (``_pend_t``, ``_max_seen``, ...; see
:data:`vigil.monitor.checkpoint.MONITOR_ATTRS`).

>>> counts = {k: np.zeros(2, dtype=np.int64) for k in ("duplicate", "out_of_order", "missing")}
>>> p = PendingRecords(lateness_s=0.0, playback_after_s=300.0)
>>> done = p.admit(np.array([1.0, 1.0, 2.0]), np.array([0, 0, 1]), np.array([5.0, 6.0, 7.0]), -np.inf, counts)
>>> p.take(done)[0].tolist(), counts["duplicate"].tolist(), p.t.tolist()
([1.0], [1, 0], [2.0])
>>> times, values, has = next(grid(np.array([2.0, 1.0]), np.array([1, 0]), np.array([7.0, 5.0]), 2, 100))
>>> times.tolist(), values.tolist()
([1.0, 2.0], [[5.0, nan], [nan, 7.0]])
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

#: Seconds behind the latest time within which a late record is checked against the samples
#: already taken (a duplicate) rather than counted as out-of-order without looking.
DUPLICATE_WINDOW_S = 60.0


class PendingRecords:
    """The records whose row is not final yet, and what decides whether a later record is late.

    Args:
        lateness_s: how long after a later record a row still accepts records.
        playback_after_s: live, a record received more than this long after its generation time
            (beyond the stream's usual delay) is playback.
    """

    def __init__(self, lateness_s: float, playback_after_s: float) -> None:
        self.lateness_s = lateness_s
        self.playback_after_s = playback_after_s
        self.t = np.empty(0)
        self.j = np.empty(0, dtype=np.int64)
        self.v = np.empty(0)
        self.max_seen = -math.inf  # the latest time accepted
        self.recent: dict[float, np.ndarray] = {}  # scored row time -> which channels had a sample
        self.playback_t: set[float] = set()  # pending row times that hold a playback record
        self.delay = math.inf  # the live stream's usual delay, reception - generation (its minimum)

    def admit(
        self, t: np.ndarray, j: np.ndarray, v: np.ndarray, emitted: float, counts: dict, received: float | None = None
    ) -> np.ndarray:
        """Take records in arrival order; returns which pending records are final now.

        ``emitted``: the time of the last scored row. Late, duplicate and missing (non-finite)
        records are counted per channel in ``counts``; late ones and repeats are not kept.
        """
        if received is not None:
            self._note_playback(t, received)
        # A record is late when its row was already final on arrival: at or before the last scored
        # row, or more than lateness_s before the latest time seen until then.
        prev_max = np.maximum.accumulate(np.concatenate(([self.max_seen], t)))[:-1]
        late = (t <= emitted) | (t < prev_max - self.lateness_s)
        if late.any():
            self._count_late(t, j, late, prev_max, counts)
            t, j, v = t[~late], j[~late], v[~late]
        if t.size == 0:
            return np.zeros(self.t.size, dtype=bool)
        self.max_seen = max(self.max_seen, float(t.max()))
        n_old = self.t.size
        all_t = np.concatenate((self.t, t))
        all_j = np.concatenate((self.j, j))
        all_v = np.concatenate((self.v, v))
        # Pending records were de-duplicated before, and the earliest arrival is kept, so only
        # this batch's records can repeat a (time, channel) pair.
        dup = _repeats(all_t, all_j)[n_old:]
        np.add.at(counts["duplicate"], j[dup], 1)
        np.add.at(counts["missing"], j[~dup & ~np.isfinite(v)], 1)
        keep = np.concatenate((np.ones(n_old, dtype=bool), ~dup))
        self.t, self.j, all_v = all_t[keep], all_j[keep], all_v[keep]
        self.v = np.where(np.isinf(all_v), np.nan, all_v)
        return self.t < self.max_seen - self.lateness_s

    def take(self, done: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remove the records marked ``done`` and return them ``(time, channel index, value)``."""
        out = self.t[done], self.j[done], self.v[done]
        self.t, self.j, self.v = self.t[~done], self.j[~done], self.v[~done]
        return out

    def drop(self, counts: dict) -> None:
        """Count every pending record as out-of-order and forget it (a block now covers their times)."""
        np.add.at(counts["out_of_order"], self.j, 1)
        self.t, self.j, self.v = self.t[:0], self.j[:0], self.v[:0]

    def remember(self, time: np.ndarray, has: np.ndarray) -> None:
        """Keep which channels had a sample in the scored rows of the duplicate window."""
        horizon = self.max_seen - DUPLICATE_WINDOW_S
        for i in range(int(np.searchsorted(time, horizon)), time.size):
            self.recent[float(time[i])] = has[i]
        while self.recent and next(iter(self.recent)) < horizon:
            del self.recent[next(iter(self.recent))]

    def playback_rows(self, times: np.ndarray) -> np.ndarray | None:
        """Which of these rows hold a playback record (``None``: none do); they are forgotten."""
        if not self.playback_t:
            return None
        rows = np.fromiter((x in self.playback_t for x in times.tolist()), dtype=bool, count=times.size)
        self.playback_t.difference_update(times[rows].tolist())
        return rows if rows.any() else None

    def _note_playback(self, t: np.ndarray, received: float) -> None:
        """Live: remember the times of records received long after their generation (playback).

        The stream's usual delay is the least seen (reception - generation); quarantined times
        never reach here, so a corrupt future time cannot make live data look like playback.
        """
        delay = received - t
        self.delay = min(self.delay, float(delay.min()))
        old = delay > self.delay + self.playback_after_s
        if old.any():
            self.playback_t.update(t[old].tolist())

    def _count_late(self, t: np.ndarray, j: np.ndarray, late: np.ndarray, prev_max: np.ndarray, counts: dict) -> None:
        """Late records: duplicates of a sample already taken, or out-of-order.

        A late record is a duplicate when a record for the same time and channel arrived before it
        and that time is within :data:`DUPLICATE_WINDOW_S` of the latest time seen until then; the
        rule depends only on the arrival order, never on how the stream was chunked.
        """
        seen = set(zip(self.t.tolist(), self.j.tolist()))
        for k in range(t.size):
            key = (float(t[k]), int(j[k]))
            if not late[k]:
                seen.add(key)  # taken before the late records that follow it
                continue
            dup = False
            if key[0] >= prev_max[k] - DUPLICATE_WINDOW_S:
                row = self.recent.get(key[0])
                dup = key in seen or (row is not None and bool(row[key[1]]))
            counts["duplicate" if dup else "out_of_order"][j[k]] += 1


def monitor_field(name: str) -> property:
    """The buffer's field ``name`` as a property of the monitor that holds it (``monitor.pending``)."""
    return property(lambda m: getattr(m.pending, name), lambda m, value: setattr(m.pending, name, value))


def grid(
    t: np.ndarray, j: np.ndarray, v: np.ndarray, n_channels: int, max_cells: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Records ``(time, channel index, value)`` as rows: ``(times, values[n, c], has[n, c])`` blocks
    in time order, at most ``max_cells`` cells each (at least one row). ``has`` marks the cells that
    had a record (a NaN record is a sample too: a missing one)."""
    times, row = np.unique(t, return_inverse=True)
    order = np.argsort(row, kind="stable")
    row, j, v = row[order], j[order], v[order]
    step = max(1, max_cells // max(n_channels, 1))
    for a in range(0, times.size, step):
        b = min(a + step, times.size)
        lo, hi = np.searchsorted(row, [a, b])
        values = np.full((b - a, n_channels), np.nan)
        values[row[lo:hi] - a, j[lo:hi]] = v[lo:hi]
        has = np.zeros((b - a, n_channels), dtype=bool)
        has[row[lo:hi] - a, j[lo:hi]] = True
        yield times[a:b], values, has


def _repeats(t: np.ndarray, j: np.ndarray) -> np.ndarray:
    """True for each (time, channel) pair seen earlier in the arrays (the first one is kept)."""
    order = np.lexsort((np.arange(t.size), j, t))
    ts, js = t[order], j[order]
    again = np.zeros(t.size, dtype=bool)
    again[order[1:]] = (ts[1:] == ts[:-1]) & (js[1:] == js[:-1])
    return again
