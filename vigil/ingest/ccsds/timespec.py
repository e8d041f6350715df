"""Which fields give a packet its time, and how they become seconds.

Real databases rarely have one ``AbsoluteTimeParameterType``: IMAP packets carry mission elapsed
time as ``SHCOARSE`` (+ ``SHFINE``) in every packet type, HIT names it ``SC_TICK`` per packet type,
JPSS counts milliseconds of day. :class:`TimeSpec` says what to use::

    time = epoch + scale * COARSE + fine_scale * FINE

``names`` may be unqualified (that parameter in every packet type that has it) or qualified
``CONTAINER.PARAM`` (one packet type). A packet type with no time field takes its time from the
reception order (see :mod:`vigil.ingest.ccsds.stream`).

>>> TimeSpec.from_strings(["SHCOARSE"], epoch="2010-01-01T00:00:00Z").epoch
1262304000.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from vigil.errors import ConfigError


@dataclass(frozen=True)
class TimeSpec:
    """Time fields and their conversion to seconds (see the module docstring)."""

    names: tuple[str, ...] = ()
    fine: tuple[str, ...] = ()
    scale: float = 1.0
    #: seconds per count of the fine field; ``None``: 2**-bits of the field (CCSDS CUC sub-seconds).
    fine_scale: float | None = None
    #: Unix seconds of time zero (0: times are the decoded seconds as they are).
    epoch: float = 0.0

    @classmethod
    def from_strings(
        cls,
        names: list[str] | tuple[str, ...] | None = None,
        fine: list[str] | tuple[str, ...] | None = None,
        scale: float | str | None = None,
        fine_scale: float | str | None = None,
        epoch: str | None = None,
    ) -> TimeSpec:
        """Build from command-line or source-spec strings; names may also be comma-separated."""
        return cls(
            names=_split(names),
            fine=_split(fine),
            scale=_positive(scale, "time-scale", 1.0),
            fine_scale=None if fine_scale in (None, "") else _positive(fine_scale, "time-fine-scale", 1.0),
            epoch=parse_epoch(epoch) if epoch else 0.0,
        )


def parse_epoch(text: str) -> float:
    """Unix seconds of an ISO 8601 time (UTC unless it says otherwise).

    >>> parse_epoch("1980-01-06T00:00:00Z")  # the GPS epoch
    315964800.0
    """
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"epoch {text!r} is not an ISO 8601 time, e.g. 2010-01-01T00:00:00Z", key="epoch") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _split(names) -> tuple[str, ...]:
    if not names:
        return ()
    if isinstance(names, str):
        names = [names]
    return tuple(part.strip() for item in names for part in item.split(",") if part.strip())


def _positive(value, key: str, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        out = float(value)
    except ValueError:
        raise ConfigError(f"{value!r} is not a number", key=key) from None
    if not (math.isfinite(out) and out > 0):
        raise ConfigError(f"must be a positive number, got {value!r}", key=key)
    return out
