"""From per-sample flags to detections: which channel, from when to when, how far, by which detector."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vigil.detect.base import Scores, severity_name
from vigil.model import TelemetryBlock, format_time


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
        """One line an operator can read."""
        band = f"[{_fmt(self.low)}, {_fmt(self.high)}]"
        return (
            f"{self.channel}: {self.severity} by {self.detector} from {format_time(self.start_time)} "
            f"to {format_time(self.end_time)}; at {format_time(self.peak_time)} value {_fmt(self.value)}, "
            f"expected {_fmt(self.expected)}, nominal band {band}, {_fmt(self.peak_score)}x threshold"
        )


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
