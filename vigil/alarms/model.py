"""What the alarm layer hands out: alarms, their events, incidents and audit entries.

An :class:`Alarm` follows the Yamcs / ISA-18.2 lifecycle. Its :attr:`Alarm.state` is derived from
four facts: whether the channel is still out of nominal (``violating``), whether an operator
acknowledged it, whether it is shelved, and whether it ended:

================== =========================================================================
state              meaning
================== =========================================================================
active             out of nominal, not acknowledged
acknowledged       out of nominal, acknowledged
rtn_unacknowledged returned to normal, not acknowledged yet
latched            returned to normal and acknowledged, but latching: waits for an operator clear
shelved            hidden from notification until ``shelved_until`` or an unshelve
cleared            ended (acknowledged and back to normal, or cleared by an operator)
================== =========================================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from vigil.detect.events import describe
from vigil.errors import VigilError
from vigil.model import format_time, iso_time, printable

STATES: tuple[str, ...] = ("active", "acknowledged", "rtn_unacknowledged", "latched", "shelved", "cleared")

#: The detector name of staleness alarms (a channel that stopped arriving).
STALE = "staleness"


class AlarmError(VigilError, ValueError):
    """An operator verb that does not apply to the alarm in its current state."""


class UnknownAlarmError(AlarmError, KeyError):
    """No alarm (or incident) with that id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Alarm:
    """One alarm on one channel, from its raise to its end; explains itself."""

    id: int
    key: str
    channel: str
    subsystem: str
    severity: str
    level: int
    detector: str
    first_time: float
    #: The sample that set the current severity (its value and time); ``expected``, ``low``,
    #: ``high``, ``threshold``, ``score`` and ``detector`` are that sample's too. The peak is kept
    #: apart (``peak_*``). For a staleness alarm: the time of the last sample seen.
    trigger_value: float
    trigger_time: float = math.nan
    expected: float = math.nan
    low: float = math.nan
    high: float = math.nan
    threshold: float = math.nan
    score: float = math.nan
    peak_value: float = math.nan
    peak_time: float = math.nan
    peak_score: float = math.nan
    last_time: float = math.nan
    last_value: float = math.nan
    #: Telemetry time of the latest data-driven transition (restart watermark).
    event_time: float = math.nan
    violating: bool = True
    rtn_time: float | None = None
    latching: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    acknowledged_comment: str | None = None
    shelved_by: str | None = None
    shelved_until: float | None = None
    cleared_by: str | None = None
    cleared_at: float | None = None
    ended: bool = False
    occurrences: int = 1
    incident_id: int | None = None
    units: str = ""
    #: The state name of an enumerated trigger value (``FAULT`` rather than ``3``).
    value_label: str = ""
    #: For a stuck value: when it began repeating.
    since: float = math.nan
    #: Raised (or last reactivated) by a sample generated long before it arrived (stored telemetry
    #: dumped during a pass), not by live data.
    playback: bool = False

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def state(self) -> str:
        if self.ended:
            return "cleared"
        if self.shelved_until is not None:
            return "shelved"
        if self.violating:
            return "acknowledged" if self.acknowledged else "active"
        return "latched" if self.acknowledged else "rtn_unacknowledged"

    @property
    def direction(self) -> str:
        """``"low"`` / ``"high"`` when the sample that set the severity left the band on that side,
        ``"stale"`` for a staleness alarm, else ``"off"``."""
        if self.detector == STALE:
            return "stale"
        v = self.trigger_value
        if math.isfinite(self.low) and v < self.low:
            return "low"
        if math.isfinite(self.high) and v > self.high:
            return "high"
        return "off"

    @property
    def explanation(self) -> str:
        """What raised the alarm, in the terms of its check, about the sample that set the current
        severity; then the peak, the latest flagged value and whether it is still out of nominal."""
        head = f"{printable(self.channel)} ({printable(self.subsystem) or 'no subsystem'}): {self.severity}"
        if self.detector == STALE:
            return (
                f"{head}: no sample since {format_time(self.trigger_value)}; stale since {format_time(self.first_time)}"
            )
        u = f" {printable(self.units)}" if self.units else ""
        what = describe(
            self.detector,
            self.trigger_value,
            self.expected,
            self.low,
            self.high,
            self.score,
            threshold=self.threshold,
            severity=self.severity,
            units=printable(self.units),
            label=printable(self.value_label),
            since=self.since,
        )
        at = self.trigger_time if math.isfinite(self.trigger_time) else self.first_time
        parts = [f"{head} by {self.detector} since {format_time(self.first_time)}: at {format_time(at)} {what}"]
        if math.isfinite(self.peak_time) and (self.peak_time != at or self.peak_value != self.trigger_value):
            parts.append(
                f"peak {_fmt(self.peak_value)}{u} at {format_time(self.peak_time)} (score {_fmt(self.peak_score)})"
            )
        if math.isfinite(self.last_time) and self.last_time > max(at, _finite(self.peak_time)):
            parts.append(f"latest flagged {_fmt(self.last_value)}{u} at {format_time(self.last_time)}")
        if not self.violating and self.rtn_time is not None:
            parts.append("normal since " + format_time(self.rtn_time))
        else:
            parts.append("ongoing")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes ``None``), with the derived state and explanation."""
        out = {k: _json(getattr(self, k)) for k in self.__dataclass_fields__}  # flat: no deep copy
        out["state"] = self.state
        out["acknowledged"] = self.acknowledged
        out["explanation"] = self.explanation
        return _with_utc(out, _ALARM_TIMES)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alarm:
        """Inverse of :meth:`to_dict` (derived keys are ignored; ``None`` floats become NaN)."""
        names = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in names}
        for k in _NAN_FIELDS:
            if kwargs.get(k) is None:
                kwargs[k] = math.nan
        return cls(**kwargs)


_NAN_FIELDS = (
    "trigger_value",
    "trigger_time",
    "expected",
    "low",
    "high",
    "threshold",
    "score",
    "peak_value",
    "peak_time",
    "peak_score",
    "last_time",
    "last_value",
    "event_time",
    "since",
)


@dataclass(frozen=True)
class AlarmEvent:
    """One change of one alarm (or incident), as handed to subscribers.

    ``kind`` is one of raised, escalated, rtn, reactivated, acknowledged, shelved, unshelved,
    cleared (alarm events, ``payload`` is the alarm) or incident (``payload`` is the incident).
    ``notify`` is False for changes of a shelved alarm: consoles update, but do not annunciate.
    """

    kind: str
    alarm_id: int
    time: float
    payload: dict[str, Any]
    notify: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "alarm" if self.kind != "incident" else "incident",
            "kind": self.kind,
            "alarm_id": self.alarm_id,
            "time": _json(self.time),
            "notify": self.notify,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class AuditEntry:
    """One state change: who (``"system"`` for automatic), what, from which state to which."""

    alarm_id: int
    time: float
    user: str
    action: str
    from_state: str | None
    to_state: str
    comment: str = ""
    wall_time: float = math.nan
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_utc({k: _json(v) for k, v in asdict(self).items()}, ("time", "wall_time"))


@dataclass(frozen=True)
class RankedChannel:
    """A channel contributing to an incident; ``rank_score`` = peak level + earliness in [0, 1]."""

    channel: str
    alarm_id: int
    rank_score: float
    severity: str
    onset: float
    peak_score: float
    direction: str
    subsystem: str = ""


@dataclass
class Incident:
    """Alarms on related channels within the incident window, read as one event.

    ``grouping`` says why channels were put together: ``"subsystem"`` (the configured subsystem),
    or ``"correlation"`` once a channel of another subsystem joined because its recent values
    co-varied with a member's.
    """

    id: int
    subsystem: str
    first_time: float
    last_time: float
    alarm_ids: list[int] = field(default_factory=list)
    channels: list[RankedChannel] = field(default_factory=list)
    severity: str = "watch"
    explanation: str = ""
    active: bool = True
    grouping: str = "subsystem"

    def to_dict(self) -> dict[str, Any]:
        out = {k: _json(getattr(self, k)) for k in self.__dataclass_fields__}  # flat: no deep copy
        out["alarm_ids"] = list(self.alarm_ids)
        out["channels"] = [{k: _json(v) for k, v in vars(c).items()} for c in self.channels]
        return _with_utc(out, ("first_time", "last_time"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        """Inverse of :meth:`to_dict` (derived keys such as ``first_time_utc`` are ignored)."""
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["channels"] = [
            RankedChannel(**{k: (math.nan if v is None and k == "peak_score" else v) for k, v in c.items()})
            for c in data.get("channels", [])
        ]
        return cls(**data)


#: Alarm times also given as UTC clock times in :meth:`Alarm.to_dict` (``first_time_utc``...).
_ALARM_TIMES = ("first_time", "trigger_time", "peak_time", "last_time", "rtn_time", "acknowledged_at", "shelved_until")


def _with_utc(out: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``out`` with ``<name>_utc`` beside each Unix time: the API's clock times (numbers stay numbers)."""
    for name in names:
        out[f"{name}_utc"] = iso_time(out.get(name))
    return out


def _json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _fmt(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4g}"
