"""Incident glue: which incident a new alarm joins, and when an incident stops being active.

The rules themselves (same subsystem within the window, correlation, ranking, the explanation)
are in :mod:`vigil.alarms.incidents`; this is the state the manager needs to apply them while
alarms are raised: the incidents new alarms may still join, the next incident id, the recent
values of every channel (when ``incident_correlation`` is configured) and the block being applied
(so an alarm is correlated over the samples up to the one that raised it).

Kept apart from the alarm lifecycle because it decides nothing about an alarm's state: it only
files alarms into incidents, records the incidents that changed in the call's
:class:`~vigil.alarms.journal.Writes`, and ranks them before they are written.
"""

from __future__ import annotations

import numpy as np

from vigil.alarms.incidents import RecentValues, add_member, correlation, joins, member_of, rank
from vigil.alarms.journal import Writes
from vigil.alarms.model import STALE, Alarm, AlarmEvent, Incident
from vigil.config import MonitorConfig
from vigil.model import TelemetryBlock


class IncidentGrouper:
    """Files alarms into incidents (see the module docstring).

    Args:
        config: ``incident_window_s`` and ``incident_correlation`` are read from it.
        index: the manager's channel name -> column map (it grows as channels are added).
        correlation_samples: recent samples kept per channel for the correlation rule.
    """

    def __init__(self, config: MonitorConfig, index: dict[str, int], correlation_samples: int) -> None:
        self.config = config
        self.index = index
        self.recent = RecentValues(correlation_samples) if config.incident_correlation else None
        self.open: dict[int, Incident] = {}  # incidents new alarms may still join
        self.next_id = 1
        self.applying: tuple[TelemetryBlock, np.ndarray] | None = None  # the block being applied, its valid cells

    def join(self, alarm: Alarm, writes: Writes, update_only: bool = False, row: int = -1) -> None:
        """File ``alarm`` (raised at ``row`` of the block being applied) into an incident, or update
        its incident's entry (``update_only``: after an escalation)."""
        window = self.config.incident_window_s
        incident = self.open.get(alarm.incident_id or -1)
        if incident is None:
            if update_only:
                return
            candidates = [i for i in self.open.values() if joins(i, alarm, window)]
            incident = max(candidates, key=lambda i: i.last_time) if candidates else None
        if incident is None and self.recent is not None and alarm.detector != STALE:
            incident = self._correlated(alarm, row)
            if incident is not None:
                incident.grouping = "correlation"
        if incident is None:
            incident = Incident(
                id=0, subsystem=alarm.subsystem, first_time=alarm.first_time, last_time=alarm.first_time
            )
            incident.id = self.next_id
            self.next_id += 1
            self.open[incident.id] = incident
            self._forget_old(alarm.first_time - window)
        alarm.incident_id = incident.id
        add_member(incident, member_of(alarm))
        incident.active = True
        writes.incidents[incident.id] = incident
        writes.alarms[alarm.id] = alarm

    def new_peak(self, alarm: Alarm, writes: Writes) -> None:
        """The alarm's peak score changed: its incident's ranking uses it (stored, no event)."""
        inc = self.open.get(alarm.incident_id or -1)
        if inc is not None:
            add_member(inc, member_of(alarm))
            writes.quiet_incidents[inc.id] = inc

    def ended(self, alarm: Alarm, unfinished: dict[int, Alarm], writes: Writes) -> None:
        """``alarm`` ended: its incident is no longer active once none of its alarms is ``unfinished``."""
        inc = self.open.get(alarm.incident_id or -1)
        if inc is not None and not any(a in unfinished for a in inc.alarm_ids):
            inc.active = False
            writes.incidents[inc.id] = inc

    def prepare(self, writes: Writes) -> None:
        """Rank the incidents that changed and add their events (just before the writes are written)."""
        window = self.config.incident_window_s
        for inc in {**writes.quiet_incidents, **writes.incidents}.values():
            rank(inc, window)
        writes.events += [
            AlarmEvent("incident", inc.alarm_ids[-1], inc.last_time, inc.to_dict()) for inc in writes.incidents.values()
        ]

    def _correlated(self, alarm: Alarm, row: int) -> Incident | None:
        """The incident within the window holding the channel that co-varied most with ``alarm``'s
        over the recent samples (up to the raising sample), if that correlation reaches the threshold."""
        window, threshold = self.config.incident_window_s, self.config.incident_correlation
        near = [i for i in self.open.values() if i.first_time - window <= alarm.first_time <= i.last_time + window]
        if not near:
            return None
        x = self._series(alarm.channel, row)
        best, found = threshold, None
        for inc in near:
            for member in inc.channels:
                r = correlation(x, self._series(member.channel, row))
                if r >= best:
                    best, found = r, inc
        return found

    def _series(self, channel: str, row: int) -> np.ndarray:
        extra = None
        if self.applying is not None and row >= 0:
            block, valid = self.applying
            k = block._index.get(channel)  # noqa: SLF001 - the block's own name -> column map
            if k is not None:
                extra = np.where(valid[: row + 1, k], block.values[: row + 1, k], np.nan)
        return self.recent.series(self.index[channel], extra)

    def _forget_old(self, before: float) -> None:
        for inc_id in [i.id for i in self.open.values() if not i.active and i.last_time < before]:
            del self.open[inc_id]
