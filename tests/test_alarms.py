"""Alarm lifecycle, one hand-worked transition at a time (Yamcs / ISA-18.2 semantics)."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from vigil.alarms import AlarmError, AlarmManager, MemoryStore, UnknownAlarmError
from vigil.config import MonitorConfig
from vigil.detect.base import Scores
from vigil.detect.limits import LimitCheck
from vigil.errors import DataError
from vigil.model import TelemetryBlock

W, C = 2, 4  # warning, critical levels


class Clock:
    """An injected wall clock."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config(**channel) -> MonitorConfig:
    chans = {"A": {"subsystem": "power", **channel}, "B": {"subsystem": "power"}}
    return MonitorConfig.from_dict({"channels": chans})


def block(levels, t0: float = 0.0, values=None, channels=("A",)) -> tuple[TelemetryBlock, Scores]:
    """Samples at t0, t0+1, ... with the given detector levels; value = 100 * level unless given."""
    lv = np.asarray(levels, dtype=np.int8).reshape(len(levels), -1)
    vals = lv * 100.0 if values is None else np.asarray(values, dtype=float).reshape(lv.shape)
    n, c = lv.shape
    b = TelemetryBlock.from_arrays(t0 + np.arange(n), vals, list(channels))
    s = Scores.empty(n, c, "limits")
    s.level[:] = lv
    s.score[:] = np.where(lv > 0, lv.astype(float), 0.5)
    s.expected[:] = 0.0
    s.low[:], s.high[:] = -50.0, 50.0
    return b, s


def kinds(events) -> list[tuple[str, int, float]]:
    return [(e.kind, e.alarm_id, e.time) for e in events if e.kind != "incident"]


def trail(m: AlarmManager, alarm_id: int = 1) -> list[tuple[str, str, str | None, str]]:
    return [(e.action, e.user, e.from_state, e.to_state) for e in m.audit(alarm_id)]


def test_raise_after_min_violations_consecutive_samples():
    m = AlarmManager(config(min_violations=3))
    # Flagged at 1, 2 (run of 2, broken at 3), then 4, 5, 6: the third consecutive is t=6.
    events = m.update(*block([0, W, W, 0, W, W, W, 0]))
    assert kinds(events) == [("raised", 1, 6.0), ("rtn", 1, 7.0)]
    (a,) = m.alarms()
    assert (a.channel, a.subsystem, a.severity, a.first_time, a.trigger_value) == ("A", "power", "warning", 6.0, 200.0)
    assert a.state == "rtn_unacknowledged" and a.rtn_time == 7.0


def test_missing_samples_neither_count_nor_break_a_run():
    m = AlarmManager(config(min_violations=3))
    b, s = block([W, W, 0, W, 0], values=[200, 200, np.nan, 200, 0])
    assert kinds(m.update(b, s)) == [("raised", 1, 3.0), ("rtn", 1, 4.0)]


def test_return_to_normal_after_min_conformance_nominal_samples():
    m = AlarmManager(config(min_conformance=2))
    # Raised at 0; nominal at 1 (1 of 2), flagged at 2 resets, nominal at 3, 4: RTN at t=4.
    events = m.update(*block([W, 0, W, 0, 0, 0]))
    assert kinds(events) == [("raised", 1, 0.0), ("rtn", 1, 4.0)]
    assert m.get(1).state == "rtn_unacknowledged"


def test_escalation_keeps_the_peak_severity():
    m = AlarmManager(config())
    events = m.update(*block([W, C, W, 0], values=[200, 450, 300, 0]))
    assert kinds(events) == [("raised", 1, 0.0), ("escalated", 1, 1.0), ("rtn", 1, 3.0)]
    a = m.get(1)
    # The alarm describes the sample that set its current severity (not the one that raised it).
    assert (a.severity, a.level, a.peak_value, a.peak_time) == ("critical", C, 450.0, 1.0)
    assert (a.trigger_value, a.trigger_time, a.first_time) == (450.0, 1.0, 0.0)
    assert a.last_value == 300.0 and a.last_time == 2.0


def test_unlatched_acknowledged_then_rtn_ends_the_alarm():
    clock = Clock()
    m = AlarmManager(config(), clock=clock)
    m.update(*block([W, W]))
    a = m.acknowledge(1, "ann", "looking")
    assert (a.state, a.acknowledged_by, a.acknowledged_at, a.acknowledged_comment) == (
        "acknowledged",
        "ann",
        1000.0,
        "looking",
    )
    m.update(*block([0], t0=2))
    assert m.get(1).state == "cleared" and m.alarms() == []
    assert trail(m) == [
        ("raised", "system", None, "active"),
        ("acknowledged", "ann", "active", "acknowledged"),
        ("rtn", "system", "acknowledged", "cleared"),
    ]
    assert [(r["alarm_id"], r["user"], r["time"], r["comment"]) for r in m.acknowledgements()] == [
        (1, "ann", 1000.0, "looking")
    ]


def test_unlatched_rtn_then_acknowledged_ends_the_alarm():
    m = AlarmManager(config(), clock=Clock())
    m.update(*block([W, 0]))
    assert m.get(1).state == "rtn_unacknowledged"
    assert m.acknowledge(1, "ann").state == "cleared"
    assert trail(m)[-1] == ("acknowledged", "ann", "rtn_unacknowledged", "cleared")


def test_latched_alarm_waits_for_acknowledge_and_clear():
    clock = Clock()
    m = AlarmManager(config(latching=True), clock=clock)
    m.update(*block([C, 0, 0]))
    with pytest.raises(AlarmError, match="before it is acknowledged"):
        m.clear(1, "ann")
    assert m.acknowledge(1, "ann").state == "latched"
    clock.t = 1010.0
    a = m.clear(1, "bob", "reset after review")
    assert (a.state, a.cleared_by, a.cleared_at) == ("cleared", "bob", 1010.0)
    assert trail(m) == [
        ("raised", "system", None, "active"),
        ("rtn", "system", "active", "rtn_unacknowledged"),
        ("acknowledged", "ann", "rtn_unacknowledged", "latched"),
        ("cleared", "bob", "latched", "cleared"),
    ]


def test_clear_refused_while_out_of_nominal():
    m = AlarmManager(config(latching=True))
    m.update(*block([C]))
    m.acknowledge(1, "ann")
    with pytest.raises(AlarmError, match="still out of nominal"):
        m.clear(1, "ann")


def test_new_violation_reactivates_the_unacknowledged_alarm():
    m = AlarmManager(config())
    events = m.update(*block([W, 0, 0, C, 0]))
    assert kinds(events) == [("raised", 1, 0.0), ("rtn", 1, 1.0), ("reactivated", 1, 3.0), ("rtn", 1, 4.0)]
    (a,) = m.alarms()
    assert (a.id, a.occurrences, a.severity, a.peak_value) == (1, 2, "critical", 400.0)


def test_reactivation_of_a_latched_alarm_needs_a_new_acknowledgement():
    m = AlarmManager(config(latching=True))
    m.update(*block([W, 0]))
    m.acknowledge(1, "ann")
    m.update(*block([W], t0=2))
    a = m.get(1)
    assert (a.state, a.acknowledged_by, a.occurrences) == ("active", None, 2)
    assert [r["user"] for r in m.acknowledgements(1)] == ["ann"]  # the first acknowledgement is kept


def test_a_cleared_channel_raises_a_new_alarm():
    m = AlarmManager(config())
    m.update(*block([W, 0]))
    m.acknowledge(1, "ann")
    assert kinds(m.update(*block([W], t0=5))) == [("raised", 2, 5.0)]


def test_shelve_expires_on_the_injected_clock():
    clock = Clock(1000.0)
    m = AlarmManager(config(), clock=clock)
    m.update(*block([W]))
    a = m.shelve(1, "ann", 60, "known issue")
    assert (a.state, a.shelved_by, a.shelved_until) == ("shelved", "ann", 1060.0)
    # While shelved the alarm keeps its lifecycle but does not notify.
    (esc,) = [e for e in m.update(*block([C], t0=1)) if e.kind == "escalated"]
    assert esc.notify is False and esc.payload["state"] == "shelved"
    clock.t = 1059.9
    assert m.get(1).state == "shelved"
    clock.t = 1060.0
    assert m.get(1).state == "active"  # a query applies the expiry
    assert trail(m)[-1] == ("unshelved", "system", "shelved", "active")
    assert m.audit(1)[-1].comment == "shelve expired" and m.audit(1)[-1].time == 1060.0


def test_unshelve_by_operator_and_errors():
    m = AlarmManager(config(), clock=Clock())
    m.update(*block([W]))
    with pytest.raises(AlarmError, match="not shelved"):
        m.unshelve(1, "ann")
    for bad in (0, -5, math.inf, math.nan, "10"):
        with pytest.raises(AlarmError, match="positive number of seconds"):
            m.shelve(1, "ann", bad)
    m.shelve(1, "ann", 30)
    assert m.unshelve(1, "bob").state == "active"
    assert trail(m)[-2:] == [("shelved", "ann", "active", "shelved"), ("unshelved", "bob", "shelved", "active")]


def test_operator_verbs_on_unknown_or_cleared_alarms():
    m = AlarmManager(config())
    with pytest.raises(UnknownAlarmError, match="no alarm 7"):
        m.acknowledge(7, "ann")
    with pytest.raises(UnknownAlarmError):
        m.get(7)
    m.update(*block([W, 0]))
    m.acknowledge(1, "ann")
    with pytest.raises(AlarmError, match="cleared"):
        m.shelve(1, "ann", 10)


def test_acknowledge_twice_is_a_no_op():
    m = AlarmManager(config(), clock=Clock())
    m.update(*block([W]))
    m.acknowledge(1, "ann", "first")
    a = m.acknowledge(1, "bob", "second")
    assert (a.acknowledged_by, a.acknowledged_comment) == ("ann", "first")
    assert len(m.acknowledgements(1)) == 1 and len(m.audit(1)) == 2


def test_queries_filter_by_state_and_severity():
    m = AlarmManager(config())
    m.update(*block([[W, 0], [W, C]], channels=("A", "B")))
    m.acknowledge(1, "ann")
    assert [a.id for a in m.alarms(state="acknowledged")] == [1]
    assert [a.id for a in m.alarms(severity="critical")] == [2]
    assert [a.id for a in m.alarms(state=["active", "acknowledged"], severity=("warning", "critical"))] == [1, 2]
    with pytest.raises(AlarmError, match="unknown state 'open'"):
        m.alarms(state="open")
    m.update(*block([[0, 0]], t0=2, channels=("A", "B")))
    assert [a.id for a in m.alarms()] == [2]
    assert [(a.id, a.state) for a in m.alarms("all")] == [(1, "cleared"), (2, "rtn_unacknowledged")]


def test_the_alarm_explains_itself_with_the_limit_crossed():
    cfg = MonitorConfig.from_dict(
        {
            "channels": {
                "P": {"subsystem": "hyd", "units": "psi", "limits": {"warning": [10, 100], "critical": [5, 110]}}
            }
        }
    )
    b = TelemetryBlock.from_arrays([0.0, 1.0, 2.0], [[50.0], [7.0], [1.0]], ["P"])
    m = AlarmManager(cfg)
    m.update(b, LimitCheck(cfg.limits()).fit(b).score(b))
    a = m.get(1)
    # Raised as a warning at 7 psi (threshold: the warning low 10), escalated at 1 psi (critical low 5):
    # the alarm describes the sample that made it critical, never 7 psi with the critical limit.
    assert (a.detector, a.first_time, a.severity, a.threshold) == ("limits", 1.0, "critical", 5.0)
    assert (a.trigger_value, a.trigger_time) == (1.0, 2.0)
    assert (a.low, a.high, a.direction) == (10.0, 100.0, "low")
    assert a.peak_score == pytest.approx(54 / 45)  # |1 - 55| / 45: distance from the band's centre in half-widths
    assert (
        a.explanation
        == "P (hyd): critical by limits since t=1: at t=2 value 1 psi below the critical limit 5 psi; ongoing"
    )


def test_chunked_updates_give_the_same_alarms_as_one_update():
    rng = np.random.default_rng(3)
    levels = rng.choice([0, 0, 0, 1, 2, 4], size=(300, 5), p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    values = rng.normal(size=levels.shape)
    values[rng.random(levels.shape) < 0.05] = np.nan
    chans = [f"c{i}" for i in range(5)]
    cfg = MonitorConfig.from_dict(
        {
            "channels": {
                c: {"subsystem": "s", "min_violations": 1 + i % 3, "min_conformance": 1 + i % 2}
                for i, c in enumerate(chans)
            }
        }
    )
    one = AlarmManager(cfg)
    one_events = kinds(one.update(*block(levels, values=values, channels=chans)))
    chunked = AlarmManager(cfg)
    cuts = [0, *sorted(rng.choice(np.arange(1, 300), size=40, replace=False)), 300]
    chunked_events = []
    for a, b in zip(cuts, cuts[1:]):
        chunked_events += kinds(chunked.update(*block(levels[a:b], t0=a, values=values[a:b], channels=chans)))
    assert len(one_events) > 50
    assert one_events == chunked_events
    assert [x.to_dict() for x in one.alarms("all")] == [x.to_dict() for x in chunked.alarms("all")]


def test_many_channels_only_changes_report():
    c = 10_000
    chans = [f"ch{i}" for i in range(c)]
    m = AlarmManager(MonitorConfig())
    levels = np.zeros((3, c), dtype=np.int8)
    levels[1:, 4321] = W
    levels[2, 77] = C
    events = m.update(*block(levels, values=np.zeros((3, c)), channels=chans))
    assert kinds(events) == [("raised", 1, 1.0), ("raised", 2, 2.0)]  # in time order, not column order
    assert [a.channel for a in m.alarms()] == ["ch4321", "ch77"]
    assert all(a.subsystem == "" for a in m.alarms())  # channels missing from the config still alarm


def test_staleness_alarm_is_raised_and_returns_to_normal():
    m = AlarmManager(config(), clock=Clock())
    (ev,) = [e for e in m.report_stale("A", 50.0, 47.0) if e.kind != "incident"]
    assert (ev.kind, ev.payload["detector"], ev.payload["severity"]) == ("raised", "staleness", "warning")
    assert m.report_stale("A", 51.0, 47.0) == []  # already stale
    assert "no sample since t=47" in m.get(1).explanation
    m.update(*block([W], t0=52))  # a value alarm is a separate alarm
    assert [a.detector for a in m.alarms()] == ["staleness", "limits"]
    assert kinds(m.report_fresh("A", 52.0)) == [("rtn", 1, 52.0)]
    assert m.acknowledge(1, "ann").state == "cleared"


def test_subscribers_get_committed_event_dicts_and_a_failing_one_is_contained():
    m = AlarmManager(config())
    got = []
    m.subscribe(got.append)
    m.subscribe(lambda e: 1 / 0)
    m.update(*block([W, 0]))
    assert [(e["type"], e["kind"], e["alarm_id"]) for e in got] == [
        ("alarm", "raised", 1),
        ("alarm", "rtn", 1),
        ("incident", "incident", 1),
    ]
    assert got[0]["payload"]["state"] == "active" and got[1]["payload"]["state"] == "rtn_unacknowledged"
    assert m.callback_errors == 3


def test_scores_must_match_the_block():
    m = AlarmManager(config())
    b, _ = block([0, 0])
    _, s = block([0, 0, 0])
    with pytest.raises(DataError, match="shape"):
        m.update(b, s)


class FailingStore(MemoryStore):
    """Writes fail while ``broken`` is set, like a full disk."""

    broken = False

    def add_acknowledgement(self, *args, **kwargs):
        if self.broken:
            raise sqlite3.OperationalError("disk I/O error")
        return super().add_acknowledgement(*args, **kwargs)

    def save_alarms(self, alarms):
        if self.broken:
            raise sqlite3.OperationalError("disk I/O error")
        return super().save_alarms(alarms)


def test_a_verb_whose_commit_fails_changes_nothing():
    store = FailingStore()
    m = AlarmManager(config(), store, clock=Clock())
    m.update(*block([W, 0]))
    store.broken = True
    with pytest.raises(sqlite3.OperationalError):
        m.acknowledge(1, "ann")  # would end the alarm (back to normal)
    with pytest.raises(sqlite3.OperationalError):
        m.shelve(1, "ann", 60)
    a = m.get(1)
    assert (a.state, a.acknowledged_by, a.shelved_until) == ("rtn_unacknowledged", None, None)
    assert [e.action for e in m.audit(1)] == ["raised", "rtn"]
    store.broken = False
    assert m.acknowledge(1, "ann").state == "cleared"
    assert [e.action for e in m.audit(1)] == ["raised", "rtn", "acknowledged"]


def test_levels_outside_the_severities_are_refused_with_channel_and_row():
    m = AlarmManager(config())
    b, s = block([0, 0, 0])
    s.level[2, 0] = 6
    with pytest.raises(DataError, match="channel A: row 2: level 6 is not 0..5"):
        m.update(b, s)
    assert m.alarms() == []
