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

This module is the public face: the calls above, their locking, transactions and undo. The parts
it composes: :mod:`~vigil.alarms.runs` (violation and conformance runs, vectorised),
:mod:`~vigil.alarms.lifecycle` (the unfinished alarms and their transitions),
:mod:`~vigil.alarms.grouping` (incident glue) and :mod:`~vigil.alarms.journal` (commits, retries,
notification).
"""

from __future__ import annotations

import math
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from vigil.alarms.grouping import IncidentGrouper
from vigil.alarms.journal import Journal
from vigil.alarms.lifecycle import STUCK, SYSTEM, AlarmBook, Sample
from vigil.alarms.memory import AlarmStore, MemoryStore
from vigil.alarms.model import STALE, STATES, Alarm, AlarmError, AlarmEvent, AuditEntry, Incident, UnknownAlarmError
from vigil.alarms.runs import ChannelRuns
from vigil.config import MonitorConfig
from vigil.detect.base import SEVERITIES, Scores
from vigil.errors import DataError
from vigil.model import TelemetryBlock

__all__ = ["STALE_LEVEL", "STUCK", "SYSTEM", "AlarmManager"]

#: Severity of a staleness alarm (a channel that stopped arriving).
STALE_LEVEL = SEVERITIES.index("warning") + 1


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
        # The store's lock, so the manager and the store are always locked in the same order.
        self._lock = getattr(self.store, "lock", None) or threading.RLock()
        runs = ChannelRuns()
        grouper = IncidentGrouper(config, runs.index, correlation_samples)
        self._journal = Journal(self.store, self._lock, self._synced, grouper.prepare)
        # The clock is read through the manager, so that replacing ``manager.clock`` takes effect.
        self._book = AlarmBook(config, lambda: self.clock(), self.store, self._journal, grouper, runs)
        self._saved: tuple | None = None  # what the operator verb in progress may change, to undo it
        self._book.add_channels(list(config.channels))
        self._restore()

    # Counted by the journal; read here.
    store_errors = property(lambda self: self._journal.store_errors, doc="Store writes that failed (retried).")
    last_store_error = property(lambda self: self._journal.last_store_error, doc="The latest store failure.")
    callback_errors = property(lambda self: self._journal.callback_errors, doc="Subscriber calls that failed.")

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
            self._book.expire_shelves()
            if block.n_samples:
                self._book.playback = set() if playback is None else set(block.time[np.asarray(playback)].tolist())
                try:
                    self._apply(block, scores)
                finally:
                    self._book.playback = set()
            events, publish = self._commit()
        self._journal.publish(publish)
        return events

    def report_stale(self, channel: str, time: float, last_seen: float | None) -> list[AlarmEvent]:
        """The channel stopped arriving: raise (or reactivate) its staleness alarm at ``time``."""
        with self._step():
            self._book.expire_shelves()
            self._book.add_channels([channel])
            seen = math.nan if last_seen is None else float(last_seen)
            alarm = self._book.alarms.get(self._book.stale.get(channel, -1))
            sample = Sample(-1, float(time), seen, STALE_LEVEL, math.nan, math.nan, math.nan, math.nan, STALE)
            if alarm is None:
                self._book.raise_alarm(channel, sample, stale=True)
            elif not alarm.violating:
                self._book.reactivate(alarm, sample)
            events, publish = self._commit()
        self._journal.publish(publish)
        return events

    def report_fresh(self, channel: str, time: float) -> list[AlarmEvent]:
        """Samples of ``channel`` arrive again: its staleness alarm returns to normal."""
        with self._step():
            alarm = self._book.alarms.get(self._book.stale.get(channel, -1))
            if alarm is not None and alarm.violating:
                self._book.rtn(alarm, float(time))
            events, publish = self._commit()
        self._journal.publish(publish)
        return events

    # --- operator verbs ---------------------------------------------------------------------------
    def acknowledge(self, alarm_id: int, user: str, comment: str = "") -> Alarm:
        """Record who acknowledged, when and why. A non-latching alarm already back to normal ends.
        Acknowledging an acknowledged alarm changes nothing (safe to retry)."""
        with self._step():
            self._book.expire_shelves()
            alarm = self._unfinished(alarm_id, "acknowledge")
            if not alarm.acknowledged:
                now = self.clock()

                def ack() -> None:
                    alarm.acknowledged_by, alarm.acknowledged_at, alarm.acknowledged_comment = user, now, comment
                    if not alarm.violating and not alarm.latching:
                        self._book.end(alarm)

                self._book.change(alarm, "acknowledged", now, ack, user=user, comment=comment)
                self._journal.pending.acks.append((alarm.id, user, now, comment))
            events, publish = self._commit()
        self._journal.publish(publish)
        return alarm

    def shelve(self, alarm_id: int, user: str, duration_s: float, comment: str = "") -> Alarm:
        """Hide the alarm from notification for ``duration_s`` seconds (it keeps its lifecycle)."""
        if not (isinstance(duration_s, int | float) and math.isfinite(duration_s) and duration_s > 0):
            raise AlarmError(f"shelve duration must be a positive number of seconds, got {duration_s!r}")
        with self._step():
            self._book.expire_shelves()
            alarm = self._unfinished(alarm_id, "shelve")
            now = self.clock()

            def shelve() -> None:
                alarm.shelved_by, alarm.shelved_until = user, now + float(duration_s)

            self._book.change(alarm, "shelved", now, shelve, user=user, comment=comment or f"for {duration_s:g} s")
            events, publish = self._commit()
        self._journal.publish(publish)
        return alarm

    def unshelve(self, alarm_id: int, user: str) -> Alarm:
        with self._step():
            self._book.expire_shelves()
            alarm = self._unfinished(alarm_id, "unshelve")
            if alarm.shelved_until is None:
                raise AlarmError(f"alarm {alarm_id} is not shelved")
            self._book.unshelve(alarm, user, self.clock(), "")
            events, publish = self._commit()
        self._journal.publish(publish)
        return alarm

    def clear(self, alarm_id: int, user: str, comment: str = "") -> Alarm:
        """End an alarm that is back to normal and acknowledged (the operator's reset of a latch)."""
        with self._step():
            self._book.expire_shelves()
            alarm = self._unfinished(alarm_id, "clear")
            if alarm.violating:
                raise AlarmError(f"alarm {alarm_id} cannot be cleared: {alarm.channel} is still out of nominal")
            if not alarm.acknowledged:
                raise AlarmError(f"alarm {alarm_id} cannot be cleared before it is acknowledged")
            now = self.clock()

            def clear() -> None:
                alarm.cleared_by, alarm.cleared_at = user, now
                self._book.end(alarm)

            self._book.change(alarm, "cleared", now, clear, user=user, comment=comment)
            events, publish = self._commit()
        self._journal.publish(publish)
        return alarm

    def comment(self, alarm_id: int, user: str, comment: str) -> Alarm:
        """Add an operator's note to an alarm, finished or not (kept in the audit trail, like a verb)."""
        if not comment.strip():
            raise AlarmError("a note needs text")
        with self._step():
            alarm = self._any(alarm_id)
            self._book.note(alarm, "commented", user, comment)
            events, publish = self._commit()
        self._journal.publish(publish)
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
                self._book.note(alarm, "marked nominal", user, f"pattern {record['id']}: {comment}")
                events, publish = self._commit()
        self._journal.publish(publish)
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
                self._book.note(alarm, "unmarked nominal", user, f"pattern {ids}" + (f": {comment}" if comment else ""))
                events, publish = self._commit()
        self._journal.publish(publish)
        return found

    # --- queries ------------------------------------------------------------------------------
    def get(self, alarm_id: int) -> Alarm:
        """The alarm with that id, finished or not; raises :class:`UnknownAlarmError`."""
        self._expire_shelves_now()
        with self._lock:
            alarm = self._book.alarms.get(int(alarm_id))
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
            found = [self._synced(a) for a in self._book.alarms.values()]
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
        return self._journal.subscribe(callback)

    # --- a block through the runs and the lifecycle ------------------------------------------------------
    def _apply(self, block: TelemetryBlock, scores: Scores) -> None:
        book, runs = self._book, self._book.runs
        idx = book.columns(block.channels)
        valid, walk, peaks = runs.advance(block, scores, idx)
        for i, k in peaks:
            book.new_peak(book.alarms[int(runs.open[idx[k]])], book.sample(block, scores, i, k))
        # Everything else changes state: walk its samples in time order (then column order), so
        # ids, incidents and events come out the same however the stream is cut into blocks.
        if walk.size:
            rows, pos = np.nonzero(valid[:, walk])
            book.grouper.applying = (block, valid)
            try:
                for i, k in zip(rows.tolist(), walk[pos].tolist()):
                    book.step(block, scores, int(idx[k]), k, i)
            finally:
                book.grouper.applying = None
        if book.grouper.recent is not None:
            book.grouper.recent.push(np.where(valid, block.values, np.nan), idx)
        if STUCK in scores.detector:  # only a stuck check needs to know since when values repeat
            book.repeats.update(block, idx)

    # --- shelving, transactions ---------------------------------------------------------------------
    def _expire_shelves_now(self) -> None:
        """Queries apply expired shelves first (their own transaction, events published)."""
        with self._lock:
            if not self._book.shelves_expired():
                return
            with self._step():
                self._book.expire_shelves()
                events, publish = self._commit()
        self._journal.publish(publish)

    @contextmanager
    def _step(self) -> Iterator[None]:
        """One public call: under the lock; changes that fail before the commit are dropped (and an
        operator verb's alarm restored)."""
        with self._lock:
            try:
                yield
            except BaseException:
                if self._saved is not None:
                    self._book.restore(self._saved)
                self._journal.discard()
                self._saved = None
                raise

    def _commit(self) -> tuple[list[AlarmEvent], list[AlarmEvent]]:
        """Write this call's changes (see :meth:`vigil.alarms.journal.Journal.commit`); returns this
        call's events and those to publish now. A verb whose write fails is undone and raises."""
        self._book.forget_ended()
        saved, self._saved = self._saved, None
        return self._journal.commit(None if saved is None else lambda: self._book.restore(saved))

    def changed_in_transaction(self) -> bool:
        """Whether the caller's open store transaction holds alarm changes of this manager (the
        monitor checkpoints its stream state with every such transaction)."""
        return self._journal.changed()

    # --- stream state (checkpointed by the monitor with the alarms) --------------------------------
    def stream_state(self) -> dict[str, Any]:
        """What decides future alarms beyond the stored alarms: per channel, the running violation
        and conformance counts and the latest flagged sample (and the recent values that group
        co-varying channels). Restored with :meth:`set_stream_state` after a restart."""
        with self._lock:
            recent = self._book.grouper.recent
            return {
                **self._book.runs.state(),
                "recent": None if recent is None else (recent.values_.copy(), recent.head_),
            }

    def state_nbytes(self) -> int:
        """Bytes of the manager's per-channel arrays (runs, open alarm summary, latest flagged sample,
        watermark)."""
        return self._book.runs.nbytes

    def store_latest(self) -> None:
        """Write every unfinished alarm with its channel's latest sample. A stored row otherwise
        keeps the sample of its last change (the per-sample ones live in arrays, checkpointed with
        :meth:`stream_state`); the monitor calls this when a stream ends or stops, so the stored
        rows do not depend on where the stream was cut."""
        with self._lock:
            alarms = [self._synced(a) for a in self._book.alarms.values()]
            if alarms:
                with self.store.transaction():
                    self.store.save_alarms(alarms)

    def set_stream_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`stream_state` (channels matched by name; new ones start afresh)."""
        with self._lock:
            runs, recent = self._book.runs, self._book.grouper.recent
            self._book.add_channels(list(state["channels"]))
            idx = np.array([runs.index[c] for c in state["channels"]], dtype=np.int64)
            runs.set_state(state, idx)
            if recent is not None and state["recent"] is not None:
                values, head = state["recent"]
                if values.shape[0] == recent.size:
                    recent.values_[:, idx] = values
                    recent.head_ = int(head)

    # --- restart ------------------------------------------------------------------------------------
    def _restore(self) -> None:
        """Pick up where a previous manager on the same store stopped."""
        book = self._book
        for alarm in self.store.load_alarms(open_only=True):
            book.track(alarm)
        marks = self.store.watermarks()
        book.add_channels(list(marks))
        for channel, t in marks.items():
            book.runs.watermark[book.runs.index[channel]] = t
        # Incidents new alarms may still join: active ones, and those within the window of the latest data.
        since = max(marks.values(), default=-math.inf) - self.config.incident_window_s
        for inc in self.store.load_incidents(active_only=True, since=since if math.isfinite(since) else None):
            book.grouper.open[inc.id] = inc
        last_alarm, last_incident = self.store.max_ids()
        book.next_id, book.grouper.next_id = last_alarm + 1, last_incident + 1

    def _unfinished(self, alarm_id: int, verb: str) -> Alarm:
        """The unfinished alarm an operator verb applies to; its state is saved so that a verb
        whose commit fails leaves nothing changed (the operator sees an error, not a false ack)."""
        alarm = self._book.alarms.get(int(alarm_id))
        if alarm is not None:
            self._saved = self._book.save(alarm)
            return alarm
        if self.store.get_alarm(int(alarm_id)) is not None:
            raise AlarmError(f"cannot {verb} alarm {alarm_id}: it is cleared")
        raise UnknownAlarmError(f"no alarm {alarm_id}")

    def _any(self, alarm_id: int) -> Alarm:
        """The alarm, finished or not, for a note (nothing of its lifecycle changes)."""
        alarm = self._book.alarms.get(int(alarm_id))
        if alarm is None:
            alarm = self.store.get_alarm(int(alarm_id))
        if alarm is None:
            raise UnknownAlarmError(f"no alarm {alarm_id}")
        return self._synced(alarm)

    def _synced(self, alarm: Alarm) -> Alarm:
        return self._book.synced(alarm)


def _names(value: str | Iterable[str] | None, allowed: tuple[str, ...], what: str) -> set[str]:
    if value is None:
        return set()
    names = {value} if isinstance(value, str) else set(value)
    bad = sorted(names - set(allowed))
    if bad:
        raise AlarmError(f"unknown {what} {bad[0]!r}; use one of {', '.join(allowed)}")
    return names
