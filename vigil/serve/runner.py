"""Feeding a monitor in the background while the console serves it, and running the HTTP server.

A feeder thread holds the console's lock for each chunk it feeds, so API readers always see whole
blocks. An error while feeding is counted and kept (``errors``, ``last_error``), never raised into
the server: a running console stays up and says what went wrong at ``/api/health``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vigil.model import TelemetryBlock

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
        return out


def serve_app(app: Any, host: str, port: int) -> None:
    """Run ``app`` with uvicorn until interrupted (Ctrl-C)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws_ping_interval=20.0)
    uvicorn.Server(config).run()
