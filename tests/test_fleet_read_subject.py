"""``read_subject`` reads a subject whole on a slow server: more messages than one fetch, fetches
that time out (the server answering after the client gave up), a consumer that disappears.

One real ``nats-server`` (single node, a temporary folder); skipped when it or nats-py is missing.
"""

from __future__ import annotations

import asyncio

import pytest

from tests import fleet_support as fs

N_A, N_B = 1234, 300  # messages on t.a and, interleaved, on t.b


class SlowSub:
    """A pull subscription whose every ``slow_every``-th fetch gives up after 1 ms (the server's
    answer then arrives after the client stopped waiting); ``drop_after`` fetches in, its
    consumer is deleted on the server (as when the server holding it restarts)."""

    def __init__(self, js, sub, slow_every: int, drop_after: int | None) -> None:
        self.js, self.sub, self.slow_every, self.drop_after = js, sub, slow_every, drop_after
        self.calls = 0

    async def fetch(self, batch: int, timeout: float):
        self.calls += 1
        if self.drop_after is not None and self.calls == self.drop_after:
            info = await self.sub.consumer_info()
            await self.js.delete_consumer(info.stream_name, info.name)
        if self.slow_every and self.calls % self.slow_every == 0:
            return await self.sub.fetch(batch, timeout=0.001)
        return await self.sub.fetch(batch, timeout=timeout)

    async def unsubscribe(self) -> None:
        await self.sub.unsubscribe()


class SlowJS:
    """A JetStream context whose pull subscriptions are :class:`SlowSub` (counted in ``subs``)."""

    def __init__(self, js, slow_every: int = 2, drop_after: int | None = None, always_timeout: bool = False) -> None:
        self.js, self.slow_every, self.drop_after, self.always_timeout = js, slow_every, drop_after, always_timeout
        self.subs: list[SlowSub] = []

    def __getattr__(self, name):
        return getattr(self.js, name)

    async def pull_subscribe(self, *args, **kwargs):
        sub = SlowSub(self.js, await self.js.pull_subscribe(*args, **kwargs), self.slow_every,
                      self.drop_after if not self.subs else None)  # fmt: skip
        if self.always_timeout:
            sub.fetch = _never
        self.subs.append(sub)
        return sub


async def _never(batch: int, timeout: float):
    import nats.errors

    await asyncio.sleep(timeout)
    raise nats.errors.TimeoutError


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fs.need_nats()
    from vigil.fleet.cluster import LocalCluster

    c = LocalCluster(1, folder=tmp_path_factory.mktemp("nats1")).start()
    c.wait_ready()
    fs.run(_fill(c.urls))
    yield c
    c.stop()


async def _fill(urls) -> None:
    nc, js = await fs.js_of(urls)
    try:
        await js.add_stream(name="T", subjects=["t.*"])
        for i in range(N_A):
            await js.publish("t.a", str(i).encode(), headers={"k": str(i)})
            if i % 4 == 0 and i // 4 < N_B:
                await js.publish("t.b", b"other")
    finally:
        await nc.close()


async def _read(urls, subject: str, **kw):
    from vigil.fleet.reference import read_subject

    nc, js = await fs.js_of(urls)
    try:
        slow = SlowJS(js, **{k: kw.pop(k) for k in ("slow_every", "drop_after", "always_timeout") if k in kw})
        return await read_subject(slow, "T", subject, **kw), slow
    finally:
        await nc.close()


def test_read_subject_reads_every_message_through_timeouts_in_many_fetches(server):
    got, slow = fs.run(_read(server.urls, "t.a", batch=100, fetch_timeout=0.5, slow_every=2))
    assert [int(data) for _seq, _subj, data, _h in got] == list(range(N_A))
    assert [h["k"] for *_rest, h in got] == [str(i) for i in range(N_A)]
    assert all(subj == "t.a" for _seq, subj, _d, _h in got)
    seqs = [seq for seq, *_rest in got]
    assert seqs == sorted(set(seqs))
    assert slow.subs[0].calls > N_A // 100  # it did take many fetches, every other one timing out


def test_read_subject_starts_again_after_the_last_message_when_its_consumer_disappears(server):
    got, slow = fs.run(_read(server.urls, "t.a", batch=100, fetch_timeout=0.3, slow_every=0, drop_after=4))
    assert [int(data) for _seq, _subj, data, _h in got] == list(range(N_A))
    assert len(slow.subs) >= 2  # a second consumer, from the message after the last one read


def test_read_subject_of_an_empty_subject_returns_at_once(server):
    got, slow = fs.run(_read(server.urls, "t.none", fetch_timeout=0.3))
    assert got == [] and slow.subs == []


def test_read_subject_that_never_gets_its_messages_says_which_subject(server):
    from vigil.fleet.bus import Unavailable

    with pytest.raises(Unavailable, match=r"reading t\.b from T: 0 of 300 messages after 1\.5 s"):
        fs.run(_read(server.urls, "t.b", fetch_timeout=0.2, deadline_s=1.5, always_timeout=True))
