"""Record lines and sources: CSV/JSON parsing, bad lines, file replay pacing, stdin, TCP, UDP."""

from __future__ import annotations

import io
import math
import socket
import time

import pytest

from vigil.errors import ConfigError
from vigil.ingest.records import (
    MAX_LINE,
    BadRecord,
    FileSource,
    Record,
    StreamSource,
    TcpSource,
    UdpSource,
    open_source,
    parse_line,
    parse_lines,
)


def test_csv_json_and_iso_lines():
    assert parse_line(" 1.5 , T-1 , -2e3 ") == Record(1.5, "T-1", -2000.0)
    assert parse_line('{"time": 2, "channel": "P", "value": 7}') == Record(2.0, "P", 7.0)
    assert parse_line("2026-11-24T00:00:01,P,1").time == 1795478401.0
    assert parse_line("2026-11-24T00:00:01+01:00,P,1").time == 1795478401.0 - 3600
    assert math.isnan(parse_line("3,P,nan").value) and math.isnan(parse_line("3,P,").value)
    assert parse_line("") is None and parse_line("# comment") is None and parse_line("time,channel,value") is None


@pytest.mark.parametrize(
    ("line", "reason", "channel"),
    [
        ("1,P", "expected 3 comma-separated fields, got 2", None),
        ("1,P,2,3", "expected 3 comma-separated fields, got 4", "P"),
        ("x,P,2", "time 'x' is neither seconds nor ISO 8601", "P"),
        ("inf,P,2", "time 'inf' is not finite", "P"),
        ("1,P,hot", "value 'hot' is not a number", "P"),
        ("1, ,2", "empty channel name", None),
        ("{nope", "invalid JSON: Expecting property name enclosed in double quotes", None),
        ("{}", "JSON record lacks ['time', 'channel', 'value']", None),
        ('{"time": 1, "channel": "P"}', "JSON record lacks ['value']", "P"),
        ('{"time": 1, "channel": "P", "value": true}', "value True is not a number", "P"),
    ],
)
def test_bad_lines_name_source_line_and_channel(line, reason, channel):
    bad = parse_line(line, source="feed.csv", line=12)
    assert isinstance(bad, BadRecord)
    assert (bad.source, bad.line, bad.reason, bad.channel) == ("feed.csv", 12, reason, channel)
    assert str(bad).startswith("feed.csv: line 12: ")


def test_parse_lines_numbers_lines():
    items = parse_lines(["time,channel,value", "0,a,1", "junk", "1,a,2"], source="f")
    assert items[0] == Record(0.0, "a", 1.0) and items[1].line == 3 and items[2] == Record(1.0, "a", 2.0)


@pytest.fixture
def record_file(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("time,channel,value\n0,a,1\n0,b,2\n0.2,a,3\nbad line\n0.4,a,4\n")
    return path


def test_file_replay_as_fast_as_possible(record_file):
    src = open_source(f"file:{record_file}")
    items = [item for batch in src.batches() for item in batch]
    assert [i for i in items if isinstance(i, Record)] == [
        Record(0.0, "a", 1.0), Record(0.0, "b", 2.0), Record(0.2, "a", 3.0), Record(0.4, "a", 4.0)
    ]  # fmt: skip
    assert [i.line for i in items if isinstance(i, BadRecord)] == [5]


def test_file_replay_paced_by_speed(record_file):
    started = time.monotonic()
    batches = list(FileSource(record_file, speed=2.0).batches())
    took = time.monotonic() - started
    assert 0.19 <= took < 1.0  # 0.4 s of data at 2x
    # one record batch per time step: t=0 (a, b); t=0.2 (a); t=0.4; the bad line comes with its block
    assert [b.size for b in batches if b] == [2, 1, 1] and sum(len(b.bad) for b in batches if b) == 1
    fast = time.monotonic()
    list(FileSource(record_file, speed=100.0).batches())
    assert time.monotonic() - fast < 0.15


def test_file_replay_skips_up_to_checkpoint(record_file):
    src = FileSource(record_file, skip_until=0.2)
    items = [i for b in src.batches() for i in b]
    assert [i for i in items if isinstance(i, Record)] == [Record(0.4, "a", 4.0)] and src.skipped == 3


def test_stream_source_reads_until_end_and_idles():
    src = StreamSource(io.StringIO("0,a,1\n1,a,2\n"), idle_s=0.05)
    items = [i for b in src.batches() for i in b]
    assert items == [Record(0.0, "a", 1.0), Record(1.0, "a", 2.0)]


def wait_until(condition, hang_s: float = 120.0) -> None:
    """Wait for ``condition()`` (``hang_s`` only guards against a hang)."""
    deadline = time.monotonic() + hang_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def collect(src, n: int, timeout: float = 120.0) -> tuple[list, int]:
    """Items until ``n`` came; ``timeout`` guards against a hang (or bounds a wait for idle ticks)."""
    got, idle = [], 0
    deadline = time.monotonic() + timeout
    for batch in src.batches():
        got += batch
        idle += not batch
        if len(got) >= n or time.monotonic() > deadline:
            break
    return got, idle


def test_tcp_source_from_two_clients():
    src = TcpSource(port=0, idle_s=0.05)
    try:
        assert src.address[0] == "127.0.0.1"
        for payload in (b"0,a,1\n1,a,2\n", b'{"time": 0, "channel": "b", "value": 5}\nbroken\n'):
            with socket.create_connection(src.address) as s:
                s.sendall(payload)
        got, _ = collect(src, 4)
    finally:
        src.close()
    records = sorted(i for i in got if isinstance(i, Record))
    assert records == [Record(0.0, "a", 1.0), Record(0.0, "b", 5.0), Record(1.0, "a", 2.0)]
    bad = [i for i in got if isinstance(i, BadRecord)]
    assert len(bad) == 1 and bad[0].line == 2 and bad[0].source.startswith("tcp://127.0.0.1:")


def test_tcp_source_reports_a_runaway_line_and_goes_on():
    src = TcpSource(port=0, idle_s=0.05)
    try:
        with socket.create_connection(src.address) as s:
            s.sendall(b"0,a,1\n" + b"9" * (3 * MAX_LINE) + b"\n1,a,2\n")
        got, _ = collect(src, 3)
    finally:
        src.close()
    assert got[0] == Record(0.0, "a", 1.0) and got[2] == Record(1.0, "a", 2.0)
    assert isinstance(got[1], BadRecord) and got[1].reason == f"line longer than {MAX_LINE} bytes"
    assert got[1].line == 2


def test_tcp_source_reports_a_connection_reset_by_the_peer():
    import struct

    src = TcpSource(port=0, idle_s=0.05)
    try:
        s = socket.create_connection(src.address)
        s.sendall(b"0,a,1\n")
        first, _ = collect(src, 1)
        # Linger 0: closing sends a reset instead of an orderly end of stream.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        got, _ = collect(src, 1)
    finally:
        src.close()
    assert first == [Record(0.0, "a", 1.0)]
    assert len(got) == 1 and isinstance(got[0], BadRecord)
    assert got[0].reason.startswith("connection ended abnormally") and got[0].line == 2


def test_udp_source_counts_records_it_had_no_room_for():
    import queue

    src = UdpSource(port=0, idle_s=0.05)
    src._queue = queue.Queue(maxsize=2)  # a monitor that has fallen far behind
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"0,a,1\n1,a,2\n2,a,3\n3,a,4\n4,a,5", src.address)
            wait_until(lambda: src._dropped == 3)  # the reader filled the queue and dropped the other three
            first, _ = collect(src, 2)
            s.sendto(b"5,a,6", src.address)
            then, _ = collect(src, 2)
    finally:
        src.close()
    assert first == [Record(0.0, "a", 1.0), Record(1.0, "a", 2.0)]
    assert isinstance(then[0], BadRecord) and then[0].reason.startswith("3 records dropped")
    assert then[1] == Record(5.0, "a", 6.0)


def test_udp_source_datagrams_and_idle_ticks():
    src = UdpSource(port=0, idle_s=0.05)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"0,a,1\n0,b,2", src.address)
            wait_until(lambda: src._queue.qsize() == 2)  # read before the next is sent: none can be dropped
            s.sendto(b"1,a,\xff", src.address)
        got, _ = collect(src, 3)
        _, idle = collect(src, 1, timeout=0.2)
    finally:
        src.close()
    assert got[:2] == [Record(0.0, "a", 1.0), Record(0.0, "b", 2.0)]
    assert isinstance(got[2], BadRecord) and got[2].channel == "a"
    assert idle >= 1  # a quiet socket yields empty batches


def test_open_source_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="source: unknown source 'data.csv'"):
        open_source("data.csv")
    with pytest.raises(ConfigError, match="needs a port"):
        open_source("tcp://127.0.0.1")
    with pytest.raises(ConfigError, match="unknown source scheme 'kafka'"):
        open_source("kafka://x:1")
    with pytest.raises(ConfigError, match="no such record file"):
        open_source(f"file:{tmp_path / 'none.csv'}")
    with pytest.raises(ConfigError, match="speed"):
        FileSource(tmp_path, speed=0)


def test_wide_csv_replay(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("time,T1,V1\n0,1.5,28\n1,,29\n2,hot,30\n3,4\nx,1,2\n")
    items = [i for b in FileSource(path).batches() for i in b]
    assert [i for i in items if isinstance(i, Record)] == [
        Record(0.0, "T1", 1.5), Record(0.0, "V1", 28.0), Record(1.0, "V1", 29.0), Record(2.0, "V1", 30.0)
    ]  # fmt: skip
    bad = [(b.line, b.channel, b.reason) for b in items if isinstance(b, BadRecord)]
    assert bad == [
        (4, "T1", "value 'hot' is not a number"),
        (5, None, "expected 3 fields, got 2"),
        (6, None, "time 'x' is neither seconds nor ISO 8601"),
    ]


def test_paced_replay_yields_idle_batches_in_gaps(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("0,a,1\n3,a,2\n")  # a 3 s gap, replayed at 10x: 0.3 s
    batches = list(FileSource(path, speed=10.0, idle_s=0.05).batches())
    assert list(batches[0]) == [Record(0.0, "a", 1.0)] and list(batches[-1]) == [Record(3.0, "a", 2.0)]
    assert 4 <= len(batches) - 2 <= 6 and not any(batches[1:-1])  # ~0.3 s / 0.05 s of empty batches


@pytest.mark.parametrize("name", ["timestamp", "Time", "t", "datetime", "epoch", "met"])
def test_wide_record_file_time_column_recognised_by_name(tmp_path, name):
    # Before: a first column called `timestamp` made every cell an unknown channel named after a number.
    path = tmp_path / "wide.csv"
    path.write_text(f"{name},T1,V1\n2026-11-24T00:00:00,20.5,28\n2026-11-24T00:00:01,21.5,29\n")
    items = [i for b in FileSource(path).batches() for i in b]
    assert items == [
        Record(1795478400.0, "T1", 20.5), Record(1795478400.0, "V1", 28.0),
        Record(1795478401.0, "T1", 21.5), Record(1795478401.0, "V1", 29.0),
    ]  # fmt: skip


def test_unnamed_time_column_is_taken_and_said(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("when,T1,V1\n0,20.5,28\n1,21.5,29\n")
    src = FileSource(path)
    items = [i for b in src.batches() for i in b]
    assert [r.channel for r in items] == ["T1", "V1", "T1", "V1"]
    assert src.notes == [f"{path}: no column is named like a time (date, datetime, epoch, ert, gps_time, met, ...): "
                         "the first column, 'when', was taken as time"]  # fmt: skip
    # A junk first line over long records stays a counted bad line; the records are read.
    junk = tmp_path / "long.csv"
    junk.write_text("garbage,here,now\n0,T1,1\n1,T1,2\n")
    src = FileSource(junk)
    items = [i for b in src.batches() for i in b]
    assert [type(i).__name__ for i in items] == ["Record", "Record", "BadRecord"] and not src.notes


def test_long_header_with_other_column_names_is_skipped():
    assert parse_line("timestamp,parameter,value") is None and parse_line("TIME,Channel,Val") is None
