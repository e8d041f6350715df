"""Several detectors over the same channels, read as one: the highest level wins sample by sample.

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> from vigil.detect.limits import ChannelLimits, LimitCheck
>>> history = TelemetryBlock.from_arrays(np.arange(4.0), [[1.0], [2.0], [3.0], [4.0]], ["T"])
>>> ens = Ensemble([LimitCheck({"T": ChannelLimits(warning=(0.0, 5.0))})]).fit(history)
>>> s = ens.score(TelemetryBlock.from_arrays([4.0, 5.0], [[4.0], [9.0]], ["T"]))
>>> s.level[:, 0].tolist(), s.detector
([0, 2], ('limits',))
"""

from __future__ import annotations

from collections.abc import Sequence

from vigil.detect.base import Detector, Scores
from vigil.errors import ConfigError
from vigil.model import TelemetryBlock


class Ensemble(Detector):
    """Fit and score each detector on the same blocks and merge with :meth:`Scores.combine`.

    Earlier detectors win ties, so put the one whose explanation an operator trusts most (usually
    the limit check) first.
    """

    name = "ensemble"

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ConfigError("needs at least one detector", key="detectors")
        self.detectors = list(detectors)

    def fit(self, history: TelemetryBlock) -> Ensemble:
        """Fit every detector on ``history``."""
        for det in self.detectors:
            det.fit(history)
        self.channels_ = history.channels
        return self

    def score(self, block: TelemetryBlock) -> Scores:
        """Score ``block`` with every detector and keep, per sample, the highest level."""
        self._check_channels(block)
        return Scores.combine([det.score(block) for det in self.detectors])

    def reset(self) -> None:
        for det in self.detectors:
            det.reset()

    def stream_state(self) -> dict:
        return {str(i): det.stream_state() for i, det in enumerate(self.detectors)}

    def set_stream_state(self, state: dict) -> None:
        for i, det in enumerate(self.detectors):
            det.set_stream_state(state[str(i)])

    def state_nbytes(self) -> int:
        return sum(det.state_nbytes() for det in self.detectors)
