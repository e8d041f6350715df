"""The live monitor: stream == batch, counters of bad input, staleness, lateness, latest values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.config import MonitorConfig
from vigil.detect import build_detector
from vigil.detect.limits import LimitCheck
from vigil.ingest.records import BadRecord, Record
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor

CHANNELS = ("a", "b", "c", "d")


class Recorder:
    """A stand-in alarm manager that records exactly what the monitor hands it."""

    def __init__(self) -> None:
        self.blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.staleness: list[tuple] = []

    def update(self, block, scores):
        self.blocks.append((block.time.copy(), scores.level.copy(), scores.score.copy()))
        return []

    def report_stale(self, channel, time, last_seen):
        self.staleness.append(("stale", channel, time, last_seen))
        return [("stale", channel, time)]

    def report_fresh(self, channel, time):
        self.staleness.append(("fresh", channel, time))
        return [("fresh", channel, time)]

    def joined(self):
        t = np.concatenate([b[0] for b in self.blocks])
        return t, np.concatenate([b[1] for b in self.blocks]), np.concatenate([b[2] for b in self.blocks])


def config(**extra) -> MonitorConfig:
    chans = {
        "a": {"subsystem": "power", "rate_hz": 1.0, "limits": {"warning": [-2, 2], "critical": [-4, 4]}},
        "b": {"subsystem": "power", "rate_hz": 1.0},
        "c": {"subsystem": "thermal", "stale_after_s": 5.0},
        "d": {"subsystem": "thermal"},
    }
    return MonitorConfig.from_dict({"channels": chans, **extra})


def signal(n: int, seed: int, t0: float = 0.0) -> TelemetryBlock:
    rng = np.random.default_rng(seed)
    t = t0 + np.arange(n, dtype=float)
    x = np.stack([np.sin(t / (7 + k)) + 0.05 * rng.standard_normal(n) for k in range(len(CHANNELS))], axis=1)
    return TelemetryBlock.from_arrays(t, x, CHANNELS)


@pytest.fixture(scope="module")
def scenario():
    """Nominal history and a test stretch with known injected problems."""
    train = signal(1500, seed=1)
    test = signal(300, seed=2, t0=5000.0)
    x = test.values.copy()
    x[100:104, 0] = 5.0  # a: critical for 4 samples (limits)
    x[200:215, 1] += 3.0  # b: level shift (forecast)
    x[150:160, 2] = np.nan  # c: silent for 10 s > 5 s stale limit
    x[50, 3] = np.nan  # d: one missing sample
    return train, TelemetryBlock.from_arrays(test.time, x, CHANNELS)


def monitor_for(train, cfg=None, **kw) -> Monitor:
    cfg = cfg or config()
    det = build_detector(cfg).fit(train)
    return Monitor(cfg, det, Recorder(), **kw)


def records_of(block: TelemetryBlock) -> list[Record]:
    return [
        Record(float(t), ch, float(v))
        for t, row in zip(block.time, block.values)
        for ch, v in zip(block.channels, row)
        if np.isfinite(v)
    ]


def test_batch_detects_the_injected_problems(scenario):
    train, test = scenario
    m = monitor_for(train)
    m.feed_block(test)
    t, level, _ = m.manager.joined()
    assert np.array_equal(t, test.time)
    assert (level[100:104, 0] == 4).all()  # critical = level 4
    assert level[200:215, 1].max() > 0
    # c's last sample is at row 149 (t=5149): stale at event time 5149 + 5 s (found at row t=5155).
    assert m.manager.staleness == [("stale", "c", 5154.0, 5149.0), ("fresh", "c", 5160.0)]
    counts = m.counters()["channels"]
    assert counts["d"]["missing"] == 1 and counts["c"]["missing"] == 10
    assert counts["a"]["scored"] == 300 and counts["c"]["stale"] == 1


@pytest.mark.parametrize("mode", ["record_by_record", "random_records", "random_blocks"])
def test_stream_equals_batch(scenario, mode):
    train, test = scenario
    batch = monitor_for(train)
    batch.feed_block(test)
    stream = monitor_for(train)
    rng = np.random.default_rng(7)
    recs = records_of(test)
    if mode == "record_by_record":
        for r in recs:
            stream.feed_records([r])
    elif mode == "random_records":
        cuts = np.sort(rng.choice(len(recs), size=40, replace=False))
        for part in np.split(np.arange(len(recs)), cuts):
            stream.feed_records([recs[i] for i in part])
    else:
        cuts = np.sort(rng.choice(np.arange(1, test.n_samples), size=25, replace=False))
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, test.n_samples]):
            stream.feed_block(test.slice(int(a), int(b)))
    stream.flush()
    bt, bl, bs = batch.manager.joined()
    st, sl, ss = stream.manager.joined()
    assert np.array_equal(bt, st)
    assert np.array_equal(bl, sl)
    assert np.array_equal(bs, ss, equal_nan=True)
    assert batch.manager.staleness == stream.manager.staleness
    assert batch.latest() == stream.latest()
    for ch in CHANNELS:
        np.testing.assert_equal(batch.history(ch), stream.history(ch))
    for key in ("scored", "stale", "out_of_order", "duplicate", "malformed"):
        assert batch.counters()["totals"][key] == stream.counters()["totals"][key]
    assert batch.counters()["errors"] == stream.counters()["errors"] == 0


def limit_monitor(**kw) -> Monitor:
    cfg = config()
    det = LimitCheck(cfg.limits()).fit(TelemetryBlock.from_arrays([0.0], [[0.0] * 4], CHANNELS))
    return Monitor(cfg, det, Recorder(), **kw)


def test_bad_records_are_counted_never_raised():
    m = limit_monitor()
    events = m.feed_records(
        [
            Record(0.0, "a", 1.0),
            Record(0.0, "b", 1.0),
            Record(1.0, "a", 3.0),  # warning
            Record(1.0, "a", 0.5),  # duplicate (same time, same channel), first value kept
            Record(0.0, "b", 9.0),  # late and b had a value at t=0: duplicate
            Record(0.0, "d", 9.0),  # late, d had none at t=0: out of order
            Record(2.0, "b", float("nan")),  # missing
            Record(2.0, "c", float("inf")),  # missing
            Record(3.0, "zz", 1.0),  # unknown channel
            BadRecord("x.csv", 7, "value 'hot' is not a number", "a"),  # malformed, per channel
            BadRecord("x.csv", 8, "invalid JSON"),  # unparsable line
            ("later", "b", 1.0),  # malformed tuple naming b
            (4.0, "b", None),  # None value: missing
        ]
    )
    assert events == []
    m.flush()
    c = m.counters()
    ch = c["channels"]
    assert (ch["a"]["received"], ch["a"]["scored"], ch["a"]["duplicate"], ch["a"]["malformed"]) == (3, 2, 1, 1)
    assert (ch["b"]["duplicate"], ch["b"]["missing"], ch["b"]["malformed"]) == (1, 2, 1)
    assert (ch["c"]["missing"], ch["d"]["out_of_order"]) == (1, 1)
    assert c["unknown"] == {"zz": 1} and c["unparsable"] == 1
    assert "x.csv: line 8: invalid JSON" in c["recent_errors"]
    t, level, _ = m.manager.joined()
    assert t.tolist() == [0.0, 1.0, 2.0, 4.0]  # t=3 held only an unknown channel
    assert level[:, 0].tolist() == [0, 2, 0, 0]
    assert m.latest()["a"] == (1.0, 3.0, 2)


def test_lateness_window_accepts_slightly_late_records():
    m = limit_monitor(lateness_s=1.0)
    m.feed_records([Record(0.0, "a", 1.0), Record(1.0, "a", 1.0), Record(0.0, "b", 1.0)])
    m.feed_records([Record(2.0, "a", 1.0)])  # t=0 is final now (2 - 1 > 0), t=1 is not
    m.feed_records([Record(1.0, "b", 1.0), Record(0.0, "c", 1.0)])
    m.flush()
    ch = m.counters()["channels"]
    assert ch["b"]["scored"] == 2 and ch["b"]["out_of_order"] == 0
    assert ch["c"]["out_of_order"] == 1 and ch["c"]["scored"] == 0
    t, _, _ = m.manager.joined()
    assert t.tolist() == [0.0, 1.0, 2.0]


def test_staleness_on_quiet_stream_and_recovery():
    m = limit_monitor()
    m.feed_records([Record(10.0, ch, 0.0) for ch in CHANNELS])
    m.flush()
    assert m.check_staleness(12.0) == []  # a, b: 3 s limit; c: 5 s; d: none
    # Stale at event time (last sample + limit), whenever the quiet-time check finds it.
    assert m.check_staleness(13.5) == [("stale", "a", 13.0), ("stale", "b", 13.0)]
    assert m.check_staleness(14.0) == []  # reported once
    assert m.check_staleness(16.0) == [("stale", "c", 15.0)]
    events = m.feed_records([Record(17.0, "a", 0.0)])
    events += m.flush()
    assert events == [("fresh", "a", 17.0)]
    assert m.manager.staleness[0] == ("stale", "a", 13.0, 10.0)
    assert m.counters()["channels"]["a"]["is_stale"] is False
    assert m.counters()["channels"]["b"]["is_stale"] is True


def test_unknown_and_missing_columns_of_blocks():
    m = limit_monitor()
    block = TelemetryBlock.from_arrays([0.0, 1.0], [[1.0, 5.0], [np.inf, 6.0]], ["a", "extra"])
    m.feed_block(block)
    c = m.counters()
    assert c["unknown"] == {"extra": 2}
    assert c["channels"]["a"]["missing"] == 1 and c["channels"]["a"]["scored"] == 1
    assert c["channels"]["a"]["received"] == 2 and c["channels"]["b"]["received"] == 0  # b: not in the block
    assert c["channels"]["b"]["missing"] == 0
    m.feed_block(block)  # the same times again: out of order
    assert m.counters()["channels"]["a"]["out_of_order"] == 1


def test_subscribers_get_value_ticks():
    m = limit_monitor()
    ticks = []
    m.subscribe(ticks.append)
    m.feed_block(TelemetryBlock.from_arrays([0.0, 1.0], [[1.0, np.nan, 1, 1], [3.0, np.nan, 1, 1]], CHANNELS))
    assert ticks == [
        {"type": "values", "time": 1.0, "channels": ["a", "c", "d"], "value": [3.0, 1.0, 1.0], "level": [2, 0, 0],
         "stale": [False, False, False]}
    ]  # fmt: skip


def test_history_ring_keeps_the_newest_and_decimates():
    m = limit_monitor(history_points=100)
    t = np.arange(250.0)
    x = np.zeros((250, 4))
    x[:, 0] = np.sin(t)
    x[180, 0] = 3.5  # one warning sample
    m.feed_block(TelemetryBlock.from_arrays(t, x, CHANNELS))
    h = m.history("a")
    assert h["time"] == t[150:].tolist()  # ring of 100
    assert h["high"][0] == 2.0 and h["level"][30] == 2
    d = m.history("a", t0=160.0, max_points=10)
    assert len(d["time"]) <= 10 and max(d["value"]) == 3.5 and max(d["level"]) == 2
    assert d["time"] == sorted(d["time"]) and d["time"][0] >= 160.0
    with pytest.raises(KeyError, match="zz"):
        m.history("zz")


def test_resume_from_store_checkpoint_skips_processed_records(tmp_path):
    from vigil.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "s.sqlite")
    first = limit_monitor(store=store)
    first.feed_records([Record(float(t), "a", 0.0) for t in range(5)])
    position = store.load_checkpoint("monitor")
    assert (position["time"], position["rows"], position["items"]) == (3.0, 4, 5)  # t=4 still pending
    second = limit_monitor(store=store)
    assert second.resume()["time"] == 3.0  # a live source: records up to t=3 are replays
    assert second.counters()["pending"] == 1  # t=4, restored with the stream state
    second.feed_records([Record(float(t), "a", 0.0) for t in range(8)])
    second.flush()
    t, _, _ = second.manager.joined()
    assert t.tolist() == [4.0, 5.0, 6.0, 7.0]
    c = second.counters()
    assert c["replayed"] == 4 and c["channels"]["a"]["duplicate"] == 1  # t=4 came again
    assert c["channels"]["a"]["out_of_order"] == 0


@pytest.mark.parametrize("mode", ["record_by_record", "random_blocks"])
def test_stream_equals_batch_with_the_alarm_manager(scenario, mode):
    from vigil.alarms import AlarmManager

    train, test = scenario
    cfg = config()

    def fresh() -> Monitor:
        return Monitor(cfg, build_detector(cfg).fit(train), AlarmManager(cfg, clock=lambda: 0.0))

    batch, stream = fresh(), fresh()
    batch_events = batch.feed_block(test)
    if mode == "record_by_record":
        stream_events = [e for r in records_of(test) for e in stream.feed_records([r])]
    else:
        stream_events = [e for a in range(0, test.n_samples, 17) for e in stream.feed_block(test.slice(a, a + 17))]
    stream_events += stream.flush()
    alarms = [a.to_dict() for a in batch.manager.alarms()]
    assert {a["channel"] for a in alarms} == {"a", "b", "c"}  # limits, forecast, staleness
    assert alarms == [a.to_dict() for a in stream.manager.alarms()]

    # Alarm changes are the same; incident updates are sent once per update() call, so their
    # number depends on the chunking, but the incidents end the same.
    def changes(events):
        return sorted((e.time, e.alarm_id, e.kind) for e in events if e.kind != "incident")

    assert changes(batch_events) == changes(stream_events)
    incidents = [i.to_dict() for i in batch.manager.incidents()]
    assert incidents and incidents == [i.to_dict() for i in stream.manager.incidents()]


def test_a_failing_detector_is_counted_and_the_stream_goes_on():
    m = limit_monitor()
    real = m.detector.score

    def flaky(block):
        if block.time[0] == 1.0:
            raise ZeroDivisionError("boom")
        return real(block)

    m.detector.score = flaky
    for t in range(3):
        m.feed_block(TelemetryBlock.from_arrays([float(t)], [[3.0, 0.0, np.nan, 0.0]], CHANNELS))
    c = m.counters()
    assert c["errors"] == 1 and "detector failed on rows t=1.0..1.0: ZeroDivisionError: boom" in c["recent_errors"]
    assert c["channels"]["a"]["unscored"] == 1 and c["channels"]["a"]["scored"] == 2
    t, level, _ = m.manager.joined()
    assert t.tolist() == [0.0, 2.0] and level[:, 0].tolist() == [2, 2]
    assert m.history("a")["time"] == [0.0, 1.0, 2.0]


def test_a_corrupt_future_time_is_refuted_a_real_jump_confirmed():
    m = limit_monitor()
    recs = [Record(float(t), "a", 0.0) for t in range(3)]
    recs += [Record(1e9, "b", 0.0)]  # corrupt: a billion seconds ahead, and the stream does not follow
    recs += [Record(float(t), "a", 0.0) for t in range(3, 5)]
    recs += [Record(90_000.0 + t, "a", 0.0) for t in range(3)]  # a real jump (after a long gap)
    for r in recs:  # record by record: the held record waits across calls
        m.feed_records([r])
    m.flush()
    t, _, _ = m.manager.joined()
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 90_000.0, 90_001.0, 90_002.0]
    c = m.counters()
    assert c["channels"]["b"]["quarantined"] == 1 and c["channels"]["a"]["out_of_order"] == 0
    assert "channel b: time 1000000000.0 is 1e+09 s ahead of the stream clock" in c["recent_errors"][-1]
    m.feed_records([Record(5e9, "c", 0.0)])  # nothing follows it yet: held in quarantine
    m.flush()
    assert m.counters()["quarantine_held"] == 1 and m.rows == 8
    batch = limit_monitor()
    batch.feed_records(recs)
    batch.flush()
    assert np.array_equal(batch.manager.joined()[0], t)


def test_records_gridded_in_several_detector_calls_score_the_same(scenario, monkeypatch):
    import vigil.monitor.engine as engine

    train, test = scenario
    batch = monitor_for(train)
    batch.feed_block(test)
    monkeypatch.setattr(engine, "MAX_CELLS", 3 * len(CHANNELS))  # 3 rows per detector call
    chunked = monitor_for(train)
    recs = records_of(test)
    chunked.feed_records(recs)  # one call: all rows final but the last, scored 3 rows at a time
    chunked.flush()
    assert max(len(b[0]) for b in chunked.manager.blocks) == 3 and len(chunked.manager.blocks) >= 100
    for got, want in zip(chunked.manager.joined(), batch.manager.joined()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("n", "max_points"), [(4096, 2000), (1234, 100), (10, 4), (3000, 2), (7, 10)])
def test_decimate_keeps_extremes_order_and_alarms(n, max_points):
    from vigil.monitor.history import decimate

    rng = np.random.default_rng(n)
    level = np.zeros(n, dtype=np.int8)
    level[rng.integers(n)] = 4
    s = {"time": np.arange(float(n)), "value": rng.standard_normal(n), "level": level}
    d = decimate(s, max_points)
    assert len(d["time"]) <= max(max_points, 2) and np.all(np.diff(d["time"]) > 0)
    assert d["value"].min() == s["value"].min() and d["value"].max() == s["value"].max()
    assert d["level"].max() == 4
    kept = d["time"].astype(int)
    np.testing.assert_array_equal(d["value"], s["value"][kept])  # real samples, not averages


record_strategy = st.tuples(
    st.integers(0, 40).map(float) | st.just(5000.0),  # mostly near, sometimes a far jump
    st.sampled_from([*CHANNELS, "zz"]),
    st.floats(-6, 6) | st.just(float("nan")) | st.just(float("inf")),
)


@settings(max_examples=150, deadline=None)
@given(
    recs=st.lists(record_strategy, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=8),
    lateness=st.sampled_from([0.0, 2.0]),
)
def test_any_arrival_order_any_chunking_same_result(recs, cuts, lateness):
    """Out-of-order, duplicate, NaN, unknown and jumping records: chunking never changes anything."""
    whole = limit_monitor(lateness_s=lateness)
    whole.feed_records(recs)
    whole.flush()
    chunked = limit_monitor(lateness_s=lateness)
    bounds = sorted({0, len(recs), *(c for c in cuts if c <= len(recs))})
    for a, b in zip(bounds[:-1], bounds[1:]):
        chunked.feed_records(recs[a:b])
    chunked.flush()
    assert whole.counters() == chunked.counters()
    assert whole.manager.staleness == chunked.manager.staleness
    if whole.manager.blocks:
        for got, want in zip(chunked.manager.joined(), whole.manager.joined()):
            np.testing.assert_array_equal(got, want)
    else:
        assert not chunked.manager.blocks
    c = whole.counters()
    known = [r for r in recs if r[1] != "zz"]
    assert c["totals"]["received"] == len(known) and sum(c["unknown"].values()) == len(recs) - len(known)


def test_a_failing_staleness_report_is_counted_and_the_stream_goes_on():
    m = limit_monitor()

    def broken(*args):
        raise RuntimeError("store unavailable")

    m.manager.report_stale = broken
    m.feed_records([Record(10.0, ch, 0.0) for ch in CHANNELS])
    m.flush()
    assert m.check_staleness(13.5) == []  # a and b went stale; both reports failed
    assert m.errors == 2
    assert "staleness of a" in m.recent_errors[0] and "store unavailable" in m.recent_errors[0]
    assert m.counters()["channels"]["a"]["stale"] == 1
    m.feed_records([Record(14.0, "a", 0.0), Record(15.0, "a", 0.0)])  # the stream goes on
    assert m.counters()["channels"]["a"]["scored"] == 2
