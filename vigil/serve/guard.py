"""What every server Vigil starts checks before a request reaches a route (pure ASGI, so the
WebSocket handshake of ``/api/live`` is checked too).

* ``Host``: on a server bound to this machine only this machine's names are accepted, so a web
  page cannot reach the console through DNS rebinding (400).
* ``Origin``: a request (or WebSocket upgrade) sent by a web page must come from the console's own
  origin; any other page on the operator's machine is refused (403). Clients that are not browsers
  send no ``Origin`` and are not affected.
* Body size: a body over ``max_body`` bytes is refused with 413 as soon as that is known (from
  ``Content-Length``, or while it arrives), never read whole.
* JSON numbers: a body with a non-finite number (``NaN``, ``Infinity``, ``1e999``) is refused with
  422 before any route or model sees it (:class:`FiniteJson`, placed inside the token check).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest request body accepted: the alarm verbs take a user name and a comment of 2,000 characters.
MAX_BODY = 64 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def host_name(host: str) -> str:
    """The name part of a ``Host`` header (no port), lower case.

    >>> host_name("LocalHost:8000"), host_name("[::1]:8000"), host_name("127.0.0.1")
    ('localhost', '[::1]', '127.0.0.1')
    """
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def origin_allowed(origin: str | None, host: str | None, allowed_hosts: list[str] | None) -> bool:
    """Whether a request with this ``Origin`` may proceed: no ``Origin`` (not a browser), or the
    same host and port the request was sent to (and an allowed host name).

    >>> origin_allowed(None, "localhost:8000", ["localhost"])
    True
    >>> origin_allowed("http://localhost:8000", "localhost:8000", ["localhost"])
    True
    >>> origin_allowed("http://evil.example", "localhost:8000", ["localhost"])
    False
    >>> origin_allowed("null", "localhost:8000", None)
    False
    """
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc.lower()
    if not netloc or host is None or netloc != host.strip().lower():
        return False
    return allowed_hosts is None or host_name(netloc) in allowed_hosts


class HostPolicy:
    """The ``Host`` names a server accepts (``None``: any), settable until it serves: the code that
    binds the socket knows the address (:func:`vigil.serve.runner.bind`)."""

    def __init__(self, allowed: list[str] | None = None) -> None:
        self.allowed = None if allowed is None else [h.lower() for h in allowed]


class RequestGuard:
    """Host, Origin and body size checks in front of an ASGI app (see the module docstring)."""

    def __init__(self, app: ASGIApp, policy: HostPolicy | None = None, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.policy = policy or HostPolicy()
        self.max_body = max_body

    @property
    def allowed_hosts(self) -> list[str] | None:
        return self.policy.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if self.allowed_hosts is not None and (host is None or host_name(host) not in self.allowed_hosts):
            await _refuse(kind, send, 400, "Invalid host header")
            return
        if not origin_allowed(_header(scope, b"origin"), host, self.allowed_hosts):
            await _refuse(kind, send, 403, "cross-origin request refused: use the console's own page")
            return
        if kind == "http":
            length = _header(scope, b"content-length")
            if length is not None and (not length.strip().isdigit() or int(length) > self.max_body):
                await _refuse(kind, send, 413, f"request body over {self.max_body} bytes")
                return
            await self._bounded(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body (refusing it with 413 once more than ``max_body`` bytes arrived), then pass
        the request on with the body replayed."""
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                await _refuse("http", send, 413, f"request body over {self.max_body} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)


class FiniteJson:
    """Refuse (422) a JSON body holding a non-finite number; other bodies pass unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:  # bounded by RequestGuard outside
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _non_finite(body):
            await _refuse("http", send, 422, "the JSON body holds a non-finite number (NaN, Infinity or out of range)")
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then waits on the real one (for a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _NonFinite(ValueError):
    pass


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise _NonFinite(text)
    return x


def _finite_int(text: str) -> int:
    if len(text.lstrip("-")) > 308:  # beyond any float: read as a float it is infinite
        raise _NonFinite(text[:20])
    return int(text)


def _constant(text: str) -> float:
    raise _NonFinite(text)


def _non_finite(body: bytes) -> bool:
    """Whether ``body`` parses as JSON with a non-finite number (anything unparsable is left to the app).

    >>> _non_finite(b'{"duration_s": 1e999}'), _non_finite(b'{"x": NaN}'), _non_finite(b'{"x": 1.5}')
    (True, True, False)
    """
    if not body.strip():
        return False
    try:
        json.loads(body, parse_float=_finite_float, parse_int=_finite_int, parse_constant=_constant)
    except _NonFinite:
        return True
    except ValueError:
        return False
    return False


async def _refuse(kind: str, send: Send, status: int, detail: str) -> None:
    if kind == "websocket":  # closing before accepting refuses the handshake (HTTP 403)
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
