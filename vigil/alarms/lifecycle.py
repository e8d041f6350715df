"""The alarm lifecycle: the unfinished alarms, and the transitions that move them.

:class:`AlarmBook` holds every unfinished alarm and carries out what a sample, a staleness report
or an operator verb does to one: raise (or adopt an alarm stored before a restart), escalate, new
peak, reactivate, return to normal, shelve expiry, end. Every transition writes an audit entry and
an event into the call's :class:`~vigil.alarms.journal.Writes` (the manager commits them), keeps
the channel's run arrays (:class:`~vigil.alarms.runs.ChannelRuns`) pointing at its open alarm, and
files new alarms into incidents (:class:`~vigil.alarms.grouping.IncidentGrouper`). It also keeps
the channels themselves (their run arrays, the repeated-value tracker and the recent values for
incident correlation grow together).

Kept apart from :class:`~vigil.alarms.AlarmManager` (the public calls, their locking and
transactions) because this is the Yamcs / ISA-18.2 state machine itself; it never commits, locks
or publishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from vigil.alarms.grouping import IncidentGrouper
from vigil.alarms.journal import Journal
from vigil.alarms.memory import AlarmStore
from vigil.alarms.model import STALE, Alarm, AlarmEvent, AuditEntry
from vigil.alarms.repeats import Repeats
from vigil.alarms.runs import ESCALATE, PEAK, RAISE, RTN, ChannelRuns
from vigil.config import MonitorConfig
from vigil.detect.base import SEVERITIES, Scores
from vigil.model import TelemetryBlock

SYSTEM = "system"
#: The check explained by since when its value repeats.
STUCK = "forecast.stuck"


class Sample(NamedTuple):
    """One sample of one channel as the detector saw it (``row`` in the block, -1 if none)."""

    row: int
    time: float
    value: float
    level: int
    score: float
    expected: float
    low: float
    high: float
    detector: str
    label: str = ""  # the state name of an enumerated value
    since: float = math.nan  # for a stuck value: when it began repeating


class AlarmBook:
    """The unfinished alarms and their transitions (see the module docstring).

    Args:
        config: channel configuration (subsystem, latching, units, limits, enumerated states).
        clock: wall-clock time of operator actions, shelve expiry and audit entries.
        store: where a replayed alarm's key is looked up (:meth:`AlarmStore.find_alarm`).
        journal: whose pending writes every transition goes to.
        grouper: files alarms into incidents.
    """

    def __init__(
        self,
        config: MonitorConfig,
        clock: Callable[[], float],
        store: AlarmStore,
        journal: Journal,
        grouper: IncidentGrouper,
        runs: ChannelRuns,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.journal = journal
        self.grouper = grouper
        self.runs = runs
        self.repeats = Repeats()  # since when each channel's value repeats (explanations of stuck values)
        self.alarms: dict[int, Alarm] = {}  # unfinished alarms
        self.shelved: set[int] = set()  # ids of shelved ones
        self.stale: dict[str, int] = {}  # channel -> unfinished staleness alarm
        self.next_id = 1
        self.playback: set[float] = set()  # times of the playback rows of the block being applied
        # Keyed by the tuple's id, the tuple kept with its columns (so the id is not reused): hashing
        # and comparing 100,000 names per tick cost milliseconds; a source reuses one tuple.
        self._columns_cache: dict[int, tuple[tuple[str, ...], np.ndarray]] = {}

    # --- channels -----------------------------------------------------------------------------------
    def add_channels(self, names: Sequence[str]) -> None:
        """Hold state for the channels not held yet."""
        m = self.runs.add(names, self.config.channels)
        if m:
            self.repeats.add_channels(m)
            if self.grouper.recent is not None:
                self.grouper.recent.add_channels(m)
            self._columns_cache.clear()

    def columns(self, channels: tuple[str, ...]) -> np.ndarray:
        """The run-array columns of a block's channels (added if new)."""
        hit = self._columns_cache.get(id(channels))
        if hit is not None and hit[0] is channels:
            return hit[1]
        self.add_channels(list(channels))
        idx = np.array([self.runs.index[c] for c in channels], dtype=np.int64)
        if len(self._columns_cache) >= 16:  # a source making a new tuple per block: keep the cache small
            self._columns_cache.clear()
        self._columns_cache[id(channels)] = (channels, idx)
        return idx

    # --- samples ------------------------------------------------------------------------------------
    def step(self, block: TelemetryBlock, scores: Scores, j: int, k: int, i: int) -> None:
        """One valid sample ``i`` of block column ``k`` (channel ``j``) through the state machine."""
        action = self.runs.step(j, int(scores.level[i, k]), scores.score[i, k], block.time[i], block.values[i, k])
        if action == RTN:
            self.rtn(self.alarms[int(self.runs.open[j])], float(block.time[i]))
        elif action == ESCALATE:
            self.escalate(self.alarms[int(self.runs.open[j])], self.sample(block, scores, i, k))
        elif action == PEAK:
            self.new_peak(self.alarms[int(self.runs.open[j])], self.sample(block, scores, i, k))
        elif action == RAISE:
            sample = self.sample(block, scores, i, k)
            alarm = self.alarms.get(int(self.runs.open[j]))
            if alarm is None:
                self.raise_alarm(self.runs.names[j], sample)
            else:
                self.reactivate(alarm, sample)

    def sample(self, block: TelemetryBlock, scores: Scores, i: int, k: int) -> Sample:
        """Row ``i`` of block column ``k`` as the detector saw it (and its state name, its repeat start)."""
        value, detector = float(block.values[i, k]), scores.detector[int(scores.by[i, k])]
        channel = block.channels[k]
        return Sample(
            i,
            float(block.time[i]),
            value,
            int(scores.level[i, k]),
            float(scores.score[i, k]),
            float(scores.expected[i, k]),
            float(scores.low[i, k]),
            float(scores.high[i, k]),
            detector,
            self._label(channel, value),
            self.repeats.since(block, i, k, self.runs.index[channel]) if detector == STUCK else math.nan,
        )

    def _label(self, channel: str, value: float) -> str:
        """The configured state name of an enumerated value, else ``""``."""
        ch = self.config.channels.get(channel)
        states = getattr(ch, "states", None)
        if not states or not value.is_integer():
            return ""
        return states.get(int(value), "")

    # --- transitions ------------------------------------------------------------------------------
    def raise_alarm(self, channel: str, s: Sample, stale: bool = False) -> None:
        """A new alarm on ``channel`` at sample ``s`` (a staleness alarm if ``stale``), filed into an
        incident; one stored before a restart under the same key is adopted instead."""
        ch = self.config.channels.get(channel)
        alarm = Alarm(
            id=0,
            key=f"{channel}|{'stale' if stale else 'value'}|{s.time!r}",
            channel=channel,
            subsystem=self.config.subsystem_of(channel),
            severity=SEVERITIES[s.level - 1],
            level=s.level,
            detector=s.detector,
            first_time=s.time,
            trigger_value=s.value,
            trigger_time=s.time,
            expected=s.expected,
            low=s.low,
            high=s.high,
            threshold=self._threshold(channel, s),
            score=s.score,
            peak_value=s.value,
            peak_time=s.time,
            peak_score=s.score,
            last_time=s.time,
            last_value=s.value,
            event_time=s.time,
            latching=bool(ch.latching) if ch is not None else False,
            units=ch.units if ch is not None else "",
            value_label=s.label,
            since=s.since,
        )
        existing = self._stored(alarm.key)
        if existing is not None:  # raised before a restart, replayed now: adopt, do not duplicate
            if not existing.ended:
                self.track(existing)
            return
        alarm.id = self.next_id
        self.next_id += 1
        self.track(alarm)
        self.grouper.join(alarm, self.journal.pending, row=s.row)
        self._record(alarm, "raised", s.time, SYSTEM, None, "", notify=True)

    def escalate(self, alarm: Alarm, s: Sample) -> None:
        """``s`` is above the alarm's severity: the alarm now describes it."""

        def escalate() -> None:
            self._set_severity(alarm, s)
            alarm.event_time = s.time

        self.change(alarm, "escalated", s.time, escalate, comment=f"to {SEVERITIES[s.level - 1]}")
        self.grouper.join(alarm, self.journal.pending, update_only=True)

    def new_peak(self, alarm: Alarm, s: Sample) -> None:
        """A larger score at the alarm's level: a new peak (stored, no event)."""
        self._set_peak(alarm, s)
        self.journal.pending.alarms[alarm.id] = alarm
        # The incident's ranking uses the peak score: store it, without an event per new peak.
        self.grouper.new_peak(alarm, self.journal.pending)

    def _set_severity(self, alarm: Alarm, s: Sample) -> None:
        """``s`` raised the severity: the alarm now describes that sample (and it is the new peak)."""
        alarm.level, alarm.severity, alarm.detector = s.level, SEVERITIES[s.level - 1], s.detector
        alarm.trigger_value, alarm.trigger_time, alarm.score = s.value, s.time, s.score
        alarm.expected, alarm.low, alarm.high = s.expected, s.low, s.high
        alarm.threshold = self._threshold(alarm.channel, s)
        alarm.value_label, alarm.since = s.label, s.since
        self._set_peak(alarm, s)

    def _set_peak(self, alarm: Alarm, s: Sample) -> None:
        """The peak (highest level, then largest score), kept apart from the sample that set the severity."""
        alarm.peak_value, alarm.peak_time, alarm.peak_score = s.value, s.time, s.score
        if alarm.detector != STALE:
            j = self.runs.index[alarm.channel]
            self.runs.peak_level[j], self.runs.peak_score[j] = alarm.level, s.score

    def reactivate(self, alarm: Alarm, s: Sample) -> None:
        """The channel's alarm, back to normal but unfinished, is out of nominal again at ``s``."""

        def reactivate() -> None:
            alarm.violating, alarm.rtn_time = True, None
            alarm.occurrences += 1
            alarm.event_time = s.time
            # A new occurrence needs a new acknowledgement (the old one stays in the audit trail).
            alarm.acknowledged_by = alarm.acknowledged_at = alarm.acknowledged_comment = None
            self._mark_violating(alarm, True)
            if s.level > alarm.level:
                self._set_severity(alarm, s)

        self.change(alarm, "reactivated", s.time, reactivate, comment=f"{SEVERITIES[s.level - 1]} again")

    def rtn(self, alarm: Alarm, t: float) -> None:
        """Back to normal at ``t``; an acknowledged, non-latching alarm ends."""

        def rtn() -> None:
            alarm.violating, alarm.rtn_time, alarm.event_time = False, t, t
            self._mark_violating(alarm, False)
            if alarm.acknowledged and not alarm.latching:
                self.end(alarm)

        self.change(alarm, "rtn", t, rtn)

    def unshelve(self, alarm: Alarm, user: str, t: float, comment: str) -> None:
        """The alarm is annunciated again (by ``user``, or ``system`` when its shelve expired)."""

        def unshelve() -> None:
            alarm.shelved_by = alarm.shelved_until = None

        self.change(alarm, "unshelved", t, unshelve, user=user, comment=comment)

    def end(self, alarm: Alarm) -> None:
        """The alarm is finished: its channel has no open alarm (it is forgotten at the commit)."""
        alarm.ended, alarm.shelved_until = True, None
        if alarm.detector == STALE:
            self.stale.pop(alarm.channel, None)
        else:
            self.runs.close(self.runs.index[alarm.channel], alarm.id)
        self.journal.pending.ended.append(alarm.id)

    def _mark_violating(self, alarm: Alarm, violating: bool) -> None:
        if alarm.detector != STALE:
            self.runs.violating[self.runs.index[alarm.channel]] = violating

    def track(self, alarm: Alarm) -> None:
        """Hold an unfinished alarm and point its channel's state at it."""
        self.alarms[alarm.id] = alarm
        self._note_shelf(alarm)
        if alarm.detector == STALE:
            self.stale[alarm.channel] = alarm.id
            return
        self.add_channels([alarm.channel])
        self.runs.track(self.runs.index[alarm.channel], alarm)

    def forget_ended(self) -> None:
        """Drop the alarms that ended in this call; incidents whose alarms all ended are no longer active."""
        writes = self.journal.pending
        for alarm_id in writes.ended:
            alarm = self.alarms.pop(alarm_id, None)
            if alarm is not None:
                self.grouper.ended(alarm, self.alarms, writes)

    def change(
        self, alarm: Alarm, action: str, t: float, mutate: Callable[[], None], user: str = SYSTEM, comment: str = ""
    ) -> None:
        """Apply ``mutate`` to the alarm and record it as ``action`` (annunciated unless shelved)."""
        before = alarm.state
        shelved = alarm.shelved_until is not None
        mutate()
        self._record(alarm, action, t, user, before, comment, notify=not shelved or action == "unshelved")

    def _record(self, alarm: Alarm, action: str, t: float, user: str, before: str | None, comment: str, notify: bool):
        if action in ("raised", "reactivated"):
            alarm.playback = t in self.playback
        self.synced(alarm)
        self._note_shelf(alarm)
        writes = self.journal.pending
        writes.audit.append(AuditEntry(alarm.id, t, user, action, before, alarm.state, comment, self.clock()))
        writes.alarms[alarm.id] = alarm
        writes.events.append(AlarmEvent(action, alarm.id, t, alarm.to_dict(), notify))

    def note(self, alarm: Alarm, action: str, user: str, comment: str) -> None:
        """An audit entry and an event that change no state (a note, a nominal mark), not annunciated."""
        now = self.clock()
        writes = self.journal.pending
        writes.audit.append(AuditEntry(alarm.id, now, user, action, alarm.state, alarm.state, comment, now))
        writes.events.append(AlarmEvent(action, alarm.id, now, alarm.to_dict(), False))

    def _threshold(self, channel: str, s: Sample) -> float:
        """The bound crossed: the configured limit of that severity for a limit check, else the band
        edge. An XTCE check uses the configured (default) ranges only while they are the ones in
        force: under a context alarm its band differs, and the band in force is all that is known."""
        ch = self.config.channels.get(channel)
        lo, hi = s.low, s.high
        if s.detector in ("limits", "xtce") and ch is not None and ch.limits is not None:
            low, high = ch.limits.as_arrays()
            inner = (low[np.isfinite(low)][:1], high[np.isfinite(high)][:1])
            default = all(np.array_equal(a, [b] if math.isfinite(b) else []) for a, b in zip(inner, (s.low, s.high)))
            if not (s.detector == "limits" or default):
                return math.nan  # a context's range: the explanation names the band in force
            lo, hi = float(low[s.level - 1]), float(high[s.level - 1])
        if math.isfinite(lo) and s.value < lo:
            return lo
        if math.isfinite(hi) and s.value > hi:
            return hi
        return math.nan

    # --- shelving -------------------------------------------------------------------------------
    def expire_shelves(self) -> None:
        """Unshelve the alarms whose shelve time has passed."""
        now = self.clock()
        for alarm_id in sorted(self.shelved):
            alarm = self.alarms.get(alarm_id)
            if alarm is not None and alarm.shelved_until is not None and alarm.shelved_until <= now:
                self.unshelve(alarm, SYSTEM, now, "shelve expired")

    def shelves_expired(self) -> bool:
        """Whether any shelved alarm's shelve has expired by now."""
        now = self.clock()
        return any(self.alarms[i].shelved_until <= now for i in self.shelved if i in self.alarms)

    def _note_shelf(self, alarm: Alarm) -> None:
        """Keep the set of shelved alarms (so expiry checks do not scan every open alarm)."""
        if alarm.shelved_until is not None and not alarm.ended:
            self.shelved.add(alarm.id)
        else:
            self.shelved.discard(alarm.id)

    # --- reading and undoing --------------------------------------------------------------------------
    def synced(self, alarm: Alarm) -> Alarm:
        """Copy the vectorised per-channel latest sample into the channel's open alarm."""
        if alarm.detector != STALE and not alarm.ended:
            latest = self.runs.latest(self.runs.index[alarm.channel], alarm.id)
            if latest is not None:
                alarm.last_time, alarm.last_value = latest
        return alarm

    def _stored(self, key: str) -> Alarm | None:
        """The stored alarm with that key (a replay after a restart); ``None`` if the store cannot say."""
        try:
            return self.store.find_alarm(key)
        except Exception as err:  # an unreadable store must not stop the monitor; the key stays unique
            self.journal.failed(err)
            return None

    def save(self, alarm: Alarm) -> tuple:
        """What an operator verb may change of ``alarm``, to put back with :meth:`restore`."""
        j = self.runs.index.get(alarm.channel)
        arrays = None
        if j is not None and alarm.detector != STALE:
            arrays = (j, self.runs.alarm_summary(j))
        inc = self.grouper.open.get(alarm.incident_id or -1)
        # Verbs change an incident only by ending it (``active``): a shallow copy is enough.
        inc_fields = None if inc is None else {**inc.__dict__, "alarm_ids": list(inc.alarm_ids)}
        return alarm, dict(alarm.__dict__), arrays, dict(self.stale), inc, inc_fields

    def restore(self, saved: tuple) -> None:
        """Put back what :meth:`save` kept (an operator verb whose commit failed)."""
        alarm, fields, arrays, stale, inc, inc_fields = saved
        alarm.__dict__.update(fields)
        self.alarms[alarm.id] = alarm
        self._note_shelf(alarm)
        if arrays is not None:
            self.runs.set_alarm_summary(*arrays)
        self.stale = stale
        if inc is not None:
            inc.__dict__.update(inc_fields)
