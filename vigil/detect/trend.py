"""Time until limit: a trend forecast with its uncertainty for every channel with limits.

Per channel, an exponentially weighted least-squares line through the recent samples (time
constant ``tau_s``: a sample ``tau_s`` old weighs 1/e) gives the level now and the slope, with the
slope's standard error from the weighted residuals. Heading for a limit, the time to reach it is
``(limit - level) / slope``, and the interval uses the slope plus or minus ``z`` standard errors.
The limit is the next one the channel would cross in the slope's direction (for a channel above
its warning range, the critical one). A forecast is given only when the slope is significant
(``|slope| > z * se``), the weighted samples span at least a third of ``tau_s`` (their weighted
standard deviation in time; a full window's is ``tau_s``), and the time is under ``max_s``; else ``None``.

As a detector, it sets ``watch`` (level 1) on a sample whose *lower* bound is under ``horizon_s``:
the earliest the limit may plausibly be reached is within the horizon.

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> from vigil.detect.limits import ChannelLimits
>>> t = np.arange(0.0, 3600.0)
>>> x = 20 + t / 360 + np.random.default_rng(0).normal(0, 0.05, t.size)  # +10 per hour, from 20
>>> det = TrendForecast({"T": ChannelLimits(critical=(-50.0, 40.0))}, tau_s=1800, horizon_s=7200).fit(
...     TelemetryBlock.from_arrays([0.0], [[20.0]], ["T"]))
>>> s = det.score(TelemetryBlock.from_arrays(t, x[:, None], ["T"]))
>>> ttl = det.time_to_limit("T")
>>> ttl["limit"], ttl["severity"], round(ttl["seconds"] / 360)   # 10 left at 10 per hour: one hour
(40.0, 'critical', 10)
>>> ttl["seconds_low"] < ttl["seconds"] < ttl["seconds_high"], int(s.level[-1, 0])
(True, 1)
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from vigil.detect.base import SEVERITIES, Detector, Scores
from vigil.detect.limits import ChannelLimits
from vigil.errors import ConfigError
from vigil.model import TelemetryBlock

#: Weighted sums kept per channel: w, w*u, w*u^2, w*x, w*u*x, w*x^2, w^2, w^2*u, w^2*u^2 (u: time - now).
N_SUMS = 9
#: Latest forecast per channel: seconds, low, high, limit, severity level (NaN/0 when none).
N_OUT = 5


class TrendForecast(Detector):
    """Trend forecast of the time until each channel reaches its next limit; ``watch`` within the horizon.

    Args:
        limits: per channel, its nested ranges (from the configuration).
        tau_s: time constant of the exponential weights (seconds).
        horizon_s: a watch alarm when the lower bound of the time until limit is under this.
        z: standard errors of the slope for the interval (1.645: 90 % two-sided).
        min_weight: effective samples needed before forecasting.
        max_s: forecasts further than this are not given.
    """

    name = "trend"
    stream_attrs = ("sums_", "last_t_", "out_")

    def __init__(
        self,
        limits: dict[str, ChannelLimits],
        tau_s: float = 600.0,
        horizon_s: float = 3600.0,
        z: float = 1.645,
        min_weight: float = 30.0,
        max_s: float = 30 * 86400.0,
    ) -> None:
        for key, value in (("tau_s", tau_s), ("horizon_s", horizon_s), ("z", z), ("max_s", max_s)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"must be a positive number, got {value!r}", key=key)
        self.limits = limits
        self.tau_s, self.horizon_s, self.z = float(tau_s), float(horizon_s), float(z)
        self.min_weight, self.max_s = float(min_weight), float(max_s)

    def fit(self, history: TelemetryBlock) -> TrendForecast:
        """Map the limits onto the block's channels (the trend learns from the stream only)."""
        c = history.n_channels
        self.low_ = np.full((c, len(SEVERITIES)), np.nan)
        self.high_ = np.full((c, len(SEVERITIES)), np.nan)
        for j, channel in enumerate(history.channels):
            if channel in self.limits:
                self.low_[j], self.high_[j] = self.limits[channel].as_arrays()
        self.channels_ = history.channels
        self._index = {name: j for j, name in enumerate(self.channels_)}
        self.reset()
        return self

    def reset(self) -> None:
        c = len(self.channels_)
        self.sums_ = np.zeros((c, N_SUMS))
        self.last_t_ = np.full(c, np.nan)
        self.out_ = np.full((c, N_OUT), np.nan)

    def score(self, block: TelemetryBlock) -> Scores:
        self._check_channels(block)
        out = Scores.empty(block.n_samples, block.n_channels, self.name)
        _trend_kernel(block.time, block.values, self.low_, self.high_, self._params(), self.sums_, self.last_t_,
                      self.out_, out.level, out.score, True)  # fmt: skip
        return out

    def advance(self, time: np.ndarray, values: np.ndarray) -> None:
        """Take in rows ``[n, c]`` of the fitted channels without scoring them: the same sums and the
        same latest forecasts as :meth:`score`, the forecast made once per channel per call (at its
        last sample) instead of at every sample. For a forecast that only answers :meth:`time_to_limit`."""
        none = np.zeros((0, 0))
        _trend_kernel(time, values, self.low_, self.high_, self._params(), self.sums_, self.last_t_, self.out_,
                      none.astype(np.int8), none, False)  # fmt: skip

    def _params(self) -> np.ndarray:
        return np.array([self.tau_s, self.horizon_s, self.z, self.min_weight, self.max_s])

    def time_to_limit(self, channel: str) -> dict[str, Any] | None:
        """The latest forecast for ``channel``: ``limit``, ``severity``, ``seconds``, ``seconds_low``,
        ``seconds_high``; ``None`` when the channel is not heading for a limit."""
        j = self._index.get(channel)
        if j is None or not np.isfinite(self.out_[j, 0]):
            return None
        seconds, low, high, limit, level = self.out_[j].tolist()
        return {"limit": limit, "severity": SEVERITIES[int(level) - 1], "seconds": seconds,
                "seconds_low": low, "seconds_high": high if math.isfinite(high) else None}  # fmt: skip


def describe(channel: str, ttl: dict[str, Any] | None, units: str = "") -> str:
    """One line for an operator.

    >>> describe("BATT_T", {"limit": 40.0, "severity": "critical", "seconds": 12000.0,
    ...                     "seconds_low": 10200.0, "seconds_high": 15000.0}, "degC")
    'BATT_T reaches critical 40 degC in about 3 h 20 min (2 h 50 – 4 h 10)'
    >>> describe("BATT_T", None)
    'BATT_T is not heading for a limit'
    >>> _duration(3599.0), _duration(3570.0), _duration(59.0)
    ('1 h', '1 h', '1 min')
    """
    if ttl is None:
        return f"{channel} is not heading for a limit"
    limit = f"{ttl['limit']:g}" + (f" {units}" if units else "")
    span = f"{_duration(ttl['seconds_low'], unit=False)} – {_duration(ttl['seconds_high'], unit=False)}"
    return f"{channel} reaches {ttl['severity']} {limit} in about {_duration(ttl['seconds'])} ({span})"


def _duration(seconds: float, unit: bool = True) -> str:
    """``3 h 20 min``, ``45 min``, ``2 d 4 h``; rounded to 10 min above an hour (``unit=False``: ``4 h 10``)."""
    if round(seconds / 60) < 60:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 86400:
        minutes = round(seconds / 600) * 10
        h, m = divmod(minutes, 60)
        return f"{h} h" if m == 0 else f"{h} h {m}" + (" min" if unit else "")
    d, h = divmod(round(seconds / 3600), 24)
    return f"{d} d" if h == 0 else f"{d} d {h} h"


@numba.njit(cache=True)
def _trend_kernel(
    time, values, low, high, params, sums, last_t, out, level_out, score_out, scoring
):  # pragma: no cover
    tau, horizon, z, min_weight, max_s = params[0], params[1], params[2], params[3], params[4]
    n, c = values.shape
    n_sev = low.shape[1]
    for j in range(c):
        has_limit = False
        for s in range(n_sev):
            has_limit = has_limit or np.isfinite(low[j, s]) or np.isfinite(high[j, s])
        if not has_limit:
            continue
        S = sums[j]
        last = n - 1  # not scoring: only the forecast after the last sample is kept, so only it is made
        while not scoring and last >= 0 and not np.isfinite(values[last, j]):
            last -= 1
        for i in range(n):
            x = values[i, j]
            if not np.isfinite(x):
                continue
            t = time[i]
            if np.isfinite(last_t[j]):
                dt = t - last_t[j]
                # Move the origin u = 0 to the new time, then age every weight by exp(-dt / tau).
                S[2] = S[2] - 2 * dt * S[1] + dt * dt * S[0]
                S[1] = S[1] - dt * S[0]
                S[4] = S[4] - dt * S[3]
                S[8] = S[8] - 2 * dt * S[7] + dt * dt * S[6]
                S[7] = S[7] - dt * S[6]
                k = math.exp(-dt / tau)
                for q in range(6):
                    S[q] *= k
                for q in range(6, 9):
                    S[q] *= k * k
            last_t[j] = t
            S[0] += 1.0
            S[3] += x
            S[5] += x * x
            S[6] += 1.0
            if not scoring and i < last:
                continue
            _forecast(S, x, low[j], high[j], z, min_weight, tau / 3.0, max_s, out[j])
            if scoring and np.isfinite(out[j, 1]):
                score_out[i, j] = horizon / max(out[j, 1], 1e-9)
                if out[j, 1] < horizon:
                    level_out[i, j] = 1


@numba.njit(cache=True)
def _forecast(S, x, low, high, z, min_weight, min_spread, max_s, out):  # pragma: no cover - numba
    out[:] = np.nan
    w, wu, wuu, wx, wux, wxx, v, vu, vuu = S[0], S[1], S[2], S[3], S[4], S[5], S[6], S[7], S[8]
    if w * w / v < min_weight:  # effective number of samples
        return
    ubar = wu / w
    suu = wuu - wu * ubar  # sum w (u - ubar)^2
    if suu <= 0 or suu / w < min_spread * min_spread:  # the samples span too short a time yet
        return
    b = (wux - ubar * wx) / suu
    a = (wx - b * wu) / w  # level now (u = 0)
    sse = max(wxx - a * wx - b * wux, 0.0)
    n_eff = w * w / v
    sigma2 = sse / w * n_eff / max(n_eff - 2.0, 1.0)
    var_b = sigma2 * (vuu - 2 * ubar * vu + ubar * ubar * v) / (suu * suu)
    if not b * b > z * z * var_b:
        return
    # The next limit in the slope's direction that the level has not crossed yet; a range the level
    # is already outside of (either side) is in alarm already: no time until it.
    target, level = np.nan, 0
    for s in range(low.shape[0]):
        if a < low[s] or a > high[s]:
            continue
        bound = high[s] if b > 0 else low[s]
        if np.isfinite(bound) and (bound - a) * b > 0:
            target, level = bound, s + 1
            break
    if level == 0:
        return
    d = target - a
    seconds = d / b
    if seconds > max_s:
        return
    # Delta method on (limit - a) / b, with the level's error and its covariance with the slope's;
    # expressed as an error of the slope alone, so that the interval keeps the ratio's asymmetry.
    cov_xb = sigma2 * (vu - ubar * v) / (w * suu)
    var_a = sigma2 * v / (w * w) + ubar * ubar * var_b - 2 * ubar * cov_xb
    cov_ab = cov_xb - ubar * var_b
    var_s = var_a / (b * b) + d * d * var_b / b**4 + 2 * d * cov_ab / b**3
    se = math.sqrt(max(var_s, 0.0)) * b * b / abs(d)
    out[0] = seconds
    out[1] = d / (b + math.copysign(z * se, b))
    out[2] = d / (b - math.copysign(z * se, b)) if abs(b) > z * se else np.inf
    out[3] = target
    out[4] = level


def find_trend(detector: Detector) -> TrendForecast | None:
    """The :class:`TrendForecast` inside ``detector`` (itself or an ensemble member), if any."""
    if isinstance(detector, TrendForecast):
        return detector
    for member in getattr(detector, "detectors", ()):
        found = find_trend(member)
        if found is not None:
            return found
    return None
