"""Stream state stored in parts, so that a checkpoint writes only what changed since the last one.

A monitor's stream state at 10,000 channels is about 10 MB, and a 1 Hz tick changes about a fifth
of it. The monitor (:mod:`vigil.monitor.checkpoint`) therefore hands the store a
:class:`StateDelta` instead of one blob: parts written whole (a new or densely changed piece of an
array, or the small pickled remainder), patches appended to a part (the elements that changed,
as opaque bytes with a sequence number) and parts dropped. The store only keeps rows; what a
part's bytes mean is the monitor's business. Everything is written inside the caller's transaction,
so the alarms and the state that produced them still commit together.

Tables: ``stream_parts (key, name, data)`` and ``stream_patches (key, name, seq, data)``, beside
``stream_state (key, state)`` for a state saved as one blob. Writing a
part whole deletes its patches; a ``full`` delta first deletes every part, patch and older
single-blob state (``stream_state``) of the key.

>>> import sqlite3
>>> conn = sqlite3.connect(":memory:")
>>> create_tables(conn)
>>> save(conn, "m", StateDelta(full=True, write={"a": b"xy"}))
>>> save(conn, "m", StateDelta(patch=[("a", 1, b"p1")]))
>>> load(conn, "m")
StoredState(parts={'a': b'xy'}, patches=[('a', 1, b'p1')])
>>> save(conn, "m", StateDelta(write={"a": b"zz"}, drop=["b"]))
>>> load(conn, "m")
StoredState(parts={'a': b'zz'}, patches=[])
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

TABLES = (
    "CREATE TABLE IF NOT EXISTS stream_state (key TEXT PRIMARY KEY, state BLOB NOT NULL)",  # one blob (version 2)
    "CREATE TABLE IF NOT EXISTS stream_parts (key TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, "
    "PRIMARY KEY (key, name))",
    "CREATE TABLE IF NOT EXISTS stream_patches (key TEXT NOT NULL, name TEXT NOT NULL, seq INTEGER NOT NULL, "
    "data BLOB NOT NULL, PRIMARY KEY (key, name, seq))",
)


@dataclass
class StateDelta:
    """What changed in a stream state since the last checkpoint of the same key.

    ``full``: replace everything stored under the key; ``write``: parts stored whole (their patches
    are deleted); ``patch``: ``(part, seq, data)`` appended to a stored part; ``drop``: parts gone.
    """

    full: bool = False
    write: dict[str, bytes] = field(default_factory=dict)
    patch: list[tuple[str, int, bytes]] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Bytes of part and patch data this delta writes."""
        return sum(map(len, self.write.values())) + sum(len(p[2]) for p in self.patch)


@dataclass
class StoredState:
    """A key's parts and their patches (oldest first), as :func:`load` found them."""

    parts: dict[str, bytes]
    patches: list[tuple[str, int, bytes]]


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in TABLES:
        conn.execute(statement)


def save(conn: sqlite3.Connection, key: str, delta: StateDelta) -> None:
    """Apply ``delta`` to the rows of ``key`` (inside the caller's transaction)."""
    if delta.full:
        for table in ("stream_parts", "stream_patches", "stream_state"):
            conn.execute(f"DELETE FROM {table} WHERE key = ?", (key,))  # noqa: S608 - fixed names
    gone = [(key, name) for name in [*delta.drop, *delta.write]]
    if gone and not delta.full:
        conn.executemany("DELETE FROM stream_patches WHERE key = ? AND name = ?", gone)
    if delta.drop and not delta.full:
        conn.executemany("DELETE FROM stream_parts WHERE key = ? AND name = ?", [(key, n) for n in delta.drop])
    if delta.write:
        conn.executemany(
            "INSERT INTO stream_parts (key, name, data) VALUES (?, ?, ?) "
            "ON CONFLICT(key, name) DO UPDATE SET data = excluded.data",
            [(key, name, data) for name, data in delta.write.items()],
        )
    if delta.patch:
        conn.executemany(
            "INSERT INTO stream_patches (key, name, seq, data) VALUES (?, ?, ?, ?)",
            [(key, name, seq, data) for name, seq, data in delta.patch],
        )


def load(conn: sqlite3.Connection, key: str) -> StoredState | None:
    """The parts and patches of ``key`` (``None`` when it has no part)."""
    parts = {n: bytes(d) for n, d in conn.execute("SELECT name, data FROM stream_parts WHERE key = ?", (key,))}
    if not parts:
        return None
    patches = [
        (n, int(s), bytes(d))
        for n, s, d in conn.execute("SELECT name, seq, data FROM stream_patches WHERE key = ? ORDER BY seq", (key,))
    ]
    return StoredState(parts, patches)
