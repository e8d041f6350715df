"""Static limit checks, as in Yamcs and COSMOS: nested low/high ranges per severity, with debounce.

Each channel may have a range per Yamcs severity (watch, warning, distress, critical, severe); the
usual yellow limits are ``warning`` and red are ``critical``. A sample outside a range is in
violation at that range's severity; the highest violated severity wins. A channel reports a
violation only after ``min_violations`` consecutive violating samples (missing samples neither
count nor break the run).

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> limits = {"T": ChannelLimits(warning=(0.0, 10.0), critical=(-5.0, 15.0))}
>>> det = LimitCheck(limits, min_violations=2).fit(TelemetryBlock.from_arrays([0], [[1.0]], ["T"]))
>>> block = TelemetryBlock.from_arrays(np.arange(5), [[5.0], [11.0], [16.0], [16.0], [5.0]], ["T"])
>>> det.score(block).level[:, 0].tolist()
[0, 0, 4, 4, 0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from vigil.detect.base import SEVERITIES, Detector, Scores
from vigil.errors import ConfigError
from vigil.model import TelemetryBlock

Range = tuple[float, float]


@dataclass(frozen=True)
class ChannelLimits:
    """Nominal ranges of one channel, one per Yamcs severity; ``None`` where undefined."""

    watch: Range | None = None
    warning: Range | None = None
    distress: Range | None = None
    critical: Range | None = None
    severe: Range | None = None

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Low and high bound per severity (NaN where undefined), checked to nest."""
        low = np.full(len(SEVERITIES), np.nan)
        high = np.full(len(SEVERITIES), np.nan)
        for i, name in enumerate(SEVERITIES):
            rng = getattr(self, name)
            if rng is None:
                continue
            lo, hi = (np.nan if v is None else float(v) for v in rng)
            if np.isfinite(lo) and np.isfinite(hi) and lo > hi:
                raise ConfigError(f"low {lo} is above high {hi}", key=name)
            low[i], high[i] = lo, hi
        return low, high


class LimitCheck(Detector):
    """Per-channel static limits; channels without limits never flag."""

    name = "limits"
    stream_attrs = ("run_",)

    def __init__(self, limits: dict[str, ChannelLimits], min_violations: int = 1) -> None:
        if min_violations < 1:
            raise ConfigError("must be >= 1", key="min_violations")
        self.limits = limits
        self.min_violations = min_violations

    def fit(self, history: TelemetryBlock) -> LimitCheck:
        """Map the configured limits onto the block's channels (limits need no learning)."""
        c = history.n_channels
        self.low_ = np.full((c, len(SEVERITIES)), np.nan)
        self.high_ = np.full((c, len(SEVERITIES)), np.nan)
        for j, channel in enumerate(history.channels):
            if channel in self.limits:
                try:
                    self.low_[j], self.high_[j] = self.limits[channel].as_arrays()
                except ConfigError as err:
                    raise ConfigError(err.reason, key=f"{channel}.{err.key}") from None
        self.channels_ = history.channels
        self.reset()
        return self

    def reset(self) -> None:
        self.run_ = np.zeros(len(self.channels_), dtype=np.int64)

    def score(self, block: TelemetryBlock) -> Scores:
        self._check_channels(block)
        out = Scores.empty(block.n_samples, block.n_channels, self.name)
        _limit_kernel(block.values, self.low_, self.high_, self.min_violations, self.run_, out.level, out.score,
                      out.low, out.high)  # fmt: skip
        return out


@numba.njit(cache=True)
def _limit_kernel(values, low, high, min_violations, run, level_out, score_out, low_out, high_out):  # pragma: no cover
    # The band of every row: per channel, the tightest defined bound on each side (the lowest severity's).
    n, c = values.shape
    n_sev = low.shape[1]
    for j in range(c):
        # Score: distance outside the innermost band, in units of that band's half-width.
        lo_in = np.nan
        hi_in = np.nan
        for s in range(n_sev):
            if np.isnan(lo_in) and not np.isnan(low[j, s]):
                lo_in = low[j, s]
            if np.isnan(hi_in) and not np.isnan(high[j, s]):
                hi_in = high[j, s]
        half = (hi_in - lo_in) / 2.0 if not (np.isnan(lo_in) or np.isnan(hi_in)) else np.nan
        r = run[j]
        for i in range(n):
            low_out[i, j] = lo_in
            high_out[i, j] = hi_in
            x = values[i, j]
            if not np.isfinite(x):
                continue
            lv = 0
            for s in range(n_sev):
                if (not np.isnan(low[j, s]) and x < low[j, s]) or (not np.isnan(high[j, s]) and x > high[j, s]):
                    lv = s + 1
            if not np.isnan(half) and half > 0:
                score_out[i, j] = abs(x - (lo_in + hi_in) / 2.0) / half
            if lv > 0:
                r += 1
                if r >= min_violations:
                    level_out[i, j] = lv
            else:
                r = 0
        run[j] = r
