"""Staleness: channels that stopped arriving, decided on the stream's own clock.

A channel is stale once the stream's time is more than its limit past its last sample; the limit is
the configuration's ``stale_timeout_s`` (``stale_after_s``, else three periods of ``rate_hz``;
never when neither is set). While rows are scored, :func:`vigil.monitor.history.absorb` notices the
changes row by row; on idle ticks :func:`due` finds channels that went stale with no row to show
it. Either way a channel goes stale at event time ``last sample + limit``, the time a replay at any
speed finds, and the manager hears the changes in :func:`in_time_order`.

Kept apart from the monitor because these are the rules that make staleness independent of the
chunking and pace of the stream; the monitor only applies them.

>>> limit = np.array([5.0, np.inf])
>>> due(20.0, last_seen=np.array([10.0, 0.0]), stale=np.zeros(2, dtype=bool), limit=limit)
[(0, 15.0)]
>>> in_time_order([(1, 2, 0, 10.0), (0, 2, 0, 10.0)], time=np.array([13.0, 14.0, 16.0]), limit=limit)
[(2, True, 0, 15.0, 10.0), (3, False, 0, 16.0, 10.0)]
"""

from __future__ import annotations

import numpy as np


def stale_limits(config, channels: tuple[str, ...]) -> np.ndarray:
    """Seconds without a sample after which each channel is stale (inf: never), from the config's
    ``stale_timeout_s`` (``stale_after_s``, else three periods of ``rate_hz``)."""
    limits = np.full(len(channels), np.inf)
    table = getattr(config, "channels", None) or {}
    for j, name in enumerate(channels):
        timeout = getattr(table.get(name), "stale_timeout_s", None)
        if timeout is not None:
            limits[j] = float(timeout)
    return limits


def due(now: float, last_seen: np.ndarray, stale: np.ndarray, limit: np.ndarray) -> list[tuple[int, float]]:
    """Channels not yet stale whose last sample is older than their limit at stream time ``now``:
    ``(channel index, event time it went stale)``, by that time, then channel."""
    age = now - last_seen
    newly = np.flatnonzero(~stale & np.isfinite(age) & (age > limit))
    when = last_seen[newly] + limit[newly]
    return [(int(newly[k]), float(when[k])) for k in np.lexsort((newly, when)).tolist()]


def in_time_order(changes: list, time: np.ndarray, limit: np.ndarray) -> list[tuple[int, bool, int, float, float]]:
    """A scored block's staleness changes ``(kind, row, channel, last seen)`` (kind 1 stale, 0 fresh,
    as :func:`~vigil.monitor.history.absorb` gives them) in the order the manager hears them:
    ``(rows before it, stale, channel, event time, last seen)``.

    By event time (stale: last sample + limit, before the row that showed it; fresh: the row's
    time, after that row), then fresh before stale at one time, then channel: the order a replay
    at any pace reports them in.
    """

    def key(ch):
        kind, i, j, seen = ch
        return (float(seen + limit[j]) if kind else float(time[i]), kind, int(j))

    out = []
    for kind, i, j, seen in sorted(changes, key=key):
        when = float(seen + limit[j]) if kind else float(time[i])
        out.append((int(i) if kind else int(i) + 1, bool(kind), int(j), when, float(seen)))
    return out
