"""``vigil fleet worker``: own whole spacecraft through leases, apply their streams, fail over.

A worker heartbeats in ``VIGIL_WORKERS``; each spacecraft's owner is chosen among the live
workers by rendezvous hashing (a join or leave moves only the spacecraft it must). Owning a
spacecraft takes a lease in ``VIGIL_LEASES`` (create, or update at the expected revision once the
previous holder's ``until`` has passed) that the owner renews every ``lease_s / 4``.

The owner, per batch of its spacecraft's messages (telemetry and operator commands, in stream
order): applies them (:class:`~vigil.fleet.engine.SpacecraftEngine`), writes the checkpoint with
the applied stream sequence (an update at the checkpoint's expected revision: a stale owner's
write is refused, and that owner drops the spacecraft; with ``checkpoint_every_s`` at most that
often: replay is exact, so a longer interval only costs replay at a takeover), then publishes the outbox to
``vigil.alarms.<SC>`` (each publish names the subject's last sequence it expects, and carries
``Vigil-Out-Last``, the last change number it holds; a new owner skips changes already there).
So a crash anywhere (mid-batch, between checkpoint and publish) loses nothing and repeats nothing.

A slow or briefly unavailable NATS never stops the worker: each request is retried
(:class:`~vigil.fleet.bus.Retry`, counted in ``retry.retries`` and logged), and a write whose answer
was lost is recognised when made again: the lease read back names this worker, the checkpoint read
back is this write's bytes (each carries its own token), the alarm publish is a duplicate of its
message ID or its chunk's number is already on the subject.

``crash`` (fault injection for the failover test): ``"mid_batch:N"`` or ``"after_checkpoint:N"``
SIGKILLs the worker at that point of its N-th batch (or the first later one that gets there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from vigil.fleet import protocol as p
from vigil.fleet.bus import Layout, Log, Mirror, Retry, connect, is_transient
from vigil.fleet.engine import SpacecraftEngine

#: JetStream's error codes for a write refused at its expected sequence (a number, or zero: "none yet").
WRONG_LAST_SEQUENCE = (10071, 10164)
#: Most changes in one alarm-stream message.
CHUNK = 200


class Lost(Exception):
    """This worker no longer owns the spacecraft (another took it over)."""


@dataclass
class WorkerOptions:
    lease_s: float = 10.0
    batch: int = 100
    checkpoint_every_s: float = 0.0  # 0: after every batch
    idle_flush_s: float = 1.0
    status_every_s: float = 1.0
    replicas: int = 3
    commit_log: Path | None = None
    crash: str | None = None


@dataclass
class _Owned:
    lease_rev: int
    renewed: float  # monotonic time of the last renewal
    task: asyncio.Task | None = None
    release: bool = False
    batches: int = 0
    timings: list = field(default_factory=list)


def rendezvous(sc: str, workers: list[str]) -> str | None:
    """The worker that should own ``sc``: highest hash of (worker, spacecraft).

    >>> rendezvous("SAT-01", ["a", "b", "c"]) == rendezvous("SAT-01", ["c", "b", "a"])
    True
    """
    best = None
    for w in workers:
        h = hashlib.blake2b(f"{w}/{sc}".encode(), digest_size=8).digest()
        if best is None or h > best[0]:
            best = (h, w)
    return None if best is None else best[1]


class Worker:
    """One fleet worker; ``await run()`` until ``stop`` is set (see the module docstring)."""

    def __init__(self, urls: list[str], config, detector, identity: dict, name: str | None = None,
                 options: WorkerOptions | None = None, log: Log = print) -> None:  # fmt: skip
        self.urls, self.config, self.detector, self.identity = urls, config, detector, dict(identity)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.opt = options or WorkerOptions()
        self.log = lambda msg: log(f"[{self.name}] {msg}")
        self.owned: dict[str, _Owned] = {}
        self.errors = 0
        self.retry = Retry(self.log)  # counts the retries of transient NATS failures (.retries)
        self._batches = 0
        self._writes = 0
        self._crash = _parse_crash(self.opt.crash)
        self._commit_fd = None

    # -- the control loop -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        connecting = asyncio.create_task(connect(self.urls, self.name, self.log))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([connecting, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not connecting.done():  # stopped before NATS could be reached
            connecting.cancel()
            return
        stopping.cancel()
        nc = connecting.result()
        self.nc, self.js = nc, nc.jetstream(timeout=5)
        while True:
            try:
                self.layout = await Layout.ensure(self.js, self.opt.replicas, self.retry)
                # Lease requests answer within a quarter lease or are tried again at the next tick:
                # one slow answer must not hold back the renewal of every other lease.
                lease_js = nc.jetstream(timeout=min(5.0, max(0.5, self.opt.lease_s / 4)))
                self.leases = await self.retry("bucket leases", lease_js.key_value, self.layout.leases._name)
                self.heartbeats = await self.retry("bucket workers", lease_js.key_value, self.layout.workers._name)
                break
            except Exception as err:  # noqa: BLE001 - a cluster electing its leader: say so, retry
                self.log(f"cannot set up streams yet: {type(err).__name__}: {err}; retrying")
                await asyncio.sleep(1.0)
        self.workers = Mirror(self.layout.workers, self.log).start()
        self.fleet = Mirror(self.layout.fleet, self.log).start()
        self.log(
            f"connected to {nc.connected_url.netloc if nc.connected_url else self.urls}; lease {self.opt.lease_s} s"
        )
        try:
            while not stop.is_set():
                try:
                    await self._tick()
                except Exception as err:  # noqa: BLE001 - NATS unavailable for a moment: say so, go on
                    self.log(f"control step failed: {type(err).__name__}: {err}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.opt.lease_s / 4)
        finally:
            await self._shutdown()

    async def _tick(self) -> None:
        """Heartbeat, renew every lease, claim what this worker should own: each step on its own, a
        transient failure counted and logged and the step tried again at the next tick."""
        until = time.time() + self.opt.lease_s
        await self._step("heartbeat", self.heartbeats.put, self.name, json.dumps({"until": until}).encode())
        await asyncio.gather(*(self._step(f"{sc}: lease renewal", self._renew, sc) for sc in list(self.owned)))
        now = time.time()
        live = sorted(w for w, v in self.workers.values.items() if v.get("until", 0) > now) or [self.name]
        if self.name not in live:
            live = sorted({*live, self.name})
        known = sorted(k.split(".", 1)[1] for k in self.fleet.values if k.startswith("known."))
        for sc in known:
            want = rendezvous(sc, live)
            if want == self.name and sc not in self.owned:
                await self._step(f"{sc}: claim", self._claim, sc)
            elif want != self.name and sc in self.owned:
                self.owned[sc].release = True  # handed over at the end of the current batch

    async def _step(self, what: str, fn, *args) -> None:
        try:
            await fn(*args)
        except Exception as err:  # noqa: BLE001 - NATS unavailable for a moment: say so, go on
            if is_transient(err):
                self.retry.retries += 1
            else:
                self.errors += 1
            self.log(f"{what}: {type(err).__name__}: {err}; again at the next tick")

    async def _renew(self, sc: str) -> None:
        """Renew at the lease's revision. Refused: read it back; still ours (a renewal whose answer
        was lost went through) is renewed at its revision, another worker's means dropping it."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        own = self.owned.get(sc)
        if own is None:
            return
        started = time.monotonic()
        value = json.dumps({"owner": self.name, "until": time.time() + self.opt.lease_s}).encode()
        try:
            own.lease_rev = await self.leases.update(sc, value, last=own.lease_rev)
        except KeyWrongLastSequenceError:
            try:
                entry = await self.leases.get(sc)
            except KeyNotFoundError:
                entry = None
            if entry is None or not entry.value or json.loads(entry.value).get("owner") != self.name:
                self.log(f"{sc}: lease taken over by another worker; dropping it")
                self._drop(sc)
                return
            own.lease_rev = await self.leases.update(sc, value, last=entry.revision)
        if self.owned.get(sc) is own:
            own.renewed = started

    async def _claim(self, sc: str) -> None:
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        value = json.dumps({"owner": self.name, "until": time.time() + self.opt.lease_s}).encode()
        started = time.monotonic()
        try:
            try:
                entry = await self.leases.get(sc)
            except KeyNotFoundError:
                entry = None
            if entry is None or not entry.value:
                rev = await self.leases.create(sc, value)
            else:
                held = json.loads(entry.value)  # held by this worker: a claim whose answer was lost
                if held.get("owner") != self.name and held.get("until", 0) > time.time():
                    return  # still leased to another worker
                rev = await self.leases.update(sc, value, last=entry.revision)
        except KeyWrongLastSequenceError:
            return  # another worker claimed it first (or our lost claim did: seen at the next tick)
        own = _Owned(lease_rev=rev, renewed=started)
        self.owned[sc] = own
        own.task = asyncio.create_task(self._own(sc, own))

    def _drop(self, sc: str) -> None:
        own = self.owned.pop(sc, None)
        if own is not None and own.task is not None and own.task is not asyncio.current_task():
            own.task.cancel()

    def _lease_valid(self, own: _Owned) -> bool:
        return time.monotonic() - own.renewed < 0.75 * self.opt.lease_s

    # -- owning one spacecraft --------------------------------------------------------------------
    async def _own(self, sc: str, own: _Owned) -> None:
        sub = None
        try:
            engine, ck_rev = await self._take(sc)
            self.log(f"{sc}: owned from stream sequence {engine.applied_seq + 1}")
            alarm_seq, out_last = await self._last_published(sc)
            alarm_seq, out_last = await self._publish(sc, engine, alarm_seq, out_last)
            cseq, caught_up, idle_since, last_status, misses = 0, False, time.monotonic(), 0.0, 0
            ck_first, ck_at = engine.applied_seq + 1, time.monotonic()
            while not own.release:
                if sub is None:
                    sub, cseq = await self._subscribe(sc, engine.applied_seq + 1), 0
                try:
                    msgs = await sub.fetch(self.opt.batch, timeout=1.0)
                    if not msgs:
                        raise TimeoutError
                except TimeoutError:
                    if not caught_up:  # a slow server (its late answer comes with the next fetch), or
                        misses += 1  # three in a row: the consumer may be on a server that went away
                        if misses % 3 == 0:
                            sub = await self._unsubscribe(sub)
                        continue
                    if engine.monitor.counters()["pending"] and time.monotonic() - idle_since > self.opt.idle_flush_s:
                        engine.idle()
                        ck_rev = await self._checkpoint(sc, own, engine, ck_rev, ck_first, engine.applied_seq)
                        ck_first, ck_at = engine.applied_seq + 1, time.monotonic()
                        alarm_seq, out_last = await self._publish(sc, engine, alarm_seq, out_last)
                        await self._status(sc, engine)
                    continue
                except Exception as err:  # noqa: BLE001 - consumer lost with a server: start it again
                    self.log(f"{sc}: fetch failed ({type(err).__name__}: {err}); resubscribing")
                    sub = await self._unsubscribe(sub)
                    await asyncio.sleep(0.5)
                    continue
                if msgs[0].metadata.sequence.consumer != cseq + 1:  # a delivery was lost: start again
                    sub = await self._unsubscribe(sub)
                    continue
                cseq, misses = msgs[-1].metadata.sequence.consumer, 0
                caught_up = msgs[-1].metadata.num_pending == 0
                idle_since = time.monotonic()
                batch = [(m.metadata.sequence.stream, m.subject, m.data) for m in msgs]
                engine.apply(batch)
                self._batches += 1
                nth = self._batches
                self._maybe_crash("mid_batch", nth)
                if time.monotonic() - ck_at >= self.opt.checkpoint_every_s:
                    ck_rev = await self._checkpoint(sc, own, engine, ck_rev, ck_first, engine.applied_seq)
                    ck_first, ck_at = engine.applied_seq + 1, time.monotonic()
                    self._maybe_crash("after_checkpoint", nth)
                alarm_seq, out_last = await self._publish(sc, engine, alarm_seq, out_last)
                if caught_up or time.monotonic() - last_status > self.opt.status_every_s:
                    last_status = time.monotonic()
                    await self._status(sc, engine)
            if ck_first <= engine.applied_seq:  # applied since the last checkpoint: write it before handing over
                ck_rev = await self._checkpoint(sc, own, engine, ck_rev, ck_first, engine.applied_seq)
            await self._status(sc, engine)
            await self._release_lease(sc, own)
            self.log(f"{sc}: handed over at stream sequence {engine.applied_seq}")
        except Lost as err:
            self.log(f"{sc}: {err}; dropping it")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - one spacecraft's failure never stops the worker
            self.errors += 1
            self.log(f"{sc}: stopped on {type(err).__name__}: {err}; it will be claimed again")
        finally:
            if sub is not None:
                await self._unsubscribe(sub)
            if self.owned.get(sc) is own:
                self.owned.pop(sc, None)

    def _writer(self) -> str:
        """A token unique to one checkpoint write of this worker (see ``SpacecraftEngine.snapshot``)."""
        self._writes += 1
        return f"{self.name}/{os.getpid()}/{self._writes}"

    async def _take(self, sc: str) -> tuple[SpacecraftEngine, int]:
        """Restore the spacecraft's checkpoint and make it ours (a write at its revision)."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        for _ in range(20):
            try:
                entry = await self.retry(f"{sc}: reading the checkpoint", self.layout.checkpoints.get, sc)
            except KeyNotFoundError:
                entry = None
            if entry is None or not entry.value:
                engine = SpacecraftEngine(sc, self.config, self.detector, self.identity)
            else:
                engine = SpacecraftEngine.restore(entry.value, self.config, self.detector, self.identity)
            blob = engine.snapshot(self._writer())
            try:  # a retried write that the lost try already made is refused: read again, write again
                if entry is None:
                    rev = await self.retry(f"{sc}: taking the checkpoint", self.layout.checkpoints.create, sc, blob)
                else:
                    rev = await self.retry(f"{sc}: taking the checkpoint", self.layout.checkpoints.update, sc,
                                           blob, last=entry.revision)  # fmt: skip
                return engine, rev
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0.2)  # the previous owner wrote meanwhile: read it again
        raise Lost("the checkpoint keeps changing under a takeover")

    async def _checkpoint(self, sc: str, own: _Owned, engine, rev: int, first: int, last: int) -> int:
        """Write the checkpoint at its expected revision. Refused: read it back; our own bytes (a
        write whose answer was lost went through) are ours, anything else is another owner's."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        if not self._lease_valid(own):
            raise Lost("lease not renewed in time (stalled?)")
        blob = engine.snapshot(self._writer())
        try:
            rev = await self.retry(f"{sc}: checkpoint write", self.layout.checkpoints.update, sc, blob, last=rev)
        except KeyWrongLastSequenceError:
            try:
                entry = await self.retry(f"{sc}: reading the checkpoint back", self.layout.checkpoints.get, sc)
            except KeyNotFoundError:
                entry = None
            if entry is None or entry.value != blob:
                raise Lost("checkpoint written by another owner") from None
            rev = entry.revision
        self._log_commit(sc, rev, first, last)
        return rev

    async def _release_lease(self, sc: str, own: _Owned) -> None:
        """Delete the lease at its revision (refused: a retried delete that went through, or taken)."""
        from nats.js.errors import APIError

        try:
            await self.retry(f"{sc}: releasing the lease", self.leases.delete, sc, last=own.lease_rev)
        except APIError as err:
            if err.err_code not in WRONG_LAST_SEQUENCE:  # KV delete does not translate this error
                raise

    async def _last_published(self, sc: str) -> tuple[int, int]:
        """The alarm subject's last sequence and the last change number on it (0, 0: none yet)."""
        from nats.js.errors import NotFoundError

        try:
            msg = await self.retry(f"{sc}: reading the alarm stream", self.js.get_last_msg, p.ALARM_STREAM,
                                   p.alarm_subject(sc))  # fmt: skip
        except NotFoundError:
            return 0, 0
        return msg.seq, int((msg.headers or {}).get("Vigil-Out-Last", 0))

    async def _publish(self, sc: str, engine, seq: int, out_last: int) -> tuple[int, int]:
        """Publish the outbox changes after ``out_last``; returns the new (sequence, last change).

        Each publish expects the subject's last sequence ``seq`` and carries a message ID: a retry
        after a lost answer is either recognised as a duplicate by the stream (its ack names the
        stored sequence) or refused at the expected sequence, and then read back: the subject's
        last change number at or past this chunk's means it is there (ours, or a later owner's)."""
        from nats.js.errors import APIError

        items = [o for o in engine.store.outbox if o["n"] > out_last]
        for k in range(0, len(items), CHUNK):
            chunk = items[k : k + CHUNK]
            first, last = chunk[0]["n"], chunk[-1]["n"]
            headers = {"Nats-Msg-Id": f"{sc}:{first}-{last}", "Nats-Expected-Last-Subject-Sequence": str(seq),
                       "Vigil-Out-Last": str(last)}  # fmt: skip
            body = p.encode({"sc": sc, "owner": self.name, "items": chunk})
            try:
                ack = await self.retry(f"{sc}: alarm publish", self.js.publish, p.alarm_subject(sc), body,
                                       headers=headers)  # fmt: skip
                seq = ack.seq
            except APIError as err:
                if err.err_code not in WRONG_LAST_SEQUENCE:
                    raise
                seq_now, out_now = await self._last_published(sc)
                if out_now < last:
                    raise Lost("alarm stream written by another owner") from None
                seq = seq_now  # ours already (a reply lost) or a later owner's: nothing to send
            out_last = last
        engine.store.published(out_last)
        return seq, out_last

    async def _subscribe(self, sc: str, start: int):
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        cfg = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start, ack_policy=AckPolicy.NONE,
            inactive_threshold=max(30.0, 3 * self.opt.lease_s), mem_storage=True, num_replicas=1,
        )  # fmt: skip
        return await self.retry(f"{sc}: consumer", self.js.pull_subscribe, p.in_filter(sc), stream=p.IN_STREAM,
                                config=cfg)  # fmt: skip

    async def _unsubscribe(self, sub) -> None:
        with contextlib.suppress(Exception):  # the consumer goes away by itself when inactive
            await sub.unsubscribe()
        return None

    async def _status(self, sc: str, engine) -> None:
        body = {"owner": self.name, "time": time.time(), **engine.status()}
        try:
            await self.layout.fleet.put(f"status.{sc}", p.encode(body))
        except Exception as err:  # noqa: BLE001 - the console's view lags; the alarms do not
            self.log(f"{sc}: status not written: {type(err).__name__}: {err}")

    # -- test hooks and shutdown ------------------------------------------------------------------
    def _log_commit(self, sc: str, rev: int, first: int, last: int) -> None:
        if self.opt.commit_log is None:
            return
        if self._commit_fd is None:
            self._commit_fd = os.open(self.opt.commit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = json.dumps({"sc": sc, "owner": self.name, "rev": rev, "first": first, "last": last,
                           "mono": time.monotonic()})  # fmt: skip
        os.write(self._commit_fd, (line + "\n").encode())

    def _maybe_crash(self, point: str, nth: int) -> None:
        if self._crash and self._crash[0] == point and nth >= self._crash[1]:
            os.kill(os.getpid(), signal.SIGKILL)

    async def _shutdown(self) -> None:
        for own in list(self.owned.values()):
            own.release = True
        tasks = [o.task for o in self.owned.values() if o.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.opt.lease_s)
        self.workers.stop()
        self.fleet.stop()
        with contextlib.suppress(Exception):  # its heartbeat expires anyway
            await self.layout.workers.delete(self.name)
        await self.nc.drain()


def _parse_crash(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    point, _, n = spec.partition(":")
    if point not in ("mid_batch", "after_checkpoint") or not n.isdigit():
        raise ValueError(f"crash must be mid_batch:N or after_checkpoint:N, got {spec!r}")
    return point, int(n)
