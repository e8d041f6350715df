"""Fit the default detector on nominal history that may lack some configured channels.

Channels the history lacks (absent, or with too few valid samples for the learned detectors) are
reported and run on their configured limits only, until a refit on history that has them; the
learned detectors score the channels they were fitted on. :class:`Columns` lets a detector fitted
on some channels score blocks of all of them.
"""

from __future__ import annotations

import numpy as np

from vigil.detect.base import Detector, Scores
from vigil.errors import DataError
from vigil.model import TelemetryBlock


class Columns(Detector):
    """``inner``, fitted on a subset of ``channels``, scoring blocks of all of them (the others
    get level 0 and no expectation from it)."""

    def __init__(self, inner: Detector, channels: tuple[str, ...]) -> None:
        self.inner = inner
        self.name = inner.name
        self.channels_ = tuple(channels)
        index = {c: k for k, c in enumerate(self.channels_)}
        self._cols = np.array([index[c] for c in inner.channels_], dtype=np.int64)

    def fit(self, history: TelemetryBlock) -> Columns:
        self.inner.fit(history.select(list(self.inner.channels_)))
        return self

    def score(self, block: TelemetryBlock) -> Scores:
        self._check_channels(block)
        sub = TelemetryBlock.from_arrays(block.time, block.values[:, self._cols], self.inner.channels_)
        part = self.inner.score(sub)
        out = Scores.empty(block.n_samples, len(self.channels_), self.name)
        out.detector = part.detector
        for f in ("level", "score", "expected", "low", "high", "by"):
            getattr(out, f)[:, self._cols] = getattr(part, f)
        return out

    def reset(self) -> None:
        self.inner.reset()

    def stream_state(self) -> dict:
        return self.inner.stream_state()

    def set_stream_state(self, state: dict) -> None:
        self.inner.set_stream_state(state)

    def state_nbytes(self) -> int:
        return self.inner.state_nbytes()


def fit_default(config, nominal: TelemetryBlock) -> tuple[Detector, list[str]]:
    """The default detector (:func:`vigil.detect.build_detector`) fitted on ``nominal``; returns it
    and the configured channels the history could not fit (they get limit checks only)."""
    from vigil.detect import build_detector
    from vigil.detect.ensemble import Ensemble
    from vigil.detect.limits import LimitCheck

    channels = tuple(config.channels)
    absent = [
        c
        for c in channels
        if c not in nominal.channels or not np.isfinite(nominal.values[:, nominal.index_of(c)]).any()
    ]
    while True:
        present = [c for c in channels if c not in absent]
        if not absent:
            try:
                return build_detector(config).fit(nominal.select(list(channels))), []
            except DataError as err:
                if err.channel not in channels:
                    raise
                absent.append(err.channel)
                continue
        default = build_detector(config)  # an Ensemble, or the forecast alone when no limits are set
        learned = [d for d in getattr(default, "detectors", [default]) if d.name != "limits"]
        try:
            fitted = [Columns(d.fit(nominal.select(present)), channels) for d in learned] if present else []
        except DataError as err:
            if err.channel not in present:
                raise
            absent.append(err.channel)
            continue
        empty = TelemetryBlock.from_arrays([0.0], np.full((1, len(channels)), np.nan), channels)
        parts = ([LimitCheck(config.limits()).fit(empty)] if config.limits() else []) + fitted
        if not parts:
            raise DataError("the nominal history has none of the configured channels and no limits are configured")
        ensemble = Ensemble(parts)
        ensemble.channels_ = channels
        return ensemble, absent
