"""The SQLite store: WAL, round trips, restart without duplicates, and a real SIGKILL mid-stream."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vigil.alarms import AlarmManager, MemoryStore
from vigil.alarms.model import AlarmError
from vigil.config import MonitorConfig
from vigil.detect.base import Scores
from vigil.model import TelemetryBlock
from vigil.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
W, C = 2, 4


class Clock:
    def __init__(self, t: float = 5000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config() -> MonitorConfig:
    return MonitorConfig.from_dict(
        {
            "channels": {
                "A": {"subsystem": "hyd", "min_conformance": 2},
                "B": {"subsystem": "hyd", "latching": True},
            }
        }
    )


def block(levels, t0: float = 0.0) -> tuple[TelemetryBlock, Scores]:
    lv = np.asarray(levels, dtype=np.int8).reshape(len(levels), 2)
    b = TelemetryBlock.from_arrays(t0 + np.arange(len(lv)), lv * 10.0, ["A", "B"])
    s = Scores.empty(*lv.shape, "limits")
    s.level[:] = lv
    s.score[:] = lv
    return b, s


def test_file_store_is_wal_with_full_sync(tmp_path):
    store = SqliteStore(tmp_path / "v.sqlite")
    assert store.journal_mode == "wal"
    assert store.synchronous == 2  # FULL
    assert SqliteStore(tmp_path / "n.sqlite", synchronous="normal").synchronous == 1
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "x.sqlite", synchronous="OFF")


def test_round_trip_of_alarms_audit_acknowledgements_incidents(tmp_path):
    path = tmp_path / "v.sqlite"
    clock = Clock()
    m = AlarmManager(config(), SqliteStore(path), clock=clock)
    m.update(*block([[W, 0], [C, W], [0, 0]]))
    m.acknowledge(1, "ann", "hydraulics team called")
    clock.t += 5
    m.shelve(2, "bob", 600, "known")
    before = [a.to_dict() for a in m.alarms("all")]
    audit = [e.to_dict() for e in m.audit()]
    incidents = [i.to_dict() for i in m.incidents()]
    m.store.close()

    store = SqliteStore(path)
    assert [a.to_dict() for a in store.load_alarms()] == before
    assert [e.to_dict() for e in store.audit()] == audit
    assert [(e.action, e.user) for e in store.audit(alarm_id=2)] == [
        ("raised", "system"),
        ("rtn", "system"),
        ("shelved", "bob"),
    ]
    assert store.acknowledgements() == [
        {"id": 1, "alarm_id": 1, "user": "ann", "time": 5000.0, "comment": "hydraulics team called"}
    ]
    assert [i.to_dict() for i in store.load_incidents()] == incidents
    assert incidents[0]["alarm_ids"] == [1, 2]


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "v.sqlite"
    store = SqliteStore(path)
    assert store.load_checkpoint("s") is None
    store.save_checkpoint("s", {"time": 1.5, "rows": 3})
    store.save_checkpoint("s", {"time": 2.5, "rows": 4})
    store.close()
    assert SqliteStore(path).load_checkpoint("s") == {"time": 2.5, "rows": 4}


def test_restart_resumes_open_alarms_and_replay_does_not_duplicate(tmp_path):
    path = tmp_path / "v.sqlite"
    levels = [[W, 0], [W, C], [0, C], [0, 0], [0, 0], [C, 0], [0, 0], [0, 0]]
    reference = AlarmManager(config())
    reference.update(*block(levels))

    first = AlarmManager(config(), SqliteStore(path))
    first.update(*block(levels[:3]))  # A raised at 0, B raised at 1; A nominal once at t=2 (needs 2)
    first.acknowledge(2, "ann")
    first.store.close()

    second = AlarmManager(config(), SqliteStore(path))
    assert [(a.id, a.state) for a in second.alarms()] == [(1, "active"), (2, "acknowledged")]
    # A monitor replaying everything from t=0: already applied samples are passed over.
    events = second.update(*block(levels))
    # A: nominal at t=2 (before the kill) and t=3 (after): RTN at 3; B: RTN at 3.
    assert [(e.kind, e.alarm_id, e.time) for e in events if e.kind != "incident"] == [
        ("rtn", 1, 3.0),
        ("rtn", 2, 3.0),
        ("reactivated", 1, 5.0),
        ("rtn", 1, 7.0),
    ]
    got = [(a.channel, a.first_time, a.severity, a.occurrences) for a in second.alarms("all")]
    want = [(a.channel, a.first_time, a.severity, a.occurrences) for a in reference.alarms("all")]
    assert got == want == [("A", 0.0, "critical", 2), ("B", 1.0, "critical", 1)]
    assert second.get(2).state == "latched"  # acknowledged before the restart, latching


def test_ids_are_never_reused_after_restart(tmp_path):
    path = tmp_path / "v.sqlite"
    m = AlarmManager(config(), SqliteStore(path))
    m.update(*block([[W, 0], [0, 0], [0, 0]]))
    assert m.acknowledge(1, "ann").state == "cleared"
    m.store.close()
    m = AlarmManager(config(), SqliteStore(path))
    m.update(*block([[W, 0]], t0=10))
    assert [a.id for a in m.alarms("all")] == [1, 2]


def test_memory_store_behaves_like_the_sqlite_store():
    runs = []
    for store in (MemoryStore(), SqliteStore()):
        m = AlarmManager(config(), store, clock=Clock())
        m.update(*block([[W, 0], [C, W], [0, 0], [0, 0]]))
        m.acknowledge(1, "ann")
        m.acknowledge(2, "ann")
        runs.append(
            (
                [a.to_dict() for a in m.alarms("all")],
                [e.to_dict() for e in m.audit()],
                [i.to_dict() for i in m.incidents()],
            )
        )
    assert runs[0] == runs[1]
    # Not two empty runs: A warning then critical, back in band after 2 samples, acknowledged: cleared;
    # B (latching) warning, back in band, acknowledged: latched until someone clears it.
    assert [(a["channel"], a["severity"], a["state"]) for a in runs[0][0]] == [
        ("A", "critical", "cleared"),
        ("B", "warning", "latched"),
    ]


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from vigil.alarms import AlarmManager
    from vigil.config import MonitorConfig
    from vigil.detect.base import Scores
    from vigil.model import TelemetryBlock
    {store_import}

    C = 12
    CHANNELS = [f"ch{{j}}" for j in range(C)]
    CONFIG = MonitorConfig.from_dict({{"channels": {{
        c: {{"subsystem": f"s{{j % 3}}", "min_violations": 1 + j % 2, "min_conformance": 1 + j % 3,
             "latching": j % 4 == 0}} for j, c in enumerate(CHANNELS)}}}})

    def tick(t):
        j = np.arange(C)
        level = np.where((t + 7 * j) % 23 < 4, 2, 0) + np.where((t + 5 * j) % 41 == 0, 2, 0)
        b = TelemetryBlock.from_arrays([float(t)], level[None, :] * 10.0, CHANNELS)
        s = Scores.empty(1, C, "limits")
        s.level[:] = level
        s.score[:] = level
        return b, s

    def run(manager, store, start, stop, pause=0.0):
        for t in range(start, stop):
            b, s = tick(t)
            with store.transaction():  # the alarms and the checkpoint commit together
                manager.update(b, s)
                store.save_checkpoint("stream", t)
            # The operator acknowledges every active alarm; a line is printed once it is committed.
            for a in manager.alarms(state="active"):
                manager.acknowledge(a.id, "op", f"t={{t}}")
                print("ACK", a.id, flush=True)
            for a in manager.alarms(state="latched"):
                manager.clear(a.id, "op")
            time.sleep(pause)
    """
)


def _child_source(store_import: str) -> str:
    return CHILD.format(store_import=store_import)


def test_sigkill_mid_stream_loses_no_acknowledgement_and_restart_duplicates_nothing(tmp_path):
    path = tmp_path / "kill.sqlite"
    stop = 600
    main = _child_source("from vigil.store.sqlite import SqliteStore") + textwrap.dedent(
        """
        store = SqliteStore(sys.argv[1])
        run(AlarmManager(CONFIG, store), store, int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        print("DONE", flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", main, str(path), "0", str(stop), "0.005"], stdout=subprocess.PIPE, text=True, env=env
    )
    acked: list[int] = []
    deadline = time.monotonic() + 60
    while len(acked) < 25 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ACK"):
            acked.append(int(line.split()[1]))
    assert proc.poll() is None, "the child finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 25

    # Every acknowledgement the operator saw confirmed is in the store.
    with sqlite3.connect(path) as conn:
        stored = {r[0]: r[1] for r in conn.execute("SELECT alarm_id, user FROM acknowledgements")}
    assert all(stored.get(a) == "op" for a in acked)
    checkpoint = SqliteStore(path).load_checkpoint("stream")
    assert 0 <= checkpoint < stop - 1

    # Restart and replay the whole stream from t=0 (worse than resuming from the checkpoint).
    restart = subprocess.run(
        [sys.executable, "-c", main, str(path), "0", str(stop), "0"], capture_output=True, text=True, env=env
    )
    assert restart.returncode == 0, restart.stderr
    assert restart.stdout.endswith("DONE\n")

    # The same stream without a kill, in memory, is the reference.
    ns: dict = {}
    exec(_child_source("from vigil.alarms import MemoryStore"), ns)
    ref_store = ns["MemoryStore"]()
    ref = ns["AlarmManager"](ns["CONFIG"], ref_store)
    ns["run"](ref, ref_store, 0, stop)

    def summary(alarms):
        return [(a.channel, a.first_time, a.severity, a.occurrences, a.state) for a in alarms]

    got = SqliteStore(path).load_alarms()
    assert len({a.key for a in got}) == len(got)
    assert [a.id for a in got] == list(range(1, len(got) + 1))
    assert summary(got) == summary(ref.alarms("all"))
    assert len(got) > 100
    groups = [(i.subsystem, sorted(i.alarm_ids), i.active) for i in SqliteStore(path).load_incidents()]
    assert groups == [(i.subsystem, sorted(i.alarm_ids), i.active) for i in ref.incidents()]


def test_monitor_thread_and_operator_thread_do_not_deadlock(tmp_path):
    """The monitor commits alarms and checkpoint in one outer transaction while an API thread
    acknowledges: both take the store's lock first, so neither waits on the other forever."""
    import threading

    store = SqliteStore(tmp_path / "v.sqlite", synchronous="NORMAL")
    m = AlarmManager(config(), store)
    done = threading.Event()
    first_ack = threading.Event()
    acked: list[int] = []

    errors: list[Exception] = []

    def operator() -> None:
        try:
            while not done.is_set():
                for a in m.alarms(state="active"):
                    acked.append(m.acknowledge(a.id, "op").id)
                    first_ack.set()
                for a in m.alarms(state="latched"):
                    with contextlib.suppress(AlarmError):  # reactivated since listed: refused (the API's 409)
                        m.clear(a.id, "op")
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        for t in range(400):
            with store.transaction():
                m.update(*block([[W if t % 7 < 3 else 0, C if t % 11 < 2 else 0]], t0=t))
                store.save_checkpoint("stream", t)
            # Make sure the threads interleave however the scheduler runs them: past the middle, at
            # a row where the warning alarm is active, wait (outside the transaction) until the
            # operator has acknowledged something.
            if t >= 200 and t % 7 == 2 and not first_ack.is_set():
                assert first_ack.wait(timeout=60), "the operator thread never acknowledged"
    finally:
        done.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and errors == []
    # Every acknowledgement is stored once (a reactivated alarm needs, and gets, a new one).
    assert acked and sorted(acked) == sorted(r["alarm_id"] for r in store.acknowledgements())
    assert store.load_checkpoint("stream") == 399


def test_vigil_alarms_lists_a_store(tmp_path):
    from typer.testing import CliRunner

    from vigil.cli import app

    path = tmp_path / "v.sqlite"
    m = AlarmManager(config(), SqliteStore(path), clock=Clock())
    m.update(*block([[W, 0], [0, 0], [0, 0]]))  # A: raised at 0, back to normal at 2
    m.acknowledge(1, "ann", "ok")
    m.update(*block([[0, C]], t0=3))
    m.store.close()
    run = CliRunner().invoke
    out = run(app, ["alarms", "--store", str(path)]).output.splitlines()
    assert [line.split()[:2] for line in out] == [["#2", "active"]]
    out = run(app, ["alarms", "--store", str(path), "--state", "all", "--audit", "2"]).output.splitlines()
    assert [line.split()[:2] for line in out[:2]] == [["#1", "cleared"], ["#2", "active"]]
    assert out[2:] == [
        "audit t=5000 alarm 1 by ann: acknowledged rtn_unacknowledged -> cleared ok",
        "audit t=3 alarm 2 by system: raised None -> active",
    ]
    out = run(app, ["alarms", "--store", str(path), "--incidents"]).output
    assert out.startswith("incident 1 [active] 2 channels in subsystem hyd")
    missing = run(app, ["alarms", "--store", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2 and not (tmp_path / "none.sqlite").exists()


class BrokenStore(SqliteStore):
    """Audit writes fail while ``broken`` is set, like a full disk."""

    broken = False

    def add_audit(self, entries):
        if self.broken:
            raise sqlite3.OperationalError("database or disk is full")
        return super().add_audit(entries)


def stored(store: SqliteStore) -> list[tuple[int, str, str]]:
    return [(a.id, a.channel, a.state) for a in store.load_alarms()]


def test_a_failed_update_commit_is_kept_and_written_with_the_next_one(tmp_path):
    store = BrokenStore(tmp_path / "v.sqlite")
    m = AlarmManager(config(), store, clock=Clock())
    m.update(*block([[W, 0]]))
    store.broken = True
    events = m.update(*block([[0, C], [0, 0]], t0=1))  # A back to normal at 2 (2 samples), B raised at 1
    assert [(e.kind, e.alarm_id) for e in events if e.kind != "incident"] == [("raised", 2), ("rtn", 1), ("rtn", 2)]
    assert m.store_errors == 1 and "disk is full" in m.last_store_error
    assert stored(store) == [(1, "A", "active")]  # the store is behind, the manager is not
    with pytest.raises(sqlite3.OperationalError):
        m.acknowledge(2, "ann")  # an operator verb fails loudly and changes nothing
    assert m.get(2).state == "rtn_unacknowledged"
    store.broken = False
    m.update(*block([[0, 0]], t0=3))  # nothing new: the kept writes go in now
    assert stored(store) == [(1, "A", "rtn_unacknowledged"), (2, "B", "rtn_unacknowledged")]
    assert [(e.alarm_id, e.action) for e in store.audit()] == [(1, "raised"), (2, "raised"), (1, "rtn"), (2, "rtn")]
    assert m.acknowledge(2, "ann").state == "latched"
    assert store.acknowledgements()[0]["alarm_id"] == 2


def test_a_rolled_back_outer_transaction_requeues_the_writes(tmp_path):
    store = BrokenStore(tmp_path / "v.sqlite")
    m = AlarmManager(config(), store)
    store.broken = True
    with pytest.raises(sqlite3.OperationalError), store.transaction():  # the monitor's transaction
        m.update(*block([[W, 0]]))
        store.save_checkpoint("stream", 0)
    assert store.load_checkpoint("stream") is None and stored(store) == []
    store.broken = False
    with store.transaction():
        m.update(*block([[W, 0]], t0=1))
        store.save_checkpoint("stream", 1)
    assert stored(store) == [(1, "A", "active")] and store.load_checkpoint("stream") == 1
    assert [e.action for e in store.audit()] == ["raised"]


def test_inside_a_caller_transaction_events_follow_its_commit(tmp_path):
    store = SqliteStore(tmp_path / "v.sqlite")
    m = AlarmManager(MonitorConfig.from_dict({"channels": {c: {"subsystem": "hyd"} for c in "abc"}}), store)
    got: list[dict] = []
    m.subscribe(got.append)
    with store.transaction():
        for c in "abc":
            m.report_stale(c, 10.0, 5.0)
        assert got == [] and store.load_alarms() == []  # nothing is public before the commit
        store.save_checkpoint("stream", 10.0)
    assert [(e["kind"], e["alarm_id"]) for e in got] == [("raised", 1), ("raised", 2), ("raised", 3), ("incident", 3)]
    (incident,) = store.load_incidents()
    assert incident.explanation == (
        "3 channels in subsystem hyd went stale (stopped arriving) within 0 s: "
        "a (warning, onset t=10), b (warning, onset t=10), c (warning, onset t=10)"
    )
    assert [a.channel for a in store.load_alarms()] == ["a", "b", "c"]
