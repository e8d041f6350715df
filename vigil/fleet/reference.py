"""The single-process reference of a fleet run, and reading back what the fleet published.

:func:`reference` applies a spacecraft's stream, as stored, through one uninterrupted
:class:`~vigil.fleet.engine.SpacecraftEngine` (the same engine a one-process monitor runs);
:func:`summary` reduces changes to what must match: every audit entry (each transition, with
its times and user), the final row of each alarm and incident, and each command's result.
"""

from __future__ import annotations

import json
from typing import Any

from vigil.fleet import protocol as p
from vigil.fleet.engine import SpacecraftEngine


async def read_subject(js, stream: str, subject: str, timeout: float = 2.0) -> list[tuple[int, str, bytes, dict]]:
    """Every message of ``subject`` in ``stream``: ``(sequence, subject, data, headers)``."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    cfg = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, mem_storage=True,
                         num_replicas=1, inactive_threshold=30.0)  # fmt: skip
    sub = await js.pull_subscribe(subject, stream=stream, config=cfg)
    out = []
    try:
        while True:
            try:
                msgs = await sub.fetch(500, timeout=timeout)
            except TimeoutError:
                break
            out += [(m.metadata.sequence.stream, m.subject, m.data, dict(m.headers or {})) for m in msgs]
            if msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out


async def published_items(js, sc: str) -> list[dict[str, Any]]:
    """The changes on ``vigil.alarms.<SC>``, in order."""
    items = []
    for _seq, _subject, data, _headers in await read_subject(js, p.ALARM_STREAM, p.alarm_subject(sc)):
        items += json.loads(data)["items"]
    return items


def reference(messages: list[tuple[int, str, bytes]], sc: str, config, detector, identity: dict) -> list[dict]:
    """The changes an uninterrupted engine makes on ``messages`` (ending with an idle flush)."""
    engine = SpacecraftEngine(sc, config, detector, identity)
    engine.apply(messages)
    engine.idle()
    return [json.loads(p.encode(o)) for o in engine.store.outbox]


def summary(items: list[dict]) -> dict[str, Any]:
    """What must match between a fleet run and its reference (see the module docstring)."""
    alarms, incidents = {}, {}
    for o in items:
        if o["kind"] == "alarm":
            alarms[o["alarm"]["id"]] = o["alarm"]
        elif o["kind"] == "incident":
            incidents[o["incident"]["id"]] = o["incident"]
    return {
        "numbers": [o["n"] for o in items],
        "audit": [o["entry"] for o in items if o["kind"] == "audit"],
        "alarms": alarms,
        "incidents": incidents,
        "results": [o for o in items if o["kind"] == "result"],
    }
