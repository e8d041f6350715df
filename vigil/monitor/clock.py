"""The stream clock: event time advanced only by accepted records, with corrupt times quarantined.

A record whose time is far ahead of the stream clock is not believed on its own, nor because a
second record of the same (corrupt) frame carries the same time. It is *quarantined*: held until
either the stream moves on with it (records at :data:`CONFIRM_TIMES` distinct, increasing times
from it on, and no record at the old clock in between: a real jump, after a loss of signal say, so
the held records are released in arrival order and the clock moves) or a record at the old clock
arrives (the held records are refuted and counted; the clock never moved).

How far ahead is "far": in a replay, ``max_jump_s``, or :data:`JUMP_STEPS` times the stream's own
typical step if that is more (a stream with one record per hour is not jumping at every record);
live (reception wall time known), also no more than the wall time elapsed since the clock last
advanced, times the stream's rate, plus ``slack_s``: a live stream cannot run ahead of the wall
clock.

>>> clock = StreamClock(max_jump_s=100.0)
>>> t, j, v = clock.screen(np.array([1.0, 2.0, 9e9, 9e9, 3.0]), np.array([0, 0, 0, 1, 0]), np.zeros(5))
>>> t.tolist(), clock.time, [(float(x), int(c)) for x, c, _ in clock.refuted]
([1.0, 2.0, 3.0], 3.0, [(9000000000.0, 0), (9000000000.0, 1)])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Distinct, increasing times a jump must show (with nothing at the old clock between) to be real.
CONFIRM_TIMES = 3
#: The stream's own rate: the median of the clock's first RATE_STEPS increments (learned once, so
#: the rule never depends on how the stream was chunked); a jump must exceed JUMP_STEPS of them.
RATE_STEPS, JUMP_STEPS = 16, 100


@dataclass
class StreamClock:
    """The latest accepted event time (:attr:`time`) and the wall time it was reached (live)."""

    max_jump_s: float | None = 3600.0
    slack_s: float = 60.0
    rate: float = 1.0
    time: float = -math.inf
    wall: float = math.nan
    held: tuple[np.ndarray, np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.empty(0), np.empty(0, dtype=np.int64), np.empty(0))
    )
    #: Records refuted since the caller last took them: ``(time, channel index, jump seconds)``.
    refuted: list[tuple[float, int, float]] = field(default_factory=list)
    #: The clock's first increments, and their median once there are :data:`RATE_STEPS` of them.
    steps: list[float] = field(default_factory=list)
    step: float | None = None
    _in_batch: list[int] = field(default_factory=list, repr=False)  # batch indices of held records

    def replay_allowance(self) -> float:
        """How far ahead of the clock a record may be, without a wall clock."""
        base = math.inf if self.max_jump_s is None else self.max_jump_s
        return base if self.step is None else max(base, JUMP_STEPS * self.step)

    def allowance(self, wall: float | None) -> float:
        """How far ahead of the clock a record may be before it is held."""
        allow = self.replay_allowance()
        if wall is not None and math.isfinite(self.wall):
            allow = min(allow, max(0.0, wall - self.wall) * self.rate + self.slack_s)
        return allow

    def advance(self, t: float, wall: float | None) -> None:
        if t > self.time:
            self.time = t
            self.wall = math.nan if wall is None else wall

    def screen(self, t: np.ndarray, j: np.ndarray, v: np.ndarray, wall: float | None = None):
        """Accepted records of a batch in arrival order (released held ones included); advances the clock."""
        if self.max_jump_s is None and wall is None:
            if t.size:
                self.advance(float(t.max()), wall)
            return t, j, v
        keep = np.ones(t.size, dtype=bool)
        self._in_batch = []
        released: list[np.ndarray] = []  # held records from earlier batches, released by a confirmation
        k = 0
        while k < t.size:
            allow = self.allowance(wall)
            if not self.held[0].size:
                # Vectorised: the first record past the clock (as it advances) by more than allow.
                prev = np.maximum.accumulate(np.r_[self.time, t[k:]])
                ahead = np.flatnonzero(np.isfinite(prev[:-1]) & (t[k:] > prev[:-1] + allow))  # the first sets it
                ahead_at = t.size if ahead.size == 0 else k + int(ahead[0])
                stop = ahead_at if self.step is not None else self._learn(prev, k, ahead_at)
                if stop > k:
                    self.advance(float(t[k:stop].max()), wall)
                if stop < ahead_at:  # the rate was just learned: screen the rest with it
                    k = stop
                    continue
                if stop == t.size:
                    break
                self._hold(t, j, v, stop, keep)
                k = stop + 1
                continue
            if t[k] <= self.time + allow:  # the old clock goes on: the held records were corrupt
                self._refute()
                continue
            ht = self.held[0]
            if t[k] < ht.min():  # ahead of the clock but behind the held ones: refute them, hold this one
                self._refute()
                self._hold(t, j, v, k, keep)
            else:
                self._hold(t, j, v, k, keep)
                if _confirms(self.held[0]):
                    released += self._confirm(keep, wall)
            k += 1
        out = (t[keep], j[keep], v[keep])
        if released:
            rt, rj, rv = released
            out = (np.r_[rt, out[0]], np.r_[rj, out[1]].astype(np.int64), np.r_[rv, out[2]])
        return out

    def _learn(self, prev: np.ndarray, k: int, stop: int) -> int:
        """Take the clock's increments from records ``k:stop`` (``prev``: the clock before each record
        from ``k``, then after the last) until :data:`RATE_STEPS` are known; returns where the
        segment must end so that the records after the learning are screened with it."""
        seg = prev[: stop - k + 1]
        rises = np.flatnonzero((seg[1:] > seg[:-1]) & np.isfinite(seg[:-1]))
        need = RATE_STEPS - len(self.steps)
        rises = rises[:need]
        self.steps += (seg[rises + 1] - seg[rises]).tolist()
        if len(self.steps) < RATE_STEPS:
            return stop
        self.step = float(np.median(self.steps))
        return k + int(rises[-1]) + 1

    def _hold(self, t, j, v, k: int, keep: np.ndarray) -> None:
        keep[k] = False
        ht, hj, hv = self.held
        self.held = (np.r_[ht, t[k]], np.r_[hj, j[k]].astype(np.int64), np.r_[hv, v[k]])
        self._in_batch.append(k)

    def _confirm(self, keep: np.ndarray, wall: float | None) -> list:
        """The jump is real: release the held records; this batch's go back in place, earlier
        batches' come first (no record of this batch was accepted before them, or they would have
        been refuted)."""
        ht, hj, hv = self.held
        earlier = ht.size - len(self._in_batch)
        keep[self._in_batch] = True
        self.held, self._in_batch = (ht[:0], hj[:0], hv[:0]), []
        self.advance(float(ht.max()), wall)
        if self.step is None:  # the steps between the held times are the stream's (the jump is not)
            self.steps += np.diff(np.unique(ht))[: RATE_STEPS - len(self.steps)].tolist()
            if len(self.steps) >= RATE_STEPS:
                self.step = float(np.median(self.steps))
        return [ht[:earlier], hj[:earlier], hv[:earlier]] if earlier else []

    def _refute(self) -> None:
        ht, hj, _hv = self.held
        self.refuted += [(float(a), int(b), float(a - self.time)) for a, b in zip(ht.tolist(), hj.tolist())]
        self.held, self._in_batch = (ht[:0], hj[:0], _hv[:0]), []

    def end(self) -> None:
        """The stream ended: records still held have nothing left to confirm them; refute them."""
        if self.held[0].size:
            self._refute()

    # -- checkpoint --------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"time": self.time, "wall": self.wall, "held": self.held, "steps": self.steps, "step": self.step}

    def set_state(self, state: dict) -> None:
        self.time, self.wall, self.held = state["time"], state["wall"], state["held"]
        self.steps, self.step = list(state["steps"]), state["step"]


def _confirms(held: np.ndarray) -> bool:
    """Held times confirm a jump: at least :data:`CONFIRM_TIMES` distinct ones, in increasing order."""
    distinct = held[np.r_[True, held[1:] != held[:-1]]]
    return distinct.size >= CONFIRM_TIMES and bool(np.all(np.diff(distinct) > 0))
