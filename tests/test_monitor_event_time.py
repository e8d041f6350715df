"""Event time that bad data cannot poison, live: the wall clock bounds the stream clock; playback is
scored but its alarms are marked; a packet source's corrupt frame goes through the same engine."""

from __future__ import annotations

import threading

import numpy as np

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.ingest.ccsds.source import PacketSource
from vigil.ingest.records import Record
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor
from vigil.monitor.runner import Session, run

CFG = MonitorConfig.from_dict(
    {
        "channels": {
            "T": {"subsystem": "thermal", "rate_hz": 1.0, "limits": {"warning": [0, 30]}},
            "V": {"subsystem": "power", "limits": {"warning": [20, 32]}},
        }
    }
)
WALL = 1.7e9


def monitor() -> Monitor:
    det = LimitCheck(CFG.limits()).fit(TelemetryBlock.from_arrays([0.0], [[np.nan, np.nan]], ("T", "V")))
    return Monitor(CFG, det, AlarmManager(CFG, clock=lambda: 0.0))


def rows(times, hot=(), received=None):
    """Per time: a (records, reception wall time) pair; T at 35 (too hot) at the ``hot`` times."""
    return [
        ([Record(float(t), "T", 35.0 if t in hot else 20.0), Record(float(t), "V", 28.0)],
         None if received is None else received + t)
        for t in times
    ]  # fmt: skip


def feed(m: Monitor, batches, end: bool = True) -> None:
    for records, received in batches:
        m.feed_records(records, received=received)
    if end:
        m.end_of_stream()


def limit_alarms(m: Monitor) -> list[float]:
    return [a.first_time for a in m.manager.alarms("all") if a.detector == "limits"]


def test_live_a_time_ahead_of_the_wall_clock_is_quarantined_though_within_max_jump():
    # 1,000 s ahead is within max_jump_s (3,600) but impossible live: 1 s of wall time went by.
    corrupt = [([Record(1005.0, "T", 20.0), Record(1005.0, "V", 28.0)], WALL + 5)]
    live = monitor()
    feed(live, rows(range(5), received=WALL) + corrupt + rows(range(5, 12), hot=(8, 9), received=WALL))
    c = live.counters()
    assert c["totals"]["quarantined"] == 2 and c["totals"]["out_of_order"] == 0
    assert limit_alarms(live) == [8.0]  # the later alarm still raised
    # Replayed from a file (no wall clock), the same 1,000 s is a plausible jump: taken, and the
    # stream after it is out of order. Live data is what the wall clock protects.
    replay = monitor()
    feed(replay, [(r, None) for r, _ in rows(range(5)) + corrupt + rows(range(5, 12), hot=(8, 9))])
    assert replay.counters()["totals"]["out_of_order"] == 14


def test_live_a_real_jump_is_adopted_once_the_stream_follows_it():
    m = monitor()
    # Loss of signal: 3 s of wall time, and the stream comes back 2,000 s later (a clock reset, say).
    feed(m, rows(range(3), received=WALL) + rows(range(2000, 2006), hot=(2004,), received=WALL - 1997))
    c = m.counters()
    assert c["totals"]["quarantined"] == 0 and m.rows == 9
    assert limit_alarms(m) == [2004.0]


def test_playback_is_scored_and_its_alarms_are_marked():
    m = monitor()
    events = []
    m.manager.subscribe(events.append)
    # Live until t=20 (received 0.5 s after generation); after a 5,000 s loss of signal the stored
    # data of the gap is dumped first (t=21..40, received at AOS), then live data again.
    live = rows(range(21), hot=(5,), received=WALL + 0.5)
    dump = [(r, WALL + 5000.0) for r, _ in rows(range(21, 41), hot=(30,))]
    back = rows(range(5000, 5010), hot=(5005,), received=WALL + 0.5)
    for phase in (live, dump, back):
        feed(m, phase, end=False)
        for alarm in m.manager.alarms():  # the operator acknowledges: each episode is its own alarm
            m.manager.acknowledge(alarm.id, "ops")
    m.end_of_stream()
    alarms = [a for a in m.manager.alarms("all") if a.detector == "limits"]
    assert [(a.first_time, a.playback) for a in alarms] == [(5.0, False), (30.0, True), (5005.0, False)]
    raised = [e for e in events if e["kind"] == "raised" and e["payload"]["detector"] == "limits"]
    assert [e["payload"]["playback"] for e in raised] == [False, True, False]
    assert m.counters()["totals"]["scored"] == 2 * (21 + 20 + 10)  # playback scored like the rest


class _Stream:
    """What a packet source asks of its decoding stream here: channel names and problem counters."""

    channels = ("T", "V")

    def counters(self) -> dict:
        return {"apid": {}, "stream": {}}


def _packet_source(blocks: list[TelemetryBlock]) -> PacketSource:
    """A live UDP packet source whose decoder yields these (fabricated) blocks: the real
    :meth:`PacketSource.batches` turns them into the records the monitor gets."""
    src = PacketSource.__new__(PacketSource)
    src.stream, src.transport, src.name, src.speed = _Stream(), "udp", "udp+ccsds://fabricated", None
    src.skip_records = src.skip_bad = src.skipped = 0  # nothing to pass over: not a resumed file
    src.blocks = lambda: iter(blocks)
    src.close = lambda: None
    return src


def test_a_corrupt_packet_time_through_the_engine_is_quarantined():
    def packet_block(times, hot=()):
        t = np.asarray(times, dtype=float)
        values = np.c_[np.where(np.isin(t, hot), 35.0, 20.0), np.full(t.size, 28.0)]
        return TelemetryBlock.from_arrays(t, values, ("T", "V"))

    # One packet 5,000 s ahead (both its parameters), between normal packets; T too hot later.
    blocks = [packet_block([k]) for k in range(10)] + [packet_block([5010.0])]
    blocks += [packet_block([k], hot=(15, 16)) for k in range(10, 25)]
    m = monitor()
    summary = run(Session(m, m.manager, None, threading.RLock()), _packet_source(blocks), echo=lambda line: None)
    assert summary["totals"]["quarantined"] == 2 and summary["totals"]["out_of_order"] == 0
    assert limit_alarms(m) == [15.0]
    assert m.clock_.time == 24.0


def test_unknown_malformed_and_quarantined_records_never_move_the_stream_clock():
    from vigil.ingest.records import BadRecord

    m = monitor()
    feed(m, rows(range(5), received=WALL), end=False)
    far = 253_402_300_799.0  # 9999-12-31
    m.feed_records([Record(far, "X", 1.0), BadRecord("tcp", 7, "bad value", channel="T")], received=WALL + 5)
    m.feed_records([Record(far, "T", 20.0)], received=WALL + 5)  # known channel: quarantined, held
    assert m.clock_.time == 4.0
    assert m.check_staleness(m.clock_.time + 1.0) == []  # nothing is stale "since 9999-12-31"
    m.feed_records(rows([5])[0][0], received=WALL + 5)  # the stream goes on: the far record is refuted
    c = m.counters()
    assert m.clock_.time == 5.0 and c["unknown"] == {"X": 1}
    assert c["channels"]["T"]["malformed"] == 1 and c["channels"]["T"]["quarantined"] == 1


def test_a_slow_stream_is_not_mistaken_for_jumps_and_the_rate_rule_ignores_chunking():
    # One record pair every 2 hours (more than max_jump_s apart): once the stream's own step is
    # learned (its first 16 increments), such steps are normal; a corrupt time 10,000 steps ahead is not.
    times = [7200.0 * k for k in range(40)]
    batches = rows(times, hot=(7200.0 * 30,))
    batches.insert(25, ([Record(7200.0 * 10_025, "T", 20.0)], None))
    whole, by_record = monitor(), monitor()
    feed(whole, [([r for rec, _ in batches for r in rec], None)])
    feed(by_record, [([r], None) for rec, _ in batches for r in rec])
    for m in (whole, by_record):
        c = m.counters()
        assert m.rows == 40 and c["totals"]["out_of_order"] == 0
        assert c["channels"]["T"]["quarantined"] == 1  # the corrupt one only
        assert limit_alarms(m) == [7200.0 * 30]
    assert whole.counters() == by_record.counters()
    assert whole.clock_.step == by_record.clock_.step == 7200.0
