"""How the console copes with many channels: API latency and page timings in headless Chromium.

``python -m vigil.serve.loadtest --channels 10000`` builds a monitor with that many channels (limit
checks, about 1% of channels pushed out of limits so there are alarms to list), serves the
console on a free local port and prints a JSON report: median API response times and, with
``--browser``, the page's load, filter and scroll timings measured in the page itself; with
``--slow-clients N``, how fast one reading WebSocket client gets value ticks (and ``/api/health``
answers) while N clients that never read hold the live feed.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from typing import Any

import numpy as np

from vigil.model import TelemetryBlock


def big_stack(n_channels: int = 10_000, n_rows: int = 120, n_subsystems: int = 40, seed: int = 0) -> tuple[Any, Any]:
    """A monitor and alarm manager with ``n_channels`` limit-checked channels, fed ``n_rows`` rows.

    Every 100th channel leaves its warning range in the second half, so ~1% are in alarm.
    """
    from vigil.alarms import AlarmManager
    from vigil.config import MonitorConfig
    from vigil.detect.limits import LimitCheck
    from vigil.monitor import Monitor

    names = [f"SS{j % n_subsystems:02d}-CH{j:05d}" for j in range(n_channels)]
    channels = {
        name: {
            "subsystem": f"subsystem-{j % n_subsystems:02d}",
            "units": "V",
            "rate_hz": 1.0,
            "limits": {"warning": [-3.0, 3.0], "critical": [-6.0, 6.0]},
        }
        for j, name in enumerate(names)
    }
    config = MonitorConfig.from_dict({"channels": channels}, source="loadtest")
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, (n_rows, n_channels)).clip(-2.9, 2.9)
    values[n_rows // 2 :, ::100] += 5.0  # 1% of channels go out of the warning range
    block = TelemetryBlock(np.arange(n_rows, dtype=np.float64), values, tuple(names), source="loadtest")
    manager = AlarmManager(config)
    detector = LimitCheck(config.limits()).fit(block.slice(0, 1))
    monitor = Monitor(config, detector, manager, history_points=128)
    monitor.feed_block(block)
    return monitor, manager


def _median_ms(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def api_timings(app: Any, channel: str) -> dict[str, float]:
    """Median milliseconds of the page's main reads (in-process client, JSON encoding included)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        paths = ["/api/latest", "/api/channels", "/api/subsystems", "/api/alarms", f"/api/channels/{channel}/history"]
        out = {}
        for path in paths:
            assert client.get(path).status_code == 200, path
            out[path.replace(channel, "{name}")] = _median_ms(lambda p=path: client.get(p))
        out["bytes /api/latest"] = len(client.get("/api/latest").content)
    return out


def browser_timings(url: str) -> dict[str, float]:
    """Page timings measured in headless Chromium (see tests/test_browser.py for the flags)."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        t = time.perf_counter()
        page.goto(url)
        page.locator("#chan-foot", has_text=" of ").wait_for()
        load_ms = (time.perf_counter() - t) * 1000
        rows_in_dom = page.locator("#chanlist .row").count()
        filter_ms = page.evaluate(
            """() => { const f = document.querySelector('#filter'); const t = performance.now();
            f.value = 'CH0999'; f.dispatchEvent(new Event('input')); return performance.now() - t; }"""
        )
        shown = page.inner_text("#chan-foot")
        scroll_ms = page.evaluate(
            """async () => { const f = document.querySelector('#filter'); f.value = '';
            f.dispatchEvent(new Event('input')); const box = document.querySelector('#chanlist');
            const t = performance.now();
            for (let k = 1; k <= 50; k++) { box.scrollTop = k * 4000;
              await new Promise(r => requestAnimationFrame(r)); }
            return (performance.now() - t) / 50; }"""
        )
        browser.close()
    return {
        "page load to list rendered (ms)": round(load_ms),
        "channel rows in the DOM": rows_in_dom,
        "filter 10k channels (ms)": round(filter_ms, 1),
        "filter result": shown,
        "scroll step incl. frame (ms)": round(scroll_ms, 1),
    }


def live_feed_timings(app: Any, port: int, slow: int, ticks: int = 60, period_s: float = 0.25) -> dict[str, Any]:
    """Tick latency for one reading client and ``/api/health`` latency, with ``slow`` clients that
    never read connected to ``/api/live``; each tick carries every channel of the monitor."""
    import http.client

    from websockets.sync.client import connect

    upgrade = (
        f"GET /api/live HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    hub, channels = app.state.hub, list(app.state.console.monitor.channels)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(slow)]
    for s in held:
        s.sendall(upgrade)
    tick_ms: list[float] = []
    health_ms: list[float] = []

    def health() -> None:
        for _ in range(int(ticks * period_s / 0.5)):
            t = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/api/health", headers={"Host": f"localhost:{port}"})
            conn.getresponse().read()
            health_ms.append((time.perf_counter() - t) * 1e3)
            time.sleep(0.5)

    with connect(f"ws://127.0.0.1:{port}/api/live", max_size=None, open_timeout=60) as good:
        good.recv(timeout=60)
        while hub.n_clients < slow + 1:
            time.sleep(0.01)
        checker = threading.Thread(target=health)
        checker.start()
        for i in range(ticks):
            sent = time.perf_counter()
            hub.publish({"type": "values", "time": float(i), "channels": channels, "value": [1.0] * len(channels)})
            while (msg := json.loads(good.recv(timeout=60))).get("type") != "values" or msg["time"] != i:
                pass
            tick_ms.append((time.perf_counter() - sent) * 1e3)
            time.sleep(period_s)
        checker.join()
    for s in held:
        s.close()
    return {
        "slow clients": slow,
        "ticks": ticks,
        "tick latency median / max (ms)": [round(statistics.median(tick_ms), 1), round(max(tick_ms), 1)],
        "health latency median / max (ms)": [round(statistics.median(health_ms), 1), round(max(health_ms), 1)],
        "dropped for slow clients": hub.dropped_total,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    parser.add_argument(
        "--slow-clients", type=int, default=0, help="also time the live feed with N non-reading clients"
    )
    args = parser.parse_args(argv)

    from vigil.serve.app import create_app

    t = time.perf_counter()
    monitor, manager = big_stack(args.channels)
    report: dict[str, Any] = {"channels": args.channels, "build stack (s)": round(time.perf_counter() - t, 1)}
    report["open alarms"] = len(manager.alarms())
    app = create_app(monitor, manager, None, "loadtest-token-0123456789")
    report["api median (ms)"] = api_timings(app, monitor.channels[0])
    if args.browser or args.slow_clients:
        from vigil.serve.runner import bind, serve_in_background

        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        serve_in_background(app, "127.0.0.1", port, sock)
        if args.browser:
            report["browser"] = browser_timings(f"http://127.0.0.1:{port}/")
        if args.slow_clients:
            report["live feed"] = live_feed_timings(app, port, args.slow_clients)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
