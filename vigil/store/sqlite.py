"""The embedded store: alarms, incidents, acknowledgements, the audit trail and stream checkpoints.

SQLite in WAL mode with ``synchronous=FULL`` by default. WAL alone (with ``NORMAL``) already
survives a killed process: a committed transaction is in the WAL file before ``COMMIT`` returns.
``FULL`` also syncs the WAL on every commit, so an acknowledgement the operator saw confirmed
survives a power cut or kernel crash too; it costs one fsync per commit, and the alarm manager
commits once per ``update()`` and once per operator verb, not once per sample.

Alarm rows carry a unique ``key`` (channel, detector kind, first time): a monitor that restarts and
replays samples it already processed finds the alarm it raised before instead of raising a second
one. The alarm manager numbers alarms and incidents above :meth:`SqliteStore.max_ids`, which reads
``AUTOINCREMENT``'s high-water mark, so ids are never reused, even after rows are deleted.

>>> store = SqliteStore()
>>> store.save_checkpoint("replay", {"time": 12.5})
>>> store.load_checkpoint("replay"), store.load_checkpoint("nothing")
({'time': 12.5}, None)
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vigil.alarms.model import STALE, Alarm, AuditEntry, Incident
from vigil.store import stream_parts
from vigil.store.stream_parts import StateDelta, StoredState

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    detector TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    first_time REAL,
    event_time REAL,
    ended INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms (ended, channel);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subsystem TEXT NOT NULL,
    first_time REAL,
    last_time REAL,
    active INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS acknowledgements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm_id INTEGER NOT NULL REFERENCES alarms (id),
    user TEXT NOT NULL,
    time REAL NOT NULL,
    comment TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm_id INTEGER NOT NULL,
    time REAL,
    wall_time REAL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    comment TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_alarm ON audit (alarm_id);
CREATE TABLE IF NOT EXISTS checkpoints (key TEXT PRIMARY KEY, position TEXT NOT NULL, wall_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nominal_patterns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    alarm_id INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS limit_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    wall_time REAL NOT NULL,
    data_time REAL,
    user TEXT NOT NULL,
    comment TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL
);
"""


class SqliteStore:
    """Alarm store on one SQLite file (or ``":memory:"``), safe to share between threads."""

    #: Stream state may be saved as a :class:`StateDelta` (:mod:`vigil.store.stream_parts`).
    keeps_state_parts = True

    def __init__(self, path: str | Path = ":memory:", synchronous: str = "FULL", timeout_s: float = 10.0) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = str(path)
        self.lock = threading.RLock()
        self._depth = 0
        self._hooks: dict[str, list[Callable[[], None]]] = {"before": [], "after": [], "rollback": []}
        self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in _statements(_SCHEMA):
                self._conn.execute(statement)
            stream_parts.create_tables(self._conn)
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        found = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        if int(found) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: store schema version {found}, this Vigil reads {SCHEMA_VERSION}")

    # --- plumbing -------------------------------------------------------------------------------
    @property
    def journal_mode(self) -> str:
        """``"wal"`` for a file store (an in-memory database reports ``"memory"``)."""
        with self.lock:
            return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    @property
    def synchronous(self) -> int:
        """SQLite's code: 1 NORMAL, 2 FULL, 3 EXTRA."""
        with self.lock:
            return int(self._conn.execute("PRAGMA synchronous").fetchone()[0])

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit; nested uses join the outermost transaction. Hooks of the
        outermost one: ``before_commit`` ones run inside it just before COMMIT, ``after_commit``
        ones after it, ``on_rollback`` ones if it rolls back (an exception or a failed COMMIT)."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
                for hook in self._hooks["before"]:
                    hook()
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._run_hooks("rollback")
                raise
            else:
                self._run_hooks("after")
            finally:
                self._depth = 0
                self._hooks = {"before": [], "after": [], "rollback": []}

    def on_rollback(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` if the current transaction rolls back (the manager re-queues its writes)."""
        self._add_hook("rollback", hook)

    def before_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` inside the current transaction just before it commits (deferred writes)."""
        self._add_hook("before", hook)

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` once the current transaction has committed (notifications)."""
        self._add_hook("after", hook)

    def _add_hook(self, when: str, hook: Callable[[], None]) -> None:
        if not self._depth:
            raise RuntimeError(f"{when} hook outside a transaction")
        self._hooks[when].append(hook)

    def _run_hooks(self, when: str) -> None:
        for hook in self._hooks[when]:
            try:
                hook()
            except Exception:  # one failing hook must not stop the others
                log.exception("%s hook %r failed", when, hook)

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- alarms ---------------------------------------------------------------------------------
    def max_ids(self) -> tuple[int, int]:
        """The highest alarm and incident ids ever stored (deleted rows included): new ids start above."""
        with self.lock:
            seq = dict(self._conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        return int(seq.get("alarms", 0)), int(seq.get("incidents", 0))

    def find_alarm(self, key: str) -> Alarm | None:
        """The alarm stored under ``key`` (channel, kind, first time), if any: a replay after a restart."""
        with self.lock:
            row = self._conn.execute("SELECT data FROM alarms WHERE key = ?", (key,)).fetchone()
        return None if row is None else Alarm.from_dict(json.loads(row[0]))

    def save_alarms(self, alarms: Iterable[Alarm]) -> None:
        """Insert or update alarms by id (ids are given by the manager)."""
        rows = [
            (
                a.id,
                a.key,
                a.channel,
                a.detector,
                a.state,
                a.severity,
                _real(a.first_time),
                _real(a.event_time),
                int(a.ended),
                _dumps(a.to_dict()),
            )
            for a in alarms
        ]
        if rows:
            with self.transaction() as conn:
                conn.executemany(
                    "INSERT INTO alarms (id, key, channel, detector, state, severity, first_time, event_time, ended, "
                    "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                    "severity=excluded.severity, event_time=excluded.event_time, ended=excluded.ended, "
                    "data=excluded.data",
                    rows,
                )

    def load_alarms(self, open_only: bool = False) -> list[Alarm]:
        """Alarms by id; with ``open_only`` only those that have not ended."""
        sql = "SELECT data FROM alarms" + (" WHERE ended = 0" if open_only else "") + " ORDER BY id"
        with self.lock:
            return [Alarm.from_dict(json.loads(r[0])) for r in self._conn.execute(sql)]

    def get_alarm(self, alarm_id: int) -> Alarm | None:
        with self.lock:
            row = self._conn.execute("SELECT data FROM alarms WHERE id = ?", (int(alarm_id),)).fetchone()
        return None if row is None else Alarm.from_dict(json.loads(row[0]))

    def watermarks(self) -> dict[str, float]:
        """Per channel, the telemetry time of its latest data-driven alarm transition: samples up to it
        were applied before a restart. Staleness alarms are left out (their times may be wall-clock)."""
        with self.lock:
            rows = self._conn.execute(
                "SELECT channel, MAX(event_time) FROM alarms WHERE detector != ? GROUP BY channel", (STALE,)
            ).fetchall()
        return {ch: float(t) for ch, t in rows if t is not None}

    # --- incidents ------------------------------------------------------------------------------
    def save_incidents(self, incidents: Iterable[Incident]) -> None:
        """Insert or update incidents by id (ids are given by the manager)."""
        rows = [
            (i.id, i.subsystem, _real(i.first_time), _real(i.last_time), int(i.active), _dumps(i.to_dict()))
            for i in incidents
        ]
        if rows:
            with self.transaction() as conn:
                conn.executemany(
                    "INSERT INTO incidents (id, subsystem, first_time, last_time, active, data) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET subsystem=excluded.subsystem, "
                    "first_time=excluded.first_time, last_time=excluded.last_time, active=excluded.active, "
                    "data=excluded.data",
                    rows,
                )

    def load_incidents(self, active_only: bool = False, since: float | None = None) -> list[Incident]:
        """Incidents by id: all, or only active ones, plus (with ``since``) those whose latest
        onset is at or after ``since``."""
        where, args = [], []
        if active_only or since is not None:
            where.append("active = 1")
        if since is not None:
            where.append("last_time >= ?")
            args.append(float(since))
        sql = "SELECT data FROM incidents" + (f" WHERE {' OR '.join(where)}" if where else "") + " ORDER BY id"
        with self.lock:
            return [Incident.from_dict(json.loads(r[0])) for r in self._conn.execute(sql, args)]

    # --- acknowledgements and audit -------------------------------------------------------------
    def add_acknowledgement(self, alarm_id: int, user: str, time_: float, comment: str = "") -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO acknowledgements (alarm_id, user, time, comment) VALUES (?, ?, ?, ?)",
                (int(alarm_id), user, float(time_), comment),
            )

    def acknowledgements(self, alarm_id: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, alarm_id, user, time, comment FROM acknowledgements"
        args: tuple = ()
        if alarm_id is not None:
            sql, args = sql + " WHERE alarm_id = ?", (int(alarm_id),)
        with self.lock:
            rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [dict(zip(("id", "alarm_id", "user", "time", "comment"), r)) for r in rows]

    def add_audit(self, entries: Iterable[AuditEntry]) -> None:
        rows = [
            (e.alarm_id, _real(e.time), _real(e.wall_time), e.user, e.action, e.from_state, e.to_state, e.comment)
            for e in entries
        ]
        if rows:
            with self.transaction() as conn:
                conn.executemany(
                    "INSERT INTO audit (alarm_id, time, wall_time, user, action, from_state, to_state, comment) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

    def audit(self, alarm_id: int | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Audit entries in the order they happened (the newest ``limit`` when given)."""
        sql = "SELECT id, alarm_id, time, wall_time, user, action, from_state, to_state, comment FROM audit"
        args: list[Any] = []
        if alarm_id is not None:
            sql += " WHERE alarm_id = ?"
            args.append(int(alarm_id))
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self.lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [
            AuditEntry(
                id=r[0],
                alarm_id=r[1],
                time=_float(r[2]),
                wall_time=_float(r[3]),
                user=r[4],
                action=r[5],
                from_state=r[6],
                to_state=r[7],
                comment=r[8],
            )
            for r in reversed(rows)
        ]

    # --- operator feedback: nominal patterns and run-time limit changes ------------------------
    def add_nominal_pattern(self, channel: str, alarm_id: int, data: dict[str, Any]) -> int:
        """Keep a pattern an operator marked nominal (``data``: JSON-ready); returns its id."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO nominal_patterns (channel, alarm_id, active, data) VALUES (?, ?, 1, ?)",
                (channel, int(alarm_id), _dumps(data)),
            )
            return int(cur.lastrowid)

    def set_nominal_active(self, pattern_id: int, active: bool, data: dict[str, Any]) -> None:
        """Withdraw (or restore) a nominal pattern, with its updated record (who, when)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE nominal_patterns SET active = ?, data = ? WHERE id = ?",
                (int(active), _dumps(data), int(pattern_id)),
            )

    def nominal_patterns(self, active_only: bool = True) -> list[dict[str, Any]]:
        """Nominal patterns by id: ``{"id", "channel", "alarm_id", "active", **data}``."""
        sql = "SELECT id, channel, alarm_id, active, data FROM nominal_patterns"
        sql += " WHERE active = 1 ORDER BY id" if active_only else " ORDER BY id"
        with self.lock:
            rows = self._conn.execute(sql).fetchall()
        return [{**json.loads(d), "id": i, "channel": c, "alarm_id": a, "active": bool(on)} for i, c, a, on, d in rows]

    def add_limit_change(
        self,
        channel: str,
        wall_time: float,
        user: str,
        comment: str,
        old: Any,
        new: Any,
        data_time: float | None = None,
    ) -> int:
        """Record a run-time change of a channel's limits (``old``/``new``: JSON-ready), made at ``wall_time``
        and in force from the sample after ``data_time`` (the stream's clock then); returns its id."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO limit_changes (channel, wall_time, data_time, user, comment, old, new) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (channel, float(wall_time), _real(data_time), user, comment, _dumps(old), _dumps(new)),
            )
            return int(cur.lastrowid)

    def limit_changes(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Run-time limit changes, oldest first (of one channel when given)."""
        sql, args = "SELECT id, channel, wall_time, data_time, user, comment, old, new FROM limit_changes", ()
        if channel is not None:
            sql, args = sql + " WHERE channel = ?", (channel,)
        with self.lock:
            rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        keys = ("id", "channel", "wall_time", "data_time", "user", "comment")
        return [{**dict(zip(keys, r[:6])), "old": json.loads(r[6]), "new": json.loads(r[7])} for r in rows]

    # --- stream checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, key: str, position: Any, state: bytes | StateDelta | None = None) -> None:
        """Remember how far a stream got (any JSON value) and, if given, its ``state``, atomically with
        the current transaction: one opaque blob (``bytes``), or what changed since the last
        checkpoint of ``key`` (a :class:`~vigil.store.stream_parts.StateDelta`, the monitor's way)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO checkpoints (key, position, wall_time) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET position = excluded.position, wall_time = excluded.wall_time",
                (key, _dumps(position), time.time()),
            )
            if isinstance(state, StateDelta):
                stream_parts.save(conn, key, state)
            elif state is not None:
                stream_parts.save(conn, key, StateDelta(full=True))  # one blob replaces any parts
                conn.execute(
                    "INSERT INTO stream_state (key, state) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET state = excluded.state",
                    (key, sqlite3.Binary(state)),
                )

    def load_checkpoint(self, key: str) -> Any | None:
        with self.lock:
            row = self._conn.execute("SELECT position FROM checkpoints WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def load_stream_state(self, key: str) -> bytes | StoredState | None:
        """The ``state`` saved with the checkpoint ``key``: the blob, or the parts and patches the
        deltas left (``None`` if none was saved)."""
        with self.lock:
            row = self._conn.execute("SELECT state FROM stream_state WHERE key = ?", (key,)).fetchone()
            return bytes(row[0]) if row is not None else stream_parts.load(self._conn, key)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


def _real(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _float(x: float | None) -> float:
    return math.nan if x is None else float(x)
