"""Packet sources (UDP, TCP, file), the quick fuzz run, the benchmark and the CLI glue."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from vigil.errors import ConfigError
from vigil.ingest.ccsds.demo.generator import DemoSpacecraft, split
from vigil.ingest.ccsds.source import open_packet_source
from vigil.ingest.records import Record, open_source


def _collect(src, want_rows: int, hang_s: float = 120.0) -> list:
    """Blocks until ``want_rows`` rows came (``hang_s`` only guards against a hang: a slow
    machine waits longer, it never gets fewer rows)."""
    blocks, rows = [], 0
    deadline = time.monotonic() + hang_s
    for block in src.blocks():
        if block is not None:
            blocks.append(block)
            rows += block.n_samples
        if rows >= want_rows or time.monotonic() > deadline:
            break
    return blocks


def send_paced(src, datagrams: list[bytes], hang_s: float = 120.0) -> None:
    """Send each datagram once the source's reader has taken the one before off the socket (its
    queue, not yet consumed, holds one item per datagram): loopback UDP drops a datagram only when
    the receive buffer is full, so none is lost however slow the receiver is."""
    deadline = time.monotonic() + hang_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for k, data in enumerate(datagrams, 1):
            tx.sendto(data, src.address)
            while src._queue.qsize() < k:
                assert time.monotonic() < deadline, f"the source read {src._queue.qsize()} of {k} datagrams"
                time.sleep(0.001)


def test_udp_source_decodes_datagrams_and_counts_problems():
    src = open_packet_source("udp+ccsds://127.0.0.1:0?xtce=demo")
    packets = split(DemoSpacecraft().packets(2.0))  # 20 + 2 + 20 packets, 42 distinct times
    try:
        send_paced(src, [packets[0][0][:-4]] + [raw for raw, _ in packets])  # a cut datagram first
        blocks = _collect(src, want_rows=42)
    finally:
        src.close()
    assert sum(b.n_samples for b in blocks) == 42
    counts = src.counters()["apid"]
    assert sum(c["packets"] for c in counts.values()) == 42
    assert counts[100]["truncated"] == 1


def test_tcp_source_reassembles_a_byte_stream():
    src = open_packet_source("tcp+ccsds://127.0.0.1:0?xtce=demo")
    data = DemoSpacecraft().packets(3.0)
    try:
        with socket.create_connection(src.address) as tx:
            for start in range(0, len(data), 37):  # packets split across segments
                tx.sendall(data[start : start + 37])
        blocks = _collect(src, want_rows=63)
    finally:
        src.close()
    assert sum(b.n_samples for b in blocks) == 63
    assert sum(src.stream.problems().values()) == 0


def test_file_source_through_the_records_registry(tmp_path):
    path = tmp_path / "demo.bin"
    path.write_bytes(DemoSpacecraft().packets(5.0))
    src = open_source(f"file+ccsds://{path}?xtce=demo", speed=None)
    records = [r for batch in src.batches() for r in batch]
    assert all(isinstance(r, Record) for r in records)
    # 50 HK_POWER packets x 4 + 5 HK_THERMAL x 2 + 50 ADCS x 3 parameters
    assert len(records) == 50 * 4 + 5 * 2 + 50 * 3
    assert np.all(np.diff([r.time for r in records]) >= 0)


def test_bad_source_specs():
    with pytest.raises(ConfigError, match=r"needs exactly one of \?xtce=FILE"):
        open_packet_source("udp+ccsds://127.0.0.1:10025")
    with pytest.raises(ConfigError, match="csv definitions need time=FIELD"):
        open_packet_source("udp+ccsds://127.0.0.1:10025?csv=101:t.csv")
    with pytest.raises(ConfigError, match="needs a port"):
        open_packet_source("udp+ccsds://127.0.0.1?xtce=demo")
    with pytest.raises(ConfigError, match="unknown options"):
        open_packet_source("udp+ccsds://127.0.0.1:1?xtce=demo&colour=red")


def test_quick_fuzz_run_finds_no_crash():
    from fuzz.packets import run

    summary = run(count=20_000, seed=7, crash_dir=None)
    assert summary["mutated_packets"] == 20_000
    assert summary["crashes"] == 0
    # The mutations were seen and counted, not silently passed over.
    problems = summary["problems_counted"]
    for name in ("bad_length", "truncated", "unknown_apid", "duplicates", "bad_header", "bad_time"):
        assert problems[name] > 0, name


def test_bench_packets_writes_json(tmp_path):
    from vigil.bench.packets import run_benchmark

    out = tmp_path / "packets.json"
    run_benchmark(out, packets=5_000, spp_packets=500)
    result = json.loads(out.read_text())
    assert result["packets_per_s"] > 0
    assert result["engines"]["bulk"]["packets"] == 4_998  # whole seconds of 21 packets/s
    assert set(result["engines"]) == {"bulk+monitor", "bulk", "spp"}
    assert result["packets_per_s"] == result["engines"]["bulk+monitor"]["packets_per_s"]


def test_cli_demo_file_inspect_and_config(tmp_path):
    from vigil.cli import app

    runner = CliRunner()
    packets = tmp_path / "demo.bin"
    result = runner.invoke(app, ["packets", "demo", "--out", str(packets), "--duration", "10"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["packets", "inspect", str(packets), "--xtce", "demo"])
    assert result.exit_code == 0, result.output
    assert "APID 100 (HK_POWER): packets=100" in result.output
    assert "not mapped: BATT_I: DefaultAlarm/ChangePerSecondAlarmRanges" in result.output
    toml = tmp_path / "demosat.toml"
    result = runner.invoke(app, ["packets", "config", "--xtce", "demo", "--out", str(toml)])
    assert result.exit_code == 0, result.output
    assert "[channels.BATT_V.limits]" in toml.read_text()


def test_packet_problems_reach_the_record_monitor_as_bad_records(tmp_path):
    from vigil.ingest.records import BadRecord

    data = DemoSpacecraft().packets(2.0)
    first = split(data)[0][0]
    path = tmp_path / "cut.bin"
    path.write_bytes(data + first[:-5])  # the file ends inside a packet
    src = open_source(f"file+ccsds://{path}?xtce=demo", speed=None)
    items = [r for batch in src.batches() for r in batch]
    bad = [r for r in items if isinstance(r, BadRecord)]
    assert [b.reason for b in bad] == ["APID 100: truncated +1 (total 1)", "stream: skipped_bytes +14 (total 14)"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_decoded_packets_round_trip_through_the_table_reader(tmp_path, suffix):
    from vigil.ingest.ccsds import PacketStream, load_xtce
    from vigil.ingest.ccsds.demo.generator import xtce_path
    from vigil.ingest.ccsds.stream import write_long
    from vigil.ingest.tabular import read_table

    data = DemoSpacecraft().packets(5.0)
    block = PacketStream(load_xtce(xtce_path())).feed(data, final=True)
    stream = PacketStream(load_xtce(xtce_path()))
    n = write_long(stream.feed_packets(data, final=True), stream.decoder, tmp_path / f"t{suffix}")
    assert n == 50 * 4 + 5 * 2 + 50 * 3
    back, _ = read_table(tmp_path / f"t{suffix}", strict=False)
    same = back.select(list(block.channels))
    np.testing.assert_array_equal(same.time, block.time)
    np.testing.assert_allclose(same.values, block.values, equal_nan=True)


def test_tcp_reconnect_does_not_join_two_connections():
    src = open_packet_source("tcp+ccsds://127.0.0.1:0?xtce=demo")
    packets = split(DemoSpacecraft().packets(1.0))
    try:
        with socket.create_connection(src.address) as tx:
            tx.sendall(packets[0][0] + packets[1][0][:8])  # one packet and a cut one (header + 2 bytes)
        with socket.create_connection(src.address) as tx:
            tx.sendall(b"".join(p for p, _ in packets[2:]))
        blocks = _collect(src, want_rows=len(packets) - 1)
    finally:
        src.close()
    assert sum(b.n_samples for b in blocks) == len(packets) - 1
    assert src.counters()["apid"][101]["truncated"] == 1  # packets[1] is HK_THERMAL
    assert src.counters()["stream"] == {"bad_header": 0, "resyncs": 0, "skipped_bytes": 8, "queue_full": 0}


def test_file_source_with_ccsdspy_csv_definitions(tmp_path):
    csv = tmp_path / "thermal.csv"
    csv.write_text("name,data_type,bit_length\nSC_TIME,uint,48\nHTR_STATE,uint,8\nPANEL_T,float,32\n")
    path = tmp_path / "demo.bin"
    path.write_bytes(DemoSpacecraft().packets(4.0))
    spec = f"file+ccsds://{path}?csv=101:{csv}&time=SC_TIME&time_scale={1 / 65536!r}"
    src = open_packet_source(spec)
    blocks = [b for b in src.blocks() if b is not None]
    assert blocks[0].channels == ("HTR_STATE", "PANEL_T")
    assert sum(b.n_samples for b in blocks) == 4  # the 1 Hz HK_THERMAL packets
    assert src.counters()["apid"][100] == {"unknown_apid": 40}  # HK_POWER is not described
