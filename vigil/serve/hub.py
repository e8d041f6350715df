"""Fan-out of live messages (value ticks, alarm events) from the monitor's thread to WebSocket clients.

The monitor and the alarm manager call :meth:`Hub.publish` from whatever thread feeds them. The
message is serialised to JSON text there, once, whatever the number of clients; the event loop
only appends that text to each client's queue, so many clients (reading or not) cost the loop a
few list operations per tick and never delay the others or ``/api/health``.

At most ``max_clients`` clients are connected at once; further upgrades are refused and counted.
A client that does not keep up holds at most ``tick_backlog`` value ticks (the oldest unsent one
gives way to a new one) and at most ``maxsize`` other messages (alarm events); the texts are
shared, so a waiting client costs references, not copies. What it misses is counted, per client
and in total, never silently lost: the client is then sent ``{"type": "resync", "dropped": n}``
so it re-reads the state over HTTP. A burst of ticks faster than one loop iteration costs a
reading client nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from typing import Any

from vigil.serve.jsonable import jsonable


class Client:
    """One WebSocket subscriber: its pending messages (JSON text) and what it missed."""

    def __init__(self, maxsize: int, tick_backlog: int = 16) -> None:
        self.maxsize = maxsize
        self.tick_backlog = tick_backlog
        self.events: deque[str] = deque()
        self.ticks: deque[str] = deque()  # value ticks not yet sent, oldest first
        self.dropped = 0  # missed since the last resync notice
        self.dropped_total = 0
        self.sent = 0
        self._ready = asyncio.Event()

    def offer(self, kind: str, text: str) -> None:
        """Queue one serialised message (on the event loop; never blocks)."""
        if kind == "values":
            if len(self.ticks) >= self.tick_backlog:
                self.ticks.popleft()
                self._drop()
            self.ticks.append(text)
        elif len(self.events) >= self.maxsize:
            self._drop()
        else:
            self.events.append(text)
        self._ready.set()

    def _drop(self) -> None:
        self.dropped += 1
        self.dropped_total += 1

    async def next(self) -> str:
        """The next message to send: alarm events first, then value ticks in order."""
        while True:
            if self.events:
                return self.events.popleft()
            if self.ticks:
                return self.ticks.popleft()
            self._ready.clear()
            await self._ready.wait()

    def take_resync(self) -> str | None:
        """A resync notice if messages were dropped since the last one, else None."""
        if not self.dropped:
            return None
        note = json.dumps({"type": "resync", "dropped": self.dropped})
        self.dropped = 0
        return note


class Hub:
    """Thread-safe publisher; :meth:`connect`/:meth:`disconnect` run on the event loop."""

    def __init__(self, maxsize: int = 512, max_clients: int = 256) -> None:
        self.maxsize = maxsize
        self.max_clients = max_clients
        self.refused = 0  # upgrades refused because max_clients were connected
        self._clients: set[Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard = threading.Lock()
        self.dropped_total = 0
        self.published = 0  # messages serialised (once each, whatever the number of clients)

    def connect(self) -> Client | None:
        """A new client, or ``None`` (counted in ``refused``) when ``max_clients`` are connected."""
        self._loop = asyncio.get_running_loop()
        client = Client(self.maxsize)
        with self._guard:
            if len(self._clients) >= self.max_clients:
                self.refused += 1
                return None
            self._clients.add(client)
        return client

    def disconnect(self, client: Client) -> None:
        with self._guard:
            self._clients.discard(client)

    @property
    def n_clients(self) -> int:
        return len(self._clients)

    def client_drops(self) -> list[int]:
        """Messages each connected client has missed, most first."""
        with self._guard:
            return sorted((c.dropped_total for c in self._clients), reverse=True)

    def publish(self, message: dict[str, Any]) -> None:
        """Serialise ``message`` once and queue it for every client; callable from any thread, never blocks."""
        loop = self._loop
        if loop is None or not self._clients or loop.is_closed():
            return
        text = json.dumps(jsonable(message), allow_nan=False, separators=(",", ":"))
        self.published += 1
        try:
            loop.call_soon_threadsafe(self._fanout, str(message.get("type", "")), text)
        except RuntimeError:  # the loop closed between the check and the call: no clients remain
            return

    def _fanout(self, kind: str, text: str) -> None:
        with self._guard:
            clients = list(self._clients)
        for client in clients:
            before = client.dropped_total
            client.offer(kind, text)
            self.dropped_total += client.dropped_total - before
