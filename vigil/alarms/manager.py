"""The alarm manager: detections in, Yamcs / ISA-18.2 alarms, incidents and an audit trail out.

Per channel, in sample order (so feeding a block in chunks gives the same alarms as one call):

* a sample flagged at any level extends the violation run; after ``min_violations`` consecutive
  flagged samples an alarm is raised (or, if the channel's previous alarm has returned to normal
  but is not finished, that alarm is *reactivated*: no second alarm);
* a higher level during the alarm escalates it (severity keeps the peak);
* after ``min_conformance`` consecutive nominal samples the alarm returns to normal (RTN); an
  acknowledged, non-latching alarm then ends (``cleared``); a latching one waits for an operator
  ``clear``; an unacknowledged one waits for an acknowledgement;
* missing samples (NaN/inf values) neither count nor break a run.

Operator verbs (acknowledge, shelve, unshelve, clear) and every automatic change write the audit
trail with time, user (``"system"`` when automatic), action, from-state, to-state and comment.
Each ``update()`` and each verb is one store transaction, committed before subscribers hear of it;
called inside a caller's store transaction, the manager writes once just before that transaction
commits and notifies after it. A failing store never stops ``update()`` (see :meth:`_commit`).

Times: data-driven changes carry the telemetry time of the sample; operator verbs and shelve
expiry use ``clock()`` (wall-clock seconds by default, injectable for tests and replays). Every
audit entry also records ``clock()`` as ``wall_time``.

After a restart the manager reloads open alarms and active incidents from the store and ignores
samples at or before each channel's latest stored transition, so a monitor that replays from its
checkpoint raises no alarm twice.
"""

from __future__ import annotations

import logging
import math
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from vigil.alarms.incidents import RecentValues, add_member, correlation, joins, member_of, rank
from vigil.alarms.memory import AlarmStore, MemoryStore
from vigil.alarms.model import STALE, STATES, Alarm, AlarmError, AlarmEvent, AuditEntry, Incident, UnknownAlarmError
from vigil.alarms.repeats import Repeats
from vigil.config import MonitorConfig
from vigil.detect.base import SEVERITIES, Scores
from vigil.errors import DataError
from vigil.model import TelemetryBlock

log = logging.getLogger(__name__)

SYSTEM = "system"
#: Severity of a staleness alarm (a channel that stopped arriving).
STALE_LEVEL = SEVERITIES.index("warning") + 1
#: The check explained by since when its value repeats.
STUCK = "forecast.stuck"


class AlarmManager:
    """Turns per-sample detector levels into alarms with a lifecycle; see the module docstring.

    Args:
        config: channel configuration (subsystem, limits, min_violations, min_conformance, latching,
            incident_window_s). Channels not in it get subsystem ``""`` and the defaults.
        store: where alarms, incidents, acknowledgements and the audit trail persist, for example
            :class:`vigil.store.sqlite.SqliteStore`; in memory when ``None``.
        clock: wall-clock time source for operator verbs and shelve expiry.
        correlation_samples: how many recent samples per channel are kept to group co-varying
            channels into incidents (only when the configuration sets ``incident_correlation``).
    """

    def __init__(
        self,
        config: MonitorConfig,
        store: AlarmStore | None = None,
        clock: Callable[[], float] = _time.time,
        correlation_samples: int = 64,
    ) -> None:
        self.config = config
        self.correlation_samples = correlation_samples
        self.store: AlarmStore = MemoryStore() if store is None else store
        self.clock = clock
        self.callback_errors = 0
        # The store's lock, so the manager and the store are always locked in the same order.
        self._lock = getattr(self.store, "lock", None) or threading.RLock()
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._columns_cache: dict[tuple[str, ...], np.ndarray] = {}
        empty_i = np.zeros(0, dtype=np.int64)
        self._min_viol, self._min_conf, self._viol_run, self._conf_run = (empty_i.copy() for _ in range(4))
        self._open = empty_i.copy()  # id of the channel's unfinished value alarm, -1 if none
        self._violating = np.zeros(0, dtype=bool)  # that alarm is out of nominal (not RTN)
        self._peak_level = np.zeros(0, dtype=np.int8)
        self._peak_score, self._last_t, self._last_v, self._watermark = (np.zeros(0) for _ in range(4))
        self._repeats = Repeats()  # since when each channel's value repeats (explanations of stuck values)
        self._alarms: dict[int, Alarm] = {}  # unfinished alarms
        self._shelved: set[int] = set()  # ids of shelved ones
        self._stale: dict[str, int] = {}  # channel -> unfinished staleness alarm
        self._incidents: dict[int, Incident] = {}  # incidents new alarms may still join
        self.store_errors = 0
        self.last_store_error: str | None = None
        self._backlog = _Writes()  # writes of commits that failed, retried with the next one
        self._deferred = _Writes()  # changes made inside a caller's transaction, written at its commit
        self._flushed: tuple[_Writes, _Writes] | None = None
        self._hooked = False
        self._recent = RecentValues(correlation_samples) if config.incident_correlation else None
        self._block: tuple[TelemetryBlock, np.ndarray] | None = None  # the block being applied
        self._playback: set[float] = set()  # times of the playback rows of the block being applied
        self._reset_pending()
        self._add_channels(list(config.channels))
        self._restore()

    # --- feeding ------------------------------------------------------------------------------
    def update(self, block: TelemetryBlock, scores: Scores, playback: np.ndarray | None = None) -> list[AlarmEvent]:
        """Apply one scored block; returns the events it caused (also sent to subscribers).

        ``playback`` marks the rows generated long before they arrived (stored telemetry dumped
        during a pass): they are scored like any other, but an alarm they raise or reactivate is
        marked ``playback`` (not live).
        """
        if scores.level.shape != block.values.shape:
            raise DataError(
                f"scores of shape {scores.level.shape} for a block of shape {block.values.shape}", source=block.source
            )
        bad = (scores.level < 0) | (scores.level > len(SEVERITIES))
        if bad.any():
            i, k = (int(x[0]) for x in np.nonzero(bad))
            raise DataError(
                f"level {int(scores.level[i, k])} is not 0..{len(SEVERITIES)}",
                source=block.source,
                channel=block.channels[k],
                row=i,
            )
        with self._step():
            self._expire_shelves()
            if block.n_samples:
                self._playback = set() if playback is None else set(block.time[np.asarray(playback)].tolist())
                try:
                    self._apply(block, scores)
                finally:
                    self._playback = set()
            events, publish = self._commit()
        self._publish(publish)
        return events

    def report_stale(self, channel: str, time: float, last_seen: float | None) -> list[AlarmEvent]:
        """The channel stopped arriving: raise (or reactivate) its staleness alarm at ``time``."""
        with self._step():
            self._expire_shelves()
            self._add_channels([channel])
            seen = math.nan if last_seen is None else float(last_seen)
            alarm = self._alarms.get(self._stale.get(channel, -1))
            sample = _Sample(-1, float(time), seen, STALE_LEVEL, math.nan, math.nan, math.nan, math.nan, STALE)
            if alarm is None:
                self._raise(channel, sample, stale=True)
            elif not alarm.violating:
                self._reactivate(alarm, sample)
            events, publish = self._commit()
        self._publish(publish)
        return events

    def report_fresh(self, channel: str, time: float) -> list[AlarmEvent]:
        """Samples of ``channel`` arrive again: its staleness alarm returns to normal."""
        with self._step():
            alarm = self._alarms.get(self._stale.get(channel, -1))
            if alarm is not None and alarm.violating:
                self._rtn(alarm, float(time))
            events, publish = self._commit()
        self._publish(publish)
        return events

    # --- operator verbs ---------------------------------------------------------------------------
    def acknowledge(self, alarm_id: int, user: str, comment: str = "") -> Alarm:
        """Record who acknowledged, when and why. A non-latching alarm already back to normal ends.
        Acknowledging an acknowledged alarm changes nothing (safe to retry)."""
        with self._step():
            self._expire_shelves()
            alarm = self._unfinished(alarm_id, "acknowledge")
            if not alarm.acknowledged:
                now = self.clock()

                def ack() -> None:
                    alarm.acknowledged_by, alarm.acknowledged_at, alarm.acknowledged_comment = user, now, comment
                    if not alarm.violating and not alarm.latching:
                        self._end(alarm)

                self._change(alarm, "acknowledged", now, ack, user=user, comment=comment)
                self._pending.acks.append((alarm.id, user, now, comment))
            events, publish = self._commit()
        self._publish(publish)
        return alarm

    def shelve(self, alarm_id: int, user: str, duration_s: float, comment: str = "") -> Alarm:
        """Hide the alarm from notification for ``duration_s`` seconds (it keeps its lifecycle)."""
        if not (isinstance(duration_s, int | float) and math.isfinite(duration_s) and duration_s > 0):
            raise AlarmError(f"shelve duration must be a positive number of seconds, got {duration_s!r}")
        with self._step():
            self._expire_shelves()
            alarm = self._unfinished(alarm_id, "shelve")
            now = self.clock()

            def shelve() -> None:
                alarm.shelved_by, alarm.shelved_until = user, now + float(duration_s)

            self._change(alarm, "shelved", now, shelve, user=user, comment=comment or f"for {duration_s:g} s")
            events, publish = self._commit()
        self._publish(publish)
        return alarm

    def unshelve(self, alarm_id: int, user: str) -> Alarm:
        with self._step():
            self._expire_shelves()
            alarm = self._unfinished(alarm_id, "unshelve")
            if alarm.shelved_until is None:
                raise AlarmError(f"alarm {alarm_id} is not shelved")
            self._unshelve(alarm, user, self.clock(), "")
            events, publish = self._commit()
        self._publish(publish)
        return alarm

    def clear(self, alarm_id: int, user: str, comment: str = "") -> Alarm:
        """End an alarm that is back to normal and acknowledged (the operator's reset of a latch)."""
        with self._step():
            self._expire_shelves()
            alarm = self._unfinished(alarm_id, "clear")
            if alarm.violating:
                raise AlarmError(f"alarm {alarm_id} cannot be cleared: {alarm.channel} is still out of nominal")
            if not alarm.acknowledged:
                raise AlarmError(f"alarm {alarm_id} cannot be cleared before it is acknowledged")
            now = self.clock()

            def clear() -> None:
                alarm.cleared_by, alarm.cleared_at = user, now
                self._end(alarm)

            self._change(alarm, "cleared", now, clear, user=user, comment=comment)
            events, publish = self._commit()
        self._publish(publish)
        return alarm

    def comment(self, alarm_id: int, user: str, comment: str) -> Alarm:
        """Add an operator's note to an alarm, finished or not (kept in the audit trail, like a verb)."""
        if not comment.strip():
            raise AlarmError("a note needs text")
        with self._step():
            alarm = self._any(alarm_id)
            self._note(alarm, "commented", user, comment)
            events, publish = self._commit()
        self._publish(publish)
        return alarm

    def mark_nominal(self, alarm_id: int, user: str, comment: str, pattern: dict[str, Any]) -> dict[str, Any]:
        """The operator judged the alarm's episode nominal: keep ``pattern`` (from
        :func:`vigil.detect.nominal.episode_pattern`) in the store with the audit entry, in one
        transaction. Returns the stored pattern (with its ``id``). A comment (why) is required."""
        if not comment.strip():
            raise AlarmError("marking an alarm nominal needs a comment saying why")
        add = getattr(self.store, "add_nominal_pattern", None)
        if add is None:
            raise AlarmError("this alarm store does not keep nominal patterns")
        with self._step():
            alarm = self._any(alarm_id)
            now = self.clock()
            record = {**pattern, "user": user, "wall_time": now, "comment": comment}
            with self.store.transaction():
                record["id"] = add(alarm.channel, alarm.id, record)
                self._note(alarm, "marked nominal", user, f"pattern {record['id']}: {comment}")
                events, publish = self._commit()
        self._publish(publish)
        return {**record, "channel": alarm.channel, "alarm_id": alarm.id, "active": True}

    def unmark_nominal(self, alarm_id: int, user: str, comment: str = "") -> list[dict[str, Any]]:
        """Withdraw the nominal patterns marked from this alarm (audited). Returns them."""
        patterns = getattr(self.store, "nominal_patterns", None)
        if patterns is None:
            raise AlarmError("this alarm store does not keep nominal patterns")
        with self._step():
            alarm = self._any(alarm_id)
            found = [p for p in patterns() if p["alarm_id"] == alarm.id]
            if not found:
                raise AlarmError(f"alarm {alarm_id} is not marked nominal")
            now = self.clock()
            with self.store.transaction():
                for p in found:
                    p.update(removed_by=user, removed_at=now, active=False)
                    self.store.set_nominal_active(p["id"], False, p)
                ids = ", ".join(str(p["id"]) for p in found)
                self._note(alarm, "unmarked nominal", user, f"pattern {ids}" + (f": {comment}" if comment else ""))
                events, publish = self._commit()
        self._publish(publish)
        return found

    # --- queries ------------------------------------------------------------------------------
    def get(self, alarm_id: int) -> Alarm:
        """The alarm with that id, finished or not; raises :class:`UnknownAlarmError`."""
        self._expire_shelves_now()
        with self._lock:
            alarm = self._alarms.get(int(alarm_id))
            if alarm is not None:
                return self._synced(alarm)
            stored = self.store.get_alarm(int(alarm_id))
        if stored is None:
            raise UnknownAlarmError(f"no alarm {alarm_id}")
        return stored

    def alarms(
        self, state: str | Iterable[str] | None = None, severity: str | Iterable[str] | None = None
    ) -> list[Alarm]:
        """Alarms by id. ``state=None``: every unfinished alarm; ``"all"``: finished ones too;
        else one state name (see :data:`vigil.alarms.model.STATES`) or several. ``severity``
        filters by Yamcs severity name(s)."""
        states = _names(state, STATES + ("all",), "state")
        sevs = _names(severity, SEVERITIES, "severity")
        self._expire_shelves_now()
        with self._lock:
            found = [self._synced(a) for a in self._alarms.values()]
            if states and ("all" in states or "cleared" in states):
                found += [a for a in self.store.load_alarms() if a.ended]
        if states and "all" not in states:
            found = [a for a in found if a.state in states]
        if sevs:
            found = [a for a in found if a.severity in sevs]
        return sorted(found, key=lambda a: a.id)

    def incidents(self, active_only: bool = False) -> list[Incident]:
        """Incidents by id (all that the store holds, or only those with unfinished alarms)."""
        with self._lock:
            return self.store.load_incidents(active_only=active_only)

    def audit(self, alarm_id: int | None = None, limit: int | None = None) -> list[AuditEntry]:
        """The audit trail, oldest first (of one alarm, and the newest ``limit`` entries, if given)."""
        with self._lock:
            return self.store.audit(alarm_id=alarm_id, limit=limit)

    def acknowledgements(self, alarm_id: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return self.store.acknowledgements(alarm_id)

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(event.to_dict())`` for every event after it is committed. Returns an
        unsubscribe function. A failing callback is logged and counted, never breaks the manager."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    # --- the per-sample state machine -----------------------------------------------------------
    def _apply(self, block: TelemetryBlock, scores: Scores) -> None:
        idx = self._columns(block.channels)
        t = block.time
        valid = np.isfinite(block.values) & (t[:, None] > self._watermark[idx][None, :])
        level = np.where(valid, scores.level, 0)
        flagged = level > 0
        nominal = valid & ~flagged
        n_flag, n_nom = flagged.sum(axis=0), nominal.sum(axis=0)
        violating = self._violating[idx]
        # Fast path 1: not in alarm and nothing flagged: only the conformance run moves.
        quiet = ~violating & (n_flag == 0)
        q = idx[quiet]
        self._conf_run[q] += n_nom[quiet]
        self._viol_run[q[n_nom[quiet] > 0]] = 0
        # Fast path 2: in alarm, every sample flagged, none above the peak: run, last value, peak score.
        steady = violating & (n_nom == 0) & (level.max(axis=0) <= self._peak_level[idx]) & (n_flag > 0)
        if steady.any():
            self._steady(block, scores, idx, np.flatnonzero(steady), flagged)
        # Everything else changes state: walk its samples in time order (then column order), so
        # ids, incidents and events come out the same however the stream is cut into blocks.
        walk = np.flatnonzero(~quiet & ~steady & valid.any(axis=0))
        if walk.size:
            rows, pos = np.nonzero(valid[:, walk])
            self._block = (block, valid)
            try:
                for i, k in zip(rows.tolist(), walk[pos].tolist()):
                    self._step_sample(block, scores, int(idx[k]), k, i)
            finally:
                self._block = None
        if self._recent is not None:
            self._recent.push(np.where(valid, block.values, np.nan), idx)
        if STUCK in scores.detector:  # only a stuck check needs to know since when values repeat
            self._repeats.update(block, idx)

    def _steady(self, block: TelemetryBlock, scores: Scores, idx: np.ndarray, cols: np.ndarray, flagged) -> None:
        j = idx[cols]
        self._viol_run[j] += flagged[:, cols].sum(axis=0)
        self._conf_run[j] = 0
        last = block.n_samples - 1 - np.argmax(flagged[::-1, cols], axis=0)
        self._last_t[j] = block.time[last]
        self._last_v[j] = block.values[last, cols]
        # A new peak: a larger score at the peak level.
        at_peak = (scores.level[:, cols] == self._peak_level[j][None, :]) & flagged[:, cols]
        sc = np.where(at_peak, np.nan_to_num(scores.score[:, cols], nan=-np.inf), -np.inf)
        best = np.argmax(sc, axis=0)
        best_score = sc[best, np.arange(cols.size)]
        for m in np.flatnonzero(best_score > np.nan_to_num(self._peak_score[j], nan=-np.inf)):
            self._new_peak(self._alarms[int(self._open[j[m]])], self._sample(block, scores, int(best[m]), int(cols[m])))

    def _step_sample(self, block: TelemetryBlock, scores: Scores, j: int, k: int, i: int) -> None:
        """One valid sample ``i`` of block column ``k`` (channel ``j``) through the state machine."""
        lv = int(scores.level[i, k])
        if lv == 0:
            self._conf_run[j] += 1
            self._viol_run[j] = 0
            if self._violating[j] and self._conf_run[j] >= self._min_conf[j]:
                self._rtn(self._alarms[int(self._open[j])], float(block.time[i]))
            return
        self._viol_run[j] += 1
        self._conf_run[j] = 0
        self._last_t[j], self._last_v[j] = block.time[i], block.values[i, k]
        if self._violating[j]:
            alarm = self._alarms[int(self._open[j])]
            if lv > self._peak_level[j]:
                self._escalate(alarm, self._sample(block, scores, i, k))
            elif lv == self._peak_level[j] and _gt(scores.score[i, k], self._peak_score[j]):
                self._new_peak(alarm, self._sample(block, scores, i, k))
        elif self._viol_run[j] >= self._min_viol[j]:
            sample = self._sample(block, scores, i, k)
            alarm = self._alarms.get(int(self._open[j]))
            if alarm is None:
                self._raise(self._names[j], sample)
            else:
                self._reactivate(alarm, sample)

    def _sample(self, block: TelemetryBlock, scores: Scores, i: int, k: int) -> _Sample:
        value, detector = float(block.values[i, k]), scores.detector[int(scores.by[i, k])]
        channel = block.channels[k]
        return _Sample(
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
            self._repeats.since(block, i, k, self._index[channel]) if detector == STUCK else math.nan,
        )

    def _label(self, channel: str, value: float) -> str:
        """The configured state name of an enumerated value, else ``""``."""
        ch = self.config.channels.get(channel)
        states = getattr(ch, "states", None)
        if not states or not value.is_integer():
            return ""
        return states.get(int(value), "")

    # --- transitions ------------------------------------------------------------------------------
    def _raise(self, channel: str, s: _Sample, stale: bool = False) -> None:
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
                self._track(existing)
            return
        alarm.id = self._next_alarm_id
        self._next_alarm_id += 1
        self._track(alarm)
        self._join_incident(alarm, row=s.row)
        self._record(alarm, "raised", s.time, SYSTEM, None, "", notify=True)

    def _escalate(self, alarm: Alarm, s: _Sample) -> None:
        def escalate() -> None:
            self._set_severity(alarm, s)
            alarm.event_time = s.time

        self._change(alarm, "escalated", s.time, escalate, comment=f"to {SEVERITIES[s.level - 1]}")
        self._join_incident(alarm, update_only=True)

    def _new_peak(self, alarm: Alarm, s: _Sample) -> None:
        self._set_peak(alarm, s)
        self._pending.alarms[alarm.id] = alarm
        # The incident's ranking uses the peak score: store it, without an event per new peak.
        inc = self._incidents.get(alarm.incident_id or -1)
        if inc is not None:
            add_member(inc, member_of(alarm))
            self._pending.quiet_incidents[inc.id] = inc

    def _set_severity(self, alarm: Alarm, s: _Sample) -> None:
        """``s`` raised the severity: the alarm now describes that sample (and it is the new peak)."""
        alarm.level, alarm.severity, alarm.detector = s.level, SEVERITIES[s.level - 1], s.detector
        alarm.trigger_value, alarm.trigger_time, alarm.score = s.value, s.time, s.score
        alarm.expected, alarm.low, alarm.high = s.expected, s.low, s.high
        alarm.threshold = self._threshold(alarm.channel, s)
        alarm.value_label, alarm.since = s.label, s.since
        self._set_peak(alarm, s)

    def _set_peak(self, alarm: Alarm, s: _Sample) -> None:
        """The peak (highest level, then largest score), kept apart from the sample that set the severity."""
        alarm.peak_value, alarm.peak_time, alarm.peak_score = s.value, s.time, s.score
        if alarm.detector != STALE:
            j = self._index[alarm.channel]
            self._peak_level[j], self._peak_score[j] = alarm.level, s.score

    def _reactivate(self, alarm: Alarm, s: _Sample) -> None:
        def reactivate() -> None:
            alarm.violating, alarm.rtn_time = True, None
            alarm.occurrences += 1
            alarm.event_time = s.time
            # A new occurrence needs a new acknowledgement (the old one stays in the audit trail).
            alarm.acknowledged_by = alarm.acknowledged_at = alarm.acknowledged_comment = None
            self._mark_violating(alarm, True)
            if s.level > alarm.level:
                self._set_severity(alarm, s)

        self._change(alarm, "reactivated", s.time, reactivate, comment=f"{SEVERITIES[s.level - 1]} again")

    def _rtn(self, alarm: Alarm, t: float) -> None:
        def rtn() -> None:
            alarm.violating, alarm.rtn_time, alarm.event_time = False, t, t
            self._mark_violating(alarm, False)
            if alarm.acknowledged and not alarm.latching:
                self._end(alarm)

        self._change(alarm, "rtn", t, rtn)

    def _unshelve(self, alarm: Alarm, user: str, t: float, comment: str) -> None:
        def unshelve() -> None:
            alarm.shelved_by = alarm.shelved_until = None

        self._change(alarm, "unshelved", t, unshelve, user=user, comment=comment)

    def _end(self, alarm: Alarm) -> None:
        alarm.ended, alarm.shelved_until = True, None
        if alarm.detector == STALE:
            self._stale.pop(alarm.channel, None)
        else:
            j = self._index[alarm.channel]
            if self._open[j] == alarm.id:
                self._open[j], self._violating[j], self._peak_level[j] = -1, False, 0
                self._peak_score[j] = np.nan
        self._pending.ended.append(alarm.id)

    def _mark_violating(self, alarm: Alarm, violating: bool) -> None:
        if alarm.detector != STALE:
            self._violating[self._index[alarm.channel]] = violating

    def _track(self, alarm: Alarm) -> None:
        """Hold an unfinished alarm and point its channel's state at it."""
        self._alarms[alarm.id] = alarm
        self._note_shelf(alarm)
        if alarm.detector == STALE:
            self._stale[alarm.channel] = alarm.id
            return
        self._add_channels([alarm.channel])
        j = self._index[alarm.channel]
        self._open[j], self._violating[j] = alarm.id, alarm.violating
        self._peak_level[j], self._peak_score[j] = alarm.level, alarm.peak_score
        if math.isfinite(alarm.last_time):
            self._last_t[j], self._last_v[j] = alarm.last_time, alarm.last_value

    def _change(
        self, alarm: Alarm, action: str, t: float, mutate: Callable[[], None], user: str = SYSTEM, comment: str = ""
    ) -> None:
        before = alarm.state
        shelved = alarm.shelved_until is not None
        mutate()
        self._record(alarm, action, t, user, before, comment, notify=not shelved or action == "unshelved")

    def _record(self, alarm: Alarm, action: str, t: float, user: str, before: str | None, comment: str, notify: bool):
        if action in ("raised", "reactivated"):
            alarm.playback = t in self._playback
        self._synced(alarm)
        self._note_shelf(alarm)
        self._pending.audit.append(AuditEntry(alarm.id, t, user, action, before, alarm.state, comment, self.clock()))
        self._pending.alarms[alarm.id] = alarm
        self._pending.events.append(AlarmEvent(action, alarm.id, t, alarm.to_dict(), notify))

    def _threshold(self, channel: str, s: _Sample) -> float:
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

    # --- incidents ------------------------------------------------------------------------------
    def _join_incident(self, alarm: Alarm, update_only: bool = False, row: int = -1) -> None:
        window = self.config.incident_window_s
        incident = self._incidents.get(alarm.incident_id or -1)
        if incident is None:
            if update_only:
                return
            candidates = [i for i in self._incidents.values() if joins(i, alarm, window)]
            incident = max(candidates, key=lambda i: i.last_time) if candidates else None
        if incident is None and self._recent is not None and alarm.detector != STALE:
            incident = self._correlated_incident(alarm, row)
            if incident is not None:
                incident.grouping = "correlation"
        if incident is None:
            incident = Incident(
                id=0, subsystem=alarm.subsystem, first_time=alarm.first_time, last_time=alarm.first_time
            )
            incident.id = self._next_incident_id
            self._next_incident_id += 1
            self._incidents[incident.id] = incident
            self._forget_old_incidents(alarm.first_time - window)
        alarm.incident_id = incident.id
        add_member(incident, member_of(alarm))
        incident.active = True
        self._pending.incidents[incident.id] = incident
        self._pending.alarms[alarm.id] = alarm

    def _correlated_incident(self, alarm: Alarm, row: int) -> Incident | None:
        """The incident within the window holding the channel that co-varied most with ``alarm``'s
        over the recent samples (up to the raising sample), if that correlation reaches the threshold."""
        window, threshold = self.config.incident_window_s, self.config.incident_correlation
        near = [
            i for i in self._incidents.values() if i.first_time - window <= alarm.first_time <= i.last_time + window
        ]
        if not near:
            return None
        x = self._recent_series(alarm.channel, row)
        best, found = threshold, None
        for inc in near:
            for member in inc.channels:
                r = correlation(x, self._recent_series(member.channel, row))
                if r >= best:
                    best, found = r, inc
        return found

    def _recent_series(self, channel: str, row: int) -> np.ndarray:
        extra = None
        if self._block is not None and row >= 0:
            block, valid = self._block
            k = block._index.get(channel)  # noqa: SLF001 - the block's own name -> column map
            if k is not None:
                extra = np.where(valid[: row + 1, k], block.values[: row + 1, k], np.nan)
        return self._recent.series(self._index[channel], extra)

    def _forget_old_incidents(self, before: float) -> None:
        for inc_id in [i.id for i in self._incidents.values() if not i.active and i.last_time < before]:
            del self._incidents[inc_id]

    def _close_incidents(self) -> None:
        """Incidents whose alarms all ended are no longer active."""
        for alarm_id in self._pending.ended:
            alarm = self._alarms.pop(alarm_id, None)
            inc = self._incidents.get(alarm.incident_id or -1) if alarm is not None else None
            if inc is not None and not any(a in self._alarms for a in inc.alarm_ids):
                inc.active = False
                self._pending.incidents[inc.id] = inc

    # --- shelving -------------------------------------------------------------------------------
    def _expire_shelves(self) -> None:
        now = self.clock()
        for alarm_id in sorted(self._shelved):
            alarm = self._alarms.get(alarm_id)
            if alarm is not None and alarm.shelved_until is not None and alarm.shelved_until <= now:
                self._unshelve(alarm, SYSTEM, now, "shelve expired")

    def _note_shelf(self, alarm: Alarm) -> None:
        """Keep the set of shelved alarms (so expiry checks do not scan every open alarm)."""
        if alarm.shelved_until is not None and not alarm.ended:
            self._shelved.add(alarm.id)
        else:
            self._shelved.discard(alarm.id)

    def _expire_shelves_now(self) -> None:
        """Queries apply expired shelves first (their own transaction, events published)."""
        with self._lock:
            now = self.clock()
            if not any(self._alarms[i].shelved_until <= now for i in self._shelved if i in self._alarms):
                return
            with self._step():
                self._expire_shelves()
                events, publish = self._commit()
        self._publish(publish)

    # --- transactions and notification ------------------------------------------------------------
    @contextmanager
    def _step(self) -> Iterator[None]:
        """One public call: under the lock; changes that fail before the commit are dropped (and an
        operator verb's alarm restored)."""
        with self._lock:
            try:
                yield
            except BaseException:
                if self._saved is not None:
                    self._restore_state(self._saved)
                self._reset_pending()
                raise

    def _commit(self) -> tuple[list[AlarmEvent], list[AlarmEvent]]:
        """Write this call's changes, and any left over from a failed commit, in one transaction.
        Returns this call's events and those to publish now.

        Inside a caller's transaction (a monitor committing alarms with its checkpoint) the changes
        are written just before that transaction commits and published after it, once per
        transaction however many calls it holds.

        If the store fails: an operator verb is undone in memory and the error raised (the operator
        must not see an acknowledgement that is not stored); an update keeps its changes in memory,
        re-queues the writes for the next commit, counts ``store_errors`` and carries on (a monitor
        must not stop). In a caller's transaction the error goes to the caller and the writes are
        re-queued when it rolls back.
        """
        self._close_incidents()
        pending, saved = self._pending, self._saved
        self._reset_pending()
        if self.store.in_transaction:
            self._defer(pending)
            return pending.events, []
        self._finish(pending)
        carried, self._backlog = self._backlog, _Writes()
        if carried.empty() and pending.empty():
            return pending.events, pending.events
        restorable = [saved is not None]

        def requeue() -> None:
            self._backlog.merge(carried)
            if not restorable[0]:
                self._backlog.merge(pending)

        try:
            with self.store.transaction():
                self.store.on_rollback(requeue)
                for writes in (carried, pending):
                    writes.write(self.store, self._synced)
            restorable[0] = False
        except Exception as err:
            if saved is not None:
                self._restore_state(saved)
                raise
            self._store_failed(err)
        return pending.events, pending.events

    def _finish(self, writes: _Writes) -> None:
        """Rank the incidents that changed and add their events."""
        window = self.config.incident_window_s
        for inc in {**writes.quiet_incidents, **writes.incidents}.values():
            rank(inc, window)
        writes.events += [
            AlarmEvent("incident", inc.alarm_ids[-1], inc.last_time, inc.to_dict()) for inc in writes.incidents.values()
        ]

    def changed_in_transaction(self) -> bool:
        """Whether the caller's open store transaction holds alarm changes of this manager (the
        monitor checkpoints its stream state with every such transaction)."""
        return not (self._pending.empty() and self._deferred.empty())

    def _defer(self, pending: _Writes) -> None:
        self._deferred.merge(pending, events=True)
        if not self._hooked:
            self._hooked = True
            self.store.before_commit(self._flush)
            self.store.after_commit(self._after_outer_commit)
            self.store.on_rollback(self._after_outer_rollback)

    def _flush(self) -> None:
        """Inside the caller's transaction, just before it commits: write what was deferred."""
        with self._lock:
            writes, self._deferred = self._deferred, _Writes()
            carried, self._backlog = self._backlog, _Writes()
            self._finish(writes)
            self._flushed = (carried, writes)
            carried.write(self.store, self._synced)
            writes.write(self.store, self._synced)

    def _after_outer_commit(self) -> None:
        with self._lock:
            _, writes = self._flushed or (None, _Writes())
            self._flushed, self._hooked = None, False
        self._publish(writes.events)

    def _after_outer_rollback(self) -> None:
        """The caller's transaction failed: keep the writes for the next commit, and tell the
        subscribers what changed (it did change, in memory)."""
        with self._lock:
            if self._flushed is not None:
                carried, writes = self._flushed
            else:
                carried, writes = _Writes(), self._deferred
                self._finish(writes)
            self._flushed, self._deferred, self._hooked = None, _Writes(), False
            self._backlog.merge(carried)
            self._backlog.merge(writes)
        self._publish(writes.events)

    def _store_failed(self, err: Exception) -> None:
        self.store_errors += 1
        self.last_store_error = f"{type(err).__name__}: {err}"
        log.error("alarm store write failed, %d writes kept for the next commit: %s", self._backlog.size(), err)

    def _reset_pending(self) -> None:
        self._pending = _Writes()
        self._saved: tuple | None = None

    def _publish(self, events: list[AlarmEvent]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for event in events:
            payload = event.to_dict()
            for callback in subscribers:
                try:
                    callback(payload)
                except Exception:  # a broken console must not stop the monitor
                    self.callback_errors += 1
                    log.exception("alarm subscriber %r failed", callback)

    # --- stream state (checkpointed by the monitor with the alarms) --------------------------------
    def stream_state(self) -> dict[str, Any]:
        """What decides future alarms beyond the stored alarms: per channel, the running violation
        and conformance counts and the latest flagged sample (and the recent values that group
        co-varying channels). Restored with :meth:`set_stream_state` after a restart."""
        with self._lock:
            return {
                "channels": list(self._names),
                "viol_run": self._viol_run.copy(),
                "conf_run": self._conf_run.copy(),
                "last_t": self._last_t.copy(),
                "last_v": self._last_v.copy(),
                "recent": None if self._recent is None else (self._recent.values_.copy(), self._recent.head_),
            }

    def store_latest(self) -> None:
        """Write every unfinished alarm with its channel's latest sample. A stored row otherwise
        keeps the sample of its last change (the per-sample ones live in arrays, checkpointed with
        :meth:`stream_state`); the monitor calls this when a stream ends or stops, so the stored
        rows do not depend on where the stream was cut."""
        with self._lock:
            alarms = [self._synced(a) for a in self._alarms.values()]
            if alarms:
                with self.store.transaction():
                    self.store.save_alarms(alarms)

    def set_stream_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`stream_state` (channels matched by name; new ones start afresh)."""
        with self._lock:
            self._add_channels(list(state["channels"]))
            idx = np.array([self._index[c] for c in state["channels"]], dtype=np.int64)
            for name in ("viol_run", "conf_run", "last_t", "last_v"):
                getattr(self, f"_{name}")[idx] = state[name]
            if self._recent is not None and state["recent"] is not None:
                values, head = state["recent"]
                if values.shape[0] == self._recent.size:
                    self._recent.values_[:, idx] = values
                    self._recent.head_ = int(head)

    # --- channels and restart -------------------------------------------------------------------
    def _add_channels(self, names: list[str]) -> None:
        new = [n for n in names if n not in self._index]
        if not new:
            return
        for n in new:
            self._index[n] = len(self._names)
            self._names.append(n)
        cfg = [self.config.channels.get(n) for n in new]
        m = len(new)
        self._min_viol = np.concatenate([self._min_viol, [c.min_violations if c else 1 for c in cfg]])
        self._min_conf = np.concatenate([self._min_conf, [c.min_conformance if c else 1 for c in cfg]])
        self._viol_run = np.concatenate([self._viol_run, np.zeros(m, dtype=np.int64)])
        self._conf_run = np.concatenate([self._conf_run, np.zeros(m, dtype=np.int64)])
        self._open = np.concatenate([self._open, np.full(m, -1, dtype=np.int64)])
        self._violating = np.concatenate([self._violating, np.zeros(m, dtype=bool)])
        self._peak_level = np.concatenate([self._peak_level, np.zeros(m, dtype=np.int8)])
        self._peak_score = np.concatenate([self._peak_score, np.full(m, np.nan)])
        self._last_t = np.concatenate([self._last_t, np.full(m, np.nan)])
        self._last_v = np.concatenate([self._last_v, np.full(m, np.nan)])
        self._watermark = np.concatenate([self._watermark, np.full(m, -np.inf)])
        self._repeats.add_channels(m)
        if self._recent is not None:
            self._recent.add_channels(m)
        self._columns_cache.clear()

    def _columns(self, channels: tuple[str, ...]) -> np.ndarray:
        idx = self._columns_cache.get(channels)
        if idx is None:
            self._add_channels(list(channels))
            idx = np.array([self._index[c] for c in channels], dtype=np.int64)
            self._columns_cache[channels] = idx
        return idx

    def _restore(self) -> None:
        """Pick up where a previous manager on the same store stopped."""
        for alarm in self.store.load_alarms(open_only=True):
            self._track(alarm)
        marks = self.store.watermarks()
        self._add_channels(list(marks))
        for channel, t in marks.items():
            self._watermark[self._index[channel]] = t
        # Incidents new alarms may still join: active ones, and those within the window of the latest data.
        since = max(marks.values(), default=-math.inf) - self.config.incident_window_s
        for inc in self.store.load_incidents(active_only=True, since=since if math.isfinite(since) else None):
            self._incidents[inc.id] = inc
        last_alarm, last_incident = self.store.max_ids()
        self._next_alarm_id, self._next_incident_id = last_alarm + 1, last_incident + 1

    def _unfinished(self, alarm_id: int, verb: str) -> Alarm:
        """The unfinished alarm an operator verb applies to; its state is saved so that a verb
        whose commit fails leaves nothing changed (the operator sees an error, not a false ack)."""
        alarm = self._alarms.get(int(alarm_id))
        if alarm is not None:
            self._saved = self._save_state(alarm)
            return alarm
        if self.store.get_alarm(int(alarm_id)) is not None:
            raise AlarmError(f"cannot {verb} alarm {alarm_id}: it is cleared")
        raise UnknownAlarmError(f"no alarm {alarm_id}")

    def _any(self, alarm_id: int) -> Alarm:
        """The alarm, finished or not, for a note (nothing of its lifecycle changes)."""
        alarm = self._alarms.get(int(alarm_id))
        if alarm is None:
            alarm = self.store.get_alarm(int(alarm_id))
        if alarm is None:
            raise UnknownAlarmError(f"no alarm {alarm_id}")
        return self._synced(alarm)

    def _note(self, alarm: Alarm, action: str, user: str, comment: str) -> None:
        """An audit entry and an event that change no state (a note, a nominal mark), not annunciated."""
        now = self.clock()
        self._pending.audit.append(AuditEntry(alarm.id, now, user, action, alarm.state, alarm.state, comment, now))
        self._pending.events.append(AlarmEvent(action, alarm.id, now, alarm.to_dict(), False))

    def _stored(self, key: str) -> Alarm | None:
        """The stored alarm with that key (a replay after a restart); ``None`` if the store cannot say."""
        try:
            return self.store.find_alarm(key)
        except Exception as err:  # an unreadable store must not stop the monitor; the key stays unique
            self._store_failed(err)
            return None

    def _save_state(self, alarm: Alarm) -> tuple:
        j = self._index.get(alarm.channel)
        arrays = None
        if j is not None and alarm.detector != STALE:
            arrays = (j, self._open[j], self._violating[j], self._peak_level[j], self._peak_score[j])
        inc = self._incidents.get(alarm.incident_id or -1)
        # Verbs change an incident only by ending it (``active``): a shallow copy is enough.
        inc_fields = None if inc is None else {**inc.__dict__, "alarm_ids": list(inc.alarm_ids)}
        return alarm, dict(alarm.__dict__), arrays, dict(self._stale), inc, inc_fields

    def _restore_state(self, saved: tuple) -> None:
        alarm, fields, arrays, stale, inc, inc_fields = saved
        alarm.__dict__.update(fields)
        self._alarms[alarm.id] = alarm
        self._note_shelf(alarm)
        if arrays is not None:
            j, *values = arrays
            self._open[j], self._violating[j], self._peak_level[j], self._peak_score[j] = values
        self._stale = stale
        if inc is not None:
            inc.__dict__.update(inc_fields)

    def _synced(self, alarm: Alarm) -> Alarm:
        """Copy the vectorised per-channel latest sample into the channel's open alarm."""
        if alarm.detector != STALE and not alarm.ended:
            j = self._index[alarm.channel]
            if self._open[j] == alarm.id and math.isfinite(self._last_t[j]):
                alarm.last_time, alarm.last_value = float(self._last_t[j]), float(self._last_v[j])
        return alarm


class _Sample(NamedTuple):
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


def _gt(a: float, b: float) -> bool:
    return math.isfinite(a) and (not math.isfinite(b) or a > b)


def _names(value: str | Iterable[str] | None, allowed: tuple[str, ...], what: str) -> set[str]:
    if value is None:
        return set()
    names = {value} if isinstance(value, str) else set(value)
    bad = sorted(names - set(allowed))
    if bad:
        raise AlarmError(f"unknown {what} {bad[0]!r}; use one of {', '.join(allowed)}")
    return names


@dataclass
class _Writes:
    """What one commit writes: alarms and incidents by id (their latest state), audit entries,
    acknowledgements, and the events and endings of this call."""

    alarms: dict[int, Alarm] = field(default_factory=dict)
    incidents: dict[int, Incident] = field(default_factory=dict)
    quiet_incidents: dict[int, Incident] = field(default_factory=dict)  # only a peak score changed
    audit: list[AuditEntry] = field(default_factory=list)
    acks: list[tuple[int, str, float, str]] = field(default_factory=list)
    events: list[AlarmEvent] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.alarms or self.incidents or self.quiet_incidents or self.audit or self.acks)

    def size(self) -> int:
        return len(self.alarms) + len(self.incidents) + len(self.quiet_incidents) + len(self.audit) + len(self.acks)

    def merge(self, other: _Writes, events: bool = False) -> None:
        """Take ``other``'s writes (and its events and endings if ``events``)."""
        if events:
            self.events.extend(other.events)
            self.ended.extend(other.ended)
        self.alarms.update(other.alarms)
        self.incidents.update(other.incidents)
        self.quiet_incidents.update(other.quiet_incidents)
        self.audit.extend(other.audit)
        self.acks.extend(other.acks)

    def write(self, store: AlarmStore, synced: Callable[[Alarm], Alarm]) -> None:
        store.save_alarms([synced(a) for a in self.alarms.values()])
        store.add_audit(self.audit)
        incidents = {**self.quiet_incidents, **self.incidents}
        store.save_incidents(incidents.values())
        for alarm_id, user, when, comment in self.acks:
            store.add_acknowledgement(alarm_id, user, when, comment)
