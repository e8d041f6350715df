"""Limits changed at run time through the API: token, recorded, in force from the next sample, kept
over a restart (vigil.monitor.operator, vigil.serve.feedback). Values worked out by hand."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.ensemble import Ensemble
from vigil.detect.limits import LimitCheck
from vigil.detect.trend import TrendForecast
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor
from vigil.monitor.operator import with_operator_state
from vigil.serve.app import create_app
from vigil.store.sqlite import SqliteStore

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAW = {"channels": {"T-1": {"subsystem": "thermal", "limits": {"warning": [0, 10], "critical": [-5, 15]}}}}


def make(path):
    config = MonitorConfig.from_dict(RAW)
    store = SqliteStore(path)
    empty = TelemetryBlock.from_arrays([0.0], [[np.nan]], ["T-1"])
    inner = Ensemble([LimitCheck(config.limits()), TrendForecast(config.limits())]).fit(empty)
    detector = with_operator_state(inner, config, store)
    manager = AlarmManager(config, store=store)
    monitor = Monitor(config, detector, manager, store=store)
    return create_app(monitor, manager, store=store, token=TOKEN), monitor, manager


def feed(monitor, t0: float, values: list[float]) -> None:
    t = t0 + np.arange(len(values), dtype=float)
    monitor.feed_block(TelemetryBlock.from_arrays(t, np.asarray(values)[:, None], ["T-1"]))


def test_new_limits_take_effect_at_the_next_sample_and_are_recorded(tmp_path):
    app, monitor, manager = make(tmp_path / "s.sqlite")
    with TestClient(app) as client:
        feed(monitor, 100.0, [5.0, 12.0])  # 12 > 10: warning
        assert monitor.last_level_[0] == 2
        new = {"user": "ana", "comment": "heater margin agreed", "limits": {"warning": [0, 20], "critical": [None, 25]}}
        assert client.post("/api/channels/T-1/limits", json=new).status_code == 401
        bad = {**new, "limits": {"warning": [0, 20], "critical": [-5, 15]}}  # critical inside warning
        reply = client.post("/api/channels/T-1/limits", json=bad, headers=AUTH)
        assert reply.status_code == 422 and "critical" in reply.json()["detail"]
        assert client.post("/api/channels/NOPE/limits", json=new, headers=AUTH).status_code == 404
        reply = client.post("/api/channels/T-1/limits", json=new, headers=AUTH)
        assert reply.status_code == 200
        assert reply.json()["limits"] == {"warning": [0.0, 20.0], "critical": [None, 25.0]}
        feed(monitor, 102.0, [12.0, 22.0])  # 12 now nominal; 22 > 20: warning
        assert [c["limits"] for c in client.get("/api/channels").json()] == [reply.json()["limits"]]
        (change,) = client.get("/api/limits/changes").json()
        assert (change["user"], change["comment"], change["data_time"]) == ("ana", "heater margin agreed", 101.0)
        assert change["old"] == {"warning": [0.0, 10.0], "critical": [-5.0, 15.0]}
        trend = monitor.detector.inner.detectors[1]
        assert trend.high_[0, 1] == 20.0  # the time-until-limit forecast aims at the new limit
    history = monitor.history("T-1")
    assert history["level"] == [0, 2, 0, 2]
    assert manager.config.channels["T-1"].limits.warning == (0.0, 20.0)  # explanations name the new limit


def test_changed_limits_are_given_back_at_restart(tmp_path):
    app, monitor, _ = make(tmp_path / "s.sqlite")
    with TestClient(app) as client:
        body = {"comment": "wider", "limits": {"warning": [0, 20]}}
        client.post("/api/channels/T-1/limits", json=body, headers=AUTH).raise_for_status()
    monitor.store.close()
    _, monitor, manager = make(tmp_path / "s.sqlite")
    assert manager.config.channels["T-1"].limits.warning == (0.0, 20.0)
    assert manager.config.channels["T-1"].limits.critical is None
    feed(monitor, 200.0, [12.0, 21.0])
    assert monitor.history("T-1")["level"] == [0, 2]
