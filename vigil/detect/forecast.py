"""A learned detector: predict each channel from its recent values and its commands, flag large errors.

:class:`ForecastDetector` fits, per channel, a ridge-regularised linear autoregression on the last
``n_lags`` values plus the channel's command inputs (closed form, no iterations). While scoring it
computes five scores per sample, each in threshold units (>= 1 crosses), and keeps the largest:

* **error**: the absolute one-step prediction error, smoothed by an exponentially weighted moving
  average (EWMA, ``span``), over a threshold learned without labels from the detector's own
  smoothed errors on the nominal history by peaks over threshold
  (:func:`vigil.detect.threshold.pot_threshold`) times ``threshold_factor``. While streaming, the
  threshold rises in proportion to the recent error level (a slow EWMA, ``adapt_span``, of the
  smoothed error, each sample capped at the threshold so an anomaly cannot quickly raise its own
  bar), so a channel that became noisier settles instead of alarming forever; and it falls to
  ``relative`` times the stream's calm peak (the largest smoothed error below threshold, starting
  from the history's and forgetting over ``adapt_span`` samples), where that is lower, so a
  stream calmer than its history still alarms on errors it has never shown; the threshold moves
  smoothly, so scores early and late in a stream are on one scale. It is never below the
  channel's floor: one resolution step's share of the smoothed error (``min_threshold`` adds an
  absolute floor in channel units, 0 by default, so no decision depends on the units);
* **novelty**: how far the value lies outside the range seen in the history, in units of a margin
  per side: ``novelty_margin`` times that range, or, where the history comes in segments (flights,
  passes), as far as a new segment's extreme may reach by the spread of the segments' extremes
  (a normal prediction bound at ``range_risk``), whichever is wider;
* **level**: the same for an EWMA of the value (``level_span``), which catches a level held longer
  than ever before (a plateau where history only had short pulses) or a slow drift; once the
  stream has run ``learn_after`` samples, what it showed that long ago counts as seen, so a new
  operating level alarms once rather than every time it recurs;
  while a mode command is held, both range checks allow its offset (the model's steady-state
  gain for that input times a decaying trace of it, ``command_span``), so a commanded mode is not
  novel;
* **stuck**: how long the value has repeated exactly, in units of ``stuck_factor`` times the
  longest repeat in the history (at least ``span`` samples);
* **shape**: where the history has a dominant period, how far the last period-long window lies
  from a dictionary of the history's windows, in units of a threshold learned on held-out
  history windows (:class:`vigil.detect.shape.ShapeCheck`): a distorted, missing, stretched or
  shrunken cycle inside the normal range.

``expected`` is the prediction and ``low``/``high`` the prediction band (expected +- threshold),
except where a range check crosses: there the band is the range seen in history (novelty) or the
levels seen (level), so an explanation names the bound actually crossed.

After causal hysteresis the score gives the alarm level: >= 1 warning, >= 2 distress, >= 4
critical, and watch while a raised alarm waits to clear (:data:`vigil.detect.threshold.SEVERITY_STEPS`).

Scoring is one numba pass over ``[n, c]`` per call with the stream state (the lag window, the
EWMA, the hysteresis counters) kept in per-channel arrays, so consecutive chunks give exactly what
one call gives. Missing (NaN) samples get level 0 and score NaN and leave the state unchanged.

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> rng = np.random.default_rng(0)
>>> x = np.sin(np.arange(6000) / 20.0) + rng.normal(0.0, 0.05, 6000)
>>> x[5000:5100] += 0.5                                   # a level shift for 100 samples
>>> block = TelemetryBlock.from_arrays(np.arange(6000.0), x[:, None], ["sine"])
>>> det = ForecastDetector().fit(block.slice(0, 3000))   # nominal history
>>> s = det.score(block.slice(3000, 6000))
>>> flagged = np.flatnonzero(s.level[:, 0]) + 3000
>>> int(flagged[0]), int(flagged[-1])                     # raised at once; cleared once the shape window
(5001, 5289)
>>> # (one period: 32 blocks of 4 samples) has left the anomaly and 60 samples scored under 0.67
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
from scipy.signal import lfilter

from vigil.detect.base import Detector, Scores
from vigil.detect.forecast_kernel import forecast_kernel
from vigil.detect.shape import ShapeCheck, resolution
from vigil.detect.threshold import apply_hysteresis, extreme_bound, pot_threshold
from vigil.errors import ConfigError, DataError
from vigil.model import TelemetryBlock


class ForecastDetector(Detector):
    """Ridge autoregression on lagged values and commands; error, novelty, level, stuck and shape scores.

    Args:
        n_lags: past values used to predict the next one.
        ridge: L2 penalty, relative to the mean diagonal of each channel's Gram matrix.
        use_commands: also regress on ``block.commands`` (ignored where history has none).
        span: EWMA span (samples) of the absolute prediction errors.
        init_quantile, risk: POT parameters for the error threshold (see :func:`pot_threshold`).
        threshold_factor: multiplies the POT threshold (a safety margin).
        min_threshold: an absolute floor of the error threshold and of the margins, in channel
            units; 0 (the default) leaves only the scale-free floors learned from the history
            (one resolution step's share of the smoothed error; one step beyond the range).
        novelty_margin: values further than this fraction of the history's range outside that
            range score >= 1 (the least margin); ``None`` disables the novelty and level checks.
        range_risk: where the history comes in segments (runs of rows split by time gaps over 10
            times the median step: passes, flights), the margins also reach as far as a new
            segment's extreme goes with this probability, by the spread of the segments'
            extremes (:func:`~vigil.detect.threshold.extreme_bound`); ``None`` keeps the least margin.
        min_segments: fewest segments for ``range_risk`` to apply.
        command_span: EWMA span (samples) of the command traces that carry held commands'
            offsets into the range checks; ``None`` ignores commands there.
        level_span, level_margin: EWMA span of the value and margin (fraction of the history's
            range of that EWMA) for the level check; ``level_span=None`` disables it.
        learn_after: samples after which what the stream showed counts as seen by the level
            check; ``None`` keeps the history's range.
        learn_values: the novelty check learns from the stream like the level check, but only
            values it let pass (a slow drift is followed; what it alarmed on is not learned);
            off by default (see docs/forecast.md).
        stuck_factor: a value repeated this many times longer than the history's longest
            repeat scores >= 1; ``None`` disables the check.
        adapt_span: span (samples) of the slow EWMA of the smoothed error that lets the
            threshold rise on a noisier stream; ``None`` keeps the learned threshold.
        relative: the error threshold may fall to ``relative`` times the stream's calm peak (its
            largest smoothed error below threshold, starting from the history's and forgetting
            over ``adapt_span`` samples); ``None`` disables it.
        min_violations: consecutive samples at score >= 1 that raise an alarm.
        clear_after, clear_below: a raised alarm clears after ``clear_after`` consecutive samples
            scoring below ``clear_below`` (back well inside the threshold, not hovering at it);
            shorter gaps merge into one alarm.
        shape: add the shape check (:class:`vigil.detect.shape.ShapeCheck`, default settings).

    The defaults are the one global configuration for every channel and benchmark; none of
    them is in channel units, so multiplying a channel by a constant or adding one to it changes
    no decision (tested).
    """

    name = "forecast"
    stream_attrs = (
        "window_",
        "traces_",
        "n_seen_",
        "repeats_",
        "ewm_",
        "err_level_",
        "err_max_",
        "value_ewm_",
        "level_seen_",
        "level_slots_",
        "value_seen_",
        "value_slots_",
        "over_",
        "under_",
        "active_",
    )

    #: Names of the five checks, as ``Scores.detector``; ``Scores.by`` says which one decided.
    CHECKS: ClassVar[tuple[str, ...]] = (
        "forecast.error",
        "forecast.novelty",
        "forecast.level",
        "forecast.stuck",
        "forecast.shape",
    )

    #: Slots of the delay line behind ``learn_after`` (its resolution is learn_after / slots).
    LEARN_SLOTS: ClassVar[int] = 20

    def __init__(
        self,
        n_lags: int = 10,
        ridge: float = 1e-4,
        use_commands: bool = True,
        span: int = 30,
        init_quantile: float = 0.98,
        risk: float = 1e-4,
        threshold_factor: float = 1.2,
        min_threshold: float = 0.0,
        novelty_margin: float | None = 0.05,
        range_risk: float | None = 1e-5,
        min_segments: int = 5,
        command_span: int | None = 30,
        level_span: int | None = 30,
        level_margin: float = 0.1,
        learn_after: int | None = 1000,
        learn_values: bool = False,
        stuck_factor: float | None = 2.0,
        adapt_span: int | None = 3000,
        relative: float | None = 1.5,
        min_violations: int = 1,
        clear_after: int = 60,
        clear_below: float = 0.67,
        shape: bool = True,
    ) -> None:
        self.clear_below = clear_below
        self.shape = shape
        self.n_lags = n_lags
        self.ridge = ridge
        self.use_commands = use_commands
        self.span = span
        self.init_quantile = init_quantile
        self.risk = risk
        self.threshold_factor = threshold_factor
        self.min_threshold = min_threshold
        self.novelty_margin = novelty_margin
        self.range_risk = range_risk
        self.min_segments = min_segments
        self.command_span = command_span
        self.level_span = level_span
        self.level_margin = level_margin
        self.learn_after = learn_after
        self.learn_values = learn_values
        self.stuck_factor = stuck_factor
        self.adapt_span = adapt_span
        self.relative = relative
        self.min_violations = min_violations
        self.clear_after = clear_after

    def _check_params(self) -> None:
        positive = {
            "n_lags": self.n_lags,
            "span": self.span,
            "threshold_factor": self.threshold_factor,
            "level_margin": self.level_margin,
            "min_violations": self.min_violations,
            "clear_after": self.clear_after,
        }
        optional = {
            "novelty_margin": self.novelty_margin,
            "level_span": self.level_span,
            "learn_after": self.learn_after,
            "stuck_factor": self.stuck_factor,
            "adapt_span": self.adapt_span,
            "relative": self.relative,
            "range_risk": self.range_risk,
            "command_span": self.command_span,
        }
        positive.update({k: v for k, v in optional.items() if v is not None})
        for key, val in positive.items():
            if not val > 0:
                raise ConfigError(f"must be > 0, got {val!r}", key=key)
        if not self.min_segments >= 3:  # a spread needs a few segments
            raise ConfigError(f"must be >= 3, got {self.min_segments!r}", key="min_segments")
        if not 0 < self.clear_below <= 1:
            raise ConfigError(f"must be in (0, 1], got {self.clear_below!r}", key="clear_below")
        if self.range_risk is not None and not self.range_risk < 0.5:
            raise ConfigError(f"must be in (0, 0.5), got {self.range_risk!r}", key="range_risk")
        for key in ("ridge", "min_threshold"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"must be >= 0, got {getattr(self, key)!r}", key=key)

    # --- fit --------------------------------------------------------------------------------------
    def fit(self, history: TelemetryBlock) -> ForecastDetector:
        """Learn coefficients, ranges and the error threshold per channel from nominal ``history``."""
        self._check_params()
        values = _finite_or_nan(history.values)
        cmds = self._commands(history, fitting=True)
        c = values.shape[1]
        short = np.flatnonzero(np.isfinite(values).sum(axis=0) < self.n_lags + 2)
        if short.size:
            raise DataError(
                f"fewer than n_lags + 2 = {self.n_lags + 2} valid samples to fit on",
                source=history.source,
                channel=history.channels[int(short[0])],
            )
        self.channels_ = history.channels
        with np.errstate(invalid="ignore"):
            self.center_ = np.nanmean(values, axis=0)
            scale = np.nanstd(values, axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        self.intercept_, self.coef_lags_, self.coef_cmds_ = self._fit_ridge(values, cmds)
        with np.errstate(invalid="ignore"):
            self.lo_, self.hi_ = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        # Scale-free floors from the channel's resolution (the smallest step between distinct values):
        # one step's share of the smoothed error never alarms, and a value one step past the range
        # is not novel. ``min_threshold`` adds an absolute floor in channel units where one is wanted.
        self.resolution_ = np.array([resolution(values[:, j]) for j in range(c)])
        self.floor_ = np.maximum(self.resolution_ * 2.0 / (self.span + 1.0), self.min_threshold)
        self.shape_ = ShapeCheck().fit(history) if self.shape else None
        # The level EWMA restarts at each segment from the mean, as the stream does after reset().
        segments = _segments(history.time)
        level = np.concatenate([_ewm(values[seg], self.center_, self.level_span or 1) for seg in segments])
        with np.errstate(invalid="ignore"):
            self.level_lo_, self.level_hi_ = np.nanmin(level, axis=0), np.nanmax(level, axis=0)
        # First pass over the history with every check but the error off: its smoothed errors.
        inf = np.full(c, np.inf)
        self.threshold_, self.stuck_after_ = np.ones(c), inf
        self.margin_, self.level_margin_ = np.full((c, 2), np.inf), np.full((c, 2), np.inf)
        self.baseline_ = np.full(c, np.nan)
        self.calm_peak_ = np.zeros(c)
        self.command_gain_ = np.zeros((c, cmds.shape[2]))
        self.reset()
        smoothed = self._run(values, cmds, stream=False)[0]
        # The stream starts from the typical nominal error instead of its first raw error.
        self.baseline_ = np.nan_to_num(np.nanmean(smoothed, axis=0), nan=0.0)
        thr = pot_threshold(smoothed, self.init_quantile, self.risk) * self.threshold_factor
        # A channel whose history never moved has no error scale: its error check stays off and the
        # range checks give any move UNSCALED_SCORE (see forecast_kernel._beyond).
        thr = np.maximum(np.nan_to_num(thr, nan=0.0), self.floor_)
        self.threshold_ = np.where(self.resolution_ > 0, _positive(thr), np.inf)
        # The stream's calm peak starts from the history's: the largest smoothed error below threshold.
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            calm = np.nanmax(np.where(smoothed < self.threshold_, smoothed, np.nan), axis=0)
        self.calm_peak_ = np.nan_to_num(calm, nan=0.0)
        if self.novelty_margin is not None:
            self.margin_ = self._margins(values, self.hi_ - self.lo_, self.novelty_margin, segments)
            if self.level_span:
                width = self.level_hi_ - self.level_lo_
                self.level_margin_ = self._margins(level, width, self.level_margin, segments)
            self._cycle_margins(values, level)
            # A level check without a scale would hold an alarm while the EWMA creeps back to the
            # constant; the novelty check already says every sample that is off it.
            self.level_margin_[self.resolution_ == 0] = np.inf
        self.command_gain_ = self._command_gain(values, cmds)
        if self.stuck_factor is not None:
            longest = np.array([_longest_repeat(values[:, j]) for j in range(c)], dtype=np.float64)
            # A value repeated for less than the smoothing span is never called stuck.
            self.stuck_after_ = self.stuck_factor * np.maximum(longest, self.span)
        self.reset()
        return self

    def _margins(self, x: np.ndarray, width: np.ndarray, fraction: float, segments: list[np.ndarray]) -> np.ndarray:
        """Per channel and side (low, high): how far beyond the history's range of ``x`` a value may go.

        At least ``fraction`` of the range (and ``min_threshold``); where the history comes in
        ``min_segments`` or more segments, also as far as a new segment's extreme may reach by the
        spread of the segments' extremes (:func:`vigil.detect.threshold.extreme_bound`).
        """
        floor = np.maximum(fraction * width, np.maximum(self.resolution_, self.min_threshold))
        out = np.repeat(floor[:, None], 2, axis=1)
        if self.range_risk is not None and len(segments) >= self.min_segments:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-missing segments: NaN, ignored
                lows = np.stack([np.nanmin(x[seg], axis=0) for seg in segments])
                highs = np.stack([np.nanmax(x[seg], axis=0) for seg in segments])
                seen_lo, seen_hi = np.nanmin(lows, axis=0), np.nanmax(highs, axis=0)
            reach = (seen_lo + extreme_bound(-lows, self.range_risk), extreme_bound(highs, self.range_risk) - seen_hi)
            for side, ext in enumerate(reach):
                out[:, side] = np.maximum(out[:, side], np.nan_to_num(ext, nan=0.0))
        return out  # 0 where the history never moved: no scale (see forecast_kernel._beyond)

    def _cycle_margins(self, values: np.ndarray, level: np.ndarray) -> None:
        """Where a channel recurs with a period (the shape check found one), its cycles are the
        segments: the margins also reach as far as a new cycle's extreme goes with ``range_risk``,
        by the spread of the cycles' extremes."""
        if self.range_risk is None or self.shape_ is None:
            return
        for j in np.flatnonzero(self.shape_.period_ > 0):
            period = int(self.shape_.period_[j])
            for x, margin in ((values[:, j], self.margin_), (level[:, j], self.level_margin_)):
                x = x[np.isfinite(x)]
                cycles = x[: x.size // period * period].reshape(-1, period)
                if cycles.shape[0] < self.min_segments:
                    continue
                lows, highs = cycles.min(axis=1), cycles.max(axis=1)
                reach = (
                    lows.min() + extreme_bound(-lows[:, None], self.range_risk)[0],
                    extreme_bound(highs[:, None], self.range_risk)[0] - highs.max(),
                )
                for side, ext in enumerate(reach):
                    if np.isfinite(ext) and np.isfinite(margin[j, side]):
                        margin[j, side] = max(margin[j, side], ext)

    def _command_gain(self, values: np.ndarray, cmds: np.ndarray) -> np.ndarray:
        """Per channel and command input, the offset ``[c, k]`` the fitted model settles at while the
        command is held (its steady-state gain), at most the history's range either way; zero for
        inputs the history gave but never held for ``command_span`` samples (impulse commands, such
        as SMAP/MSL's, say nothing about a held mode); NaN (unknown: the range either way) for
        inputs the history never gave."""
        persistence = 1.0 - self.coef_lags_.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = self.coef_cmds_ * self.scale_[:, None] / persistence
        width = (self.hi_ - self.lo_)[:, None]
        gain = np.clip(np.nan_to_num(gain, nan=0.0, posinf=np.inf, neginf=-np.inf), -width, width)
        if not self.command_span or cmds.shape[2] == 0:
            return np.zeros_like(gain)
        longest = np.array(
            [[_longest_run(values[:, j], cmds[:, j, q]) for q in range(cmds.shape[2])] for j in range(cmds.shape[1])]
        )
        return np.where(longest >= self.command_span, gain, np.where(longest == 0, np.nan, 0.0))

    def _commands(self, block: TelemetryBlock, fitting: bool = False) -> np.ndarray:
        """Command inputs ``[n, c, k]`` (k = 0 when not used)."""
        n, c = block.values.shape
        if fitting:
            self.n_commands_ = block.commands.shape[2] if self.use_commands and block.commands is not None else 0
        k = self.n_commands_
        if k == 0:
            return np.zeros((n, c, 0))
        if block.commands is None or block.commands.shape[2] != k:
            got = None if block.commands is None else block.commands.shape[2]
            raise DataError(f"fitted with {k} command inputs per channel, block has {got}", source=block.source)
        return block.commands

    def _fit_ridge(self, values: np.ndarray, cmds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Closed-form ridge per channel on standardised values (missing samples skipped, as in scoring)."""
        c = values.shape[1]
        lags, k = self.n_lags, cmds.shape[2]
        intercept = np.zeros(c)
        coef_lags = np.zeros((c, lags))
        coef_cmds = np.zeros((c, k))
        for j in range(c):
            keep = np.isfinite(values[:, j])
            z = (values[keep, j] - self.center_[j]) / self.scale_[j]
            m = z.shape[0] - lags
            windows = np.lib.stride_tricks.sliding_window_view(z, lags)[:m, ::-1]  # row t: z[t+lags-1], ..., z[t]
            inputs = np.nan_to_num(cmds[keep, j][lags:], nan=0.0, posinf=0.0, neginf=0.0)  # as in scoring
            x = np.concatenate([np.ones((m, 1)), windows, inputs], axis=1)
            gram = x.T @ x
            penalty = self.ridge * np.trace(gram) / gram.shape[0] * np.eye(gram.shape[0])
            penalty[0, 0] = 0.0  # the intercept is not shrunk
            w = np.linalg.lstsq(gram + penalty, x.T @ z[lags:], rcond=None)[0]
            intercept[j], coef_lags[j], coef_cmds[j] = w[0], w[1 : lags + 1], w[lags + 1 :]
        return intercept, coef_lags, coef_cmds

    # --- score ------------------------------------------------------------------------------------
    def reset(self) -> None:
        c = len(self.channels_)
        self.window_ = np.zeros((c, self.n_lags))
        self.traces_ = np.zeros_like(self.command_gain_)
        self.n_seen_ = np.zeros(c, dtype=np.int64)
        self.repeats_ = np.zeros(c, dtype=np.int64)
        self.ewm_ = self.baseline_.copy()
        self.err_level_ = self.baseline_.copy()
        self.err_max_ = self.calm_peak_.copy()
        self.value_ewm_ = self.center_.copy()
        # Per channel: [low, high] of the level EWMA counted as seen; delay-line slots of [min, max].
        self.level_seen_ = np.stack([self.level_lo_, self.level_hi_], axis=1)
        self.level_slots_ = np.zeros((c, self.LEARN_SLOTS if self.learn_after else 0, 2))
        self.value_seen_ = np.stack([self.lo_, self.hi_], axis=1)
        self.value_slots_ = np.zeros((c, self.LEARN_SLOTS if self.learn_after and self.learn_values else 0, 2))
        self.over_ = np.zeros(c, dtype=np.int64)
        self.under_ = np.zeros(c, dtype=np.int64)
        self.active_ = np.zeros(c, dtype=np.bool_)
        if getattr(self, "shape_", None) is not None:
            self.shape_.reset()

    def stream_state(self) -> dict:
        state = super().stream_state()
        if self.shape_ is not None:
            state["shape"] = self.shape_.stream_state()
        return state

    def set_stream_state(self, state: dict) -> None:
        if self.shape_ is not None and "shape" not in state:
            raise DataError("ForecastDetector stream state lacks the shape check's")
        super().set_stream_state(state)
        if self.shape_ is not None:
            self.shape_.set_stream_state(state["shape"])

    def state_nbytes(self) -> int:
        return super().state_nbytes() + (self.shape_.state_nbytes() if self.shape_ is not None else 0)

    def score(self, block: TelemetryBlock) -> Scores:
        """Score ``block`` (continuing the stream): level, score, expected value and nominal band."""
        self._check_channels(block)
        score, expected, low, high, by = self._run(block.values, self._commands(block))
        if self.shape_ is not None:  # the shape check: a fifth score on the same scale
            code = self.CHECKS.index("forecast.shape")
            self.shape_.merge_into(block.values, score, by, code)
            with np.errstate(invalid="ignore"):
                crossed = (by == code) & (score >= 1.0)
            low[crossed] = high[crossed] = np.nan  # a shape has no band of values to name
        level = apply_hysteresis(
            score, self.min_violations, self.clear_after, self.over_, self.under_, self.active_, self.clear_below
        )
        return Scores(level, score, expected, low, high, detector=self.CHECKS, by=by)

    def _run(
        self, values: np.ndarray, cmds: np.ndarray, stream: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Score, expected value, band and deciding check ``[n, c]`` each, advancing the stream state.

        ``stream=False`` (the pass over the history in :meth:`fit`) turns off what adapts to the
        stream: the threshold's rise and fall and the level check.
        """
        n, c = values.shape
        score, expected, low, high = (np.full((n, c), np.nan) for _ in range(4))
        by = np.zeros((n, c), dtype=np.int8)
        rates = np.array(
            [
                2.0 / (self.span + 1.0),
                2.0 / (self.adapt_span + 1.0) if stream and self.adapt_span else 0.0,
                2.0 / (self.level_span + 1.0) if stream and self.level_span else 0.0,
                2.0 / (self.command_span + 1.0) if self.command_span else 0.0,
            ]
        )
        settings = np.array(
            [(self.relative or 0.0) if stream else 0.0, max(1, (self.learn_after or 0) // self.LEARN_SLOTS)]
        )
        forecast_kernel(
            values, cmds, rates, settings,
            self.center_, self.scale_, self.intercept_, self.coef_lags_, self.coef_cmds_,
            self.baseline_, self.threshold_, self.floor_, self.lo_, self.hi_, self.margin_, self.level_margin_,
            self.stuck_after_, self.command_gain_,
            self.window_, self.traces_, self.n_seen_, self.repeats_, self.ewm_, self.err_level_, self.err_max_,
            self.value_ewm_, self.level_seen_, self.level_slots_, self.value_seen_, self.value_slots_,
            score, expected, low, high, by,
        )  # fmt: skip
        return score, expected, low, high, by


def _positive(a: np.ndarray) -> np.ndarray:
    """Zeros (nothing to scale by) become the smallest positive float, so divisions stay finite."""
    return np.where(a > 0, a, np.finfo(float).tiny)


def _longest_run(values: np.ndarray, command: np.ndarray) -> int:
    """Longest run of a command input held non-zero, over the channel's valid samples.

    >>> _longest_run(np.array([1.0, 1.0, np.nan, 1.0, 1.0]), np.array([1.0, 1.0, 0.0, 1.0, 0.0]))
    3
    """
    on = np.nan_to_num(command[np.isfinite(values)], nan=0.0) != 0
    if not on.any():
        return 0
    edges = np.diff(np.r_[0, on.astype(np.int8), 0])
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _longest_repeat(x: np.ndarray) -> int:
    """Longest run of exact repeats of the previous valid value (missing samples skipped).

    >>> _longest_repeat(np.array([1.0, 1.0, np.nan, 1.0, 2.0, 2.0]))
    2
    """
    v = x[np.isfinite(x)]
    same = np.r_[False, v[1:] == v[:-1]]
    if not same.any():
        return 0
    edges = np.diff(np.r_[0, same.astype(np.int8), 0])
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _ewm(values: np.ndarray, start: np.ndarray, span: int) -> np.ndarray:
    """Per column, the EWMA (from ``start``) of the valid values; NaN where missing or warming up.

    >>> _ewm(np.array([[0.0], [1.0], [np.nan], [1.0]]), np.array([0.0]), 1)[:, 0].tolist()
    [nan, 1.0, nan, 1.0]
    """
    out = np.full(values.shape, np.nan)
    alpha = 2.0 / (span + 1.0)
    for j in range(values.shape[1]):
        keep = np.flatnonzero(np.isfinite(values[:, j]))
        ewm = lfilter([alpha], [1.0, alpha - 1.0], values[keep, j], zi=[(1.0 - alpha) * start[j]])[0]
        out[keep[span:], j] = ewm[span:]
    return out


def _segments(time: np.ndarray, gap: float = 10.0) -> list[np.ndarray]:
    """Row indices of the history's segments: runs of rows without a time step over ``gap`` times
    the median step (passes, flights, contacts).

    >>> [seg.tolist() for seg in _segments(np.array([0.0, 1.0, 2.0, 100.0, 101.0]))]
    [[0, 1, 2], [3, 4]]
    """
    step = np.diff(time)
    cuts = np.flatnonzero(step > gap * np.median(step)) + 1 if step.size else np.zeros(0, dtype=np.int64)
    return np.split(np.arange(time.size), cuts)


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Infinities are treated as missing, like NaN."""
    return np.where(np.isfinite(values), values, np.nan)
