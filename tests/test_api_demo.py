"""``vigil demo``'s data and replay: the STS-107 entry plus four SMAP/MSL-like channels, fed live."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vigil.errors import DataError
from vigil.model import TelemetryBlock
from vigil.scenarios.sts107 import HYDRAULIC_RETURN_LINES, SENSORS
from vigil.serve.demo import EXTRA_CHANNELS, build_demo, build_demo_data
from vigil.serve.runner import BlockReplay

TOKEN = "demo-test-token-0123456789"


@pytest.fixture(scope="module")
def demo():
    session = build_demo(TOKEN, speed=1e6, store_path=None)
    session.replay.run()  # in this thread: at 1e6x the entry is fed in a tick or two
    yield session
    session.store.close()


def test_demo_data_adds_four_channels_on_the_same_time_axis():
    data = build_demo_data(seed=0)
    names = [name for name, _s, _k in EXTRA_CHANNELS]
    assert data.replay.channels[-4:] == tuple(names)
    assert data.replay.n_channels == len(SENSORS) + 4
    assert data.training.channels == data.replay.channels
    assert data.config.channels["MSL-T3"].subsystem == "msl-like"
    assert "injected drift" in data.config.channels["MSL-T3"].description
    assert np.all(np.diff(data.replay.time) > 0) and data.replay.time[0] > 1e9  # epoch seconds (2003)


def test_replay_feeds_every_row_and_raises_the_hydraulic_alarms(demo):
    assert demo.replay.status() | {"last_error": None} == {
        "feeder": "replay", "rows": demo.replay.block.n_samples, "done": True, "errors": 0, "last_error": None,
        "speed": 1e6, "total_rows": demo.replay.block.n_samples,
    }  # fmt: skip
    ei = build_demo_data().events[0]["time"]  # entry interface is the timeline's first event
    hyd = {a.channel: a for a in demo.manager.alarms(state="all") if a.channel in HYDRAULIC_RETURN_LINES}
    assert set(hyd) == set(HYDRAULIC_RETURN_LINES)
    # The timeline puts the four return lines off-scale low at EI+561 s (+-30 s).
    for alarm in hyd.values():
        assert 531 <= alarm.first_time - ei <= 591 and alarm.severity == "critical"


def test_demo_console_serves_the_replay(demo):
    with TestClient(demo.app) as client:
        health = client.get("/api/health").json()
        assert health["feeders"][0]["done"] and health["store"] == str(demo.store_path)
        events = client.get("/api/events").json()
        assert any(e["kind"] == "call" and e["t_from_ei_s"] == 615 for e in events)  # MMACS's first call
        incident_channels = [c["channel"] for i in client.get("/api/incidents").json() for c in i["channels"]]
        assert set(HYDRAULIC_RETURN_LINES) <= set(incident_channels)


class _BrokenMonitor:
    """Raises on every feed, as a monitor would on a block it cannot take."""

    def feed_block(self, block):
        raise DataError("boom", source=block.source)


def test_a_failing_feed_is_counted_not_raised():
    block = TelemetryBlock.from_arrays(np.arange(5.0), np.zeros((5, 1)), ["X"], source="unit")
    replay = BlockReplay(_BrokenMonitor(), threading.RLock(), block, speed=1e6)
    replay.run()
    status = replay.status()
    assert status["done"] and status["errors"] >= 1 and status["rows"] == 5  # one error per chunk fed
    assert status["last_error"] == "DataError: unit: boom"
