"""The one small interface every detector implements.

A detector is fitted on nominal history (:meth:`Detector.fit`), then scores new samples
(:meth:`Detector.score`). Scoring is *streaming*: each call continues from where the previous one
stopped, so scoring a block in consecutive chunks gives exactly what scoring it in one call gives.
:meth:`Detector.reset` forgets the stream (not what was learned). The constructor holds only
hyper-parameters; what ``fit`` learns ends in ``_`` and lives in arrays with one entry per channel,
so one call scores every channel at once.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from vigil.errors import DataError
from vigil.model import TelemetryBlock, same_channels

#: Yamcs' severity levels, lowest first. A ``level`` array holds 0 (nominal) or 1..5 (this tuple's index + 1).
SEVERITIES: tuple[str, ...] = ("watch", "warning", "distress", "critical", "severe")


def severity_name(level: int) -> str | None:
    """``None`` for 0, else the Yamcs name.

    >>> severity_name(0), severity_name(2), severity_name(4)
    (None, 'warning', 'critical')
    """
    return SEVERITIES[level - 1] if level > 0 else None


#: The per-sample arrays of :class:`Scores`, besides ``by``.
_FIELDS = ("level", "score", "expected", "low", "high")


@dataclass
class Scores:
    """What a detector says about each sample of a block (all arrays ``[n, c]``).

    Attributes:
        level: int8, 0 for nominal, else a Yamcs severity level (see :data:`SEVERITIES`).
        score: float64, distance from the expected value in units of the threshold: >= 1 means
            the threshold is crossed. NaN where the sample is missing or not yet scoreable.
        expected: float64, the value the detector expected (NaN where it has no expectation).
        low, high: float64, the band of nominal values in force at each sample (NaN: unbounded).
        detector: names of the detectors that contributed, indexed by ``by``.
        by: int8, which detector in ``detector`` set ``level`` (meaningful where ``level > 0``).
    """

    level: np.ndarray
    score: np.ndarray
    expected: np.ndarray
    low: np.ndarray
    high: np.ndarray
    detector: tuple[str, ...]
    by: np.ndarray

    @classmethod
    def empty(cls, n: int, c: int, detector: str) -> Scores:
        nan = np.full((n, c), np.nan)
        return cls(
            level=np.zeros((n, c), dtype=np.int8),
            score=nan.copy(),
            expected=nan.copy(),
            low=nan.copy(),
            high=nan,
            detector=(detector,),
            by=np.zeros((n, c), dtype=np.int8),
        )

    @property
    def flagged(self) -> np.ndarray:
        """bool ``[n, c]``: samples at any severity."""
        return self.level > 0

    @staticmethod
    def concat(parts: list[Scores]) -> Scores:
        """Scores of consecutive chunks joined in time."""
        if not parts:
            raise ValueError("no scores to join")
        return Scores(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS),
            detector=parts[0].detector,
            by=np.concatenate([p.by for p in parts]),
        )

    @staticmethod
    def combine(parts: list[Scores]) -> Scores:
        """Several detectors' scores of the same samples: the highest level wins, sample by sample.

        ``score``, ``expected`` and the band come from the winning detector; where no detector
        flags, from the first detector that has an expectation.
        """
        names = tuple(name for p in parts for name in p.detector)
        first = parts[0]
        out = Scores(
            *(getattr(first, f).copy() for f in _FIELDS), detector=names, by=first.by.astype(np.int8, copy=True)
        )
        offset = len(first.detector)
        for part in parts[1:]:
            # A later detector wins only with a strictly higher level (ties: the earlier explains), or,
            # where all are nominal, when it has an expectation and the earlier ones had none.
            take = part.level > out.level
            take |= (out.level == 0) & (part.level == 0) & np.isnan(out.expected) & ~np.isnan(part.expected)
            for f in _FIELDS:
                np.copyto(getattr(out, f), getattr(part, f), where=take)
            np.copyto(out.by, part.by + offset, where=take, casting="unsafe")
            offset += len(part.detector)
        return out


class Detector(ABC):
    """Fit on nominal history, then score new samples, all channels in one call."""

    #: Short name used in detections and alarms.
    name: ClassVar[str] = "detector"

    #: The attributes ``score`` changes (exactly those ``reset`` sets): the stream state. With the
    #: fitted model, they continue the stream exactly; a checkpoint holds only them.
    stream_attrs: ClassVar[tuple[str, ...]] = ()

    channels_: tuple[str, ...]

    @abstractmethod
    def fit(self, history: TelemetryBlock) -> Detector:
        """Learn nominal behaviour from ``history`` and reset the stream. Returns ``self``."""

    @abstractmethod
    def score(self, block: TelemetryBlock) -> Scores:
        """Score ``block``, continuing the stream from the previous call."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the stream (keep what ``fit`` learned)."""

    def stream_state(self) -> dict[str, Any]:
        """A copy of the stream state: restored with :meth:`set_stream_state` into the same fitted
        model, scoring continues exactly as if never interrupted."""
        return {k: copy.deepcopy(getattr(self, k)) for k in self.stream_attrs}

    def set_stream_state(self, state: dict[str, Any]) -> None:
        """Continue the stream from ``state`` (from :meth:`stream_state` of the same fitted model)."""
        missing = [k for k in self.stream_attrs if k not in state]
        if missing:
            raise DataError(f"{type(self).__name__} stream state lacks {missing}")
        for k in self.stream_attrs:
            old, new = getattr(self, k, None), state[k]
            if isinstance(old, np.ndarray) and (not isinstance(new, np.ndarray) or new.shape != old.shape):
                raise DataError(
                    f"{type(self).__name__} stream state {k!r} has shape {np.shape(new)}, the model needs {old.shape}"
                )
            setattr(self, k, copy.deepcopy(new))

    def state_nbytes(self) -> int:
        """Bytes of learned and stream state held for all channels."""
        return sum(v.nbytes for k, v in vars(self).items() if k.endswith("_") and isinstance(v, np.ndarray))

    def _check_channels(self, block: TelemetryBlock) -> None:
        fitted = getattr(self, "channels_", None)
        if fitted is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
        if not same_channels(block.channels, fitted):
            raise DataError(
                f"channels {list(block.channels)[:5]}... do not match the fitted channels "
                f"{list(fitted)[:5]}... (same names in the same order are required; use block.select())",
                source=block.source,
            )
