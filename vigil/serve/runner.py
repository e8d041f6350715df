"""Feeding a monitor in the background while the console serves it, and running the HTTP server.

A feeder thread holds the console's lock for each chunk it feeds, so API readers always see whole
blocks. An error while feeding is counted and kept (``errors``, ``last_error``), never raised into
the server: a running console stays up and says what went wrong at ``/api/health``.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vigil.model import TelemetryBlock
from vigil.serve.guard import MAX_BODY

log = logging.getLogger("vigil.serve")


class Feeder(threading.Thread):
    """Base of the background feeders: a stop flag, progress and error counters."""

    def __init__(self, monitor: Any, lock: Any, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.monitor = monitor
        self.lock = lock
        self.stop_event = threading.Event()
        self.rows = 0
        self.errors = 0
        self.last_error: str | None = None
        self.done = False

    def stop(self) -> None:
        self.stop_event.set()

    def _guarded(self, fn: Callable[[], Any]) -> None:
        try:
            with self.lock:
                fn()
        except Exception as err:  # a feeder must outlive any single bad chunk
            self.errors += 1
            self.last_error = f"{type(err).__name__}: {err}"
            log.exception("feeding the monitor failed")

    def status(self) -> dict[str, Any]:
        progress = {"feeder": self.name, "rows": self.rows, "done": self.done}
        return progress | {"errors": self.errors, "last_error": self.last_error}


class BlockReplay(Feeder):
    """Replay a block's rows at ``speed`` times real time (by their timestamps), ``tick_s`` per feed."""

    def __init__(self, monitor: Any, lock: Any, block: TelemetryBlock, speed: float = 10.0, tick_s: float = 0.25):
        super().__init__(monitor, lock, "replay")
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.block = block
        self.speed = speed
        self.tick_s = tick_s

    def run(self) -> None:
        block, n = self.block, self.block.n_samples
        t_first = float(block.time[0]) if n else 0.0
        start = time.monotonic()
        i = 0
        while i < n and not self.stop_event.is_set():
            data_now = t_first + (time.monotonic() - start) * self.speed
            j = int(np.searchsorted(block.time, data_now, side="right"))
            if j > i:
                chunk = block.slice(i, j)
                # The monitor judges staleness row by row, so the chunking changes nothing.
                self._guarded(lambda chunk=chunk: self.monitor.feed_block(chunk))
                self.rows += j - i
                i = j
            self.stop_event.wait(self.tick_s)
        self.done = True

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.update(speed=self.speed, total_rows=self.block.n_samples)
        return out


class SessionPump(Feeder):
    """Pump a record source through a monitor session (:func:`vigil.monitor.runner.run`) until it ends."""

    def __init__(self, session: Any, source: Any) -> None:
        super().__init__(session.monitor, session.lock, f"source {getattr(source, 'name', source)}")
        self.session = session
        self.source = source

    def run(self) -> None:
        from vigil.monitor.runner import run

        try:
            run(self.session, self.source, echo=log.info, stop=self.stop_event)
        except Exception as err:  # the console stays up and reports the failed source
            self.errors += 1
            self.last_error = f"{type(err).__name__}: {err}"
            log.exception("the record source failed")
        finally:
            self.done = True

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["rows"] = int(getattr(self.monitor, "rows", 0))  # scored rows, counted by the monitor
        stats = getattr(self.source, "stats", None)
        if callable(stats):  # a listener: connections, refusals, accept errors
            out["source"] = stats()
        return out


class PortInUse(OSError):
    """The HTTP port cannot be bound (in use, or not permitted): said at once, before any work."""


def bind(host: str, port: int) -> socket.socket:
    """Bind the server's socket now, so that a busy port is an error before anything else starts.

    Raises :class:`PortInUse` with a message naming the port and what to do.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT works
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        why = "is in use" if err.errno == errno.EADDRINUSE else f"cannot be bound: {err.strerror or err}"
        raise PortInUse(err.errno, f"port {port} on {host} {why}; choose another with --port") from None
    return sock


def restrict_hosts(app: Any, host: str) -> None:
    """Limit the app's ``Host`` header to this machine's names when it serves on a loopback address
    (unless it was given its own list): no DNS rebinding onto a console bound to this machine."""
    from vigil.serve.app import loopback_hosts

    policy = getattr(app.state, "host_policy", None)
    if policy is not None and policy.allowed is None:
        policy.allowed = loopback_hosts(host)


def serve_app(app: Any, host: str, port: int, sock: socket.socket | None = None) -> None:
    """Run ``app`` with uvicorn on ``sock`` (bound here if not given) until interrupted."""
    restrict_hosts(app, host)
    _server(app, host, port).run(sockets=[sock or bind(host, port)])


def serve_in_background(app: Any, host: str, port: int, sock: socket.socket | None = None) -> threading.Thread:
    """Bind now (a busy port raises :class:`PortInUse` here), then serve from a daemon thread."""
    restrict_hosts(app, host)
    sock = sock or bind(host, port)
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="vigil-api", daemon=True)
    thread.start()
    return thread


def _server(app: Any, host: str, port: int) -> Any:
    import uvicorn

    # WebSocket frames from clients are only read to notice a disconnect: keep them small.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws_ping_interval=20.0, ws_max_size=MAX_BODY)
    return uvicorn.Server(config)
