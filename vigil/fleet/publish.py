"""``vigil fleet publish``: any Vigil source (file, TCP, UDP, CCSDS) into the fleet's telemetry stream.

Records are grouped by generation time, in arrival order: each group is one message on
``vigil.sc.<SC>.tm`` with the ID ``SC/rec/time/k`` (``k``: how many groups of that time this
publisher sent before), so the same pass received by two ground stations and published twice is
stored once (the stream drops a repeated ID within its de-duplication window). Lines the source
could not read travel with the next message, counted per spacecraft by its owner.

Many publishes are in flight at once. One whose acknowledgement does not come within
``ACK_WAIT_S`` (a slow server, a stream electing its leader) is sent again with its ID, retried
with backoff: the stream stores it once either way. Counts: ``stored``, ``duplicate`` (the stream
already held it: another ground station), ``resent`` (sent again after a lost acknowledgement) and
``duplicate_after_resend`` (of those, the ones the stream already held: most likely our own first
try). A resent message may be stored after messages sent later (the owner counts it out of order).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator

from vigil.fleet import protocol as p
from vigil.fleet.bus import Layout, Log, Retry, connect, is_transient
from vigil.ingest.records import BadRecord

#: Most publishes awaiting their acknowledgement at once.
IN_FLIGHT = 512
#: Seconds to wait for a publish's acknowledgement before sending it again.
ACK_WAIT_S = 10.0


def group_records(
    items: Iterable, live: bool = False
) -> Iterator[tuple[float, list[str], list[float], list, float | None]]:
    """Consecutive records of one time as ``(time, channels, values, bad, received)`` messages.

    >>> from vigil.ingest.records import Record
    >>> [g[:3] for g in group_records([Record(1.0, "a", 2.0), Record(1.0, "b", 3.0), Record(2.0, "a", 4.0)])]
    [(1.0, ['a', 'b'], [2.0, 3.0]), (2.0, ['a'], [4.0])]
    """
    t: float | None = None
    chans: list[str] = []
    vals: list[float] = []
    bad: list[tuple[str | None, str]] = []
    for item in items:
        if isinstance(item, BadRecord):
            bad.append((item.channel, str(item)))
            continue
        rt, c, v = item
        if t is not None and rt != t:
            yield t, chans, vals, bad, time.time() if live else None
            chans, vals, bad = [], [], []
        t = rt
        chans.append(c)
        vals.append(v)
    if t is not None:
        yield t, chans, vals, bad, time.time() if live else None


class Publisher:
    """Publishes telemetry messages of one spacecraft, many in flight; counts what the stream did."""

    def __init__(self, js, sc: str, retry: Retry | None = None) -> None:
        self.js, self.sc = js, p.check_spacecraft(sc)
        self.retry = retry or Retry(lambda _m: None)
        self.counts: Counter[str] = Counter()
        self._seen: Counter[float] = Counter()
        self._pending: list[tuple[asyncio.Future, bytes, dict]] = []

    async def send(self, t: float, channels: list[str], values: list[float], bad=(), received=None) -> None:
        if not math.isfinite(t):
            self.counts["bad_time"] += 1
            return
        k = self._seen[t]
        self._seen[t] += 1
        headers = {"Nats-Msg-Id": p.message_id(self.sc, "rec", t, k)}
        data = p.encode_tm(t, channels, values, received=received, bad=list(bad))
        fut = await self.retry(f"{self.sc}: publish", self.js.publish_async, p.tm_subject(self.sc), data,
                               headers=dict(headers))  # fmt: skip
        self._pending.append((fut, data, headers))
        self.counts["samples"] += len(values)
        if len(self._pending) >= IN_FLIGHT:
            await self._settle()

    async def _settle(self) -> None:
        for fut, data, headers in self._pending:
            try:
                ack = await asyncio.wait_for(fut, ACK_WAIT_S)  # on timeout the future is cancelled
            except Exception as err:
                if not is_transient(err):
                    raise
                self.counts["resent"] += 1
                ack = await self.retry(f"{self.sc}: publish {headers['Nats-Msg-Id']} again", self.js.publish,
                                       p.tm_subject(self.sc), data, headers=dict(headers))  # fmt: skip
                self.counts["duplicate_after_resend" if ack.duplicate else "stored"] += 1
                continue
            self.counts["duplicate" if ack.duplicate else "stored"] += 1
        self._pending = []

    async def flush(self) -> Counter[str]:
        await self._settle()
        return self.counts


async def publish_source(urls: list[str], sc: str, source, log: Log, live: bool, replicas: int = 3) -> Counter[str]:
    """Publish everything ``source`` yields (until it ends or is interrupted); returns the counts."""
    nc = await connect(urls, f"vigil-publish-{sc}", log)
    try:
        js = nc.jetstream(timeout=10)
        retry = Retry(log)
        layout = await Layout.ensure(js, replicas, retry)
        await layout.register(sc)
        pub = Publisher(js, sc, retry)
        batches = iter(source.batches())
        while True:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                break
            for t, chans, vals, bad, received in group_records(batch, live=live):
                await pub.send(t, chans, vals, bad, received)
        return await pub.flush()
    finally:
        source.close()
        await nc.drain()
