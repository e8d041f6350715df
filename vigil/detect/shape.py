"""A shape check: flag a stretch of a channel whose shape is unlike anything in its nominal history.

Telemetry is full of cycles (orbits, eclipses, heater duty cycles, daily passes). A cycle that is
distorted, missing, stretched or of another amplitude can stay inside every limit and be followed by
a one-step predictor with ordinary errors. :class:`ShapeCheck` learns, per channel and without labels:

* **whether the history recurs and at what scale**: the dominant period, the lag of the highest
  autocorrelation peak after its first zero crossing (at least ``min_acf``, at most a quarter of
  the history); the window is one period. A channel without one gets no shape check (score NaN);
* **a dictionary of normal windows**: each window of one period is summarised by ``points``
  block means (blocks of ``ceil(period / points)`` samples) with its own mean removed (the level
  is the level check's business; the amplitude and shape stay), and ``centres`` windows of the
  history are chosen greedily so that every history window is close to one of them (k-centre:
  each new centre is the history window farthest from those chosen);
* **how far a normal window lies from the dictionary**: the history alternates in stretches of two
  periods between the windows the dictionary is chosen from and held-out windows; the held-out
  windows' distances to the dictionary give the threshold by peaks over threshold
  (:func:`vigil.detect.threshold.pot_threshold`) times ``threshold_factor``, floored at one
  resolution step (the smallest step between distinct values) on every point.

While streaming, every completed block closes a window of the last ``points`` blocks; its distance
to the nearest dictionary window over the threshold is the score (>= 1 crosses), held until the next
block closes. The state per channel is bounded whatever the period: the dictionary (``centres x
points`` floats), a ring of ``points`` block means and a few counters, about 8.5 KB at the defaults.

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> t = np.arange(6000.0)
>>> rng = np.random.default_rng(0)
>>> x = np.sin(2 * np.pi * t / 50.0) + rng.normal(0.0, 0.05, t.size)
>>> x[5000:5050] = np.sin(2 * np.pi * t[5000:5050] / 25.0)          # one cycle at twice the pace, inside the range
>>> block = TelemetryBlock.from_arrays(t, x[:, None], ["c"])
>>> check = ShapeCheck().fit(block.slice(0, 3000))
>>> int(check.period_[0])
50
>>> s = check.score(block.slice(3000, 6000))
>>> hits = np.flatnonzero(s.level[:, 0]) + 3000
>>> bool(5000 <= hits[0] <= 5060), bool(np.nanmax(s.score[:1900, 0]) < 1.0)
(True, True)
"""

from __future__ import annotations

from typing import ClassVar

import numba
import numpy as np

from vigil.detect.base import Detector, Scores
from vigil.detect.threshold import apply_hysteresis, pot_threshold
from vigil.errors import ConfigError
from vigil.model import TelemetryBlock

#: Most windows of the history that choose the dictionary and set its threshold (each; a stride thins more).
_MAX_WINDOWS = 4096


class ShapeCheck(Detector):
    """Distance of each period-long window to a dictionary of the history's windows, in threshold units.

    Args:
        points: block means per window (the dictionary's resolution).
        centres: dictionary windows kept per channel.
        min_acf: least autocorrelation at the dominant period for a channel to get the check.
        max_period: longest period looked for (samples); also at most a quarter of the history.
        init_quantile, risk, threshold_factor: the threshold on held-out windows' distances.
        min_violations, clear_after: hysteresis when used alone (see :func:`apply_hysteresis`).
    """

    name = "shape"
    stream_attrs = ("acc_", "count_", "ring_", "blocks_", "last_", "over_", "under_", "active_")
    CHECKS: ClassVar[tuple[str, ...]] = ("shape",)

    def __init__(
        self,
        points: int = 32,
        centres: int = 32,
        min_acf: float = 0.5,
        max_period: int = 2000,
        init_quantile: float = 0.98,
        risk: float = 1e-4,
        threshold_factor: float = 1.2,
        min_violations: int = 1,
        clear_after: int = 30,
    ) -> None:
        self.points = points
        self.centres = centres
        self.min_acf = min_acf
        self.max_period = max_period
        self.init_quantile = init_quantile
        self.risk = risk
        self.threshold_factor = threshold_factor
        self.min_violations = min_violations
        self.clear_after = clear_after

    def _check_params(self) -> None:
        for key in ("points", "centres", "min_violations", "clear_after"):
            if not (isinstance(getattr(self, key), int | np.integer) and getattr(self, key) >= 1):
                raise ConfigError(f"must be an integer >= 1, got {getattr(self, key)!r}", key=key)
        if not self.max_period >= 4:
            raise ConfigError(f"must be >= 4, got {self.max_period!r}", key="max_period")
        if not 0 <= self.min_acf < 1:
            raise ConfigError(f"must be in [0, 1), got {self.min_acf!r}", key="min_acf")
        if not self.threshold_factor > 0:
            raise ConfigError(f"must be > 0, got {self.threshold_factor!r}", key="threshold_factor")

    # --- fit --------------------------------------------------------------------------------------
    def fit(self, history: TelemetryBlock) -> ShapeCheck:
        """Per channel: the period, the block length, the dictionary and its threshold."""
        self._check_params()
        values = np.where(np.isfinite(history.values), history.values, np.nan)
        c = values.shape[1]
        self.channels_ = history.channels
        self.period_ = np.zeros(c, dtype=np.int64)
        self.block_ = np.zeros(c, dtype=np.int64)  # 0: no shape check for the channel
        self.center_ = np.zeros(c)
        self.scale_ = np.ones(c)
        # float32: half the memory each completed block reads (the distances need no more precision).
        self.dictionary_ = np.zeros((c, self.centres, self.points), dtype=np.float32)
        self.threshold_ = np.ones(c)
        for j in range(c):
            self._fit_channel(j, values[np.isfinite(values[:, j]), j])
        self.reset()
        return self

    def _fit_channel(self, j: int, x: np.ndarray) -> None:
        period = dominant_period(x, min(self.max_period, x.size // 4), self.min_acf)
        if period == 0:
            return
        b = -(-period // self.points)
        spread = float(np.std(x))
        self.center_[j], self.scale_[j] = float(np.mean(x)), spread
        ends = np.arange(b * self.points - 1, x.size)  # every window's last sample
        held_out = (ends // (2 * period)) % 2 == 1  # alternate stretches of two periods
        chosen, test = _thin(ends[~held_out]), _thin(ends[held_out])
        if len(chosen) < self.centres or len(test) < 10:
            return
        z = (x - self.center_[j]) / spread
        dictionary = _k_centres(_windows(z, b, self.points, chosen), self.centres)
        dist = _nearest(_windows(z, b, self.points, test), dictionary)
        thr = pot_threshold(dist[:, None], self.init_quantile, self.risk)[0] * self.threshold_factor
        floor = resolution(x) / spread * np.sqrt(self.points)  # one resolution step on every point
        self.period_[j], self.block_[j] = period, b
        self.dictionary_[j] = dictionary
        self.threshold_[j] = max(float(thr), floor, np.finfo(float).tiny)

    # --- score ------------------------------------------------------------------------------------
    def reset(self) -> None:
        c = len(self.channels_)
        self.acc_ = np.zeros(c)
        self.count_ = np.zeros(c, dtype=np.int64)
        self.ring_ = np.zeros((c, self.points))
        self.blocks_ = np.zeros(c, dtype=np.int64)
        self.last_ = np.full(c, np.nan)
        self.over_ = np.zeros(c, dtype=np.int64)
        self.under_ = np.zeros(c, dtype=np.int64)
        self.active_ = np.zeros(c, dtype=np.bool_)

    def raw_scores(self, values: np.ndarray) -> np.ndarray:
        """Scores ``[n, c]`` before hysteresis, advancing the stream (NaN: missing, no check, or warming up)."""
        score = np.full(values.shape, np.nan)
        self.merge_into(values, score, np.zeros(values.shape, dtype=np.int8), -1)
        return score

    def merge_into(self, values: np.ndarray, score: np.ndarray, by: np.ndarray, code: int) -> None:
        """Advance the stream over ``values`` and, where the shape score is higher than ``score``, put it
        there and ``code`` in ``by`` (``code < 0``: write every shape score). One pass, no temporaries."""
        _shape_kernel(
            values, self.block_, self.center_, self.scale_, self.dictionary_, self.threshold_,
            self.acc_, self.count_, self.ring_, self.blocks_, self.last_, score, by, code,
        )  # fmt: skip

    def score(self, block: TelemetryBlock) -> Scores:
        """Score ``block`` (continuing the stream); ``expected`` and the band are NaN (a shape has no one value)."""
        self._check_channels(block)
        out = Scores.empty(*block.values.shape, detector=self.name)
        out.score = self.raw_scores(block.values)
        out.level = apply_hysteresis(
            out.score, self.min_violations, self.clear_after, self.over_, self.under_, self.active_
        )
        return out


def resolution(x: np.ndarray) -> float:
    """The smallest step between distinct values (0 for a constant).

    >>> resolution(np.array([3.0, 1.0, 1.5, 1.0, 3.0]))
    0.5
    """
    steps = np.diff(np.unique(x[np.isfinite(x)]))
    return float(steps.min()) if steps.size else 0.0


def dominant_period(x: np.ndarray, max_lag: int, min_acf: float = 0.1) -> int:
    """Lag of the highest autocorrelation peak after the first zero crossing, up to ``max_lag``;
    0 where there is none at least ``min_acf`` (no recurring structure at that scale).

    >>> t = np.arange(1000)
    >>> dominant_period(np.sin(2 * np.pi * t / 37.0), 250)
    37
    >>> dominant_period(np.random.default_rng(0).normal(size=1000), 250)
    0
    """
    if max_lag < 4 or x.size < 8:
        return 0
    z = x - x.mean()
    power = np.abs(np.fft.rfft(z, 2 * z.size)) ** 2
    acf = np.fft.irfft(power)[: max_lag + 1]
    if not acf[0] > 0:
        return 0
    acf /= acf[0]
    below = np.flatnonzero(acf < 0)
    if not below.size:
        return 0
    lag = int(below[0] + np.argmax(acf[below[0] :]))
    return lag if acf[lag] >= min_acf and lag >= 4 else 0


def _windows(z: np.ndarray, b: int, points: int, ends: np.ndarray) -> np.ndarray:
    """The windows of ``points`` consecutive ``b``-sample block means ending at ``ends``, mean removed
    (only those: memory follows the thinned count, not the history's length)."""
    csum = np.concatenate(([0.0], np.cumsum(z)))
    means = (csum[b:] - csum[:-b]) / b  # block mean starting at each sample
    idx = ends[:, None] - b * np.arange(points - 1, -1, -1)[None, :] - (b - 1)
    w = means[idx]
    return w - w.mean(axis=1, keepdims=True)


def _thin(w: np.ndarray) -> np.ndarray:
    return w[:: max(1, -(-len(w) // _MAX_WINDOWS))]


def _k_centres(w: np.ndarray, k: int) -> np.ndarray:
    """Greedy k-centre: start from the window nearest the mean window, then add the farthest."""
    first = int(np.argmin(((w - w.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    dist = ((w - w[first]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((w - w[nxt]) ** 2).sum(axis=1))
    return w[chosen]


def _nearest(w: np.ndarray, dictionary: np.ndarray) -> np.ndarray:
    d2 = (w**2).sum(axis=1)[:, None] - 2.0 * w @ dictionary.T + (dictionary**2).sum(axis=1)[None, :]
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


@numba.njit(cache=True)
def _shape_kernel(
    values, block, center, scale, dictionary, threshold, acc, count, ring, blocks, last, score, by, code
):  # pragma: no cover - numba
    n, c = values.shape
    k, p = dictionary.shape[1], dictionary.shape[2]
    window = np.empty(p, dtype=np.float32)
    for start in range(0, n, 64):  # rows in tiles: each channel's column stays in cache
        stop = min(start + 64, n)
        for j in range(c):
            b = block[j]
            if b == 0:
                continue
            for i in range(start, stop):
                x = values[i, j]
                if not np.isfinite(x):
                    continue
                acc[j] += (x - center[j]) / scale[j]
                count[j] += 1
                if count[j] == b:
                    ring[j, blocks[j] % p] = acc[j] / b
                    blocks[j] += 1
                    acc[j] = 0.0
                    count[j] = 0
                    if blocks[j] >= p:
                        mean = 0.0
                        for q in range(p):
                            mean += ring[j, q]
                        mean /= p
                        for q in range(p):  # oldest block first, mean removed
                            window[q] = ring[j, (blocks[j] + q) % p] - mean
                        best = np.inf
                        for m in range(k):
                            d = 0.0
                            for lo in range(0, p, 8):  # 8 points at a time (vectorised), then abandon if no nearer
                                for q in range(lo, min(lo + 8, p)):
                                    r = window[q] - dictionary[j, m, q]
                                    d += r * r
                                if d >= best:
                                    break
                            if d < best:
                                best = d
                        last[j] = np.sqrt(best) / threshold[j]
                if code < 0:
                    score[i, j] = last[j]
                elif last[j] > score[i, j]:  # NaN on either side: no change
                    score[i, j] = last[j]
                    by[i, j] = code
