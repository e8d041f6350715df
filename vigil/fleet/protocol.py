"""What travels over NATS: stream, subject and bucket names, message layouts and message IDs.

Streams (replicated over the cluster):

* ``VIGIL_IN``, subjects ``vigil.sc.<SC>.tm`` (telemetry) and ``vigil.sc.<SC>.cmd`` (operator
  verbs): one stream, so a spacecraft's telemetry and commands have one order, the stream
  sequence; the owner applies them in that order, and a replay applies them identically.
* ``VIGIL_ALARMS``, subjects ``vigil.alarms.<SC>``: what each spacecraft's owner changed
  (audit entries, alarm rows, command results), written by one owner at a time (each publish
  names the subject's last sequence it expects, so a stale owner's publish is refused).

Key-value buckets: ``VIGIL_LEASES`` (who owns each spacecraft, until when), ``VIGIL_WORKERS``
(live workers), ``VIGIL_CHECKPOINTS`` (each spacecraft's stream state), ``VIGIL_FLEET``
(spacecraft known and their status for the console).

Telemetry messages are JSON ``{"t": time, "c": [channel...], "v": [value...], "r": received
time or null (a replay), "bad": [[channel or null, message]...]}``: one generation time of one
packet (APID) or record group, de-duplicated by the message ID ``SC/APID/time/sequence``.

>>> tm_subject("SAT-01"), alarm_subject("SAT-01")
('vigil.sc.SAT-01.tm', 'vigil.alarms.SAT-01')
>>> message_id("SAT-01", "rec", 12.5, 0)
'SAT-01/rec/12.5/0'
>>> decode_tm(encode_tm(12.5, ["a", "b"], [1.0, float("nan")]))["v"]
[1.0, nan]
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

IN_STREAM = "VIGIL_IN"
ALARM_STREAM = "VIGIL_ALARMS"
LEASES = "VIGIL_LEASES"
WORKERS = "VIGIL_WORKERS"
CHECKPOINTS = "VIGIL_CHECKPOINTS"
FLEET = "VIGIL_FLEET"
#: Ground-station duplicates arriving within this window are dropped by the server (message ID).
DUPLICATE_WINDOW_S = 1200.0
#: Largest checkpoint value (bytes); see docs/fleet.md for sizes.
MAX_CHECKPOINT_BYTES = 8 * 1024 * 1024

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_spacecraft(name: str) -> str:
    """A spacecraft name usable in subjects and keys (letters, digits, ``-`` and ``_``).

    >>> check_spacecraft("SAT.1")
    Traceback (most recent call last):
    ...
    ValueError: spacecraft name 'SAT.1' must be 1-64 letters, digits, '-' or '_'
    """
    if not _NAME.match(name):
        raise ValueError(f"spacecraft name {name!r} must be 1-64 letters, digits, '-' or '_'")
    return name


def tm_subject(sc: str) -> str:
    return f"vigil.sc.{sc}.tm"


def cmd_subject(sc: str) -> str:
    return f"vigil.sc.{sc}.cmd"


def in_filter(sc: str) -> str:
    return f"vigil.sc.{sc}.*"


def alarm_subject(sc: str) -> str:
    return f"vigil.alarms.{sc}"


def spacecraft_of(subject: str) -> str:
    """``vigil.sc.SAT-01.tm`` -> ``SAT-01``."""
    return subject.split(".")[2]


def message_id(sc: str, apid: str | int, time: float, sequence: int) -> str:
    """The de-duplication ID of one telemetry message (a ground-station duplicate has the same)."""
    return f"{sc}/{apid}/{time!r}/{sequence}"


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def encode_tm(
    time: float,
    channels: list[str],
    values: list[float],
    received: float | None = None,
    bad: list[tuple[str | None, str]] | None = None,
) -> bytes:
    """One telemetry message; NaN/inf are sent as null and read back as NaN."""
    body: dict[str, Any] = {"t": time, "c": channels, "v": [_num(float(v)) for v in values], "r": received}
    if bad:
        body["bad"] = [list(b) for b in bad]
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def decode_tm(data: bytes) -> dict[str, Any]:
    """Read a telemetry message; raises ``ValueError`` naming what is wrong."""
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError("telemetry message is not a JSON object")
    t, c, v = body.get("t"), body.get("c"), body.get("v")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise ValueError(f"telemetry message time {t!r} is not a finite number")
    if not isinstance(c, list) or not isinstance(v, list) or len(c) != len(v):
        raise ValueError("telemetry message needs lists 'c' (channels) and 'v' (values) of one length")
    body["v"] = [math.nan if x is None else x for x in v]
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False, default=_jsonable).encode()


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")
