"""A write whose answer is lost was applied anyway: the retry must recognise it, never apply it twice.

Each test lets a real ``nats-server`` (single node) store a write and then "loses" the answer (the
client sees ``nats: timeout``, as from a busy server): the worker's alarm publish (expected
sequence + message ID), its checkpoint write and its lease renewal (expected revision), and a
telemetry publish whose acknowledgement never comes. Skipped when the server or nats-py is missing.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests import fleet_support as fs
from vigil.fleet import protocol as p
from vigil.fleet.constellation import Constellation
from vigil.fleet.engine import SpacecraftEngine

SC = "SAT-00"


class LoseAnswers:
    """A JetStream context whose first ``times`` publishes on subjects containing ``match`` are made
    and then answered with a timeout; ``strip_id`` also drops the message ID of a publish made
    again (so the stream cannot tell the repeat by its ID, only by the expected sequence)."""

    def __init__(self, js, match: str, times: int = 1, strip_id: bool = False) -> None:
        self.js, self.match, self.times, self.strip_id = js, match, times, strip_id
        self.lost, self.sent = 0, 0

    def __getattr__(self, name):
        return getattr(self.js, name)

    async def publish(self, subject, payload=b"", timeout=None, stream=None, headers=None, **kw):
        import nats.errors

        if self.match in subject:
            self.sent += 1
            if self.strip_id and self.lost and headers:
                headers = {k: v for k, v in headers.items() if k != "Nats-Msg-Id"}
        ack = await self.js.publish(subject, payload, timeout=timeout, stream=stream, headers=headers, **kw)
        if self.match in subject and self.lost < self.times:
            self.lost += 1
            raise nats.errors.TimeoutError
        return ack


@pytest.fixture
def server(tmp_path_factory):  # a fresh server per test: stream contents start empty
    fs.need_nats()
    from vigil.fleet.cluster import LocalCluster

    c = LocalCluster(1, folder=tmp_path_factory.mktemp("nats1")).start()
    c.wait_ready()
    yield c
    c.stop()


def _engine(n_channels: int = 40, duration_s: int = 200) -> tuple[SpacecraftEngine, object, object, dict]:
    c = Constellation(n_spacecraft=1, n_channels=n_channels, duration_s=duration_s, seed=5, excursions_per_spacecraft=6)
    config = c.config()
    det, ident = fs.limits_detector(config), fs.identity_of(config)
    engine = SpacecraftEngine(SC, config, det, ident)
    engine.apply([(i + 1, p.tm_subject(SC), p.encode_tm(t, ch, v)) for i, (t, ch, v) in enumerate(c.frames(SC))])
    return engine, config, det, ident


async def _worker(urls, lossy_match: str, **lossy):
    from vigil.fleet.bus import Layout
    from vigil.fleet.worker import Worker, WorkerOptions

    nc, js = await fs.js_of(urls)
    engine, config, det, ident = _engine()
    logs: list[str] = []
    w = Worker(urls, config, det, ident, name="T", options=WorkerOptions(replicas=1), log=logs.append)
    w.nc, w.js = nc, LoseAnswers(js, lossy_match, **lossy)
    w.layout = await Layout.ensure(js, 1)
    w.leases = w.layout.leases
    for kv in (w.layout.checkpoints, w.layout.leases):
        kv._js = w.js  # the buckets' writes go through the lossy context too
    return w, engine, nc, js, logs


@pytest.mark.parametrize("strip_id", [False, True], ids=["recognised-by-message-id", "recognised-by-reading-back"])
def test_alarm_publish_whose_answer_was_lost_is_not_published_twice(server, strip_id, monkeypatch):
    from vigil.fleet import worker as W
    from vigil.fleet.reference import published_items, summary

    monkeypatch.setattr(W, "CHUNK", 10)  # several messages: the lost answers are not the last publish

    async def main():
        w, engine, nc, js, logs = await _worker(server.urls, "vigil.alarms.", times=2, strip_id=strip_id)
        try:
            expected = [json.loads(p.encode(o)) for o in engine.store.outbox]
            assert len(expected) > 30
            seq, out_last = await w._publish(SC, engine, 0, 0)
            got = await published_items(js, SC)
            last = await js.get_last_msg(p.ALARM_STREAM, p.alarm_subject(SC))
            return w, engine, expected, got, seq, out_last, last, logs
        finally:
            await nc.close()

    w, engine, expected, got, seq, out_last, last, logs = fs.run(main())
    assert w.js.lost == 2 and w.js.sent > 2  # two answers lost, each publish made again
    assert [o["n"] for o in got] == list(range(1, len(expected) + 1))  # none twice, none lost
    assert summary(got) == summary(expected)
    assert (seq, out_last) == (last.seq, expected[-1]["n"]) and engine.store.outbox == []
    assert w.retry.retries == 2 and sum("alarm publish: TimeoutError" in m for m in logs) == 2


def test_checkpoint_write_whose_answer_was_lost_is_recognised_and_another_owners_is_not(server):
    from vigil.fleet.worker import Lost, _Owned

    async def main():
        w, engine, nc, js, logs = await _worker(server.urls, "VIGIL_CHECKPOINTS", times=1)
        # A restored engine: its state pickles the same after another restore, so the other owner's
        # write below holds the same state as ours, told apart only by each write's own token.
        engine = SpacecraftEngine.restore(engine.snapshot(), engine.manager.config, w.detector, w.identity)
        try:
            w.js.times = 0  # the takeover's write is answered
            _taken, rev = await w._take(SC)
            w.js.times = 1  # the next write is applied, its answer lost
            own = _Owned(lease_rev=0, renewed=time.monotonic())
            rev2 = await w._checkpoint(SC, own, engine, rev, 1, engine.applied_seq)
            stored = await w.layout.checkpoints.get(SC)
            rev3 = await w._checkpoint(SC, own, engine, rev2, engine.applied_seq + 1, engine.applied_seq)
            # Another owner writes; our write at the old revision is refused and not taken for ours.
            other = SpacecraftEngine.restore(stored.value, engine.manager.config, w.detector, w.identity)
            await w.layout.checkpoints.update(SC, other.snapshot("other/1"), last=rev3)
            with pytest.raises(Lost, match="another owner"):
                await w._checkpoint(SC, own, engine, rev3, engine.applied_seq + 1, engine.applied_seq)
            return rev, rev2, rev3, stored, logs
        finally:
            await nc.close()

    rev, rev2, rev3, stored, logs = fs.run(main())
    assert rev2 == stored.revision > rev  # the lost write's revision, found by reading it back
    assert rev3 > rev2  # and the next write at that revision is accepted
    assert any("checkpoint write: TimeoutError" in m for m in logs)


def test_lease_renewal_whose_answer_was_lost_keeps_the_lease(server):
    from vigil.fleet.worker import _Owned

    async def main():
        w, engine, nc, js, logs = await _worker(server.urls, "VIGIL_LEASES", times=0)
        try:
            rev = await w.leases.create(SC, json.dumps({"owner": "T", "until": time.time() + 10}).encode())
            own = w.owned[SC] = _Owned(lease_rev=rev, renewed=time.monotonic())
            w.js.times = 1  # the renewal is applied, its answer lost: tried again at the next tick
            await w._step(f"{SC}: lease renewal", w._renew, SC)
            assert own.lease_rev == rev and SC in w.owned
            await w._renew(SC)  # next tick: refused at the old revision, read back: still ours
            entry = await w.leases.get(SC)
            return rev, own, entry, w, logs
        finally:
            await nc.close()

    rev, own, entry, w, logs = fs.run(main())
    assert SC in w.owned and own.lease_rev == entry.revision == rev + 2
    assert json.loads(entry.value)["owner"] == "T"
    assert w.retry.retries == 1 and any("lease renewal: TimeoutError" in m for m in logs)
    assert not any("dropping" in m for m in logs)


def test_telemetry_publish_without_acknowledgement_is_sent_again_and_stored_once(server, monkeypatch):
    from vigil.fleet import publish as P
    from vigil.fleet.reference import read_subject

    monkeypatch.setattr(P, "ACK_WAIT_S", 0.3)

    class NoAck:
        """publish_async whose 3rd and 7th futures never complete (the acknowledgement is lost)."""

        def __init__(self, js) -> None:
            self.js, self.n = js, 0

        def __getattr__(self, name):
            return getattr(self.js, name)

        async def publish_async(self, subject, payload=b"", headers=None, **kw):
            self.n += 1
            fut = await self.js.publish_async(subject, payload, headers=headers, **kw)
            return asyncio.get_running_loop().create_future() if self.n in (3, 7) else fut

    async def main():
        from vigil.fleet.bus import Layout

        nc, js = await fs.js_of(server.urls)
        try:
            await Layout.ensure(js, 1)
            pub = P.Publisher(NoAck(js), SC)
            for t in range(10):
                await pub.send(float(t), ["a"], [float(t)])
            counts = await pub.flush()
            return counts, await read_subject(js, p.IN_STREAM, p.in_filter(SC))
        finally:
            await nc.close()

    counts, stored = fs.run(main())
    assert counts["resent"] == 2 and counts["stored"] + counts["duplicate_after_resend"] == 10
    assert counts["duplicate"] == 0
    assert sorted(p.decode_tm(d)["t"] for _s, _subj, d, _h in stored) == [float(t) for t in range(10)]
