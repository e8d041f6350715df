"""From per-sample flags to detections: which channel, from when to when, how far, by which detector."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from vigil.detect.base import Scores, severity_name
from vigil.model import TelemetryBlock, format_time, printable


def runs(mask: np.ndarray) -> np.ndarray:
    """Inclusive ``[start, end]`` index pairs of the runs of True in a 1-D mask.

    >>> runs(np.array([0, 1, 1, 0, 0, 1], dtype=bool)).tolist()
    [[1, 2], [5, 5]]
    >>> runs(np.zeros(3, dtype=bool)).shape
    (0, 2)
    """
    m = np.asarray(mask, dtype=np.int8)
    edges = np.diff(np.concatenate(([0], m, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return np.stack([starts, ends], axis=1) if starts.size else np.empty((0, 2), dtype=np.int64)


@dataclass(frozen=True)
class Detection:
    """One anomalous stretch of one channel."""

    channel: str
    detector: str
    severity: str
    start_index: int
    end_index: int
    start_time: float
    end_time: float
    peak_time: float
    peak_score: float
    value: float
    expected: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return asdict(self)

    def explain(self) -> str:
        """One line an operator can read: the run, then what the check saw at its peak sample."""
        what = describe(self.detector, self.value, self.expected, self.low, self.high, self.peak_score)
        return (
            f"{printable(self.channel)}: {self.severity} by {self.detector} from {format_time(self.start_time)} "
            f"to {format_time(self.end_time)}; at {format_time(self.peak_time)} {what}"
        )


def describe(
    detector: str,
    value: float,
    expected: float,
    low: float,
    high: float,
    score: float,
    *,
    threshold: float = math.nan,
    severity: str = "",
    units: str = "",
    label: str = "",
    since: float = math.nan,
) -> str:
    """What one check saw at one sample, in its own terms (never a band the value is not outside).

    ``low``/``high`` mean what the check put in :class:`~vigil.detect.base.Scores`: the limit band,
    the prediction band (expected +- threshold), the range (or, for ``forecast.level``, the levels)
    seen in history (the running average is judged against those). ``threshold`` is the bound crossed when known (a configured limit), ``label``
    the state name of an enumerated value, ``since`` when a stuck value began repeating.

    >>> describe("limits", 49.8, math.nan, 0, 35, 3.2, threshold=40, severity="critical", units="degC")
    'value 49.8 degC above the critical limit 40 degC'
    >>> describe("forecast.error", 1303, 1303.4, 1299.4, 1307.4, 1.05)
    'value 1303, expected 1303 (band [1299, 1307]): smoothed prediction error 4.2 is 1.05x its threshold 4'
    >>> describe("forecast.novelty", 8.905, 0.1, -6, 6, 1.45)
    'value 8.905 above the range seen in history [-6, 6] by 2.905 (1.45x the margin allowed)'
    >>> describe("xtce", 3, math.nan, math.nan, math.nan, 1.0, severity="critical", label="FAULT")
    'state FAULT (raw value 3) is a critical state'
    """
    u = f" {units}" if units else ""
    v = f"value {_fmt(value)}{u}"
    if label:
        return f"state {label} (raw value {_fmt(value)}) is {_article(severity)} state"
    if detector in ("limits", "xtce"):
        if math.isfinite(threshold):
            side = "above" if value > threshold else "below"
            return f"{v} {side} the {severity + ' ' if severity else ''}limit {_fmt(threshold)}{u}"
        return f"{v}{_outside(value, low, high, u, 'the band in force')}"
    if detector == "forecast.error":  # the smoothed error crosses, the value may lie inside the band
        thr = (high - low) / 2
        return (
            f"{v}, expected {_fmt(expected)}{u} (band [{_fmt(low)}, {_fmt(high)}]{u}): smoothed prediction "
            f"error {_fmt(score * thr)}{u} is {_fmt(score)}x its threshold {_fmt(thr)}{u}"
        )
    if detector == "forecast.novelty":
        side, by = _side(value, low, high)
        return (
            f"{v} {side} the range seen in history [{_fmt(low)}, {_fmt(high)}]{u} by {_fmt(by)}{u} "
            f"({_fmt(score)}x the margin allowed)"
        )
    if detector == "forecast.level":
        return (
            f"{v}: its running average lies {_fmt(score)}x the margin allowed beyond the levels seen in "
            f"history [{_fmt(low)}, {_fmt(high)}]{u}"
        )
    if detector == "forecast.stuck":
        return f"{v} repeated exactly since {format_time(since)} ({_fmt(score)}x the longest repeat allowed)"
    if detector == "counterpart":
        return (
            f"{v}, expected {_fmt(expected)}{u} from its counterpart: {_fmt(abs(value - expected))}{u} apart, "
            f"{_fmt(score)}x the threshold {_fmt((high - low) / 2)}{u}"
        )
    return f"{v}, expected {_fmt(expected)}{u}{_outside(value, low, high, u, 'the nominal band')}, {_fmt(score)}x threshold"


def _side(x: float, low: float, high: float) -> tuple[str, float]:
    if math.isfinite(high) and x > high:
        return "above", x - high
    if math.isfinite(low) and x < low:
        return "below", low - x
    return "within", math.nan


def _outside(value: float, low: float, high: float, u: str, band: str) -> str:
    """`` above <band> [lo, hi]`` when the value lies outside it, else `` inside <band> [lo, hi]``."""
    if not (math.isfinite(low) or math.isfinite(high)):
        return ""
    side, _ = _side(value, low, high)
    side = "inside" if side == "within" else side
    return f" {side} {band} [{_fmt(low)}, {_fmt(high)}]{u}"


def _article(severity: str) -> str:
    word = severity or "alarm"
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _fmt(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.4g}"


def detections(block: TelemetryBlock, scores: Scores) -> list[Detection]:
    """One :class:`Detection` per run of flagged samples per channel, ordered by start time."""
    found: list[Detection] = []
    for j, channel in enumerate(block.channels):
        for start, end in runs(scores.level[:, j] > 0):
            found.append(_one(block, scores, j, channel, int(start), int(end)))
    found.sort(key=lambda d: (d.start_time, d.channel))
    return found


def _one(block: TelemetryBlock, scores: Scores, j: int, channel: str, start: int, end: int) -> Detection:
    seg = slice(start, end + 1)
    lv = scores.level[seg, j]
    sc = np.nan_to_num(scores.score[seg, j], nan=-np.inf)
    # Peak: the highest level, then the largest score within it.
    order = np.lexsort((sc, lv))
    peak = start + int(order[-1])
    return Detection(
        channel=channel,
        detector=scores.detector[int(scores.by[peak, j])],
        severity=severity_name(int(lv.max())) or "watch",
        start_index=start,
        end_index=end,
        start_time=float(block.time[start]),
        end_time=float(block.time[end]),
        peak_time=float(block.time[peak]),
        peak_score=float(scores.score[peak, j]),
        value=float(block.values[peak, j]),
        expected=float(scores.expected[peak, j]),
        low=float(scores.low[peak, j]),
        high=float(scores.high[peak, j]),
    )
