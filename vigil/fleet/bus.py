"""Connecting to NATS and setting up the fleet's streams and buckets (idempotent, any process may)."""

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


async def _add_stream(js, replicas: int, **config) -> int:
    from nats.js.errors import BadRequestError

    for r in (replicas, 1) if replicas > 1 else (1,):
        try:
            await js.add_stream(num_replicas=r, **config)
            return r
        except BadRequestError as err:
            text = str(err).lower()
            if "already in use" in text:
                return r
            if "replicas" not in text and "clustered" not in text and "insufficient" not in text:
                raise
    raise RuntimeError(f"cannot create stream {config['name']}")


async def _bucket(js, replicas: int, bucket: str, **config):
    from nats.js.api import KeyValueConfig
    from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError

    for attempt in range(5):
        try:
            return await js.key_value(bucket)
        except (BucketNotFoundError, NotFoundError):
            pass
        for r in (replicas, 1) if replicas > 1 else (1,):
            try:
                return await js.create_key_value(KeyValueConfig(bucket=bucket, replicas=r, **config))
            except BadRequestError as err:
                if "replicas" not in str(err).lower() and "clustered" not in str(err).lower():
                    break  # created by another process meanwhile: look it up again
        await asyncio.sleep(0.2 * (attempt + 1))
    return await js.key_value(bucket)


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

    def __init__(self, js, in_r: int, kv: dict) -> None:
        self.js, self.replicas = js, in_r
        self.leases, self.workers, self.checkpoints, self.fleet = (
            kv[k] for k in ("leases", "workers", "ckpt", "fleet")
        )

    @classmethod
    async def ensure(cls, js, replicas: int = 3) -> Layout:
        r = await _add_stream(js, replicas, name=p.IN_STREAM, subjects=["vigil.sc.>"],
                              duplicate_window=p.DUPLICATE_WINDOW_S)  # fmt: skip
        await _add_stream(
            js, r, name=p.ALARM_STREAM, subjects=["vigil.alarms.*"], duplicate_window=p.DUPLICATE_WINDOW_S
        )
        for name in (p.IN_STREAM, p.ALARM_STREAM):
            await _leader(js, name)
        kv = {
            "leases": await _bucket(js, r, p.LEASES),
            "workers": await _bucket(js, r, p.WORKERS),
            "ckpt": await _bucket(js, r, p.CHECKPOINTS, max_value_size=p.MAX_CHECKPOINT_BYTES),
            "fleet": await _bucket(js, r, p.FLEET),
        }
        for bucket in (p.LEASES, p.WORKERS, p.CHECKPOINTS, p.FLEET):
            await _leader(js, f"KV_{bucket}")
        return cls(js, r, kv)

    async def register(self, sc: str, info: dict | None = None) -> None:
        await self.fleet.put(f"known.{sc}", json.dumps(info or {}).encode())


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
