"""Violation and conformance runs: the per-channel arrays that decide when an alarm changes.

Per channel, in sample order: a flagged sample extends the violation run and resets the
conformance run; a nominal one does the opposite; missing samples and samples at or before the
channel's *watermark* (its latest stored transition, after a restart) do neither. From these runs
and the channel's open alarm (its id, whether it is out of nominal, its peak level and score),
:meth:`ChannelRuns.step` says what one sample does to the alarm (:data:`RAISE`, :data:`ESCALATE`,
:data:`PEAK`, :data:`RTN` or nothing); the lifecycle (:mod:`vigil.alarms.lifecycle`) carries it
out. :meth:`ChannelRuns.advance` handles, for a whole block at once, the columns that cannot change
an alarm (not in alarm, nothing flagged) or can only set a new peak (in alarm, every sample flagged
at or below the peak level), so that only the rest is walked sample by sample.

Kept apart from the alarms because this is the vectorised part, and its state is the manager's
:meth:`~vigil.alarms.AlarmManager.stream_state` (runs and latest flagged sample per channel), which
the monitor checkpoints.

>>> runs = ChannelRuns()
>>> runs.add(["T"], {})
1
>>> [runs.step(0, 2, 1.5, 10.0, 7.0), runs.step(0, 0, 0.2, 11.0, 1.0)]
[4, 0]
>>> runs.viol_run.tolist(), runs.conf_run.tolist()
([0], [1])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vigil.alarms.model import Alarm
from vigil.detect.base import Scores
from vigil.model import TelemetryBlock

#: What one sample does to its channel's alarm (:meth:`ChannelRuns.step`).
NOTHING, RTN, ESCALATE, PEAK, RAISE = range(5)
#: The per-channel arrays :meth:`ChannelRuns.state` holds (names kept as the checkpoint has them).
STATE_ARRAYS = ("viol_run", "conf_run", "last_t", "last_v")


class ChannelRuns:
    """Per-channel run counters and the open alarm's summary, one array element per channel."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}  # never replaced: others hold it (it grows in place)
        empty_i = np.zeros(0, dtype=np.int64)
        self.min_viol, self.min_conf, self.viol_run, self.conf_run = (empty_i.copy() for _ in range(4))
        self.open = empty_i.copy()  # id of the channel's unfinished value alarm, -1 if none
        self.violating = np.zeros(0, dtype=bool)  # that alarm is out of nominal (not RTN)
        self.peak_level = np.zeros(0, dtype=np.int8)
        self.peak_score, self.last_t, self.last_v, self.watermark = (np.zeros(0) for _ in range(4))

    def add(self, names: Sequence[str], configs: Mapping[str, Any]) -> int:
        """Add the channels ``names`` not held yet, with their channel configurations from
        ``configs`` (``min_violations``, ``min_conformance``; 1 if absent); returns how many."""
        new = [n for n in names if n not in self.index]
        if not new:
            return 0
        for n in new:
            self.index[n] = len(self.names)
            self.names.append(n)
        cfg = [configs.get(n) for n in new]
        m = len(new)
        self.min_viol = np.concatenate([self.min_viol, [c.min_violations if c else 1 for c in cfg]])
        self.min_conf = np.concatenate([self.min_conf, [c.min_conformance if c else 1 for c in cfg]])
        self.viol_run = np.concatenate([self.viol_run, np.zeros(m, dtype=np.int64)])
        self.conf_run = np.concatenate([self.conf_run, np.zeros(m, dtype=np.int64)])
        self.open = np.concatenate([self.open, np.full(m, -1, dtype=np.int64)])
        self.violating = np.concatenate([self.violating, np.zeros(m, dtype=bool)])
        self.peak_level = np.concatenate([self.peak_level, np.zeros(m, dtype=np.int8)])
        self.peak_score = np.concatenate([self.peak_score, np.full(m, np.nan)])
        self.last_t = np.concatenate([self.last_t, np.full(m, np.nan)])
        self.last_v = np.concatenate([self.last_v, np.full(m, np.nan)])
        self.watermark = np.concatenate([self.watermark, np.full(m, -np.inf)])
        return m

    @property
    def nbytes(self) -> int:
        """Bytes of the per-channel arrays."""
        return sum(a.nbytes for a in vars(self).values() if isinstance(a, np.ndarray))

    # --- a block ----------------------------------------------------------------------------------
    def advance(
        self, block: TelemetryBlock, scores: Scores, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """Apply the block's columns that need no walk (``idx``: their channels).

        Returns the valid cells (finite, after the watermark), the block columns to walk sample by
        sample (in time order, then column order), and the new peaks of columns in alarm as
        ``(row, column)``.
        """
        t = block.time
        valid = np.isfinite(block.values) & (t[:, None] > self.watermark[idx][None, :])
        level = np.where(valid, scores.level, 0)
        flagged = level > 0
        nominal = valid & ~flagged
        n_flag, n_nom = flagged.sum(axis=0), nominal.sum(axis=0)
        violating = self.violating[idx]
        # Fast path 1: not in alarm and nothing flagged: only the conformance run moves.
        quiet = ~violating & (n_flag == 0)
        q = idx[quiet]
        self.conf_run[q] += n_nom[quiet]
        self.viol_run[q[n_nom[quiet] > 0]] = 0
        # Fast path 2: in alarm, every sample flagged, none above the peak: run, last value, peak score.
        steady = violating & (n_nom == 0) & (level.max(axis=0) <= self.peak_level[idx]) & (n_flag > 0)
        peaks = self._steady(block, scores, idx, np.flatnonzero(steady), flagged) if steady.any() else []
        return valid, np.flatnonzero(~quiet & ~steady & valid.any(axis=0)), peaks

    def _steady(
        self, block: TelemetryBlock, scores: Scores, idx: np.ndarray, cols: np.ndarray, flagged: np.ndarray
    ) -> list[tuple[int, int]]:
        j = idx[cols]
        self.viol_run[j] += flagged[:, cols].sum(axis=0)
        self.conf_run[j] = 0
        last = block.n_samples - 1 - np.argmax(flagged[::-1, cols], axis=0)
        self.last_t[j] = block.time[last]
        self.last_v[j] = block.values[last, cols]
        # A new peak: a larger score at the peak level.
        at_peak = (scores.level[:, cols] == self.peak_level[j][None, :]) & flagged[:, cols]
        sc = np.where(at_peak, np.nan_to_num(scores.score[:, cols], nan=-np.inf), -np.inf)
        best = np.argmax(sc, axis=0)
        best_score = sc[best, np.arange(cols.size)]
        new = np.flatnonzero(best_score > np.nan_to_num(self.peak_score[j], nan=-np.inf))
        return [(int(best[m]), int(cols[m])) for m in new]

    def step(self, j: int, level: int, score: float, time: float, value: float) -> int:
        """One valid sample of channel ``j`` through the runs; returns what it does to the alarm."""
        if level == 0:
            self.conf_run[j] += 1
            self.viol_run[j] = 0
            return RTN if self.violating[j] and self.conf_run[j] >= self.min_conf[j] else NOTHING
        self.viol_run[j] += 1
        self.conf_run[j] = 0
        self.last_t[j], self.last_v[j] = time, value
        if self.violating[j]:
            if level > self.peak_level[j]:
                return ESCALATE
            return PEAK if level == self.peak_level[j] and _gt(score, self.peak_score[j]) else NOTHING
        return RAISE if self.viol_run[j] >= self.min_viol[j] else NOTHING

    # --- the open alarm of a channel ----------------------------------------------------------------
    def track(self, j: int, alarm: Alarm) -> None:
        """Point channel ``j`` at its unfinished value alarm."""
        self.open[j], self.violating[j] = alarm.id, alarm.violating
        self.peak_level[j], self.peak_score[j] = alarm.level, alarm.peak_score
        if math.isfinite(alarm.last_time):
            self.last_t[j], self.last_v[j] = alarm.last_time, alarm.last_value

    def close(self, j: int, alarm_id: int) -> None:
        """Alarm ``alarm_id`` ended: channel ``j`` has no open alarm (if that was it)."""
        if self.open[j] == alarm_id:
            self.open[j], self.violating[j], self.peak_level[j] = -1, False, 0
            self.peak_score[j] = np.nan

    def alarm_summary(self, j: int) -> tuple:
        """Channel ``j``'s open alarm summary, to put back with :meth:`set_alarm_summary`."""
        return self.open[j], self.violating[j], self.peak_level[j], self.peak_score[j]

    def set_alarm_summary(self, j: int, summary: tuple) -> None:
        self.open[j], self.violating[j], self.peak_level[j], self.peak_score[j] = summary

    def latest(self, j: int, alarm_id: int) -> tuple[float, float] | None:
        """Channel ``j``'s latest flagged sample ``(time, value)``, if ``alarm_id`` is its open alarm."""
        if self.open[j] == alarm_id and math.isfinite(self.last_t[j]):
            return float(self.last_t[j]), float(self.last_v[j])
        return None

    # --- stream state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The runs and latest flagged samples by channel name (copies)."""
        return {"channels": list(self.names), **{name: getattr(self, name).copy() for name in STATE_ARRAYS}}

    def set_state(self, state: dict[str, Any], idx: np.ndarray) -> None:
        """Put back :meth:`state`'s arrays for its channels, at columns ``idx`` (channels matched by name)."""
        for name in STATE_ARRAYS:
            getattr(self, name)[idx] = state[name]


def _gt(a: float, b: float) -> bool:
    return math.isfinite(a) and (not math.isfinite(b) or a > b)
