"""Counterpart (analytical redundancy) check: a channel against its physically symmetric twin.

Flight controllers compare a sensor with its counterpart on the other side: a left brake-line
temperature with the right one. Both share the entry's heating, so their *difference* cancels the
common trend and a slow rise on one side stands out long before any limit. Per configured pair the
statistic is the change, over ``window`` samples, of the residual ``x - counterpart`` averaged over
the last ``smooth`` samples (the average beats down the sensors' quantisation). A constant offset
between the two sensors does not count; only a departure does.

The threshold is learned without labels from nominal history: the history is split into segments
at time gaps (each a separate entry or pass), each segment's largest absolute change is taken, and
:func:`vigil.detect.threshold.extreme_bound` gives the level a new segment's maximum exceeds with
probability ``risk``. With fewer than 3 segments, :func:`vigil.detect.threshold.pot_threshold`
over all changes is used instead. Score = |change| / threshold; levels by the causal hysteresis of
:func:`vigil.detect.threshold.apply_hysteresis` (>= 1 warning, >= 2 distress, >= 4 critical).

A missing sample of the channel or of its counterpart scores NaN and leaves the state unchanged,
so the window counts valid samples; a time gap as long as those splitting the history restarts the
windows. Channels without a counterpart score NaN and never flag.

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> t = np.arange(400.0)
>>> rng = np.random.default_rng(0)
>>> common = 0.05 * t
>>> hist = TelemetryBlock.from_arrays(t, np.c_[common + rng.normal(0, .1, 400), common + rng.normal(0, .1, 400)],
...                                   ["L", "R"])
>>> det = CounterpartCheck({"L": "R"}, window=20, smooth=5).fit(hist)
>>> x = np.c_[common + rng.normal(0, .1, 400), common + rng.normal(0, .1, 400)]
>>> x[200:, 0] += 0.1 * (t[200:] - 200)            # L departs from R at sample 200
>>> lv = det.score(TelemetryBlock.from_arrays(t + 400, x, ["L", "R"])).level
>>> bool(lv[:200].any()), 200 < int(np.argmax(lv[:, 0] > 0)) < 215, bool(lv[:, 1].any())
(False, True, False)
"""

from __future__ import annotations

import numba
import numpy as np

from vigil.detect.base import Detector, Scores
from vigil.detect.threshold import apply_hysteresis, extreme_bound, pot_threshold
from vigil.errors import ConfigError, DataError
from vigil.model import TelemetryBlock


class CounterpartCheck(Detector):
    """Flag a channel whose difference from its counterpart changes more than nominal history allows.

    Args:
        counterparts: ``{channel: counterpart}``; both must be in the fitted block.
        window: samples over which the residual's change is measured.
        smooth: samples averaged into the residual at each end of the window.
        risk: probability that a nominal segment's largest change exceeds the threshold.
        min_violations: consecutive samples at score >= 1 before an alarm is raised.
        clear_after: consecutive samples below 1 before it clears.
        gap_factor: a time step over ``gap_factor`` times the median step splits the history into
            segments (separate entries or passes).
    """

    name = "counterpart"
    stream_attrs = (
        "ring_",
        "pos_",
        "filled_",
        "over_",
        "under_",
        "active_",
        "last_time_",
    )

    def __init__(
        self,
        counterparts: dict[str, str],
        window: int = 60,
        smooth: int = 5,
        risk: float = 1e-4,
        min_violations: int = 3,
        clear_after: int = 30,
        gap_factor: float = 10.0,
    ) -> None:
        for key, value, least in (("window", window, 1), ("smooth", smooth, 1), ("min_violations", min_violations, 1),
                                  ("clear_after", clear_after, 1)):  # fmt: skip
            if not isinstance(value, int | np.integer) or value < least:
                raise ConfigError(f"must be an integer >= {least}, got {value!r}", key=key)
        if not gap_factor > 1:
            raise ConfigError(f"must be > 1, got {gap_factor!r}", key="gap_factor")
        for channel, other in counterparts.items():
            if channel == other:
                raise ConfigError("a channel cannot be its own counterpart", key=f"channels.{channel}.counterpart")
        if not 0 < risk < 0.02:  # the POT fallback needs a risk below its 0.98 starting quantile's 0.02
            raise ConfigError(f"must be in (0, 0.02), got {risk!r}", key="risk")
        self.counterparts = dict(counterparts)
        self.window = int(window)
        self.smooth = int(smooth)
        self.risk = risk
        self.min_violations = int(min_violations)
        self.clear_after = int(clear_after)
        self.gap_factor = gap_factor

    def fit(self, history: TelemetryBlock) -> CounterpartCheck:
        """Map pairs onto the block's columns and learn each pair's threshold from nominal ``history``."""
        pairs = [(history.index_of(c), _other_index(history, c, o)) for c, o in self.counterparts.items()]
        self.own_ = np.array([p[0] for p in pairs], dtype=np.int64)
        self.other_ = np.array([p[1] for p in pairs], dtype=np.int64)
        self.channels_ = history.channels
        steps = np.diff(history.time)
        self.gap_s_ = float(self.gap_factor * np.median(steps)) if steps.size else np.inf
        changes = []
        for start, stop in _segments(history.time, self.gap_factor):
            self.reset()
            changes.append(np.abs(self._change(history.slice(start, stop))))
        maxima = np.array([_nanmax0(c) for c in changes]).reshape(len(changes), len(pairs))
        thr = extreme_bound(maxima, self.risk) if len(changes) >= 3 else np.full(len(pairs), np.nan)
        if not np.isfinite(thr).all():  # too few segments: peaks over threshold of every change
            thr = np.where(np.isfinite(thr), thr, pot_threshold(np.concatenate(changes), risk=self.risk))
        # Rounding noise (a channel stored as its counterpart + a constant) is no change either.
        scale = _nanmax0(np.abs(history.values[:, self.own_]) + np.abs(history.values[:, self.other_]))
        bad = np.flatnonzero(~(thr > 1e-9 * np.nan_to_num(scale, nan=1.0)))
        if bad.size:  # a difference that never changed (or was never seen) gives no scale to judge by
            channel = self.channels_[self.own_[bad[0]]]
            raise DataError(
                f"no nominal change of its difference from counterpart {self.counterparts[channel]!r} in the "
                f"history (need both channels over at least {self.window + self.smooth} valid samples, varying)",
                source=history.source,
                channel=channel,
            )
        self.threshold_ = thr
        self.reset()
        return self

    def reset(self) -> None:
        p = len(self.own_)
        self.ring_ = np.full((p, self.window + self.smooth), np.nan)
        self.pos_ = np.zeros(p, dtype=np.int64)
        self.filled_ = np.zeros(p, dtype=np.int64)
        self.over_ = np.zeros(p, dtype=np.int64)
        self.under_ = np.zeros(p, dtype=np.int64)
        self.active_ = np.zeros(p, dtype=np.bool_)
        self.last_time_ = np.nan

    def score(self, block: TelemetryBlock) -> Scores:
        """Score ``block``, continuing the stream; only configured channels get scores."""
        self._check_channels(block)
        out = Scores.empty(block.n_samples, block.n_channels, self.name)
        if not len(self.own_):
            return out
        change = self._change(block)
        score = np.abs(change) / self.threshold_
        level = apply_hysteresis(score, self.min_violations, self.clear_after, self.over_, self.under_, self.active_)
        # Expected: the value the channel would have if its difference from the counterpart had not changed.
        expected = block.values[:, self.own_] - change
        out.level[:, self.own_] = level
        out.score[:, self.own_] = score
        out.expected[:, self.own_] = expected
        out.low[:, self.own_] = expected - self.threshold_
        out.high[:, self.own_] = expected + self.threshold_
        return out

    def _change(self, block: TelemetryBlock) -> np.ndarray:
        """The residual change per row and pair; a time gap (a new entry or pass) restarts the windows."""
        out = np.full((block.n_samples, len(self.own_)), np.nan)
        if not block.n_samples:
            return out
        prev = np.r_[self.last_time_, block.time[:-1]]
        with np.errstate(invalid="ignore"):
            starts = np.flatnonzero(block.time - prev > self.gap_s_)
        edges = np.r_[0, starts, block.n_samples]
        for a, b in zip(edges[:-1], edges[1:]):
            if a in starts:
                self.ring_[:] = np.nan
                self.pos_[:] = 0
                self.filled_[:] = 0
            _change_kernel(block.values[a:b], self.own_, self.other_, self.smooth, self.ring_, self.pos_,
                           self.filled_, out[a:b])  # fmt: skip
        self.last_time_ = float(block.time[-1])
        return out


def _other_index(block: TelemetryBlock, channel: str, other: str) -> int:
    try:
        return block.index_of(other)
    except DataError:
        raise ConfigError(f"counterpart {other!r} is not a channel of the block", key=f"channels.{channel}.counterpart",
                          source=block.source) from None  # fmt: skip


def _segments(time: np.ndarray, gap_factor: float) -> list[tuple[int, int]]:
    """Row ranges between time gaps longer than ``gap_factor`` median steps."""
    if len(time) < 2:
        return [(0, len(time))]
    step = np.diff(time)
    cuts = np.flatnonzero(step > gap_factor * np.median(step)) + 1
    edges = np.r_[0, cuts, len(time)]
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _nanmax0(x: np.ndarray) -> np.ndarray:
    """Column maxima, NaN for all-NaN columns (without the warning)."""
    ok = np.isfinite(x)
    return np.where(ok.any(axis=0), np.max(np.where(ok, x, -np.inf), axis=0, initial=-np.inf), np.nan)


@numba.njit(cache=True)
def _change_kernel(values, own, other, smooth, ring, pos, filled, out):  # pragma: no cover - numba
    """Change of the ``smooth``-sample mean residual over the ring's span; NaN rows leave state alone."""
    n = values.shape[0]
    length = ring.shape[1]
    for p in range(own.shape[0]):
        a = own[p]
        b = other[p]
        k = pos[p]
        f = filled[p]
        for i in range(n):
            r = values[i, a] - values[i, b]
            if not np.isfinite(r):
                continue
            ring[p, k] = r
            k = (k + 1) % length
            if f < length:
                f += 1
            if f == length:
                # k now points at the oldest entry: the first `smooth` are the window's start.
                new = 0.0
                old = 0.0
                for s in range(smooth):
                    old += ring[p, (k + s) % length]
                    new += ring[p, (k - 1 - s) % length]
                out[i, p] = (new - old) / smooth
        pos[p] = k
        filled[p] = f
