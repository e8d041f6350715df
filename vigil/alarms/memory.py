"""The store interface the alarm manager writes to, and its in-memory implementation.

The manager only knows :class:`AlarmStore`; :class:`vigil.store.sqlite.SqliteStore` implements it
on disk (the alarm layer never imports the store layer, data flows one way). :class:`MemoryStore`
is the default when no store is given: same behaviour, nothing survives the process.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from vigil.alarms.model import STALE, Alarm, AuditEntry, Incident


class AlarmStore(Protocol):
    """What the manager needs from a store. Every method may be called inside ``transaction()``;
    writes inside one are atomic. Hooks of the outermost transaction: ``before_commit`` (inside it,
    just before COMMIT), ``after_commit``, ``on_rollback``. Ids are given by the manager, above
    ``max_ids()``.

    ``lock`` is the store's re-entrant lock; the manager takes the same lock, so a monitor thread
    that opens a store transaction around ``update()`` and an API thread acknowledging an alarm
    can never wait on each other in opposite order.
    """

    lock: Any

    def transaction(self) -> AbstractContextManager[Any]: ...
    @property
    def in_transaction(self) -> bool: ...
    def on_rollback(self, hook: Callable[[], None]) -> None: ...
    def before_commit(self, hook: Callable[[], None]) -> None: ...
    def after_commit(self, hook: Callable[[], None]) -> None: ...
    def max_ids(self) -> tuple[int, int]: ...
    def find_alarm(self, key: str) -> Alarm | None: ...
    def save_alarms(self, alarms: Iterable[Alarm]) -> None: ...
    def load_alarms(self, open_only: bool = False) -> list[Alarm]: ...
    def get_alarm(self, alarm_id: int) -> Alarm | None: ...
    def watermarks(self) -> dict[str, float]: ...
    def save_incidents(self, incidents: Iterable[Incident]) -> None: ...
    def load_incidents(self, active_only: bool = False, since: float | None = None) -> list[Incident]: ...
    def add_acknowledgement(self, alarm_id: int, user: str, time_: float, comment: str = "") -> None: ...
    def acknowledgements(self, alarm_id: int | None = None) -> list[dict[str, Any]]: ...
    def add_audit(self, entries: Iterable[AuditEntry]) -> None: ...
    def audit(self, alarm_id: int | None = None, limit: int | None = None) -> list[AuditEntry]: ...


class MemoryStore:
    """Dicts behind the :class:`AlarmStore` interface. Writes apply at once (a failed transaction
    is not undone, but its rollback hooks run)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._depth = 0
        self._hooks: dict[str, list[Callable[[], None]]] = {"before": [], "after": [], "rollback": []}
        self._alarms: dict[int, Alarm] = {}
        self._keys: dict[str, int] = {}
        self._incidents: dict[int, Incident] = {}
        self._acks: list[dict[str, Any]] = []
        self._audit: list[AuditEntry] = []
        self._checkpoints: dict[str, Any] = {}
        self._states: dict[str, bytes] = {}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            self._depth += 1
            try:
                yield
                if self._depth == 1:
                    for hook in self._hooks["before"]:
                        hook()
            except BaseException:
                if self._depth == 1:
                    for hook in self._hooks["rollback"]:
                        hook()
                raise
            else:
                if self._depth == 1:
                    for hook in self._hooks["after"]:
                        hook()
            finally:
                self._depth -= 1
                if not self._depth:
                    self._hooks = {"before": [], "after": [], "rollback": []}

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def on_rollback(self, hook: Callable[[], None]) -> None:
        self._hooks["rollback"].append(hook)

    def before_commit(self, hook: Callable[[], None]) -> None:
        self._hooks["before"].append(hook)

    def after_commit(self, hook: Callable[[], None]) -> None:
        self._hooks["after"].append(hook)

    def max_ids(self) -> tuple[int, int]:
        with self.lock:
            return max(self._alarms, default=0), max(self._incidents, default=0)

    def find_alarm(self, key: str) -> Alarm | None:
        with self.lock:
            found = self._keys.get(key)
            return None if found is None else copy.copy(self._alarms[found])

    def save_alarms(self, alarms: Iterable[Alarm]) -> None:
        with self.lock:
            for a in alarms:
                self._alarms[a.id] = copy.copy(a)
                self._keys[a.key] = a.id

    def load_alarms(self, open_only: bool = False) -> list[Alarm]:
        with self.lock:
            return [copy.copy(a) for a in self._alarms.values() if not (open_only and a.ended)]

    def get_alarm(self, alarm_id: int) -> Alarm | None:
        with self.lock:
            a = self._alarms.get(int(alarm_id))
            return None if a is None else copy.copy(a)

    def watermarks(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self.lock:
            for a in self._alarms.values():
                if a.detector != STALE and math.isfinite(a.event_time):
                    out[a.channel] = max(out.get(a.channel, -math.inf), a.event_time)
        return out

    def save_incidents(self, incidents: Iterable[Incident]) -> None:
        with self.lock:
            for i in incidents:
                self._incidents[i.id] = copy.deepcopy(i)

    def load_incidents(self, active_only: bool = False, since: float | None = None) -> list[Incident]:
        def wanted(i: Incident) -> bool:
            if since is not None:
                return i.active or i.last_time >= since
            return i.active or not active_only

        with self.lock:
            return [copy.deepcopy(i) for i in self._incidents.values() if wanted(i)]

    def add_acknowledgement(self, alarm_id: int, user: str, time_: float, comment: str = "") -> None:
        with self.lock:
            self._acks.append(
                {"id": len(self._acks) + 1, "alarm_id": alarm_id, "user": user, "time": time_, "comment": comment}
            )

    def acknowledgements(self, alarm_id: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(a) for a in self._acks if alarm_id is None or a["alarm_id"] == alarm_id]

    def add_audit(self, entries: Iterable[AuditEntry]) -> None:
        with self.lock:
            for e in entries:
                self._audit.append(
                    AuditEntry(**{**e.__dict__, "id": len(self._audit) + 1})  # frozen: rebuild with the id
                )

    def audit(self, alarm_id: int | None = None, limit: int | None = None) -> list[AuditEntry]:
        with self.lock:
            found = [e for e in self._audit if alarm_id is None or e.alarm_id == alarm_id]
        return found[-limit:] if limit else found

    def save_checkpoint(self, key: str, position: Any, state: bytes | None = None) -> None:
        with self.lock:
            self._checkpoints[key] = copy.deepcopy(position)
            if state is not None:
                self._states[key] = bytes(state)

    def load_checkpoint(self, key: str) -> Any | None:
        with self.lock:
            return copy.deepcopy(self._checkpoints.get(key))

    def load_stream_state(self, key: str) -> bytes | None:
        with self.lock:
            return self._states.get(key)
