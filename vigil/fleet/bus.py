"""Connecting to NATS, retrying its transient failures, and setting up the fleet's streams and buckets.

A JetStream request can fail for a moment without anything being wrong: a stream or the
JetStream API is electing a leader ("no response from stream", 503), or a busy server answers
after the client's timeout. :class:`Retry` makes such a request again with backoff, counting and
logging each retry, up to a deadline after which it raises :class:`Unavailable` naming the request.
A request whose answer was lost may still have been applied: only idempotent requests are retried
as they are; a write at an expected revision or sequence recognises its own earlier write
(see the worker).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable

from vigil.fleet import protocol as p

Log = Callable[[str], None]


async def connect(urls: list[str], name: str, log: Log, retry: bool = True):
    """A NATS connection that reconnects by itself. Until it first connects, it says why it cannot
    (at most every 2 s) and retries; later connection trouble is reported the same way."""
    import nats

    state: dict = {"connected": False, "said": -math.inf}

    def say(text: str) -> None:
        now = time.monotonic()
        if now - state["said"] >= 2.0:
            state["said"] = now
            log(text)

    async def on_error(err: Exception) -> None:
        if state["connected"]:
            say(f"NATS: {type(err).__name__}: {err}")
        else:
            say(f"cannot reach NATS at {', '.join(urls)}: {type(err).__name__}: {err}; retrying in 0.5 s")

    async def on_disconnect() -> None:
        nc = state.get("nc")
        if nc is not None and (nc.is_closed or nc.is_draining):
            return  # closing on purpose
        if state["connected"]:
            say("NATS: disconnected; reconnecting")

    async def on_reconnect() -> None:
        log("NATS: reconnected")

    nc = await nats.connect(
        servers=urls, name=name, connect_timeout=2, allow_reconnect=retry, max_reconnect_attempts=-1 if retry else 0,
        reconnect_time_wait=0.5, error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect,
    )  # fmt: skip
    state["connected"], state["nc"] = True, nc
    return nc


class Unavailable(RuntimeError):
    """NATS kept failing a request (timeouts, no leader) until its deadline."""


def is_transient(err: BaseException) -> bool:
    """A failure after which the same request may succeed: a timeout, no responder (a leader
    election), JetStream temporarily unavailable (503), a connection being re-established.

    >>> import nats.errors
    >>> is_transient(nats.errors.TimeoutError()), is_transient(ValueError("bad"))
    (True, False)
    """
    from nats.errors import ConnectionReconnectingError, NoRespondersError
    from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

    transient = (TimeoutError, NoRespondersError, NoStreamResponseError, ServiceUnavailableError,
                 ConnectionReconnectingError)  # fmt: skip
    return isinstance(err, transient) and not isinstance(err, Unavailable)


class Retry:
    """Makes a request again after a transient failure (:func:`is_transient`), waiting 0.2 s,
    0.4 s, ... (at most ``max_wait_s``) between tries, until ``deadline_s`` after the first try;
    counts (``retries``) and logs each retry. Other errors pass through at once.

    >>> async def flaky(state={"n": 0}):
    ...     state["n"] += 1
    ...     if state["n"] < 3:
    ...         raise TimeoutError
    ...     return "ok"
    >>> r = Retry(print, first_wait_s=0.001)
    >>> asyncio.run(r("reading x", flaky))
    reading x: TimeoutError; retry 1 in 0.001 s
    reading x: TimeoutError; retry 2 in 0.002 s
    'ok'
    >>> r.retries
    2
    """

    def __init__(self, log: Log, deadline_s: float = 60.0, first_wait_s: float = 0.2, max_wait_s: float = 2.0) -> None:
        self.log, self.deadline_s, self.first_wait_s, self.max_wait_s = log, deadline_s, first_wait_s, max_wait_s
        self.retries = 0

    async def __call__(self, what: str, fn, *args, deadline_s: float | None = None, **kwargs):
        deadline_s = self.deadline_s if deadline_s is None else deadline_s
        start, wait, n = time.monotonic(), self.first_wait_s, 0
        while True:
            try:
                return await fn(*args, **kwargs)
            except Exception as err:
                if not is_transient(err):
                    raise
                reason = f"{type(err).__name__}{': ' + str(err) if str(err) else ''}"
                if time.monotonic() - start + wait > deadline_s:
                    raise Unavailable(f"{what}: NATS did not answer in {deadline_s:g} s (last: {reason})") from err
                n += 1
                self.retries += 1
                self.log(f"{what}: {reason}; retry {n} in {wait:g} s")
                await asyncio.sleep(wait)
                wait = min(2 * wait, self.max_wait_s)


async def _add_stream(js, retry: Retry, replicas: int, **config) -> int:
    """The stream, created when missing; returns its replicas (1 where the server is not clustered)."""
    from nats.js.errors import APIError, NotFoundError

    name = config["name"]
    try:  # a lookup first: answered by the stream's leader, not a change through the meta leader
        info = await retry(f"stream {name}: info", js.stream_info, name)
        return info.config.num_replicas or 1
    except NotFoundError:
        pass
    for r in (replicas, 1) if replicas > 1 else (1,):
        try:  # a retried create that the lost try already made finds the same configuration: accepted
            await retry(f"stream {name}: create", js.add_stream, num_replicas=r, **config)
            return r
        except APIError as err:  # 400, or 500 "replicas > 1 not supported in non-clustered mode"
            text = str(err).lower()
            if "already in use" in text:
                return r
            if "replicas" not in text and "clustered" not in text and "insufficient" not in text:
                raise
    raise RuntimeError(f"cannot create stream {name}")


async def _bucket(js, retry: Retry, replicas: int, bucket: str, **config):
    from nats.js.api import KeyValueConfig
    from nats.js.errors import APIError, BucketNotFoundError, NotFoundError

    for attempt in range(5):
        try:
            return await retry(f"bucket {bucket}: lookup", js.key_value, bucket)
        except (BucketNotFoundError, NotFoundError):
            pass
        for r in (replicas, 1) if replicas > 1 else (1,):
            try:
                cfg = KeyValueConfig(bucket=bucket, replicas=r, **config)
                return await retry(f"bucket {bucket}: create", js.create_key_value, cfg)
            except APIError as err:
                if "replicas" not in str(err).lower() and "clustered" not in str(err).lower():
                    break  # created by another process meanwhile: look it up again
        await asyncio.sleep(0.2 * (attempt + 1))
    return await retry(f"bucket {bucket}: lookup", js.key_value, bucket)


async def _leader(js, stream: str, timeout_s: float = 30.0) -> None:
    """Wait until a new replicated stream has elected its leader (it answers no publish before)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info = await js.stream_info(stream)
            if info.cluster is None or info.cluster.leader:
                return
        except Exception:  # noqa: BLE001 - not answering yet: the election is under way
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)


class Layout:
    """The fleet's streams and buckets, created when missing (replicated 3 times in a cluster)."""

    def __init__(self, js, in_r: int, kv: dict, retry: Retry) -> None:
        self.js, self.replicas, self.retry = js, in_r, retry
        self.leases, self.workers, self.checkpoints, self.fleet = (
            kv[k] for k in ("leases", "workers", "ckpt", "fleet")
        )

    @classmethod
    async def ensure(cls, js, replicas: int = 3, retry: Retry | None = None) -> Layout:
        """Look up (or create) every stream and bucket, retrying transient failures (``retry``;
        default: silent, 60 s)."""
        retry = retry or Retry(lambda _m: None)
        r = await _add_stream(js, retry, replicas, name=p.IN_STREAM, subjects=["vigil.sc.>"],
                              duplicate_window=p.DUPLICATE_WINDOW_S)  # fmt: skip
        await _add_stream(
            js, retry, r, name=p.ALARM_STREAM, subjects=["vigil.alarms.*"], duplicate_window=p.DUPLICATE_WINDOW_S
        )
        for name in (p.IN_STREAM, p.ALARM_STREAM):
            await _leader(js, name)
        kv = {
            "leases": await _bucket(js, retry, r, p.LEASES),
            "workers": await _bucket(js, retry, r, p.WORKERS),
            "ckpt": await _bucket(js, retry, r, p.CHECKPOINTS, max_value_size=p.MAX_CHECKPOINT_BYTES),
            "fleet": await _bucket(js, retry, r, p.FLEET),
        }
        for bucket in (p.LEASES, p.WORKERS, p.CHECKPOINTS, p.FLEET):
            await _leader(js, f"KV_{bucket}")
        return cls(js, r, kv, retry)

    async def register(self, sc: str, info: dict | None = None) -> None:
        await self.retry(f"{sc}: registering", self.fleet.put, f"known.{sc}", json.dumps(info or {}).encode())


class Mirror:
    """A live copy of a key-value bucket (a watcher): ``values`` maps key -> decoded JSON value."""

    def __init__(self, kv, log: Log) -> None:
        self.kv, self.log = kv, log
        self.values: dict[str, dict] = {}
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> Mirror:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            try:
                watcher = await self.kv.watchall()
                async for entry in watcher:
                    if entry is None:
                        self.ready.set()
                        continue
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        self.values.pop(entry.key, None)
                        continue
                    try:
                        self.values[entry.key] = json.loads(entry.value)
                    except ValueError:
                        self.log(f"bucket entry {entry.key!r} is not JSON; ignored")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a broken watch is reported and started again
                self.log(f"watch of {self.kv._name if hasattr(self.kv, '_name') else 'bucket'} failed: {err}")
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
