"""Thresholds picked without labels, and the causal hysteresis that turns scores into alarm levels.

* :func:`pot_threshold` sets one threshold per channel from nominal errors by peaks over threshold
  (POT): excesses over a high empirical quantile follow a generalised Pareto distribution (GPD),
  whose quantile at a small risk gives a threshold beyond the largest nominal errors without
  assuming a distribution for the bulk (Siffer et al., KDD 2017).
* :func:`apply_hysteresis` raises after ``min_violations`` consecutive samples at score >= 1 and
  clears after ``clear_after`` consecutive samples below 1, so nearby violations merge into one
  alarm; it only looks back, so chunked scoring equals batch scoring.
* :func:`severity_of` maps a score (distance in threshold units) to a Yamcs level.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> errors = np.abs(rng.normal(size=(20000, 2))) * [1.0, 3.0]
>>> thr = pot_threshold(errors, init_quantile=0.98, risk=1e-4)
>>> bool(3.5 < thr[0] < 4.5), bool(10.5 < thr[1] < 13.5)
(True, True)
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
from scipy.stats import genpareto
from scipy.stats import t as student_t

from vigil.errors import ConfigError

#: Score at or above which each level starts: >= 1 warning, >= 2 distress, >= 4 critical.
#: A raised alarm whose score dips below 1 before it clears is at watch.
SEVERITY_STEPS: tuple[tuple[float, int], ...] = ((1.0, 2), (2.0, 3), (4.0, 4))

#: The score of a departure no learned scale can measure (a channel whose history never moved, moved):
#: certainly abnormal, how far unknown, so distress rather than a number divided by zero.
UNSCALED_SCORE = 2.0


def pot_threshold(errors: np.ndarray, init_quantile: float = 0.98, risk: float = 1e-4) -> np.ndarray:
    """Per-column POT threshold of nominal ``errors`` ``[n, c]`` (NaN ignored).

    Excesses over the ``init_quantile`` quantile get a GPD fitted by the method of moments
    (vectorised over channels; shape clipped to [-0.5, 0.5] where the moments are unstable), and
    the threshold is the value exceeded with probability ``risk``. Columns with fewer than 10
    excesses, or no spread, fall back to the largest error. NaN where a column has no data.
    """
    if not 0.5 <= init_quantile < 1:
        raise ConfigError("must be in [0.5, 1)", key="init_quantile")
    if not 0 < risk < 1 - init_quantile:
        raise ConfigError(f"must be in (0, {1 - init_quantile:g})", key="risk")
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim != 2:
        raise ConfigError(f"errors must be [samples, channels], got shape {errors.shape}", key="errors")
    n_ok = np.sum(np.isfinite(errors), axis=0)
    thr = np.full(errors.shape[1], np.nan)
    has = n_ok > 0
    if not has.any():
        return thr
    e = errors[:, has]
    t = np.nanquantile(e, init_quantile, axis=0)
    peak = np.nanmax(e, axis=0)
    excess = np.where(e > t, e - t, np.nan)
    n_exc = np.sum(np.isfinite(excess), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns without excesses: handled below
        mean = np.nanmean(excess, axis=0)
        var = np.nanvar(excess, axis=0)
        shape = np.clip(0.5 * (1.0 - mean**2 / var), 0.0, 0.5)
        scale = 0.5 * mean * (mean**2 / var + 1.0)
        # Probability of exceeding the threshold, given that the error exceeds t.
        cond = risk * n_ok[has] / n_exc
        z = t + genpareto.isf(np.clip(cond, 1e-300, 1.0), shape, loc=0.0, scale=scale)
    ok = (n_exc >= 10) & np.isfinite(z) & (var > 0)
    thr[has] = np.where(ok, z, peak)
    return thr


def extreme_bound(extremes: np.ndarray, risk: float = 1e-3) -> np.ndarray:
    """Per column, the level a new segment's maximum exceeds with probability ``risk``, from the
    maxima ``[s, c]`` of ``s`` nominal segments (NaN ignored; NaN with fewer than 3).

    The maxima are taken as normal (a segment's extreme follows its level, which varies from
    segment to segment as the sum of many small causes), and the bound is the one-sided normal
    prediction bound for one new draw: mean + t(1 - risk, s - 1) * sd * sqrt(1 + 1/s), which
    allows for the mean and sd being estimated from few segments. With 21 segments the largest
    maximum seen is exceeded by a new segment about 1 time in 22; this bound, 1 time in 1 / ``risk``.

    >>> extreme_bound(np.array([[1.0], [2.0], [3.0]]), risk=0.05).round(3).tolist()   # 2 + 2.920 * 1.155
    [5.372]
    """
    if not 0 < risk < 0.5:
        raise ConfigError(f"must be in (0, 0.5), got {risk!r}", key="range_risk")
    n_ok = np.isfinite(extremes).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns with too few segments: NaN below
        spread = np.nanstd(extremes, axis=0, ddof=1) * np.sqrt(1.0 + 1.0 / n_ok)
        bound = np.nanmean(extremes, axis=0) + student_t.isf(risk, np.maximum(n_ok - 1, 1)) * spread
    return np.where(n_ok >= 3, bound, np.nan)


def severity_of(score: np.ndarray) -> np.ndarray:
    """Yamcs level (int8) of each score by :data:`SEVERITY_STEPS`; 0 below 1 or NaN.

    >>> severity_of(np.array([0.5, 1.0, 2.5, 9.0, np.nan])).tolist()
    [0, 2, 3, 4, 0]
    """
    out = np.zeros(np.shape(score), dtype=np.int8)
    with np.errstate(invalid="ignore"):
        for step, level in SEVERITY_STEPS:
            out[score >= step] = level
    return out


def apply_hysteresis(
    score: np.ndarray,
    min_violations: int,
    clear_after: int,
    over: np.ndarray,
    under: np.ndarray,
    active: np.ndarray,
    clear_below: float = 1.0,
) -> np.ndarray:
    """Levels ``[n, c]`` from scores with raise/clear hysteresis; updates the state arrays in place.

    ``over``/``under`` count consecutive samples at/below threshold per channel and ``active``
    says whether an alarm is raised; only samples scoring below ``clear_below`` count towards
    clearing (a deadband: a score hovering just under 1 keeps the alarm). NaN scores (missing
    samples) give level 0 and leave the state as it was.

    >>> s = np.array([[0.2], [1.5], [1.2], [0.1], [0.3], [0.2], [0.1], [2.5]])
    >>> st = [np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.bool_)]
    >>> apply_hysteresis(s, 2, 3, *st)[:, 0].tolist()
    [0, 0, 2, 1, 1, 0, 0, 0]
    """
    if min_violations < 1:
        raise ConfigError("must be >= 1", key="min_violations")
    if clear_after < 1:
        raise ConfigError("must be >= 1", key="clear_after")
    level = np.zeros(score.shape, dtype=np.int8)
    steps = np.array([s for s, _ in SEVERITY_STEPS])
    levels = np.array([lv for _, lv in SEVERITY_STEPS], dtype=np.int8)
    _hysteresis_kernel(score, min_violations, clear_after, clear_below, over, under, active, steps, levels, level)
    return level


@numba.njit(cache=True)
def _hysteresis_kernel(
    score, min_violations, clear_after, clear_below, over, under, active, steps, levels, level
):  # pragma: no cover
    n, c = score.shape
    # Rows in tiles so each channel's column is read from cache, not strided over all of memory.
    for start in range(0, n, 64):
        stop = min(start + 64, n)
        for j in range(c):
            o = over[j]
            u = under[j]
            a = active[j]
            for i in range(start, stop):
                s = score[i, j]
                if np.isnan(s):
                    continue
                if s >= 1.0:
                    o += 1
                    u = 0
                    if o >= min_violations:
                        a = True
                else:
                    o = 0
                    if a and s < clear_below:
                        u += 1
                        if u >= clear_after:
                            a = False
                            u = 0
                if a:
                    lv = np.int8(1)
                    for t in range(steps.shape[0]):
                        if s >= steps[t]:
                            lv = levels[t]
                    level[i, j] = lv
            over[j] = o
            under[j] = u
            active[j] = a
