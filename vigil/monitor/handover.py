"""The monitor's calls into the alarm manager: scored rows, a slice at a time, and staleness reports.

A scored block goes to the manager in slices cut at its staleness changes (so the manager hears
rows and staleness in time order, see :func:`vigil.monitor.staleness.in_time_order`); playback rows
are marked only when a slice holds one. Any manager that has ``update(block, scores)``,
``report_stale(channel, time, last_seen)`` and ``report_fresh(channel, time)`` will do (tests use
recording fakes); whatever those return is normalised to a list of events. Errors are the
caller's: the monitor counts them and goes on.

Kept apart from the monitor because it is the only code that knows the manager's calling
conventions, and building blocks without re-validation is only safe for arrays the monitor made.

>>> b = block_of(np.array([1.0, 2.0]), np.array([[1.0], [2.0]]), ("A",), {"A": 0})
>>> b.n_samples, b.slice(1, 2).values.tolist()
(2, [[2.0]])
"""

from __future__ import annotations

import numpy as np

from vigil.detect.base import Scores
from vigil.model import TelemetryBlock


def block_of(time: np.ndarray, values: np.ndarray, channels: tuple[str, ...], index: dict[str, int]) -> TelemetryBlock:
    """A block built without re-validation, for ``time`` (sorted, unique, finite) and ``values``
    (``[n, c]`` float64) that the monitor made itself: re-building the name ``index`` of 10,000
    channels would cost more than scoring a tick."""
    block = object.__new__(TelemetryBlock)
    fields = {"time": time, "values": values, "channels": channels, "commands": None}
    for name, value in (*fields.items(), ("source", "monitor"), ("_index", index)):
        object.__setattr__(block, name, value)
    return block


def update(manager, block: TelemetryBlock, scores: Scores, a: int, b: int, playback=None) -> list:
    """Rows ``a:b`` of a scored block to ``manager.update``; ``playback`` marks rows of the block."""
    if a > 0 or b < block.n_samples:
        block = block_of(block.time[a:b], block.values[a:b], block.channels, block._index)  # noqa: SLF001
        scores = Scores(
            *(getattr(scores, f)[a:b] for f in ("level", "score", "expected", "low", "high")),
            detector=scores.detector,
            by=scores.by[a:b],
        )
    if playback is not None and playback[a:b].any():
        return list(manager.update(block, scores, playback=playback[a:b]) or [])
    return list(manager.update(block, scores) or [])


def staleness(manager, stale: bool, channel: str, time: float, last_seen: float) -> list:
    """A channel went stale (its last sample at ``last_seen``) or fresh at event time ``time``."""
    out = manager.report_stale(channel, time, last_seen) if stale else manager.report_fresh(channel, time)
    if out is None:
        return []
    return list(out) if isinstance(out, list | tuple) else [out]
