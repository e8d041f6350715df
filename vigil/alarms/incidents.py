"""Incidents: alarms on related channels that start close together, read as one event.

Two alarms belong to one incident when their channels share a subsystem in the channel
configuration and their first times are within ``window_s`` of each other (single linkage: an
alarm joins an incident if it starts within the window of the incident's latest onset). Channels
without a subsystem form incidents of their own. Optionally (``incident_correlation`` in the
configuration) an alarm that matches no subsystem incident joins an incident within the window
when its channel's recent values correlate with a member's (:class:`RecentValues`,
:func:`correlation`): channels that go wrong together.

Contributing channels are ranked by ``rank_score = peak level + earliness``, where earliness
``1 - (onset - incident start) / window_s`` lies in [0, 1]: the most severe channels first, and
among equally severe ones the earliest, which is usually nearest the cause. Ties go to the larger
peak score, then the channel name.

>>> from vigil.alarms.model import Incident, RankedChannel
>>> inc = Incident(id=1, subsystem="hyd", first_time=0.0, last_time=0.0)
>>> add_member(inc, RankedChannel("P1", 1, 0.0, "critical", 0.0, 2.0, "low"))
>>> add_member(inc, RankedChannel("P2", 2, 0.0, "critical", 5.0, 3.0, "low"))
>>> rank(inc, window_s=10.0)
>>> [(c.channel, c.rank_score) for c in inc.channels]
[('P1', 5.0), ('P2', 4.5)]
>>> inc.explanation
'2 channels in subsystem hyd went low (below their nominal bands) within 5 s: P1 (critical, onset t=0, 2x threshold), P2 (critical, onset t=5, 3x threshold)'
"""

from __future__ import annotations

import math

import numpy as np

from vigil.alarms.model import Alarm, Incident, RankedChannel
from vigil.detect.base import SEVERITIES
from vigil.model import format_span, format_time, printable

#: Fewest samples both channels must have for a correlation to count.
MIN_POINTS = 8
#: Channels named in an incident's explanation (the rest are counted).
MAX_LISTED = 10


def joins(incident: Incident, alarm: Alarm, window_s: float) -> bool:
    """Whether ``alarm`` belongs to ``incident``: same (non-empty) subsystem, onset within the window."""
    if not alarm.subsystem or incident.subsystem != alarm.subsystem:
        return False
    return incident.first_time - window_s <= alarm.first_time <= incident.last_time + window_s


def member_of(alarm: Alarm) -> RankedChannel:
    """The alarm's entry in its incident (``rank_score`` is filled in by :func:`add_member`)."""
    return RankedChannel(
        channel=alarm.channel,
        alarm_id=alarm.id,
        rank_score=0.0,
        severity=alarm.severity,
        onset=alarm.first_time,
        peak_score=alarm.peak_score,
        direction=alarm.direction,
        subsystem=alarm.subsystem,
    )


def add_member(incident: Incident, member: RankedChannel) -> None:
    """Add (or update, for an alarm already in) ``member``; :func:`rank` afterwards. Cheap, so an
    incident that gains many channels in one commit is ranked and explained once."""
    if member.alarm_id not in incident.alarm_ids:
        incident.alarm_ids.append(member.alarm_id)
    incident.channels = [c for c in incident.channels if c.alarm_id != member.alarm_id] + [member]
    incident.first_time = min(incident.first_time, member.onset)
    incident.last_time = max(incident.last_time, member.onset)


def rank(incident: Incident, window_s: float) -> None:
    """Order the channels, set the incident's severity and explanation."""
    # A channel with several alarms in the incident is listed once, by its best-ranked alarm.
    best: dict[str, RankedChannel] = {}
    for c in _ranked(incident.channels, incident.first_time, window_s):
        best.setdefault(c.channel, c)
    incident.channels = list(best.values())
    incident.severity = max((c.severity for c in incident.channels), key=SEVERITIES.index)
    incident.explanation = explain(incident)


def _ranked(entries: list[RankedChannel], start: float, window_s: float) -> list[RankedChannel]:
    scored = []
    for c in entries:
        earliness = min(1.0, max(0.0, 1.0 - (c.onset - start) / window_s))
        level = SEVERITIES.index(c.severity) + 1
        scored.append(RankedChannel(**{**c.__dict__, "rank_score": round(level + earliness, 6)}))
    peak = lambda c: c.peak_score if math.isfinite(c.peak_score) else -math.inf  # noqa: E731
    return sorted(scored, key=lambda c: (-c.rank_score, -peak(c), c.channel))


def explain(incident: Incident) -> str:
    """What happened, in one line: how many channels, where, which way, how fast, ranked."""
    chans = incident.channels
    subsystems = sorted({c.subsystem for c in chans if c.subsystem})
    if len(subsystems) > 1:
        where = f"subsystems {printable(', '.join(subsystems))} (grouped by correlated recent values)"
    else:
        where = f"subsystem {printable(incident.subsystem)}" if incident.subsystem else "no subsystem"
    sides = {c.direction for c in chans}
    ways = {
        "low": "went low (below their nominal bands)",
        "high": "went high (above their nominal bands)",
        "stale": "went stale (stopped arriving)",
    }
    way = ways.get(sides.pop() if len(sides) == 1 else "", "left nominal")
    listed = ", ".join(
        f"{printable(c.channel)} ({c.severity}, onset {format_time(c.onset)}"
        + (f", {_fmt(c.peak_score)}x threshold)" if math.isfinite(c.peak_score) else ")")
        for c in chans[:MAX_LISTED]
    )
    if len(chans) > MAX_LISTED:
        listed += f" and {len(chans) - MAX_LISTED} more"
    if len(chans) == 1:
        return f"1 channel in {where} {way.replace('their nominal bands', 'its nominal band')}: {listed}"
    span = incident.last_time - incident.first_time
    return f"{len(chans)} channels in {where} {way} within {format_span(span)}: {listed}"


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else "-"


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Absolute Pearson correlation over the samples both have; NaN with fewer than
    :data:`MIN_POINTS` or a constant series.

    >>> t = np.arange(20.0)
    >>> round(correlation(np.sin(t), 3 - 2 * np.sin(t)), 6), correlation(t, np.ones(20))
    (1.0, nan)
    """
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < MIN_POINTS:
        return math.nan
    a, b = x[both] - x[both].mean(), y[both] - y[both].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return abs(float(a @ b)) / den if den > 0 else math.nan


class RecentValues:
    """The last ``size`` rows of every channel's values (NaN where a channel did not report).

    >>> r = RecentValues(3, 2)
    >>> r.push(np.array([[1.0, 10.0], [2.0, 20.0]]), np.array([0, 1]))
    >>> r.push(np.array([[3.0], [4.0]]), np.array([1]))
    >>> r.series(1).tolist(), r.series(0, np.array([9.0])).tolist()
    ([20.0, 3.0, 4.0], [nan, nan, 9.0])
    """

    def __init__(self, size: int, n_channels: int = 0) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self.values_ = np.full((size, n_channels), np.nan)
        self.head_ = 0

    def add_channels(self, m: int) -> None:
        self.values_ = np.concatenate([self.values_, np.full((self.size, m), np.nan)], axis=1)

    def push(self, values: np.ndarray, idx: np.ndarray) -> None:
        """Append the rows of ``values`` (columns are channels ``idx``); other channels get NaN."""
        rows = values[-self.size :]
        pos = (self.head_ + np.arange(rows.shape[0])) % self.size
        self.values_[pos] = np.nan
        self.values_[np.ix_(pos, idx)] = rows
        self.head_ = int((self.head_ + rows.shape[0]) % self.size)

    def series(self, j: int, extra: np.ndarray | None = None) -> np.ndarray:
        """Channel ``j``'s last ``size`` values, oldest first, continued by ``extra`` if given."""
        col = self.values_[(self.head_ + np.arange(self.size)) % self.size, j]
        return col if extra is None else np.concatenate([col, extra])[-self.size :]
