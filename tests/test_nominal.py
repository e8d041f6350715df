"""Operator-nominal patterns (vigil.detect.nominal) and operator feedback through the API: a benign
episode marked nominal does not alarm when it recurs; a different anomaly on that channel still does.

Generated data: a 1 Hz temperature on a 10-minute cycle with noise; injected episodes: a heater bump
(+3 over 40 s), the same bump again at another phase of the cycle, the bump inverted (-3), and the
bump at three times the amplitude (+9).
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vigil.alarms import AlarmError, AlarmManager
from vigil.config import MonitorConfig
from vigil.detect import build_detector
from vigil.detect.nominal import NominalFilter, episode_pattern, pattern_matches
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor
from vigil.monitor.operator import with_operator_state
from vigil.serve.app import create_app
from vigil.store.sqlite import SqliteStore

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = {"channels": {"HTR_T": {"subsystem": "thermal", "units": "degC", "limits": {"warning": [10, 30]}}}}
T0 = 1_700_000_000.0
#: Where the episodes start (sample index of the live stream) and their amplitude.
FIRST, AGAIN, INVERTED, LARGER = 1000, 3000, 5000, 6500


def baseline(n: int, seed: int) -> np.ndarray:
    t = np.arange(n, dtype=float)
    return 20 + 2 * np.sin(2 * np.pi * t / 600) + np.random.default_rng(seed).normal(0, 0.05, n)


def bump(x: np.ndarray, at: int, amp: float, width: int = 40) -> np.ndarray:
    x = x.copy()
    x[at : at + width] += amp * np.sin(np.linspace(0, np.pi, width))
    return x


def live_stream() -> np.ndarray:
    x = baseline(8000, 5)
    for at, amp in ((FIRST, 3.0), (AGAIN, 3.0), (INVERTED, -3.0), (LARGER, 9.0)):
        x = bump(x, at, amp)
    return x


def fitted(config: MonitorConfig):
    nominal = TelemetryBlock.from_arrays(T0 - 6000 + np.arange(6000.0), baseline(6000, 0)[:, None], ["HTR_T"])
    return build_detector(config).fit(nominal)


def block(x: np.ndarray, a: int, b: int) -> TelemetryBlock:
    return TelemetryBlock.from_arrays(T0 + np.arange(a, b, dtype=float), x[a:b, None], ["HTR_T"])


def flagged_episodes(levels: np.ndarray, offset: int) -> set[int]:
    """Which injected episodes have a flagged sample within 60 s of their start."""
    idx = np.flatnonzero(levels) + offset
    return {at for at in (FIRST, AGAIN, INVERTED, LARGER) if ((idx >= at) & (idx < at + 60)).any()}


def test_matching_is_scale_free_and_needs_the_same_shape_and_range():
    x = live_stream()
    pattern = episode_pattern(T0 + np.arange(2000.0), x[:2000], T0 + FIRST + 3, T0 + FIRST + 40, window=16)
    onset = pattern["lead"] + 1
    window = np.asarray(pattern["values"][onset - 16 : onset])
    assert pattern_matches(pattern, window)["distance"] == pytest.approx(0.0, abs=1e-12)
    shifted = pattern_matches(pattern, window + 1.5)  # the same episode on a higher baseline
    assert shifted["distance"] == pytest.approx(0.0, abs=1e-9) and shifted["shift"] == pytest.approx(1.5)
    assert pattern_matches(pattern, 2 * window.mean() - window) is None  # inverted: another shape
    assert pattern_matches(pattern, window.mean() + 3 * (window - window.mean())) is None  # 3x the amplitude
    assert pattern_matches(pattern, np.full(16, window.mean())) is None  # flat vs a rising window


def test_a_marked_episode_recurring_passes_and_a_different_one_still_flags():
    config = MonitorConfig.from_dict(CONFIG)
    x = live_stream()
    plain = fitted(config)
    before = plain.score(block(x, 0, 8000)).level[:, 0]
    assert flagged_episodes(before, 0) == {FIRST, AGAIN, INVERTED, LARGER}  # all four alarm unmarked

    wrapped = NominalFilter(fitted(config))
    first = wrapped.score(block(x, 0, 2000)).level[:, 0]
    flagged = np.flatnonzero(first)
    pattern = episode_pattern(T0 + np.arange(2000.0), x[:2000], T0 + flagged[0], T0 + flagged[-1], window=16)
    pattern.update(id=1, channel="HTR_T", user="ana", wall_time=T0)
    wrapped.add(pattern, recent=x[2000 - 16 : 2000])
    after = wrapped.score(block(x, 2000, 8000)).level[:, 0]
    assert flagged_episodes(after, 2000) == {INVERTED, LARGER}
    assert wrapped.status(1)["matched_samples"] > 40


def test_the_filter_continues_a_stream_exactly_after_a_checkpoint():
    config = MonitorConfig.from_dict(CONFIG)
    x = live_stream()
    pattern = episode_pattern(T0 + np.arange(2000.0), x[:2000], T0 + FIRST + 3, T0 + FIRST + 300, window=16)
    pattern.update(id=1, channel="HTR_T", user="ana", wall_time=T0)
    one = NominalFilter(fitted(config), [pattern])
    whole = one.score(block(x, 0, 8000)).level[:, 0]
    two = NominalFilter(fitted(config), [pattern])
    head = two.score(block(x, 0, AGAIN + 10)).level[:, 0]  # cut inside the recurrence
    saved = two.stream_state()
    three = NominalFilter(fitted(config), [pattern])
    three.set_stream_state(saved)
    tail = three.score(block(x, AGAIN + 10, 8000)).level[:, 0]
    assert np.array_equal(np.r_[head, tail], whole)
    assert three.status(1) == one.status(1)


# --- through the API, with a real monitor, alarm manager and store ----------------------------------
def make_console(path, config: dict = CONFIG):
    config = MonitorConfig.from_dict(config)
    store = SqliteStore(path)
    detector = with_operator_state(fitted(config), config, store)
    manager = AlarmManager(config, store=store)
    monitor = Monitor(config, detector, manager, store=store, history_points=4096, history_s=10**6)
    return create_app(monitor, manager, store=store, token=TOKEN), monitor, manager


def raised_in(manager: AlarmManager, a: int, b: int) -> list[int]:
    """Alarms raised or reactivated (an unfinished alarm of the channel) between samples a and b."""
    kinds = ("raised", "reactivated")
    return [e.alarm_id for e in manager.audit() if e.action in kinds and T0 + a <= e.time < T0 + b]


def test_mark_nominal_end_to_end_audited_listed_undoable_and_kept_over_a_restart(tmp_path):
    x = live_stream()
    app, monitor, manager = make_console(tmp_path / "s.sqlite")
    with TestClient(app) as client:
        monitor.feed_block(block(x, 0, 2000))
        (first,) = raised_in(manager, FIRST, FIRST + 60)
        url = f"/api/alarms/{first}:mark-nominal"
        assert client.post(url, json={"comment": "heater cycle"}).status_code == 401
        assert client.post(url, json={"user": "ana"}, headers=AUTH).status_code == 422  # a comment is required
        reply = client.post(url, json={"user": "ana", "comment": "heater cycle"}, headers=AUTH)
        assert reply.status_code == 200, reply.text
        mark = reply.json()
        assert mark["channel"] == "HTR_T" and mark["alarm_id"] == first and "values" not in mark
        assert mark["explanation"].startswith("matches the nominal pattern marked by ana at 20")
        listed = client.get("/api/nominal").json()
        assert [p["id"] for p in listed] == [mark["id"]]
        trail = client.get(f"/api/alarms/{first}").json()["audit"]
        assert trail[-1]["action"] == "marked nominal" and "heater cycle" in trail[-1]["comment"]
        client.post(f"/api/alarms/{first}:acknowledge", json={}, headers=AUTH).raise_for_status()  # it ends

        monitor.feed_block(block(x, 2000, 8000))
        assert raised_in(manager, AGAIN, INVERTED) == []  # the same benign bump, and its tail: no alarm
        assert raised_in(manager, INVERTED, INVERTED + 60) and raised_in(manager, LARGER, LARGER + 60)
        assert client.get("/api/nominal").json()[0]["matched_samples"] > 40

        undo = client.post(f"/api/alarms/{first}:unmark-nominal", json={"user": "ana"}, headers=AUTH)
        assert undo.status_code == 200 and client.get("/api/nominal").json() == []
        assert client.get("/api/nominal", params={"withdrawn": True}).json()[0]["removed_by"] == "ana"
        assert client.post(f"/api/alarms/{first}:unmark-nominal", json={}, headers=AUTH).status_code == 409
        x2 = bump(baseline(10000, 5), 8500, 3.0)  # the stream goes on; the bump once more, unmarked: it alarms
        monitor.feed_block(block(x2, 8000, 10000))
        assert raised_in(manager, 8500, 8560)


def test_marks_are_given_back_at_restart(tmp_path):
    x = live_stream()
    app, monitor, manager = make_console(tmp_path / "s.sqlite")
    with TestClient(app) as client:
        monitor.feed_block(block(x, 0, 2000))
        (first,) = raised_in(manager, FIRST, FIRST + 60)
        client.post(f"/api/alarms/{first}:mark-nominal", json={"comment": "heater"}, headers=AUTH).raise_for_status()
        client.post(f"/api/alarms/{first}:acknowledge", json={}, headers=AUTH).raise_for_status()
    manager.store.close()
    app, monitor, manager = make_console(tmp_path / "s.sqlite")  # a restarted monitor on the same store
    assert [p["alarm_id"] for p in monitor.detector.patterns.values()] == [first]
    monitor.feed_block(block(x, 2000 - 16, 8000))  # the stream resumes (with the window's lead-in)
    assert raised_in(manager, AGAIN, AGAIN + 60) == []
    assert raised_in(manager, INVERTED, INVERTED + 60)


def test_a_limit_alarm_cannot_be_marked_nominal_and_notes_are_audited(tmp_path):
    x = baseline(2000, 5)
    x[1500:1510] = 35.0  # above the severe limit (34): a limit alarm
    severe = {"channels": {"HTR_T": {"subsystem": "thermal", "limits": {"warning": [10, 30], "severe": [5, 34]}}}}
    app, monitor, manager = make_console(tmp_path / "s.sqlite", severe)
    with TestClient(app) as client:
        monitor.feed_block(block(x, 0, 2000))
        limit_alarm = next(a for a in manager.alarms(state="all") if a.detector == "limits")
        reply = client.post(f"/api/alarms/{limit_alarm.id}:mark-nominal", json={"comment": "x"}, headers=AUTH)
        assert reply.status_code == 409 and "change the limit" in reply.json()["detail"]
        assert client.post(f"/api/alarms/{limit_alarm.id}:comment", json={"comment": "seen"}).status_code == 401
        note = client.post(
            f"/api/alarms/{limit_alarm.id}:comment", json={"user": "bo", "comment": "seen"}, headers=AUTH
        )
        assert note.status_code == 200
        trail = client.get(f"/api/alarms/{limit_alarm.id}").json()["audit"]
        assert (trail[-1]["action"], trail[-1]["user"], trail[-1]["comment"]) == ("commented", "bo", "seen")
        assert client.post("/api/alarms/999:comment", json={"comment": "x"}, headers=AUTH).status_code == 404


def test_manager_refuses_a_mark_without_a_reason():
    manager = AlarmManager(MonitorConfig.from_dict(CONFIG), store=SqliteStore(":memory:"))
    with pytest.raises(AlarmError, match="comment"):
        manager.mark_nominal(1, "ana", "  ", {})
