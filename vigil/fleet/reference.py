"""The single-process reference of a fleet run, and reading back what the fleet published.

:func:`reference` applies a spacecraft's stream, as stored, through one uninterrupted
:class:`~vigil.fleet.engine.SpacecraftEngine` (the same engine a one-process monitor runs);
:func:`summary` reduces changes to what must match: every audit entry (each transition, with
its times and user), the final row of each alarm and incident, and each command's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from vigil.fleet import protocol as p
from vigil.fleet.bus import Log, Retry, Unavailable, is_transient
from vigil.fleet.engine import SpacecraftEngine


async def read_subject(js, stream: str, subject: str, *, batch: int = 500, fetch_timeout: float = 2.0,
                       deadline_s: float = 120.0, log: Log | None = None) -> list[tuple[int, str, bytes, dict]]:  # fmt: skip
    """Every message of ``subject`` (a filter) in ``stream`` as ``(sequence, subject, data, headers)``.

    Reads as many messages as stream info counts on the subject when the read starts (a later
    message is not waited for), never fewer: a fetch that times out (a slow server) is made
    again, and a consumer that went away (its server restarted) or skipped a delivery is made
    again after the last message read. Raises :class:`~vigil.fleet.bus.Unavailable`, naming the
    subject and how far it got, if that takes longer than ``deadline_s``.
    """
    retry = Retry(log or (lambda _m: None), deadline_s=deadline_s)
    info = await retry(f"reading {subject}: stream info", js.stream_info, stream, subjects_filter=subject)
    expected = sum((info.state.subjects or {}).values())
    start, out, sub, cseq, misses = time.monotonic(), [], None, 0, 0
    try:
        while len(out) < expected:
            if time.monotonic() - start > deadline_s:
                raise Unavailable(f"reading {subject} from {stream}: {len(out)} of {expected} messages "
                                  f"after {deadline_s:g} s")  # fmt: skip
            if sub is None:
                after = out[-1][0] if out else 0
                sub, cseq = await retry(f"reading {subject}: consumer", _consumer, js, stream, subject, after + 1), 0
            try:
                msgs = await sub.fetch(batch, timeout=fetch_timeout)
            except Exception as err:
                if not is_transient(err):
                    raise
                msgs = []
            if not msgs:  # a slow server, or none yet: again (after a pause if it failed at once)
                misses += 1
                if misses % 3 == 0:  # three in a row: the consumer may have gone with its server
                    sub = await _close(sub)
                await asyncio.sleep(min(0.05 * misses, 1.0))
                continue
            misses = 0
            if msgs[0].metadata.sequence.consumer != cseq + 1:  # a delivery was lost: start after the last read
                sub = await _close(sub)
                continue
            cseq = msgs[-1].metadata.sequence.consumer
            after = out[-1][0] if out else 0
            out += [(m.metadata.sequence.stream, m.subject, m.data, dict(m.headers or {}))
                    for m in msgs if m.metadata.sequence.stream > after]  # fmt: skip
    finally:
        if sub is not None:
            await _close(sub)
    return out[:expected]


async def _consumer(js, stream: str, subject: str, start: int):
    """An unacknowledged pull consumer of ``subject`` from stream sequence ``start``."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                         ack_policy=AckPolicy.NONE, mem_storage=True, num_replicas=1,
                         inactive_threshold=30.0)  # fmt: skip
    return await js.pull_subscribe(subject, stream=stream, config=cfg)


async def _close(sub) -> None:
    with contextlib.suppress(Exception):  # an ephemeral consumer goes away by itself once inactive
        await sub.unsubscribe()


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
