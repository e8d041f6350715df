"""Fan-out of live messages (value ticks, alarm events) from the monitor's thread to WebSocket clients.

The monitor and the alarm manager call :meth:`Hub.publish` from whatever thread feeds them; the
hub hands each message to the event loop and queues it for every client. A client that cannot keep
up has a bounded queue: messages that do not fit are counted, never silently lost, and the client
is sent ``{"type": "resync", "dropped": n}`` so it re-reads the state over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from vigil.serve.jsonable import jsonable


class Client:
    """One WebSocket subscriber's queue and how many messages it missed."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def offer(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    def take_resync(self) -> dict[str, Any] | None:
        """A resync notice if messages were dropped since the last one, else None."""
        if not self.dropped:
            return None
        note = {"type": "resync", "dropped": self.dropped}
        self.dropped = 0
        return note


class Hub:
    """Thread-safe publisher; :meth:`connect`/:meth:`disconnect` run on the event loop."""

    def __init__(self, maxsize: int = 512) -> None:
        self.maxsize = maxsize
        self._clients: set[Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard = threading.Lock()
        self.dropped_total = 0

    def connect(self) -> Client:
        self._loop = asyncio.get_running_loop()
        client = Client(self.maxsize)
        with self._guard:
            self._clients.add(client)
        return client

    def disconnect(self, client: Client) -> None:
        with self._guard:
            self._clients.discard(client)

    @property
    def n_clients(self) -> int:
        return len(self._clients)

    def publish(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for every client; callable from any thread, never blocks."""
        loop = self._loop
        if loop is None or not self._clients or loop.is_closed():
            return
        safe = jsonable(message)
        try:
            loop.call_soon_threadsafe(self._fanout, safe)
        except RuntimeError:  # the loop closed between the check and the call: no clients remain
            return

    def _fanout(self, message: dict[str, Any]) -> None:
        with self._guard:
            clients = list(self._clients)
        for client in clients:
            before = client.dropped
            client.offer(message)
            self.dropped_total += client.dropped - before
