"""Event-wise metrics for labelled telemetry anomalies.

Telemanom's rule (Hundman et al. 2018): a predicted sequence that overlaps a labelled sequence is a
true positive, each labelled sequence counts once, a predicted sequence that overlaps none is a
false positive, and a labelled sequence no prediction overlaps is a false negative.

ESA-ADB's corrected event-wise F0.5 (Kotowski et al. 2024) multiplies the event-wise precision by
the true-negative rate in time, so one prediction covering the whole record scores badly.

All intervals are inclusive ``(start, end)`` sample indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Interval = tuple[int, int]


def _overlaps(a: Interval, b: Interval) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


@dataclass
class EventCounts:
    """Counts one can add across channels; the rates are derived from them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    negatives: int = 0  # samples outside every labelled sequence
    true_negatives: int = 0  # of those, samples not flagged
    delays: tuple[int, ...] = ()

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.negatives + other.negatives,
            self.true_negatives + other.true_negatives,
            self.delays + other.delays,
        )

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def tnr(self) -> float:
        return self.true_negatives / self.negatives if self.negatives else 1.0

    @property
    def f05(self) -> float:
        return f_beta(self.precision, self.recall, 0.5)

    @property
    def esa_f05(self) -> float:
        return f_beta(self.precision * self.tnr, self.recall, 0.5)

    @property
    def median_delay(self) -> float | None:
        return float(np.median(self.delays)) if self.delays else None

    def as_dict(self) -> dict:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f05": round(self.f05, 4),
            "esa_f05": round(self.esa_f05, 4),
            "tnr": round(self.tnr, 4),
            "median_delay": self.median_delay,
        }


def f_beta(precision: float, recall: float, beta: float) -> float:
    """F-beta from precision and recall; 0 when both are 0.

    >>> round(f_beta(0.875, 0.8, 0.5), 3)
    0.859
    """
    b2 = beta * beta
    denom = b2 * precision + recall
    return (1 + b2) * precision * recall / denom if denom else 0.0


def event_counts(
    predicted: Sequence[Interval],
    labelled: Sequence[Interval],
    n_samples: int,
) -> EventCounts:
    """Event-wise counts for one channel (see the module docstring).

    ``delays`` holds, for each detected labelled sequence, the samples from its start to the first
    flagged sample inside it (0 when a prediction was already open at its start).

    >>> c = event_counts([(5, 7), (20, 22), (40, 41)], [(6, 10), (30, 35)], n_samples=50)
    >>> c.tp, c.fp, c.fn, c.delays
    (1, 2, 1, (0,))
    >>> c.negatives, c.true_negatives
    (39, 33)
    """
    tp = fn = 0
    delays = []
    for lab in labelled:
        hits = [p for p in predicted if _overlaps(p, lab)]
        if hits:
            tp += 1
            delays.append(max(0, min(p[0] for p in hits) - lab[0]))
        else:
            fn += 1
    fp = sum(1 for p in predicted if not any(_overlaps(p, lab) for lab in labelled))
    truth = np.zeros(n_samples, dtype=bool)
    flags = np.zeros(n_samples, dtype=bool)
    for a, b in labelled:
        truth[a : b + 1] = True
    for a, b in predicted:
        flags[a : b + 1] = True
    negatives = int((~truth).sum())
    true_negatives = int((~truth & ~flags).sum())
    return EventCounts(tp, fp, fn, negatives, true_negatives, tuple(delays))
