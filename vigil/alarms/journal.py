"""The alarm manager's persistence: what one call changed, written in one store transaction, then told.

Every change the manager makes (alarms, incidents, audit entries, acknowledgements) and the events
it raises go into :attr:`Journal.pending`, a :class:`Writes`. :meth:`Journal.commit` writes them,
with any writes left over from a failed commit, in one store transaction; subscribers hear of the
events only after it committed. Called inside a caller's store transaction (a monitor committing
alarms with its checkpoint), the writes are deferred to just before that transaction commits and
published after it, once per transaction however many calls it holds.

If the store fails: an operator verb is undone in memory and the error raised (the operator must
not see an acknowledgement that is not stored); an update keeps its changes in memory, re-queues
the writes for the next commit, counts ``store_errors`` and carries on (a monitor must not stop).
In a caller's transaction the error goes to the caller and the writes are re-queued when it rolls
back.

Kept apart from the manager because none of this depends on what an alarm is: it is the
transaction, retry and notification discipline around the lifecycle.

>>> from vigil.alarms.memory import MemoryStore
>>> import threading
>>> j = Journal(MemoryStore(), threading.RLock(), synced=lambda a: a, prepare=lambda w: None)
>>> heard = []
>>> unsubscribe = j.subscribe(heard.append)
>>> j.pending.events.append(AlarmEvent("raised", 1, 0.0, {}))
>>> events, publish = j.commit()
>>> j.publish(publish)
>>> [e["kind"] for e in heard]
['raised']
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vigil.alarms.memory import AlarmStore
from vigil.alarms.model import Alarm, AlarmEvent, AuditEntry, Incident

log = logging.getLogger("vigil.alarms.manager")  # the manager's log, as before it was split


@dataclass
class Writes:
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

    def merge(self, other: Writes, events: bool = False) -> None:
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


class Journal:
    """The pending writes of the current call, their commit, and the subscribers told of them.

    Args:
        store: where the writes go.
        lock: the manager's (the store's) lock; hooks that run at a caller's commit take it.
        synced: brings an alarm up to date before it is written (its channel's latest sample).
        prepare: completes a call's writes just before they are written (ranks the incidents that
            changed and adds their events).
    """

    def __init__(
        self,
        store: AlarmStore,
        lock: Any,
        synced: Callable[[Alarm], Alarm],
        prepare: Callable[[Writes], None],
    ) -> None:
        self.store = store
        self._lock = lock
        self._synced = synced
        self._prepare = prepare
        self.pending = Writes()
        self.store_errors = 0
        self.last_store_error: str | None = None
        self.callback_errors = 0
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._backlog = Writes()  # writes of commits that failed, retried with the next one
        self._deferred = Writes()  # changes made inside a caller's transaction, written at its commit
        self._flushed: tuple[Writes, Writes] | None = None
        self._hooked = False

    def commit(self, undo: Callable[[], None] | None = None) -> tuple[list[AlarmEvent], list[AlarmEvent]]:
        """Write the pending changes, and any left over from a failed commit, in one transaction.
        Returns this call's events and those to publish now (see the module docstring).

        ``undo``: an operator verb's; called, and the store's error raised, if the write fails.
        """
        pending = self.pending
        self.pending = Writes()
        if self.store.in_transaction:
            self._defer(pending)
            return pending.events, []
        self._prepare(pending)
        carried, self._backlog = self._backlog, Writes()
        if carried.empty() and pending.empty():
            return pending.events, pending.events
        restorable = [undo is not None]

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
            if undo is not None:
                undo()
                raise
            self.failed(err)
        return pending.events, pending.events

    def discard(self) -> None:
        """Drop the pending changes (the call failed before its commit)."""
        self.pending = Writes()

    def changed(self) -> bool:
        """Whether the caller's open store transaction holds changes of this journal."""
        return not (self.pending.empty() and self._deferred.empty())

    def failed(self, err: Exception) -> None:
        """Count a store failure; the writes stay in the backlog for the next commit."""
        self.store_errors += 1
        self.last_store_error = f"{type(err).__name__}: {err}"
        log.error("alarm store write failed, %d writes kept for the next commit: %s", self._backlog.size(), err)

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(event.to_dict())`` for every published event; returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, events: list[AlarmEvent]) -> None:
        """Tell the subscribers (outside the lock); a failing one is logged and counted."""
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

    def _defer(self, pending: Writes) -> None:
        self._deferred.merge(pending, events=True)
        if not self._hooked:
            self._hooked = True
            self.store.before_commit(self._flush)
            self.store.after_commit(self._after_outer_commit)
            self.store.on_rollback(self._after_outer_rollback)

    def _flush(self) -> None:
        """Inside the caller's transaction, just before it commits: write what was deferred."""
        with self._lock:
            writes, self._deferred = self._deferred, Writes()
            carried, self._backlog = self._backlog, Writes()
            self._prepare(writes)
            self._flushed = (carried, writes)
            carried.write(self.store, self._synced)
            writes.write(self.store, self._synced)

    def _after_outer_commit(self) -> None:
        with self._lock:
            _, writes = self._flushed or (None, Writes())
            self._flushed, self._hooked = None, False
        self.publish(writes.events)

    def _after_outer_rollback(self) -> None:
        """The caller's transaction failed: keep the writes for the next commit, and tell the
        subscribers what changed (it did change, in memory)."""
        with self._lock:
            if self._flushed is not None:
                carried, writes = self._flushed
            else:
                carried, writes = Writes(), self._deferred
                self._prepare(writes)
            self._flushed, self._deferred, self._hooked = None, Writes(), False
            self._backlog.merge(carried)
            self._backlog.merge(writes)
        self.publish(writes.events)
