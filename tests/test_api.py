"""The console API against small fakes of the monitor/alarm-manager contracts (hand-set state)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from vigil.config import MonitorConfig
from vigil.errors import ConfigError
from vigil.serve.app import create_app
from vigil.serve.auth import resolve_token
from vigil.serve.hub import Hub

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CONFIG = MonitorConfig.from_dict(
    {
        "channels": {
            "T-1": {"subsystem": "thermal", "units": "degC", "rate_hz": 1.0, "limits": {"warning": [0, 10]}},
            "P-2": {"subsystem": "power", "stale_after_s": 30.0},
            "Q-3": {"subsystem": "power"},
        }
    }
)


@dataclass
class FakeAlarm:
    id: int
    channel: str
    severity: str
    state: str = "active"
    first_time: float = 0.0
    last_time: float = 0.0
    value: float = float("nan")
    acknowledged_by: str | None = None
    comment: str = ""
    shelved_until: float | None = None


@dataclass
class FakeManager:
    config: MonitorConfig
    items: dict[int, FakeAlarm] = field(default_factory=dict)
    trail: list[dict] = field(default_factory=list)
    subscribers: list = field(default_factory=list)

    def subscribe(self, cb):
        self.subscribers.append(cb)

    def alarms(self, state=None, severity=None):
        return [a for a in self.items.values() if state in (None, a.state) and severity in (None, a.severity)]

    def get(self, alarm_id):
        return self.items[alarm_id]  # KeyError for unknown ids, as a dict lookup would

    def acknowledge(self, alarm_id, user, comment=""):
        a = self.items[alarm_id]
        if a.state == "acknowledged":
            raise ValueError("already acknowledged")
        a.state, a.acknowledged_by, a.comment = "acknowledged", user, comment
        self.trail.append({"alarm_id": alarm_id, "action": "acknowledge", "user": user})

    def shelve(self, alarm_id, user, duration_s, comment=""):
        a = self.items[alarm_id]
        a.state, a.shelved_until = "shelved", a.last_time + duration_s

    def unshelve(self, alarm_id, user):
        self.items[alarm_id].state = "active"

    def clear(self, alarm_id, user):
        self.items[alarm_id].state = "cleared"

    def incidents(self):
        return [{"id": 1, "subsystem": "thermal", "channels": [["T-1", 3.0]], "first_time": 95.0}]

    def audit(self, alarm_id=None):
        return [e for e in self.trail if alarm_id in (None, e["alarm_id"])]


class FakeMonitor:
    def __init__(self, config):
        self.config = config
        self.subscribers = []
        # T-1 last seen 10 s before the data clock (rate 1 Hz: stale after 3 s); P-2 5 s (limit 30 s).
        self.values = {"T-1": (90.0, 12.5, 2), "P-2": (95.0, float("nan"), 0), "Q-3": (100.0, 3.0, 0)}

    def subscribe(self, cb):
        self.subscribers.append(cb)

    def latest(self):
        return dict(self.values)

    def history(self, channel, t0=None, t1=None, max_points=2000):
        t = [88.0, 89.0, 90.0]
        return {"time": t, "value": [5.0, 11.0, 12.5], "expected": [5.0, 5.0, float("nan")],
                "low": [0.0, 0.0, 0.0], "high": [10.0, 10.0, 10.0], "level": [0, 2, 2]}  # fmt: skip

    def counters(self):
        return {"T-1": {"out_of_order": 1, "duplicate": 0}}


@pytest.fixture
def setup():
    monitor = FakeMonitor(CONFIG)
    manager = FakeManager(CONFIG)
    manager.items = {
        1: FakeAlarm(1, "T-1", "warning", first_time=89.0, last_time=90.0, value=12.5),
        2: FakeAlarm(2, "P-2", "critical", state="cleared", first_time=50.0, last_time=60.0),
    }
    app = create_app(monitor, manager, store=None, token=TOKEN)
    with TestClient(app) as client:
        yield client, monitor, manager


def test_health_and_data_clock(setup):
    client, *_ = setup
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["channels"] == 3 and body["data_time"] == 100.0


def test_channels_carry_configuration(setup):
    client, *_ = setup
    chans = {c["name"]: c for c in client.get("/api/channels").json()}
    assert chans["T-1"]["limits"] == {"warning": [0.0, 10.0]}
    assert chans["T-1"]["stale_after_s"] == 3.0  # three periods at 1 Hz
    assert [c["name"] for c in client.get("/api/channels", params={"subsystem": "power"}).json()] == ["P-2", "Q-3"]


def test_latest_staleness_alarm_level_and_nan(setup):
    client, *_ = setup
    body = client.get("/api/latest").json()
    assert body["channels"] == ["T-1", "P-2", "Q-3"]
    assert body["age"] == [10.0, 5.0, 0.0]
    assert body["stale"] == [True, False, False]  # 10 s > 3 s; 5 s < 30 s; Q-3 has no rate
    assert body["value"] == [12.5, None, 3.0]  # NaN travels as null
    assert body["alarm"] == [2, 0, 0]  # T-1's open warning; P-2's critical is cleared


def test_subsystems_summary(setup):
    client, *_ = setup
    subs = {s["subsystem"]: s for s in client.get("/api/subsystems").json()}
    assert subs["thermal"] == {"subsystem": "thermal", "channels": 1, "worst": 2, "in_alarm": 1, "stale": 1}
    assert subs["power"]["worst"] == 0 and subs["power"]["channels"] == 2


def test_history_with_limits_and_alarm_periods(setup):
    client, *_ = setup
    body = client.get("/api/channels/T-1/history", params={"t0": 0, "t1": 100, "max_points": 100}).json()
    assert body["value"] == [5.0, 11.0, 12.5] and body["expected"][2] is None
    assert body["limits"] == {"warning": [0.0, 10.0]}
    assert body["alarms"] == [{"id": 1, "severity": "warning", "state": "active", "start": 89.0, "end": 90.0}]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/channels/NOPE/history", 404),
        ("/api/channels/T-1/history?t0=5&t1=1", 422),
        ("/api/channels/T-1/history?t0=nan", 422),
        ("/api/channels/T-1/history?max_points=1", 422),
        ("/api/alarms?severity=huge", 422),
        ("/api/alarms/999", 404),
        ("/api/audit?alarm_id=999", 404),
    ],
)
def test_bad_reads_are_4xx(setup, path, status):
    client, *_ = setup
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_alarm_filters(setup):
    client, *_ = setup
    assert [a["id"] for a in client.get("/api/alarms").json()] == [1, 2]  # newest first
    assert [a["id"] for a in client.get("/api/alarms", params={"state": "cleared"}).json()] == [2]
    assert [a["id"] for a in client.get("/api/alarms", params={"severity": "warning"}).json()] == [1]
    assert [a["id"] for a in client.get("/api/alarms", params={"open_only": True}).json()] == [1]
    assert client.get("/api/alarms/1").json()["alarm"]["value"] == 12.5


@pytest.mark.parametrize("verb", ["acknowledge", "shelve", "unshelve", "clear"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0000000000"}, {"Authorization": TOKEN}])
def test_every_verb_refuses_without_the_token(setup, verb, headers):
    client, _monitor, manager = setup
    response = client.post(f"/api/alarms/1:{verb}", json={"duration_s": 60}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert manager.items[1].state == "active"


def test_acknowledge_with_token_changes_state_and_audits(setup):
    client, _monitor, manager = setup
    response = client.post("/api/alarms/1:acknowledge", json={"user": "flight", "comment": "seen"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "acknowledged" and response.json()["acknowledged_by"] == "flight"
    assert client.get("/api/audit").json() == [{"alarm_id": 1, "action": "acknowledge", "user": "flight"}]
    again = client.post("/api/alarms/1:acknowledge", json={}, headers=AUTH)
    assert again.status_code == 409 and "already acknowledged" in again.json()["detail"]


def test_shelve_unshelve_clear(setup):
    client, _monitor, manager = setup
    assert client.post("/api/alarms/1:shelve", json={"duration_s": 600}, headers=AUTH).json()["shelved_until"] == 690.0
    assert client.post("/api/alarms/1:unshelve", headers=AUTH).json()["state"] == "active"
    assert client.post("/api/alarms/1:clear", json={"user": "fd"}, headers=AUTH).json()["state"] == "cleared"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/alarms/1:shelve", {}, 422),  # duration is required
        ("/api/alarms/1:shelve", {"duration_s": -5}, 422),
        ("/api/alarms/1:shelve", {"duration_s": 1e9}, 422),
        ("/api/alarms/1:acknowledge", {"comment": "x" * 5000}, 422),
        ("/api/alarms/1:acknowledge", {"user": "<script>"}, 422),
        ("/api/alarms/1:acknowledge", {"colour": "red"}, 422),
        ("/api/alarms/42:acknowledge", {}, 404),
        ("/api/alarms/1:explode", {}, 405),  # not a verb: the read route matches the path, not the method
    ],
)
def test_bad_mutations_are_4xx(setup, path, body, status):
    client, _monitor, manager = setup
    response = client.post(path, json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert manager.items[1].state == "active"


def test_verb_path_routes_to_the_verb_not_the_read():
    """``{alarm_id}:acknowledge`` must bind alarm_id without the suffix, also for ids with colons."""
    monitor, manager = FakeMonitor(CONFIG), FakeManager(CONFIG)
    manager.items = {1: FakeAlarm(1, "T-1", "warning")}
    manager.items["a:b"] = FakeAlarm("a:b", "T-1", "watch")
    with TestClient(create_app(monitor, manager, None, TOKEN)) as client:
        assert client.post("/api/alarms/a:b:acknowledge", json={}, headers=AUTH).status_code == 200
        assert manager.items["a:b"].state == "acknowledged" and manager.items[1].state == "active"
        assert client.get("/api/alarms/1:acknowledge").status_code == 404  # a read of an alarm named so


def test_openapi_declares_the_token_on_mutations_only(setup):
    client, *_ = setup
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert bool(op.get("security")) == (method == "post"), (method, path)
    assert "/api/alarms/{alarm_id}:acknowledge" in spec["paths"]


def test_no_wildcard_cors(setup):
    client, *_ = setup
    response = client.get("/api/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_websocket_forwards_alarm_events_and_values(setup):
    client, monitor, manager = setup
    with client.websocket_connect("/api/live") as ws:
        assert ws.receive_json()["type"] == "hello"
        # The feeding thread publishes; NaN must arrive as null.
        t = threading.Thread(
            target=manager.subscribers[0], args=({"kind": "raised", "alarm_id": 3, "value": float("nan")},)
        )
        t.start()
        t.join()
        assert ws.receive_json() == {"kind": "raised", "alarm_id": 3, "value": None}
        monitor.subscribers[0]({"type": "values", "time": 101.0})
        assert ws.receive_json() == {"type": "values", "time": 101.0}


def test_hub_counts_overflow_and_asks_for_resync():
    import asyncio

    async def scenario():
        hub = Hub(maxsize=2)
        client = hub.connect()
        for i in range(5):
            hub._fanout({"i": i})
        got = [client.queue.get_nowait() for _ in range(2)]
        return got, client.take_resync(), client.take_resync(), hub.dropped_total

    got, note, again, dropped = asyncio.run(scenario())
    assert got == [{"i": 0}, {"i": 1}] and note == {"type": "resync", "dropped": 3} and again is None
    assert dropped == 3


def test_page_and_vendored_chart_library_are_served(setup):
    client, *_ = setup
    page = client.get("/")
    assert page.status_code == 200 and "uPlot.iife.min.js" in page.text
    assert client.get("/static/vendor/uPlot.iife.min.js").status_code == 200
    assert (
        client.get("/static/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))
    )


def test_resolve_token_sources(tmp_path):
    f = tmp_path / "token"
    f.write_text("  from-a-file-0123456789\n")
    assert resolve_token(f, env={"VIGIL_API_TOKEN": "ignored-because-file-wins"})[0] == "from-a-file-0123456789"
    f.write_text("short")
    with pytest.raises(ConfigError, match="at least 16"):
        resolve_token(f, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_token(tmp_path / "missing", env={})
    a, b = resolve_token(env={})[0], resolve_token(env={})[0]
    assert a != b
