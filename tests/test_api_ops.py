"""The API over the archive (history of any span) and the time-until-limit forecast."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor
from vigil.monitor.extras import attach
from vigil.serve.app import create_app

T0 = 1_700_006_400.0
CONFIG = MonitorConfig.from_dict(
    {
        "channels": {
            "BATT_T": {"subsystem": "power", "units": "degC", "limits": {"warning": [0, 35], "critical": [-10, 40]}},
            "FLAT": {"subsystem": "power"},
        }
    }
)


@pytest.fixture
def client(tmp_path):
    names = ["BATT_T", "FLAT"]
    det = LimitCheck(CONFIG.limits()).fit(TelemetryBlock.from_arrays([0.0], [[20.0, 0.0]], names))
    manager = AlarmManager(CONFIG, clock=lambda: 0.0)
    monitor = Monitor(CONFIG, det, manager, history_points=300)  # the ring holds 5 minutes
    extras = attach(monitor, manager, tmp_path / "archive")
    t = T0 + np.arange(7200.0)
    batt = 20 + (t - T0) / 720 + np.random.default_rng(0).normal(0, 0.05, t.size)  # +5 per hour, 30 at the end
    flat = np.zeros(t.size)
    flat[1000] = 99.0  # one spike, long out of the ring
    for a in range(0, t.size, 600):
        monitor.feed_block(TelemetryBlock.from_arrays(t[a : a + 600], np.c_[batt, flat][a : a + 600], names))
    app = create_app(monitor, manager, store=None, token="t" * 20, extras=extras)
    with TestClient(app) as c:
        yield c, extras
    extras.close()


def test_history_of_an_old_span_comes_from_the_archive_with_the_spike(client):
    c, extras = client
    got = c.get("/api/channels/FLAT/history", params={"start": T0, "end": T0 + 7199, "max_points": 100}).json()
    assert got["source"] == "archive" and len(got["time"]) <= 100 and max(got["value"]) == 99.0
    whole = c.get("/api/channels/FLAT/history", params={"start": T0, "end": T0 + 7199, "max_points": 20000}).json()
    assert whole["time"] == (T0 + np.arange(7200.0)).tolist()  # disk and the writer's buffer, no gap
    recent = c.get("/api/channels/FLAT/history", params={"start": T0 + 7100}).json()
    assert recent["source"] == "memory" and recent["time"][0] == T0 + 7100 and len(recent["time"]) == 100
    assert extras.archive.status()["dropped"] == 0


def test_time_to_limit_in_the_channel_state_and_the_latest_column(client):
    c, _ = client
    state = c.get("/api/channels/BATT_T/latest").json()
    ttl = state["time_to_limit"]  # at 30, rising 5 per hour: warning 35 in about an hour
    assert (ttl["limit"], ttl["severity"]) == (35.0, "warning")
    assert abs(ttl["seconds"] - 3600) < 360 and ttl["seconds_low"] < ttl["seconds"] < ttl["seconds_high"]
    assert state["time_to_limit_text"].startswith("BATT_T reaches warning 35 degC in about 1 h")
    assert c.get("/api/channels/FLAT/latest").json()["time_to_limit"] is None  # no limits
    latest = c.get("/api/latest").json()
    column = dict(zip(latest["channels"], latest["time_to_limit"]))
    assert column["BATT_T"]["limit"] == 35.0 and column["FLAT"] is None
    assert c.get("/api/channels/NOPE/latest").status_code == 404
    health = c.get("/api/health").json()
    assert health["archive"]["samples_written"] >= 0 and health["notify"] is None


def test_archive_day_read_is_fast_enough(tmp_path):
    """Not a benchmark (BENCHMARKS.md has it), a guard: 86,400 samples of one channel in well under 2 s."""
    from vigil.archive import ArchiveReader, ArchiveWriter

    with ArchiveWriter(tmp_path, ("A", "B")) as writer:
        for a in range(0, 86400, 3600):
            writer.append(T0 + a + np.arange(3600.0), np.ones((3600, 2)))
    t = time.perf_counter()
    got = ArchiveReader(tmp_path).history("A", T0, T0 + 86400, max_points=2000)
    assert len(got["time"]) == 1000 and time.perf_counter() - t < 2.0  # constant: one sample per bucket
