"""A checkpoint written in the layout from before engine.py and manager.py were split still restores.

The monitor's checkpoint names monitor attributes (``checkpoint.MONITOR_ATTRS``) and holds the alarm
manager's ``stream_state()`` dict; both layouts are pinned here as they were written before the
split (checkpoint version 2). A stream cut mid-way (records pending in the lateness window, a
playback row pending, the duplicate window filled, violation runs and correlation values under
way) and resumed from a checkpoint built by hand in that layout gives exactly the uninterrupted run.
"""

from __future__ import annotations

import pickle

import numpy as np

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor, checkpoint
from vigil.store.sqlite import SqliteStore

#: The monitor attributes a version-2 checkpoint held before the split, and the manager's keys.
PRE_SPLIT_MONITOR_KEYS = (
    "counts_", "last_seen_", "last_value_", "last_level_", "stale_", "_recent", "_pend_t", "_pend_j",
    "_pend_v", "_max_seen", "_emitted", "unparsable", "replayed", "errors", "rows", "position_", "_delay",
    "_playback_t",
)  # fmt: skip
PRE_SPLIT_OTHER_KEYS = ("unknown", "recent_errors", "clock", "detector", "manager")
PRE_SPLIT_MANAGER_KEYS = ("channels", "viol_run", "conf_run", "last_t", "last_v", "recent")
CHANNELS = ("T1", "T2", "T3", "T4")
CUT = 33  # batches fed before the checkpoint: up to t=31's; the next is t=32's playback


def _config() -> MonitorConfig:
    limits = {"limits": {"warning": [0, 10]}, "min_violations": 2, "min_conformance": 2}
    channels = {name: {**limits, "subsystem": name} for name in CHANNELS}  # grouped only by correlation
    return MonitorConfig.from_dict({"incident_correlation": 0.5, "channels": channels})


def _monitor(store: SqliteStore) -> Monitor:
    config = _config()
    empty = TelemetryBlock.from_arrays([0.0], [[np.nan] * len(CHANNELS)], list(CHANNELS))
    detector = LimitCheck(config.limits()).fit(empty)
    manager = AlarmManager(config, store=store, clock=lambda: 1.0e9)
    return Monitor(config, detector, manager, store=store, lateness_s=2.0, checkpoint_every_s=0.0)


def _batches() -> list[tuple[list, float]]:
    """Batches of records ``(time, channel, value)`` with their reception time, one (or two) per
    second. At the cut, rows up to t=28 are scored and t=29-31 pending: T1 is one nominal sample
    into its return to normal (t=29), T4 one sample into a violation run (raised at t=29, grouped
    with T1 by correlation over values from before the cut), T3 raised at t=31 (arrives a second
    late). T2's records of t=31-33 are played back (received 1000 s late, in a batch of their own;
    T1 and T2 reactivate at t=32), with a T3 record for t=28.5 (out of order); t=20 of T1 is sent
    again at t=35 (a duplicate)."""
    t1 = np.full(60, 5.0)
    t1[10:15] = 20.0
    t1[25:28] = 15.0
    t1[31:41] = 15.0
    t2 = 5.0 + (t1 - 5.0) * 0.6  # co-varies with T1: grouped with it by correlation
    t3 = np.full(60, 5.0)
    t3[30:32] = 12.0
    t4 = 5.0 + (t1 - 5.0) * 0.3
    t4[28:30] = 12.0
    batches = []
    for t in range(60):
        records = [(float(t), "T1", t1[t]), (float(t), "T4", t4[t])]
        if t >= 1:
            records.append((float(t - 1), "T3", t3[t - 1]))
        if t in (31, 32, 33):
            late = [(28.5, "T3", 5.0)] if t == 32 else []  # out of order: later ones were seen before the cut
            batches.append(([*late, (float(t), "T2", t2[t])], t + 1000.0))
        else:
            records.append((float(t), "T2", t2[t]))
        if t == 35:
            records.append((20.0, "T1", t1[20]))
        batches.append((records, t + 0.5))
    return batches


def _outcome(m: Monitor, store: SqliteStore) -> dict:
    audit = [{k: v for k, v in e.to_dict().items() if not k.startswith("wall_time")} for e in store.audit()]
    counters = m.counters()
    counters.pop("recent_errors")
    return {
        "alarms": [a.to_dict() for a in store.load_alarms()],
        "audit": audit,
        "incidents": [i.to_dict() for i in store.load_incidents()],
        "counters": counters,
    }


def _pre_split_blob(m: Monitor) -> bytes:
    """The stream state as the pre-split code wrote it: monitor attributes by their old names."""
    state = {name: getattr(m, name) for name in PRE_SPLIT_MONITOR_KEYS}
    manager = m.manager.stream_state()
    assert tuple(manager) == PRE_SPLIT_MANAGER_KEYS
    state.update(
        unknown=dict(m.unknown),
        recent_errors=list(m.recent_errors),
        clock=m.clock_.state(),
        detector=m.detector.stream_state(),
        manager={k: manager[k] for k in PRE_SPLIT_MANAGER_KEYS},
    )
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def test_the_checkpoint_keeps_the_pre_split_layout(tmp_path):
    with SqliteStore(tmp_path / "s.sqlite") as store:
        m = _monitor(store)
        for records, received in _batches()[:CUT]:
            m.feed_records(records, received=received)
        state = pickle.loads(checkpoint.capture(m))
    assert set(state) == set(PRE_SPLIT_MONITOR_KEYS) | set(PRE_SPLIT_OTHER_KEYS)
    assert tuple(state["manager"]) == PRE_SPLIT_MANAGER_KEYS


def test_a_pre_split_checkpoint_resumes_to_the_uninterrupted_run(tmp_path):
    batches = _batches()
    with SqliteStore(tmp_path / "ref.sqlite") as store:
        ref = _monitor(store)
        for records, received in batches:
            ref.feed_records(records, received=received)
        ref.end_of_stream()
        want = _outcome(ref, store)
    assert want["counters"]["totals"]["duplicate"] == 1 and want["counters"]["totals"]["out_of_order"] == 1
    alarms = [(a["channel"], a["first_time"], a["playback"], a["incident_id"]) for a in want["alarms"]]
    assert alarms == [("T1", 11.0, True, 1), ("T2", 11.0, True, 1), ("T4", 29.0, False, 1), ("T3", 31.0, True, 2)]

    path = tmp_path / "cut.sqlite"
    with SqliteStore(path) as store:
        m = _monitor(store)
        for records, received in batches[:CUT]:
            m.feed_records(records, received=received)
        # What the cut must carry, or this test would not show that it is carried.
        assert m._emitted == 28.0 and m._pend_t.size and m._playback_t and m._recent and np.isfinite(m._delay)
        assert m.manager.stream_state()["viol_run"].any() and m.manager.stream_state()["recent"] is not None
        m.save()
        pre_split = {**store.load_checkpoint("monitor"), "version": 2}  # as version 2 wrote it: a pickle
        store.save_checkpoint("monitor", pre_split, state=_pre_split_blob(m))
    with SqliteStore(path) as store:
        m = _monitor(store)
        assert m.resume(replayable=True)["items"] == sum(len(r) for r, _ in batches[:CUT])
        for records, received in batches[CUT:]:
            m.feed_records(records, received=received)
        m.end_of_stream()
        got = _outcome(m, store)
    assert got == want
