"""How the console copes with many channels: API latency and page timings in headless Chromium.

``python -m vigil.serve.loadtest --channels 10000`` builds a monitor with that many channels (limit
checks, about 1% of channels pushed out of limits so there are alarms to list), serves the
console on a free local port and prints a JSON report: median API response times and, with
``--browser``, the page's load, filter and scroll timings measured in the page itself.
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    args = parser.parse_args(argv)

    from vigil.serve.app import create_app

    t = time.perf_counter()
    monitor, manager = big_stack(args.channels)
    report: dict[str, Any] = {"channels": args.channels, "build stack (s)": round(time.perf_counter() - t, 1)}
    report["open alarms"] = len(manager.alarms())
    app = create_app(monitor, manager, None, "loadtest-token-0123456789")
    report["api median (ms)"] = api_timings(app, monitor.channels[0])
    if args.browser:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        report["browser"] = browser_timings(f"http://127.0.0.1:{port}/")
        server.should_exit = True
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
