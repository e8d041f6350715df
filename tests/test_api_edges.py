"""The API under hostile conditions, over a real uvicorn server on a real socket: foreign Host and
Origin (HTTP and the WebSocket upgrade), huge bodies, non-finite numbers, many slow WebSocket
clients, a busy port. Every wait is for a condition; timeouts only bound a failure."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor
from vigil.serve.app import create_app
from vigil.serve.runner import bind, restrict_hosts, serve_in_background

TOKEN = "edge-token-0123456789"
CONFIG = MonitorConfig.from_dict({"channels": {"T": {"subsystem": "thermal", "limits": {"warning": [0, 10]}}}})


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` until true; the timeout only bounds a failure."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server():
    """A console bound to 127.0.0.1 the way ``vigil serve``/``monitor --serve`` start one."""
    manager = AlarmManager(CONFIG)
    detector = LimitCheck(CONFIG.limits()).fit(TelemetryBlock.from_arrays([0.0], [[5.0]], ["T"]))
    monitor = Monitor(CONFIG, detector, manager)
    monitor.feed_block(TelemetryBlock.from_arrays([1.0, 2.0], [[5.0], [50.0]], ["T"]))  # alarm 1
    app = create_app(monitor, manager, None, TOKEN)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    serve_in_background(app, "127.0.0.1", port, sock)
    wait_for(lambda: _status("GET", port, "/api/health") == 200, what="the server to start")
    return app, port


def _request(method: str, port: int, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        hdrs = {"Host": f"localhost:{port}", **(headers or {})}
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _status(method: str, port: int, path: str, **kw) -> int:
    try:
        return _request(method, port, path, **kw)[0]
    except OSError:
        return -1


def _verb(port: int, body: bytes, **headers) -> tuple[int, bytes]:
    hdrs = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **headers}
    return _request("POST", port, "/api/alarms/1:shelve", body=body, headers=hdrs)


def test_a_foreign_host_is_refused_on_a_loopback_server(server):
    _app, port = server
    assert _request("GET", port, "/api/health", headers={"Host": "attacker.example"})[0] == 400
    assert _request("GET", port, "/api/health", headers={"Host": f"127.0.0.1:{port}"})[0] == 200


def test_a_foreign_origin_is_refused_for_reads_and_verbs(server):
    _app, port = server
    assert _request("GET", port, "/api/alarms", headers={"Origin": "http://evil.example"})[0] == 403
    assert _request("GET", port, "/api/alarms", headers={"Origin": "null"})[0] == 403
    assert _verb(port, b'{"duration_s": 60}', Origin="http://evil.example")[0] == 403
    # The console's own page (same origin) is served.
    assert _request("GET", port, "/api/alarms", headers={"Origin": f"http://localhost:{port}"})[0] == 200


def test_the_live_feed_refuses_a_websocket_upgrade_from_a_foreign_origin(server):
    _app, port = server
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{port}/api/live", origin="http://evil.example", open_timeout=30)
    assert refused.value.response.status_code == 403
    assert raw_upgrade(port, host="rebound.example").startswith(b"HTTP/1.1 4")  # DNS rebinding
    assert raw_upgrade(port, origin="http://localhost:1").startswith(b"HTTP/1.1 403")  # another port
    assert raw_upgrade(port).startswith(b"HTTP/1.1 101")  # not a browser: no Origin, accepted
    with connect(f"ws://127.0.0.1:{port}/api/live", origin=f"http://127.0.0.1:{port}", open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"


def raw_upgrade(port: int, host: str | None = None, origin: str | None = None) -> bytes:
    """The status line a WebSocket upgrade of /api/live gets, with the given Host and Origin."""
    lines = [
        "GET /api/live HTTP/1.1",
        f"Host: {host or f'localhost:{port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ] + ([f"Origin: {origin}"] if origin else [])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return s.recv(4096).split(b"\r\n", 1)[0]


def test_a_huge_body_is_refused_before_it_is_read(server):
    _app, port = server
    # A 200 MB body announced: refused from the header, without sending (or reading) it.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/api/alarms/1:acknowledge", skip_host=True)
    for k, v in {
        "Host": f"localhost:{port}",
        "Authorization": f"Bearer {TOKEN}",
        "Content-Length": "200000000",
    }.items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and len(resp.read()) < 200
    conn.close()
    # A chunked body with no length: refused once it passes the limit.
    head = (
        f"POST /api/alarms/1:acknowledge HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode())
        try:
            for _ in range(3000):  # up to 200 MB; the server answers long before
                s.sendall(chunk)
        except OSError:  # it answered and closed the connection
            pass
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]


def test_a_refused_body_is_never_echoed(server):
    _app, port = server
    big = json.dumps({"user": "op", "comment": "y" * 1900, "duration_s": "z" * 50_000}).encode()
    status, body = _verb(port, big)
    assert status == 422 and len(body) < 1000 and b"zzzz" not in body


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400])
def test_a_non_finite_number_is_a_422_not_a_500(server, number):
    _app, port = server
    status, body = _verb(port, f'{{"duration_s": {number}}}'.encode())
    assert status == 422, body
    assert b"non-finite" in body
    # Nested anywhere in the body, too.
    status, _ = _verb(port, f'{{"user": "op", "duration_s": 5, "x": [[{number}]]}}'.encode())
    assert status == 422


SLOW, TICKS = 200, 100  # the review's case: 200 clients that do not read


def test_many_slow_clients_do_not_delay_a_reading_client_or_health(server, monkeypatch):
    import vigil.serve.hub

    serialised = []
    real = vigil.serve.hub.jsonable
    monkeypatch.setattr(vigil.serve.hub, "jsonable", lambda m: serialised.append(1) or real(m))
    app, port = server
    slow = []
    for _ in range(SLOW):  # connected, never read
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(
            f"GET /api/live HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        slow.append(s)
    with connect(f"ws://127.0.0.1:{port}/api/live", open_timeout=30, max_size=None) as good:
        _publish_past_slow_clients(app, port, good)
    assert len(serialised) == TICKS  # once per tick for all clients, not once per client
    for s in slow:
        s.close()


def _publish_past_slow_clients(app, port: int, good) -> None:
    hub = app.state.hub
    assert json.loads(good.recv(timeout=30))["type"] == "hello"
    wait_for(lambda: hub.n_clients >= SLOW + 1, what="all clients to connect")
    published = hub.published
    payload = "v" * 100_000  # large ticks fill the slow clients' socket buffers quickly
    n = TICKS
    received: list[float] = []

    def read():
        while True:
            msg = json.loads(good.recv(timeout=60))
            if msg["type"] == "values":
                received.append(msg["time"])
                if msg["time"] == n:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for i in range(1, n + 1):
        hub.publish({"type": "values", "time": float(i), "channels": ["T"], "value": [1.0], "pad": payload})
        if i % 10 == 0:  # /api/health answers while the slow clients hold their queues
            assert _request("GET", port, "/api/health")[0] == 200
    reader.join(timeout=60)
    assert received and received[-1] == n, received[-5:]
    assert received == sorted(received)
    assert hub.published - published == n
    # Every slow client missed ticks, counted for it; none of that was charged to the reader.
    wait_for(lambda: len([d for d in hub.client_drops() if d > 0]) >= SLOW, what="drops counted per slow client")
    health = json.loads(_request("GET", port, "/api/health")[1])
    assert health["live_dropped"] >= SLOW and health["live_dropped_by_client"][0] > 0


def test_a_busy_port_is_an_error_at_once_without_a_traceback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        commands = (
            ["demo", "--port", str(port)],
            ["serve", "--config", "does-not-matter.toml", "--port", str(port)],
            ["monitor", "--config", "does-not-matter.toml", "--source", "stdin", "--serve", str(port)],
        )
        for args in commands:
            out = subprocess.run(
                [sys.executable, "-m", "vigil.cli", *args],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 1, out  # fatal
            assert f"port {port} on 127.0.0.1 is in use" in out.stderr
            assert "Traceback" not in out.stderr + out.stdout
            assert "generating" not in out.stdout  # refused before any work


def test_bind_names_the_port_and_sets_no_host_limit_for_other_addresses():
    app = create_app(*_tiny_stack(), None, TOKEN)
    sock = bind("127.0.0.1", 0)
    serve_in_background(app, "127.0.0.1", sock.getsockname()[1], sock)
    assert app.state.host_policy.allowed == ["localhost", "127.0.0.1", "[::1]"]
    other = create_app(*_tiny_stack(), None, TOKEN)
    restrict_hosts(other, "0.0.0.0")
    assert other.state.host_policy.allowed is None


def _tiny_stack():
    manager = AlarmManager(CONFIG)
    detector = LimitCheck(CONFIG.limits()).fit(TelemetryBlock.from_arrays([0.0], [[5.0]], ["T"]))
    return Monitor(CONFIG, detector, manager), manager


def test_health_reports_a_listener_that_could_not_accept():
    from fastapi.testclient import TestClient

    class Listener:  # what SessionPump.status() gives for a TCP source
        def __init__(self, errors: int) -> None:
            self.errors = errors

        def status(self) -> dict:
            return {"feeder": "source tcp", "source": {"accept_errors": self.errors, "refused": 3}}

    app = create_app(*_tiny_stack(), None, TOKEN)
    listener = Listener(0)
    app.state.feeders.append(listener)
    with TestClient(app) as client:
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["feeders"][0]["source"]["refused"] == 3
        listener.errors = 2
        assert client.get("/api/health").json()["status"] == "degraded"


def test_live_clients_over_the_cap_are_refused_and_counted():
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from vigil.serve.hub import Hub

    app = create_app(*_tiny_stack(), None, TOKEN, hub=Hub(max_clients=2))
    with TestClient(app) as client:
        with client.websocket_connect("/api/live") as a, client.websocket_connect("/api/live") as b:
            assert a.receive_json()["type"] == b.receive_json()["type"] == "hello"
            with pytest.raises(WebSocketDisconnect), client.websocket_connect("/api/live") as c:
                c.receive_json()
            assert client.get("/api/health").json()["live_refused"] == 1
        with client.websocket_connect("/api/live") as again:  # places free again
            assert again.receive_json()["type"] == "hello"
