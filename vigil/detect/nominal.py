"""Operator-nominal patterns: an episode an operator marked nominal does not alarm when it recurs.

An operator who judges an alarm benign (a heater cycle, a calibration, a planned manoeuvre) marks
it nominal. Its episode becomes a *pattern* of that channel: the samples from ``window`` samples
before the alarm's first sample to its end (at most :data:`MAX_SAMPLES`). :class:`NominalFilter`
wraps the monitor's detector, without refitting it: where the detector flags a sample of a channel
with patterns and no recognised episode is under way, the window of the last ``window`` samples up
to that sample is compared with the pattern's windows around its onset (ending within
``window // 2`` samples of the marked alarm's first sample). The episode is recognised when, for
one of them, all three hold:

* **shape**: each window's departure from its local trend (the window minus the straight line
  fitted to its first half: the level and slope just before) is z-normalised; their Euclidean
  distance over ``sqrt(window)`` is at most ``max_distance`` (0: the same shape; it equals
  ``sqrt(2 (1 - r))`` with ``r`` the Pearson correlation, so the default 0.3 means ``r >= 0.955``).
  Offset, slope and scale do not enter: the test is scale-free;
* **amplitude**: the departures' standard deviations are within a factor ``max_ratio`` (a flat
  window only matches a flat one);
* **level**: the window, shifted by the difference of the two windows' levels before the episode
  (medians of their first halves), lies in the marked episode's value range widened by
  ``tolerance`` times that range on each side (scale-free too: a fraction of the episode's range).

While a recognised episode lasts (the marked episode's length plus ``tolerance`` of it, plus one
window: a detector often keeps flagging for a while after the values are back) its flagged samples
are nominal while each is no more severe than the marked alarm ever was (``level``, its peak
severity) or lies, shifted the same way, in the widened range; the first that is neither ends the
episode and alarms as usual.

So the same benign pattern recurring passes, even on a baseline at another level or slope; a
different shape or a much larger excursion still alarms. Only the learned detectors'
flags are judged: a limit crossing (``limits``, ``xtce``) always alarms. The detector stays as it
was fitted; the patterns are kept by the store and given back at start; the trailing windows and
match counts are stream state (checkpointed with the detector's).

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> bump = np.r_[np.zeros(8), np.sin(np.linspace(0, np.pi, 16)) * 5, np.zeros(8)]
>>> pattern = episode_pattern(np.arange(32.0), bump, first_time=8.0, end_time=23.0, window=8)
>>> pattern["lead"], pattern["low"], round(pattern["high"], 2)
(8, 0.0, 4.97)
>>> onset = bump[2:10]  # the window ending at the first sample of the episode, and one after
>>> pattern_matches(pattern, onset * 1.05 + 0.05)["distance"] < 0.05
True
>>> pattern_matches(pattern, -onset) is None
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from vigil.detect.base import SEVERITIES, Detector, Scores
from vigil.model import TelemetryBlock, format_time

#: Most samples of an episode kept in a pattern (the onset first).
MAX_SAMPLES = 4096
#: Detectors whose flags are never judged nominal: a limit is the mission's own rule.
HARD = ("limits", "xtce")


def episode_pattern(
    time: np.ndarray, values: np.ndarray, first_time: float, end_time: float, window: int = 16
) -> dict[str, Any]:
    """The pattern of the episode ``[first_time, end_time]`` of one channel's samples ``(time, values)``.

    It keeps up to ``window`` samples before the episode (the lead-in a trailing window of the
    recurrence's first flagged sample contains) and the episode's value range. JSON-ready.
    Raises ``ValueError`` when the span holds no finite sample.
    """
    time, values = np.asarray(time, dtype=np.float64), np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values) & np.isfinite(time)
    time, values = time[ok], values[ok]
    i0 = int(np.searchsorted(time, first_time, side="left"))
    i1 = int(np.searchsorted(time, end_time, side="right"))
    if i1 <= i0:
        raise ValueError(f"no finite sample between {format_time(first_time)} and {format_time(end_time)}")
    start = max(0, i0 - window)
    i1 = min(i1, i0 + MAX_SAMPLES)
    episode = values[i0:i1]
    return {
        "values": values[start:i1].tolist(),
        "lead": i0 - start,
        "window": int(window),
        "low": float(episode.min()),
        "high": float(episode.max()),
        "start": float(time[i0]),
        "end": float(time[i1 - 1]),
        "samples": int(i1 - i0),
    }


def pattern_matches(
    pattern: dict[str, Any], window_values: np.ndarray, max_distance: float = 0.3, max_ratio: float = 1.5,
    tolerance: float = 0.25, slack: int | None = None,
) -> dict[str, float] | None:  # fmt: skip
    """How ``window_values`` (the last ``pattern["window"]`` samples) matches the onset of ``pattern``,
    or ``None``. See the module docstring for the three tests.

    Returns ``distance`` (z-normalised, over ``sqrt(window)``), ``offset`` (where in the pattern the
    matched window starts) and ``shift`` (the window's level minus the matched one's: the median of
    their first halves, the level just before the episode).
    """
    x = np.asarray(window_values, dtype=np.float64)
    m = x.size
    ref = np.asarray(pattern["values"], dtype=np.float64)
    if m < 2 or ref.size < m or not np.isfinite(x).all():
        return None
    # The pattern's windows around its onset: ending within ``slack`` samples of its first flagged one.
    lead = int(pattern["lead"])
    slack = m // 2 if slack is None else slack
    first, last = max(0, lead + 1 - slack - m), min(ref.size - m, lead + slack + 1 - m)
    if last < first:
        return None
    windows = sliding_window_view(ref, m)[first : last + 1]
    # Compare departures from the local trend: each window minus the line fitted to its first half.
    rx, rw = _detrended(x[None, :])[0], _detrended(windows)
    sd, xs = rw.std(axis=1), rx.std()
    flat_eps = 1e-9 * max(pattern["high"] - pattern["low"], abs(pattern["high"]), 1.0)
    if xs <= flat_eps:  # a flat window matches only a flat window of the pattern
        ok = sd <= flat_eps
        dist = np.where(ok, 0.0, np.inf)
    else:
        ok = (sd > flat_eps) & (sd * max_ratio >= xs) & (sd <= xs * max_ratio)
        z = (rx - rx.mean()) / xs
        with np.errstate(invalid="ignore", divide="ignore"):
            zw = (rw - rw.mean(axis=1)[:, None]) / sd[:, None]
        dist = np.where(ok, np.sqrt(((zw - z) ** 2).mean(axis=1)), np.inf)  # Euclidean over sqrt(m): 0..2
    best = int(np.argmin(dist))
    if not dist[best] <= max_distance:
        return None
    shift = float(np.median(x[: m // 2]) - np.median(windows[best, : m // 2]))
    if not in_range(pattern, x - shift, tolerance):
        return None
    return {"distance": float(dist[best]), "offset": float(first + best), "shift": shift}


def _detrended(windows: np.ndarray) -> np.ndarray:
    """Each row minus the least-squares line through its first half (the level and slope before)."""
    m = windows.shape[1]
    h = max(2, m // 2)
    t = np.arange(m, dtype=np.float64)
    th = t[:h] - t[:h].mean()
    slope = (windows[:, :h] - windows[:, :h].mean(axis=1)[:, None]) @ th / (th @ th)
    line = windows[:, :h].mean(axis=1)[:, None] + slope[:, None] * (t - t[:h].mean())
    return windows - line


def in_range(pattern: dict[str, Any], values: np.ndarray | float, tolerance: float = 0.25) -> bool:
    """Whether ``values`` lie in the episode's range widened by ``tolerance`` times that range."""
    span = pattern["high"] - pattern["low"]
    margin = tolerance * span if span > 0 else tolerance * max(abs(pattern["high"]), 1e-12)
    v = np.asarray(values, dtype=np.float64)
    return bool(v.min() >= pattern["low"] - margin and v.max() <= pattern["high"] + margin)


def explain_pattern(pattern: dict[str, Any]) -> str:
    """The sentence an operator reads for a sample judged nominal by ``pattern``."""
    when = format_time(pattern.get("wall_time"))
    return f"matches the nominal pattern marked by {pattern.get('user', '?')} at {when} (pattern {pattern.get('id')})"


class NominalFilter(Detector):
    """``inner``'s scores, with flagged samples that match an operator-nominal pattern set to nominal.

    ``patterns`` (``add``/``remove`` at run time) are the store's records (:func:`episode_pattern`
    plus ``id``, ``channel``, ``user``, ``wall_time``, ``comment``). Stream state: per channel with
    patterns, its last samples (``tails_``) and per pattern the samples it judged nominal
    (``matched_``: count, last time).
    """

    name = "nominal"
    stream_attrs = ("tails_", "seen_", "inside_", "matched_")

    def __init__(
        self, inner: Detector, patterns: list[dict[str, Any]] | None = None, max_distance: float = 0.3,
        max_ratio: float = 1.5, tolerance: float = 0.25,
    ) -> None:  # fmt: skip
        self.inner = inner
        self.detectors = [inner]  # so walkers of the detector tree (find_trend, limits) reach inside
        self.max_distance, self.max_ratio, self.tolerance = max_distance, max_ratio, tolerance
        self.patterns: dict[int, dict[str, Any]] = {}
        self.tails_: dict[str, np.ndarray] = {}
        self.seen_: dict[str, int] = {}  # samples of the channel judged so far
        # The recognised episode: pattern id, the last sample it may cover, its level shift.
        self.inside_: dict[str, tuple[int, int, float]] = {}
        self.matched_: dict[int, list[float]] = {}
        if getattr(inner, "channels_", None) is not None:
            self.channels_ = inner.channels_
        for p in patterns or []:
            self.add(p)

    # -- patterns ------------------------------------------------------------------------------------
    def add(self, pattern: dict[str, Any], recent: np.ndarray | None = None) -> None:
        """Judge ``pattern``'s channel against it from now on; ``recent`` (its latest samples) seeds the
        trailing window so that a recurrence right away is recognised."""
        pid, channel = int(pattern["id"]), pattern["channel"]
        self.patterns[pid] = pattern
        self.matched_.setdefault(pid, [0, math.nan])
        width = max(int(p["window"]) for p in self.patterns.values() if p["channel"] == channel)
        tail = self.tails_.get(channel, np.full(0, np.nan))
        if recent is not None:
            tail = np.concatenate([tail, np.asarray(recent, dtype=np.float64)])
        self.tails_[channel] = np.concatenate([np.full(width, np.nan), tail])[-width:]

    def remove(self, pattern_id: int) -> dict[str, Any] | None:
        """Stop using a pattern; returns it (``None`` if unknown)."""
        pattern = self.patterns.pop(int(pattern_id), None)
        if pattern is not None and not any(p["channel"] == pattern["channel"] for p in self.patterns.values()):
            self.tails_.pop(pattern["channel"], None)
        return pattern

    def status(self, pattern_id: int) -> dict[str, Any]:
        """Samples judged nominal by the pattern so far, and the last one's time."""
        count, last = self.matched_.get(int(pattern_id), [0, math.nan])
        return {"matched_samples": int(count), "last_match": last}

    # -- the detector interface ----------------------------------------------------------------------
    def fit(self, history: TelemetryBlock) -> NominalFilter:
        self.inner.fit(history)
        self.channels_ = self.inner.channels_
        self._columns: dict[str, int | None] = {}
        self.reset()
        return self

    def reset(self) -> None:
        self.inner.reset()
        self.tails_ = {c: np.full(self._width(c), np.nan) for c in {p["channel"] for p in self.patterns.values()}}
        self.matched_ = {pid: [0, math.nan] for pid in self.patterns}
        self.seen_, self.inside_ = {}, {}

    def stream_state(self) -> dict[str, Any]:
        return {"inner": self.inner.stream_state(), **super().stream_state()}

    def set_stream_state(self, state: dict[str, Any]) -> None:
        if "inner" not in state:  # a checkpoint written before the detector was wrapped: the inner's alone
            self.inner.set_stream_state(state)
            return
        self.inner.set_stream_state(state["inner"])
        # Patterns added after the checkpoint start with an empty window; withdrawn ones are dropped.
        tails, matched = state.get("tails_", {}), state.get("matched_", {})
        self.seen_, self.inside_ = dict(state.get("seen_", {})), dict(state.get("inside_", {}))
        for channel in list(self.tails_):
            saved = tails.get(channel)
            width = self._width(channel)
            if saved is not None:
                self.tails_[channel] = np.concatenate([np.full(width, np.nan), saved])[-width:]
        for pid in self.matched_:
            if pid in matched:
                self.matched_[pid] = list(matched[pid])

    def state_nbytes(self) -> int:
        return self.inner.state_nbytes() + sum(t.nbytes for t in self.tails_.values())

    def score(self, block: TelemetryBlock) -> Scores:
        scores = self.inner.score(block)
        if not self.tails_:
            return scores
        hard = np.array([d.split(".")[0] in HARD for d in scores.detector], dtype=bool)
        for channel in list(self.tails_):
            k = self._column(channel)
            if k is not None:
                self._judge(channel, block.time, block.values[:, k], scores, k, hard)
        return scores

    # -- internals -----------------------------------------------------------------------------------
    def _still(self, pattern: dict[str, Any], level: int, shifted: float) -> bool:
        """A flagged sample of a recognised episode stays nominal while it is no more severe than the
        marked alarm ever was, or lies in the marked range (shifted, widened)."""
        return level <= pattern.get("level", len(SEVERITIES)) or in_range(pattern, shifted, self.tolerance)

    def _column(self, channel: str) -> int | None:
        """The channel's column (blocks carry the fitted channels, checked by the inner detector),
        looked up once per channel rather than once per block."""
        columns = self.__dict__.setdefault("_columns", {})
        if channel not in columns:
            columns[channel] = self.channels_.index(channel) if channel in self.channels_ else None
        return columns[channel]

    def _width(self, channel: str) -> int:
        return max((int(p["window"]) for p in self.patterns.values() if p["channel"] == channel), default=0)

    def _judge(self, channel: str, time: np.ndarray, column: np.ndarray, scores: Scores, k: int, hard) -> None:
        tail = self.tails_[channel]
        width = tail.size
        ok = np.isfinite(column)
        series = np.concatenate([tail, column[ok]])  # missing samples neither count nor break the window
        rows = np.flatnonzero(ok)
        seen, (inside, until, shift) = self.seen_.get(channel, 0), self.inside_.get(channel, (-1, -1, 0.0))
        mine = [p for p in self.patterns.values() if p["channel"] == channel]
        for pos in np.flatnonzero(scores.level[rows, k] > 0).tolist():
            i, now = int(rows[pos]), seen + pos
            if hard[int(scores.by[i, k])]:
                continue
            end = width + pos + 1
            found = self.patterns.get(inside) if now <= until else None
            if found is not None and not self._still(found, scores.level[i, k], series[end - 1] - shift):
                found, until = None, -1  # more severe than the marked alarm and out of its range: not that episode
            if found is None:
                for p in mine:
                    m = int(p["window"])
                    match = pattern_matches(p, series[end - m : end], self.max_distance, self.max_ratio, self.tolerance)
                    if match is not None:
                        found, inside, shift = p, int(p["id"]), match["shift"]
                        until = now + int(p["samples"] * (1 + self.tolerance)) + m
                        break
            if found is not None:
                scores.level[i, k] = 0
                counts = self.matched_.setdefault(int(found["id"]), [0, math.nan])
                counts[0], counts[1] = counts[0] + 1, float(time[i])
        self.tails_[channel] = series[-width:] if width else series[:0]
        self.seen_[channel] = seen + rows.size
        self.inside_[channel] = (inside, until, shift)
