"""Persistence: the embedded SQLite store (WAL) for alarms, incidents, acknowledgements, audit, checkpoints."""

from vigil.store.sqlite import SqliteStore

__all__ = ["SqliteStore"]
