"""Alarms (Yamcs / ISA-18.2 lifecycle), incidents and the audit trail; see :mod:`vigil.alarms.manager`."""

from vigil.alarms.manager import AlarmManager
from vigil.alarms.memory import AlarmStore, MemoryStore
from vigil.alarms.model import (
    STATES,
    Alarm,
    AlarmError,
    AlarmEvent,
    AuditEntry,
    Incident,
    RankedChannel,
    UnknownAlarmError,
)

__all__ = [
    "STATES",
    "Alarm",
    "AlarmError",
    "AlarmEvent",
    "AlarmManager",
    "AlarmStore",
    "AuditEntry",
    "Incident",
    "MemoryStore",
    "RankedChannel",
    "UnknownAlarmError",
]
