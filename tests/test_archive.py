"""The telemetry archive: what goes in comes back, in any chunking, merged hourly, expired by retention."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vigil.archive import ArchiveReader, ArchiveWriter
from vigil.archive.writer import day_of
from vigil.detect.base import Scores

DAY = 86400.0
T0 = 1_700_006_400.0  # a UTC midnight


def _stream(n: int, c: int, seed: int = 0, start: float = T0):
    rng = np.random.default_rng(seed)
    time = start + np.arange(n, dtype=np.float64)
    values = rng.normal(size=(n, c))
    values[rng.random((n, c)) < 0.05] = np.nan  # missing samples stay missing
    scores = Scores.empty(n, c, "test")
    scores.expected[:] = np.round(values * 4) / 4
    scores.low[:] = scores.expected - 1
    scores.high[:] = scores.expected + 1
    scores.level[:] = (np.abs(np.nan_to_num(values)) > 2).astype(np.int8) * 3
    return time, values, scores


def _feed(writer: ArchiveWriter, time, values, scores, rows: int) -> None:
    for a in range(0, time.size, rows):
        part = Scores(*(getattr(scores, f)[a : a + rows] for f in ("level", "score", "expected", "low", "high")),
                      detector=scores.detector, by=scores.by[a : a + rows])  # fmt: skip
        writer.append(time[a : a + rows], values[a : a + rows], part)
    writer.flush()


@pytest.mark.parametrize("rows,flush_cells", [(7, 50), (100, 10_000_000)])
def test_every_sample_comes_back_exactly_in_any_chunking(tmp_path, rows, flush_cells):
    time, values, scores = _stream(9000, 3)  # 2.5 hours: three hour files
    names = ("A", "B", "C")
    with ArchiveWriter(tmp_path, names, flush_cells=flush_cells, flush_span_s=1e9) as writer:
        _feed(writer, time, values, scores, rows)
        assert writer.status()["dropped"] == 0 and writer.errors == 0
    reader = ArchiveReader(tmp_path)
    for j, name in enumerate(names):
        got = reader.read(name)
        finite = np.isfinite(values[:, j])
        np.testing.assert_array_equal(got["time"], time[finite])
        np.testing.assert_array_equal(got["value"], values[finite, j])  # float64, bit for bit
        np.testing.assert_array_equal(got["level"], scores.level[finite, j])
        np.testing.assert_allclose(got["expected"], scores.expected[finite, j], rtol=1e-6)
    block = reader.block()
    assert block.channels == names
    np.testing.assert_array_equal(block.values, values)
    assert len(reader.files()) == 3 and len(reader.files(T0 + 3600, T0 + 3700)) == 1


def test_a_span_and_a_decimated_span_keep_the_spike(tmp_path):
    time = T0 + np.arange(5000.0)
    values = np.zeros((5000, 1))
    values[3333, 0] = 50.0
    with ArchiveWriter(tmp_path, ("X",)) as writer:
        writer.append(time, values)
    reader = ArchiveReader(tmp_path)
    part = reader.read("X", T0 + 100, T0 + 199.5)
    assert part["time"][0] == T0 + 100 and part["time"][-1] == T0 + 199 and part["time"].size == 100
    decimated = reader.history("X", max_points=100)
    assert decimated["time"].size <= 100 and decimated["value"].max() == 50.0
    assert reader.read("nope")["time"].size == 0


def test_a_reader_given_the_writer_sees_what_is_not_on_disk_yet(tmp_path):
    with ArchiveWriter(tmp_path, ("X",), flush_cells=10**9, flush_span_s=1e9) as writer:
        writer.append(T0 + np.arange(10.0), np.arange(10.0)[:, None])
        writer.append(T0 + 10 + np.arange(5.0), np.arange(5.0)[:, None])
        writer.sync()
        assert not list(tmp_path.rglob("*.arrows"))
        assert ArchiveReader(tmp_path).read("X")["time"].size == 0
        got = ArchiveReader(tmp_path, writer).read("X", T0 + 8)
        assert got["time"].tolist() == [T0 + k for k in range(8, 15)]
        assert got["value"].tolist() == [8.0, 9.0, 0.0, 1.0, 2.0, 3.0, 4.0]


def test_retention_deletes_whole_days_older_than_the_limit(tmp_path):
    with ArchiveWriter(tmp_path, ("X",), retention_days=1.0, flush_span_s=600) as writer:
        for day in range(4):
            start = T0 + day * DAY
            writer.append(start + np.arange(0.0, 7200.0, 60.0), np.ones((120, 1)))
    days = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert days == [day_of(T0 + 2 * DAY), day_of(T0 + 3 * DAY)]
    assert ArchiveReader(tmp_path).read("X")["time"][0] == T0 + 2 * DAY


def test_a_file_torn_by_a_crash_is_read_up_to_its_last_whole_chunk_and_a_restart_writes_anew(tmp_path):
    time, values, scores = _stream(1000, 2)
    with ArchiveWriter(tmp_path, ("A", "B"), flush_cells=200) as writer:  # chunks of 100 rows
        _feed(writer, time, values, scores, 100)
    (path,) = ArchiveReader(tmp_path).files()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # killed while appending
    got = ArchiveReader(tmp_path).read("A")
    kept = int(got["time"][-1] - T0) // 100 * 100 + 100  # whole 100-row chunks
    assert 500 <= kept < 1000
    np.testing.assert_array_equal(got["time"], time[:kept][np.isfinite(values[:kept, 0])])
    later, more, more_scores = _stream(100, 2, seed=1, start=T0 + 1000)
    with ArchiveWriter(tmp_path, ("A", "B")) as writer:  # the restart: a new file, the torn one untouched
        _feed(writer, later, more, more_scores, 100)
    assert len(ArchiveReader(tmp_path).files()) == 2
    assert ArchiveReader(tmp_path).read("A", T0 + 1000)["time"].size == np.isfinite(more[:, 0]).sum()


def test_a_failing_disk_is_counted_not_raised(tmp_path):
    target = tmp_path / "archive"
    writer = ArchiveWriter(target, ("X",))
    shutil.rmtree(target)
    target.write_text("not a folder")  # the day folder cannot be made
    writer.append(T0 + np.arange(3.0), np.ones((3, 1)))
    writer.flush()
    assert writer.errors == 1 and writer.dropped == 3 and "Error" in writer.last_error
    writer.close()


def test_the_monitor_archives_every_accepted_sample(tmp_path):
    from vigil.alarms import AlarmManager
    from vigil.config import MonitorConfig
    from vigil.detect.limits import LimitCheck
    from vigil.model import TelemetryBlock
    from vigil.monitor import Monitor

    config = MonitorConfig.from_dict({"channels": {"P": {"subsystem": "s", "limits": {"warning": [-1, 1]}}}})
    empty = TelemetryBlock.from_arrays([0.0], np.full((1, 1), np.nan), ["P"])
    monitor = Monitor(config, LimitCheck(config.limits()).fit(empty), AlarmManager(config, clock=lambda: 0.0))
    with ArchiveWriter(tmp_path, monitor.channels) as writer:
        monitor.add_block_sink(writer)
        records = [(T0 + 1, "P", 0.2), (T0 + 2, "P", 0.5), (T0 + 1, "P", 7.0), (T0 + 3, "P", 5.0), (T0 + 3, "P", 9.0)]
        monitor.feed_records(records)
        monitor.flush()
    got = ArchiveReader(tmp_path).read("P")
    assert got["time"].tolist() == [T0 + 1, T0 + 2, T0 + 3]  # the late and the duplicate records were not accepted
    assert got["value"].tolist() == [0.2, 0.5, 5.0] and got["level"].tolist() == [0, 0, 2]
