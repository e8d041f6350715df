"""Incidents: related alarms close in time read as one event, contributing channels ranked."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.base import Scores
from vigil.detect.limits import LimitCheck
from vigil.model import TelemetryBlock
from vigil.store.sqlite import SqliteStore

HYD = ["LH_IB_ELEVON_HYD1_RTN_T", "LH_OB_ELEVON_HYD1_RTN_T", "LH_IB_ELEVON_HYD2_RTN_T", "LH_OB_ELEVON_HYD3_RTN_T"]
GEAR = "LMG_TIRE_P"
LATE = "LH_WHEEL_WELL_HYD_RTN_T"
LIMITS = {"warning": [0.0, 200.0], "critical": [-50.0, 250.0]}


def columbia_config() -> MonitorConfig:
    chans = {name: {"subsystem": "left-wing-hydraulics", "units": "degF", "limits": LIMITS} for name in HYD}
    chans[GEAR] = {"subsystem": "left-main-gear", "units": "psia", "limits": LIMITS}
    chans[LATE] = {"subsystem": "left-wing-hydraulics", "units": "degF", "limits": LIMITS}
    return MonitorConfig.from_dict({"channels": chans, "incident_window_s": 30.0})


def columbia_block() -> TelemetryBlock:
    """2 Hz from t=90 to 150: the four hydraulic lines drop off-scale low (-300) at 100, 101.5, 103
    and 104.5 s for 10 s; a tyre pressure in another subsystem at 102 s; another hydraulic line from
    140 s to the end."""
    time = 90.0 + 0.5 * np.arange(121)
    chans = HYD + [GEAR, LATE]
    values = np.full((time.size, len(chans)), 100.0)
    for j, onset in enumerate([100.0, 101.5, 103.0, 104.5, 102.0]):
        values[(time >= onset) & (time < onset + 10), j] = -300.0
    values[time >= 140.0, 5] = -300.0
    return TelemetryBlock.from_arrays(time, values, chans)


def run_columbia(store=None) -> AlarmManager:
    cfg = columbia_config()
    b = columbia_block()
    m = AlarmManager(cfg, store)
    m.update(b, LimitCheck(cfg.limits()).fit(b).score(b))
    return m


def test_four_hydraulic_sensors_read_as_one_left_wing_incident():
    m = run_columbia()
    incidents = m.incidents()
    assert [(i.id, i.subsystem, len(i.channels)) for i in incidents] == [
        (1, "left-wing-hydraulics", 4),
        (2, "left-main-gear", 1),
        (3, "left-wing-hydraulics", 1),  # 140 s is beyond 104.5 s + 30 s: a new incident
    ]
    wing = incidents[0]
    assert (wing.first_time, wing.last_time, wing.severity) == (100.0, 104.5, "critical")
    assert sorted(wing.alarm_ids) == [1, 2, 4, 5]
    # All critical: ranked by onset, rank = level 4 + (1 - delay / 30 s).
    assert [(c.channel, c.rank_score, c.onset, c.direction) for c in wing.channels] == [
        (HYD[0], 5.0, 100.0, "low"),
        (HYD[1], 4.95, 101.5, "low"),
        (HYD[2], 4.9, 103.0, "low"),
        (HYD[3], 4.85, 104.5, "low"),
    ]
    # Score: |-300 - 100| / 100 (distance from the centre of [0, 200] in half-widths) = 4.
    assert wing.explanation == (
        "4 channels in subsystem left-wing-hydraulics went low (below their nominal bands) within 4.5 s: "
        f"{HYD[0]} (critical, onset t=100, 4x threshold), {HYD[1]} (critical, onset t=101.5, 4x threshold), "
        f"{HYD[2]} (critical, onset t=103, 4x threshold), {HYD[3]} (critical, onset t=104.5, 4x threshold)"
    )
    assert [a.incident_id for a in m.alarms()] == [1, 1, 2, 1, 1, 3]


def test_incidents_persist_and_close_when_their_alarms_end(tmp_path):
    store = SqliteStore(tmp_path / "v.sqlite")
    m = run_columbia(store)
    for alarm in m.alarms():
        m.acknowledge(alarm.id, "flight")
    # Everything returned to normal and is acknowledged, except the line failing since 140 s.
    assert [(i.id, i.active) for i in SqliteStore(tmp_path / "v.sqlite").load_incidents()] == [
        (1, False),
        (2, False),
        (3, True),
    ]
    assert [i.id for i in m.incidents(active_only=True)] == [3]


def levels_block(onsets: dict[str, tuple[float, int]], t_end: float) -> tuple[TelemetryBlock, Scores]:
    """1 Hz samples from 0 to t_end; channel flagged at ``level`` from its onset for 2 s."""
    time = np.arange(0.0, t_end + 1)
    names = list(onsets)
    lv = np.zeros((time.size, len(names)), dtype=np.int8)
    for j, (onset, level) in enumerate(onsets.values()):
        lv[(time >= onset) & (time < onset + 2), j] = level
    s = Scores.empty(*lv.shape, "limits")
    s.level[:] = lv
    s.score[:] = np.where(lv > 0, lv, 0)
    return TelemetryBlock.from_arrays(time, np.zeros(lv.shape), names), s


def config(subsystems: dict[str, str], window: float = 30.0) -> MonitorConfig:
    return MonitorConfig.from_dict(
        {"channels": {c: {"subsystem": s} for c, s in subsystems.items()}, "incident_window_s": window}
    )


def test_single_linkage_chains_onsets_within_the_window():
    m = AlarmManager(config({"a": "s", "b": "s", "c": "s"}))
    m.update(*levels_block({"a": (0, 2), "b": (25, 2), "c": (50, 2)}, 60))
    (inc,) = m.incidents()
    assert (inc.first_time, inc.last_time, [c.channel for c in inc.channels]) == (0.0, 50.0, ["a", "b", "c"])


def test_a_more_severe_channel_ranks_above_an_earlier_one():
    m = AlarmManager(config({"a": "s", "b": "s"}, window=10.0))
    m.update(*levels_block({"a": (0, 2), "b": (5, 5)}, 10))
    (inc,) = m.incidents()
    # b: severe (5) + 1 - 5/10 = 5.5; a: warning (2) + 1 = 3.
    assert [(c.channel, c.rank_score, c.severity) for c in inc.channels] == [
        ("b", 5.5, "severe"),
        ("a", 3.0, "warning"),
    ]
    assert inc.severity == "severe"
    assert inc.explanation.startswith("2 channels in subsystem s left nominal within 5 s: b (severe, onset t=5")


def test_escalation_updates_the_incident_ranking():
    m = AlarmManager(config({"a": "s", "b": "s"}, window=10.0))
    b, s = levels_block({"a": (0, 2), "b": (1, 2)}, 5)
    s.level[2, 1] = 4  # b escalates to critical at t=2
    m.update(b, s)
    (inc,) = m.incidents()
    assert [(c.channel, c.rank_score) for c in inc.channels] == [("b", pytest.approx(4.9)), ("a", 3.0)]


def test_different_or_missing_subsystems_do_not_group():
    cfg = config({"a": "s", "b": "t"})
    m = AlarmManager(cfg)
    m.update(*levels_block({"a": (0, 2), "b": (0, 2), "x": (0, 2), "y": (0, 2)}, 3))
    assert [(i.subsystem, [c.channel for c in i.channels]) for i in m.incidents()] == [
        ("s", ["a"]),
        ("t", ["b"]),
        ("", ["x"]),
        ("", ["y"]),
    ]
    assert m.incidents()[2].explanation.startswith("1 channel in no subsystem left nominal: x (warning")


def test_incident_changes_are_published():
    m = AlarmManager(config({"a": "s", "b": "s"}))
    got = []
    m.subscribe(got.append)
    b, s = levels_block({"a": (0, 2), "b": (3, 2)}, 5)
    for lo, hi in ((0, 2), (2, 6)):
        part = Scores.concat([s])  # a copy, then cut to rows lo:hi
        for name in ("level", "score", "expected", "low", "high", "by"):
            setattr(part, name, getattr(part, name)[lo:hi])
        m.update(b.slice(lo, hi), part)
    incident_events = [e for e in got if e["type"] == "incident"]
    assert [len(e["payload"]["channels"]) for e in incident_events] == [1, 2]


def covarying_run(threshold: float | None, block_rows: int) -> AlarmManager:
    """a (subsystem s1) and b (s2) follow the same oscillation, c (s3) is independent noise; a
    alarms from t=50, c from t=51, b from t=52."""
    rng = np.random.default_rng(7)
    time = np.arange(80.0)
    wave = np.sin(time / 4.0)
    values = np.stack([wave + 0.05 * rng.normal(size=80), 3 - 2 * wave, rng.normal(size=80)], axis=1)
    lv = np.zeros(values.shape, dtype=np.int8)
    for j, onset in enumerate([50, 52, 51]):
        lv[onset : onset + 3, j] = 4
    chans = {"a": {"subsystem": "s1"}, "b": {"subsystem": "s2"}, "c": {"subsystem": "s3"}}
    m = AlarmManager(MonitorConfig.from_dict({"channels": chans, "incident_correlation": threshold}))
    for lo in range(0, 80, block_rows):
        hi = min(lo + block_rows, 80)
        s = Scores.empty(hi - lo, 3, "limits")
        s.level[:] = lv[lo:hi]
        s.score[:] = lv[lo:hi]
        m.update(TelemetryBlock.from_arrays(time[lo:hi], values[lo:hi], ["a", "b", "c"]), s)
    return m


@pytest.mark.parametrize("block_rows", [1, 7, 80])
def test_channels_that_co_vary_group_across_subsystems(block_rows):
    m = covarying_run(0.9, block_rows)
    assert [(i.grouping, [c.channel for c in i.channels]) for i in m.incidents()] == [
        ("correlation", ["a", "b"]),
        ("subsystem", ["c"]),
    ]
    assert m.incidents()[0].explanation.startswith(
        "2 channels in subsystems s1, s2 (grouped by correlated recent values) left nominal within 2 s: a (critical"
    )


def test_without_a_correlation_threshold_subsystems_stay_apart():
    m = covarying_run(None, 1)
    assert [[c.channel for c in i.channels] for i in m.incidents()] == [["a"], ["c"], ["b"]]


@pytest.mark.parametrize("block_rows", [1, 3])
def test_a_growing_peak_score_reaches_the_incident(block_rows):
    m = AlarmManager(config({"a": "s"}))
    scores = [1.0, 1.5, 2.5]
    for lo in range(0, 3, block_rows):
        s = Scores.empty(block_rows, 1, "limits")
        s.level[:] = 2
        s.score[:, 0] = scores[lo : lo + block_rows]
        m.update(
            TelemetryBlock.from_arrays(np.arange(lo, lo + block_rows, dtype=float), np.zeros((block_rows, 1)), ["a"]), s
        )
    (inc,) = m.incidents()
    assert (m.get(1).peak_score, m.get(1).peak_time, inc.channels[0].peak_score) == (2.5, 2.0, 2.5)
