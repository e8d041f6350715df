"""The console API over a real monitor, alarm manager and store fed hand-made blocks (values worked out by hand)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.errors import ConfigError
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor
from vigil.serve.app import create_app, loopback_hosts
from vigil.serve.auth import resolve_token
from vigil.serve.hub import Hub
from vigil.store.sqlite import SqliteStore

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CONFIG = MonitorConfig.from_dict(
    {
        "channels": {
            "T-1": {
                "subsystem": "thermal",
                "units": "degC",
                "rate_hz": 1.0,
                "limits": {"warning": [0, 10], "critical": [-5, 15]},
                "min_conformance": 1,  # return to normal at the first nominal sample (default with limits: 10)
            },
            "P-2": {"subsystem": "power", "stale_after_s": 30.0},
            "Q-3": {"subsystem": "power"},
        }
    }
)


def make_stack():
    """A real monitor, alarm manager and store fed a hand-made block (values worked out below)."""
    manager = AlarmManager(CONFIG, store=SqliteStore(":memory:"))
    names = ["T-1", "P-2", "Q-3"]
    detector = LimitCheck(CONFIG.limits()).fit(TelemetryBlock.from_arrays([0.0], [[5.0, 1.0, 3.0]], names))
    monitor = Monitor(CONFIG, detector, manager)
    # T-1: warning (12 > 10) at t=102, critical (16 > 15) at t=104, back in band at t=105 -> alarm 1,
    # rtn_unacknowledged. Then only Q-3 reports until t=115: T-1 and P-2 were last seen at t=109.
    t = np.arange(100.0, 110.0)
    t1 = [5, 5, 12, 12, 16, 5, 5, 5, 5, 5]
    monitor.feed_block(TelemetryBlock.from_arrays(t, np.c_[t1, np.ones(10), np.full(10, 3.0)], names))
    t = np.arange(110.0, 116.0)
    monitor.feed_block(TelemetryBlock.from_arrays(t, np.c_[np.full((6, 2), np.nan), np.full(6, 3.0)], names))
    return monitor, manager


@pytest.fixture
def setup():
    monitor, manager = make_stack()
    app = create_app(monitor, manager, store=manager.store, token=TOKEN)
    with TestClient(app) as client:
        yield client, monitor, manager


def test_health_and_data_clock(setup):
    client, *_ = setup
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["channels"] == 3 and body["data_time"] == 115.0


def test_channels_carry_configuration(setup):
    client, *_ = setup
    chans = {c["name"]: c for c in client.get("/api/channels").json()}
    assert chans["T-1"]["limits"] == {"warning": [0.0, 10.0], "critical": [-5.0, 15.0]}
    assert chans["T-1"]["stale_after_s"] == 3.0  # three periods at 1 Hz
    assert chans["Q-3"]["stale_after_s"] is None
    assert [c["name"] for c in client.get("/api/channels", params={"subsystem": "power"}).json()] == ["P-2", "Q-3"]


def test_latest_staleness_and_alarm_level(setup):
    client, *_ = setup
    body = client.get("/api/latest").json()
    assert body["channels"] == ["T-1", "P-2", "Q-3"]
    assert body["time"] == [109.0, 109.0, 115.0] and body["value"] == [5.0, 1.0, 3.0]
    assert body["age"] == [6.0, 6.0, 0.0]
    assert body["stale"] == [True, False, False]  # 6 s > 3 s; 6 s < 30 s; Q-3 has no rate
    assert body["alarm"] == [4, 0, 0]  # T-1: critical (back in band, unacknowledged) + stale warning
    assert body["level"] == [0, 0, 0]


def test_subsystems_summary(setup):
    client, *_ = setup
    subs = {s["subsystem"]: s for s in client.get("/api/subsystems").json()}
    assert subs["thermal"] == {"subsystem": "thermal", "channels": 1, "worst": 4, "in_alarm": 1, "stale": 1}
    assert subs["power"] == {"subsystem": "power", "channels": 2, "worst": 0, "in_alarm": 0, "stale": 0}


def test_history_with_limits_and_alarm_periods(setup):
    client, *_ = setup
    body = client.get("/api/channels/T-1/history", params={"t0": 100, "t1": 109, "max_points": 100}).json()
    assert body["time"] == [float(t) for t in range(100, 110)]
    assert body["value"] == [5.0, 5.0, 12.0, 12.0, 16.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    assert body["level"] == [0, 0, 2, 2, 4, 0, 0, 0, 0, 0]
    assert body["expected"] == [None] * 10  # limits expect nothing: NaN travels as null
    assert body["limits"] == {"warning": [0.0, 10.0], "critical": [-5.0, 15.0]}
    assert body["alarms"] == [
        {"id": 1, "severity": "critical", "state": "rtn_unacknowledged", "start": 102.0, "end": 105.0},
        {
            "id": 2,
            "severity": "warning",
            "state": "active",
            "start": 112.0,
            "end": None,
        },  # stale at last sample + limit
    ]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/channels/NOPE/history", 404),
        ("/api/channels/T-1/history?t0=nan", 422),
        ("/api/channels/T-1/history?max_points=1", 422),
        ("/api/alarms?severity=huge", 422),
        ("/api/alarms?state=sleeping", 422),
        ("/api/alarms/999", 404),
        ("/api/alarms/abc", 404),
        ("/api/audit?alarm_id=999", 404),
    ],
)
def test_bad_reads_are_4xx(setup, path, status):
    client, *_ = setup
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_history_of_an_empty_window(setup):
    client, *_ = setup
    body = client.get("/api/channels/T-1/history", params={"t0": 105, "t1": 101}).json()
    assert body["time"] == [] and body["value"] == [] and len(body["alarms"]) == 2


def test_alarm_filters(setup):
    client, *_ = setup
    ids = lambda **q: [a["id"] for a in client.get("/api/alarms", params=q).json()]  # noqa: E731
    assert ids() == [2, 1]  # unfinished, newest first
    assert ids(state="rtn_unacknowledged") == [1]
    assert ids(severity="warning") == [2]
    assert ids(state="cleared") == []
    assert ids(channel="P-2") == []
    one = client.get("/api/alarms/1").json()
    assert one["alarm"]["peak_value"] == 16.0 and one["alarm"]["expected"] is None
    assert [e["action"] for e in one["audit"]] == ["raised", "escalated", "rtn"]


@pytest.mark.parametrize("verb", ["acknowledge", "shelve", "unshelve", "clear"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0000000000"}, {"Authorization": TOKEN}])
def test_every_verb_refuses_without_the_token(setup, verb, headers):
    client, _monitor, manager = setup
    response = client.post(f"/api/alarms/1:{verb}", json={"duration_s": 60}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert manager.get(1).state == "rtn_unacknowledged" and len(manager.audit()) == 4


def test_acknowledge_with_token_changes_state_and_audits(setup):
    client, _monitor, manager = setup
    response = client.post("/api/alarms/1:acknowledge", json={"user": "flight", "comment": "seen"}, headers=AUTH)
    assert response.status_code == 200, response.text
    # Back in band and not latching: acknowledging ends it.
    assert response.json()["state"] == "cleared" and response.json()["acknowledged_by"] == "flight"
    last = client.get("/api/audit", params={"alarm_id": 1}).json()[-1]
    assert (last["user"], last["comment"], last["to_state"]) == ("flight", "seen", "cleared")
    assert [a["id"] for a in client.get("/api/alarms", params={"state": "cleared"}).json()] == [1]
    again = client.post("/api/alarms/1:acknowledge", json={}, headers=AUTH)
    assert again.status_code == 409 and again.json()["detail"].startswith("cannot acknowledge alarm 1")


def test_shelve_unshelve_acknowledge_clear(setup):
    client, _monitor, manager = setup
    before = time.time()
    shelved = client.post("/api/alarms/2:shelve", json={"duration_s": 600, "comment": "known dropout"}, headers=AUTH)
    after = time.time()
    assert shelved.json()["state"] == "shelved"
    assert before + 600 <= shelved.json()["shelved_until"] <= after + 600  # wall clock + duration
    assert client.post("/api/alarms/2:unshelve", headers=AUTH).json()["state"] == "active"
    refused = client.post("/api/alarms/2:clear", json={"user": "fd"}, headers=AUTH)
    assert refused.status_code == 409 and "still out of nominal" in refused.json()["detail"]
    assert client.post("/api/alarms/2:acknowledge", headers=AUTH, json={}).json()["state"] == "acknowledged"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/alarms/2:shelve", {}, 422),  # duration is required
        ("/api/alarms/2:shelve", {"duration_s": -5}, 422),
        ("/api/alarms/2:shelve", {"duration_s": 1e9}, 422),
        ("/api/alarms/2:acknowledge", {"comment": "x" * 5000}, 422),
        ("/api/alarms/2:acknowledge", {"user": "<script>"}, 422),
        ("/api/alarms/2:acknowledge", {"colour": "red"}, 422),
        ("/api/alarms/2:acknowledge", [1, 2], 422),
        ("/api/alarms/42:acknowledge", {}, 404),
        ("/api/alarms/2:unshelve", {}, 409),  # not shelved
        ("/api/alarms/2:explode", {}, 404),  # not a verb: no route
        ("/api/alarms/99999999999999999999:acknowledge", {}, 422),  # beyond any stored id
    ],
)
def test_bad_mutations_are_4xx(setup, path, body, status):
    client, _monitor, manager = setup
    response = client.post(path, json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert manager.get(2).state == "active"


def test_verb_path_routes_to_the_verb_not_the_read(setup):
    """``{alarm_id}:acknowledge`` binds alarm_id without the suffix; the GET route does not take verbs."""
    client, _monitor, manager = setup
    assert client.post("/api/alarms/2:acknowledge", json={}, headers=AUTH).status_code == 200
    assert manager.get(2).state == "acknowledged" and manager.get(1).state == "rtn_unacknowledged"
    assert client.get("/api/alarms/2:acknowledge").status_code == 405  # only POST reaches a verb
    assert client.options("/api/alarms/2:acknowledge").headers["allow"] == "POST"


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


def test_websocket_forwards_values_and_alarm_events(setup):
    client, monitor, _manager = setup
    lock = client.app.state.console.lock
    names = ["T-1", "P-2", "Q-3"]
    # T-1 reports again at 20 (above critical 15): alarm 1 (back in band, unacknowledged) reactivates.
    block = TelemetryBlock.from_arrays([116.0, 117.0], [[20.0, 1.0, 3.0], [20.0, 1.0, 3.0]], names)

    def feed():
        with lock:
            monitor.feed_block(block)

    with client.websocket_connect("/api/live") as ws:
        assert ws.receive_json()["type"] == "hello"
        feeder = threading.Thread(target=feed)
        feeder.start()
        feeder.join()
        got = [ws.receive_json() for _ in range(3)]
    kinds = [(m["type"], m.get("kind"), m.get("alarm_id")) for m in got]
    assert ("alarm", "reactivated", 1) in kinds and ("values", None, None) in kinds
    tick = next(m for m in got if m["type"] == "values")
    assert tick["channels"] == names and tick["value"] == [20.0, 1.0, 3.0]
    alarm = next(m for m in got if m.get("kind") == "reactivated")
    assert alarm["payload"]["expected"] is None  # NaN as null on the wire


def test_hub_counts_overflow_and_asks_for_resync():
    import asyncio

    async def scenario():
        hub = Hub(maxsize=2)
        client = hub.connect()
        for i in range(5):
            hub._fanout("alarm", json.dumps({"i": i}))
        got = [json.loads(await client.next()) for _ in range(2)]
        return got, client.take_resync(), client.take_resync(), hub.dropped_total, client.dropped_total

    got, note, again, dropped, by_client = asyncio.run(scenario())
    assert got == [{"i": 0}, {"i": 1}] and json.loads(note) == {"type": "resync", "dropped": 3} and again is None
    assert dropped == by_client == 3


def test_a_slow_client_holds_the_newest_ticks_and_every_alarm_event():
    import asyncio

    def tick(t):
        return json.dumps({"type": "values", "time": t})

    async def scenario():
        hub = Hub(maxsize=8)
        client = hub.connect()
        client.tick_backlog = 2
        hub._fanout("values", tick(1.0))
        hub._fanout("alarm", json.dumps({"type": "alarm", "alarm_id": 1}))
        hub._fanout("values", tick(2.0))
        hub._fanout("values", tick(3.0))
        got = [json.loads(await client.next()) for _ in range(3)]
        return got, client.dropped, list(client.ticks), list(client.events)

    got, dropped, ticks_left, events_left = asyncio.run(scenario())
    assert got == [{"type": "alarm", "alarm_id": 1}, {"type": "values", "time": 2.0}, {"type": "values", "time": 3.0}]
    assert (dropped, ticks_left, events_left) == (1, [], [])  # the oldest tick gave way: counted


def test_page_and_vendored_chart_library_are_served(setup):
    client, *_ = setup
    page = client.get("/")
    assert page.status_code == 200 and "uPlot.iife.min.js" in page.text
    assert "script-src 'self';" in page.headers["content-security-policy"]  # no inline or third-party script
    assert "<script>" not in page.text
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


def test_reference_timeline_is_sorted_and_json_safe():
    monitor, manager = make_stack()
    events = [{"time": 110.0, "kind": "call", "label": "b"}, {"time": 101.0, "kind": "los", "label": float("nan")}]
    with TestClient(create_app(monitor, manager, None, TOKEN, events=events)) as client:
        assert client.get("/api/events").json() == [
            {"time": 101.0, "kind": "los", "label": None},
            {"time": 110.0, "kind": "call", "label": "b"},
        ]
    with TestClient(create_app(monitor, manager, None, TOKEN)) as client:
        assert client.get("/api/events").json() == []


def test_loopback_console_refuses_foreign_host_names():
    """Against DNS rebinding: a console bound to 127.0.0.1 answers only to this machine's names."""
    monitor, manager = make_stack()
    app = create_app(monitor, manager, None, TOKEN, allowed_hosts=loopback_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://localhost:8000") as client:
        assert client.get("/api/health").status_code == 200
        assert client.get("/api/health", headers={"Host": "127.0.0.1:8000"}).status_code == 200
        assert client.get("/api/health", headers={"Host": "attacker.example"}).status_code == 400
