"""Notifications: through Apprise to a local HTTP endpoint, grouped, rate-limited, retried, never blocking."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vigil.errors import ConfigError
from vigil.notify import Notifier, NotifySettings, load_settings


class _Endpoint(BaseHTTPRequestHandler):
    received: list[dict] = []
    fail_next = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if type(self).fail_next > 0:
            type(self).fail_next -= 1
            self.send_response(500)
        else:
            type(self).received.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), **json.loads(body)}
            )
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    _Endpoint.received, _Endpoint.fail_next = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _event(alarm_id: int, level: int, kind: str = "raised", incident: int | None = 1, notify: bool = True) -> dict:
    sev = ("watch", "warning", "distress", "critical", "severe")[level - 1]
    payload = {"id": alarm_id, "channel": f"CH{alarm_id}", "severity": sev, "level": level, "incident_id": incident,
               "explanation": f"CH{alarm_id} out of limits"}  # fmt: skip
    return {"type": "alarm", "kind": kind, "alarm_id": alarm_id, "time": 0.0, "notify": notify, "payload": payload}


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_apprise_delivers_a_grouped_incident_to_a_local_endpoint_and_never_logs_the_secret(
    endpoint, monkeypatch, caplog
):
    monkeypatch.setenv("TEST_NOTIFY_URLS", f"json://ops:s3cr3tpass@127.0.0.1:{endpoint}/hook")
    clock = Clock()
    settings = load_settings({"urls_env": "TEST_NOTIFY_URLS", "group_window_s": 30, "retries": 0})
    notifier = Notifier(settings, clock=clock, start=False)
    with caplog.at_level(logging.DEBUG):
        notifier(_event(1, 2))
        notifier(_event(2, 4))
        notifier(_event(3, 1))  # watch: under the threshold
        notifier(_event(1, 2, kind="acknowledged"))  # not a notifying change
        notifier(_event(4, 4, notify=False))  # a shelved alarm's change
        assert notifier.pump() == 0  # the incident's window is still open
        clock.t = 31
        assert notifier.pump() == 1
    (msg,) = _Endpoint.received
    assert msg["path"] == "/hook" and msg["title"] == "Vigil: CRITICAL incident 1 (2 alarms)"
    assert msg["message"].splitlines() == ["CRITICAL #2 CH2 out of limits", "WARNING #1 CH1 out of limits"]
    assert msg["auth"] is not None  # the credentials went to the endpoint ...
    assert "s3cr3tpass" not in caplog.text and "s3cr3tpass" not in json.dumps(notifier.status())  # ... nowhere else
    assert notifier.status()["destinations"] == ["json #1"] and notifier.sent == 1


def test_rate_limit_merges_what_waits_and_retries_recover_a_failed_send(endpoint):
    clock = Clock()
    settings = NotifySettings(urls=[f"json://127.0.0.1:{endpoint}/"], group_window_s=0, max_per_minute=2,
                              retries=2, retry_backoff_s=0)  # fmt: skip
    notifier = Notifier(settings, clock=clock, start=False)
    _Endpoint.fail_next = 2  # the first send fails twice, then goes through on the third attempt
    for k in range(1, 4):
        notifier(_event(k, 2, incident=None))
    assert notifier.pump() == 2  # two a minute: the third alarm waits
    assert len(_Endpoint.received) == 2 and notifier.failed == 0
    notifier(_event(3, 4, kind="escalated", incident=None))  # joins the waiting group of alarm 3
    clock.t = 59.9
    assert notifier.pump() == 0
    clock.t = 60.0
    assert notifier.pump() == 1
    assert _Endpoint.received[-1]["title"] == "Vigil: CRITICAL CH3" and len(_Endpoint.received) == 3


def test_a_dead_destination_is_counted_after_the_retries():
    calls = []
    notifier = Notifier(NotifySettings(retries=3, retry_backoff_s=0, group_window_s=0),
                        send=lambda title, body, k: calls.append(title) or False, start=False)  # fmt: skip
    notifier(_event(1, 3))
    notifier.pump()
    assert len(calls) == 4 and notifier.failed == 1 and notifier.sent == 0 and "not delivered" in notifier.last_error


def test_the_subscriber_never_blocks_a_full_queue_drops_and_counts():
    release = threading.Event()
    notifier = Notifier(NotifySettings(queue_size=2, group_window_s=0, retries=0),
                        send=lambda *a: release.wait(30), start=True)  # fmt: skip
    try:
        t0 = time.perf_counter()
        for k in range(50):  # the worker is stuck in a send: the queue fills, the caller goes on
            notifier(_event(k + 1, 3, incident=None))
        assert time.perf_counter() - t0 < 1.0
        assert notifier.dropped >= 50 - 2 - 1  # at most the queue and the one being sent were kept
    finally:
        release.set()
        notifier.close()


def test_settings_errors_name_the_key(monkeypatch):
    with pytest.raises(ConfigError, match="notify.min_severity"):
        load_settings({"min_severity": "loud"})
    with pytest.raises(ConfigError, match="notify.max_per_minute"):
        load_settings({"max_per_minute": 0})
    monkeypatch.delenv("NOPE_URLS", raising=False)
    with pytest.raises(ConfigError, match="NOPE_URLS is not set"):
        Notifier(load_settings({"urls_env": "NOPE_URLS"}), start=False)
    with pytest.raises(ConfigError, match="not a URL Apprise supports"):
        Notifier(load_settings({"urls": ["nosuchscheme://x"]}), start=False)


def test_the_manager_feeds_the_notifier(endpoint, tmp_path):
    import numpy as np

    from vigil.alarms import AlarmManager
    from vigil.config import MonitorConfig
    from vigil.detect.limits import LimitCheck
    from vigil.model import TelemetryBlock

    urls = tmp_path / "urls"
    urls.write_text(f"# the team's hook\njson://127.0.0.1:{endpoint}/vigil\n")
    cfg = MonitorConfig.from_dict({"channels": {"P": {"subsystem": "prop", "limits": {"critical": [-1, 1]}}},
                                   "notify": {"urls_file": str(urls), "group_window_s": 0}})  # fmt: skip
    notifier = Notifier(load_settings(cfg.notify), start=False)
    manager = AlarmManager(cfg, clock=lambda: 0.0)
    manager.subscribe(notifier)
    block = TelemetryBlock.from_arrays([0.0, 1.0], np.array([[0.0], [9.0]]), ["P"])
    manager.update(block, LimitCheck(cfg.limits()).fit(block).score(block))
    notifier.close()
    (msg,) = _Endpoint.received
    assert msg["path"] == "/vigil" and msg["title"] == "Vigil: CRITICAL P"
