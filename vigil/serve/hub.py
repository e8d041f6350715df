"""Fan-out of live messages (value ticks, alarm events) from the monitor's thread to WebSocket clients.

The monitor and the alarm manager call :meth:`Hub.publish` from whatever thread feeds them; the
hub hands each message to the event loop and queues it for every client. Value ticks are merged
while a client has one waiting (each channel keeps its newest value), so a slow client holds at
most one tick, however many channels there are. Other messages (alarm events) wait in a bounded
queue: those that do not fit are counted, never silently lost, and the client is sent
``{"type": "resync", "dropped": n}`` so it re-reads the state over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from vigil.serve.jsonable import jsonable

#: Stands in the queue for a client's pending (merged) value tick.
_VALUES = {"type": "values"}


class Client:
    """One WebSocket subscriber: its queue, its pending value tick and how many messages it missed."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.values: dict[str, Any] | None = None
        self.merged = 0
        self.dropped = 0

    def offer(self, message: dict[str, Any]) -> None:
        if message.get("type") == "values":
            if self.values is not None:
                self.values = merge_ticks(self.values, message)
                self.merged += 1
                return
            self.values = message
            message = _VALUES
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            if message is _VALUES:
                self.values = None

    def resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        """The message to send for a queue item (the pending value tick for its stand-in)."""
        if item is not _VALUES:
            return item
        tick, self.values = self.values, None
        return tick

    def take_resync(self) -> dict[str, Any] | None:
        """A resync notice if messages were dropped since the last one, else None."""
        if not self.dropped:
            return None
        note = {"type": "resync", "dropped": self.dropped}
        self.dropped = 0
        return note


def merge_ticks(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One tick holding, per channel, the newest of two ticks' entries (lists aligned with ``channels``).

    >>> a = {"type": "values", "time": 1.0, "channels": ["x", "y"], "value": [1, 2]}
    >>> merge_ticks(a, {"type": "values", "time": 2.0, "channels": ["y", "z"], "value": [5, 6]})
    {'type': 'values', 'time': 2.0, 'channels': ['x', 'y', 'z'], 'value': [1, 5, 6]}
    """
    channels = list(dict.fromkeys([*old["channels"], *new["channels"]]))
    columns = [k for k, v in new.items() if k != "channels" and isinstance(v, list) and k in old]
    rows = {k: dict(zip(old["channels"], old[k])) for k in columns}
    for k in columns:
        rows[k].update(zip(new["channels"], new[k]))
    merged = {**new, "channels": channels}
    merged.update({k: [rows[k][c] for c in channels] for k in columns})
    return merged


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
