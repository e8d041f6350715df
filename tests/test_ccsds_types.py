"""Packet types beyond one container per APID, hand-built: sub-types under an APID, one container for
several APIDs, a packet type without time, names in several containers, what cannot be read, and
framing that follows the header when packets are longer or shorter than their layout."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from vigil.errors import ConfigError
from vigil.ingest.ccsds import PacketStream, load_xtce
from vigil.ingest.ccsds.timespec import TimeSpec

U = '<xtce:IntegerParameterType name="U{n}" signed="false"><xtce:IntegerDataEncoding sizeInBits="{n}"/></xtce:IntegerParameterType>'
HEADER = [("VERSION", 3), ("TYPE", 1), ("SHF", 1), ("APID", 11), ("GRP", 2), ("SEQ", 14), ("LEN", 16)]


def xtce(extra_types: str = "", extra_params: str = "", extra_containers: str = "") -> str:
    types = "".join(U.format(n=n) for n in (1, 2, 3, 8, 11, 14, 16, 32))
    params = "".join(f'<xtce:Parameter name="{p}" parameterTypeRef="U{n}"/>' for p, n in HEADER)
    params += "".join(
        f'<xtce:Parameter name="{p}" parameterTypeRef="U{n}"/>'
        for p, n in (("MET", 32), ("SUBTYPE", 8), ("X", 16), ("Y", 16), ("Z", 16), ("MODE", 8), ("FINE", 16))
    )
    header = "".join(f'<xtce:ParameterRefEntry parameterRef="{p}"/>' for p, _ in HEADER)
    return f"""<?xml version="1.0"?>
<xtce:SpaceSystem xmlns:xtce="http://www.omg.org/spec/XTCE/20180204" name="T">
 <xtce:TelemetryMetaData>
  <xtce:ParameterTypeSet>{types}{extra_types}</xtce:ParameterTypeSet>
  <xtce:ParameterSet>{params}{extra_params}</xtce:ParameterSet>
  <xtce:ContainerSet>
   <xtce:SequenceContainer name="CCSDSPacket" abstract="true"><xtce:EntryList>{header}</xtce:EntryList>
   </xtce:SequenceContainer>
   <xtce:SequenceContainer name="APP_A" abstract="true">
    <xtce:EntryList><xtce:ParameterRefEntry parameterRef="MET"/><xtce:ParameterRefEntry parameterRef="SUBTYPE"/></xtce:EntryList>
    <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria>
     <xtce:Comparison parameterRef="APID" value="20" useCalibratedValue="false"/></xtce:RestrictionCriteria></xtce:BaseContainer>
   </xtce:SequenceContainer>
   <xtce:SequenceContainer name="A_ONE">
    <xtce:EntryList><xtce:ParameterRefEntry parameterRef="X"/><xtce:ParameterRefEntry parameterRef="MODE"/></xtce:EntryList>
    <xtce:BaseContainer containerRef="APP_A"><xtce:RestrictionCriteria>
     <xtce:Comparison parameterRef="SUBTYPE" value="1" useCalibratedValue="false"/></xtce:RestrictionCriteria></xtce:BaseContainer>
   </xtce:SequenceContainer>
   <xtce:SequenceContainer name="A_TWO">
    <xtce:EntryList><xtce:ParameterRefEntry parameterRef="Y"/><xtce:ParameterRefEntry parameterRef="MODE"/>
     <xtce:ParameterRefEntry parameterRef="FINE"/></xtce:EntryList>
    <xtce:BaseContainer containerRef="APP_A"><xtce:RestrictionCriteria>
     <xtce:Comparison parameterRef="SUBTYPE" value="2" useCalibratedValue="false"/></xtce:RestrictionCriteria></xtce:BaseContainer>
   </xtce:SequenceContainer>
   <xtce:SequenceContainer name="BOTH">
    <xtce:EntryList><xtce:ParameterRefEntry parameterRef="Z"/><xtce:ParameterRefEntry parameterRef="MODE"/></xtce:EntryList>
    <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria><xtce:BooleanExpression><xtce:ORedConditions>
     <xtce:Condition><xtce:ParameterInstanceRef parameterRef="APID" useCalibratedValue="false"/>
      <xtce:ComparisonOperator>==</xtce:ComparisonOperator><xtce:Value>30</xtce:Value></xtce:Condition>
     <xtce:Condition><xtce:ParameterInstanceRef parameterRef="APID" useCalibratedValue="false"/>
      <xtce:ComparisonOperator>==</xtce:ComparisonOperator><xtce:Value>31</xtce:Value></xtce:Condition>
    </xtce:ORedConditions></xtce:BooleanExpression></xtce:RestrictionCriteria></xtce:BaseContainer>
   </xtce:SequenceContainer>
   {extra_containers}
  </xtce:ContainerSet>
 </xtce:TelemetryMetaData>
</xtce:SpaceSystem>
"""


def pkt(apid: int, seq: int, body: bytes, pad: int = 0) -> bytes:
    body = body + b"\xee" * pad
    return struct.pack(">HHH", (1 << 11) | apid, (3 << 14) | seq, len(body) - 1) + body


def one(seq, met, x, mode, pad=0):
    return pkt(20, seq, struct.pack(">IBHB", met, 1, x, mode), pad)


def two(seq, met, y, mode, fine):
    return pkt(20, seq, struct.pack(">IBHBH", met, 2, y, mode, fine))


def both(apid, seq, z, mode):
    return pkt(apid, seq, struct.pack(">HB", z, mode))


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "types.xml"
    p.write_text(xtce())
    return p


def test_packet_types_apids_and_qualified_names(path):
    m = load_xtce(path, time=TimeSpec(names=("MET",)))
    assert set(m.layouts) == {"A_ONE", "A_TWO", "BOTH"}
    assert m.layouts["BOTH"].apids == (30, 31)
    assert m.shared_apids == {20: ("A_ONE", "A_TWO")}
    # MODE and SUBTYPE are in several packet types: qualified everywhere; X, Y, Z are not.
    assert m.layouts["A_ONE"].channels == ("A_ONE.SUBTYPE", "X", "A_ONE.MODE")
    assert m.layouts["A_TWO"].channels == ("A_TWO.SUBTYPE", "Y", "A_TWO.MODE", "FINE")
    assert m.layouts["BOTH"].channels == ("Z", "BOTH.MODE")
    assert m.untimed == ("BOTH",)


@pytest.mark.parametrize("engine", ["bulk", "spp"])
def test_sub_types_several_apids_and_reception_order_time(path, engine):
    m = load_xtce(path, time=TimeSpec(names=("MET",)))
    stream = PacketStream(m, engine=engine)
    data = one(0, 100, 7, 1) + both(30, 0, 5, 2) + two(1, 101, 9, 3, 0) + both(31, 0, 6, 4)
    block = stream.feed(data, final=True)
    row = {c: block.values[:, j].tolist() for j, c in enumerate(block.channels)}
    assert block.time.tolist() == [100.0, 101.0]  # BOTH packets take the time of the packet before them
    assert row["X"][0] == 7 and row["Y"][1] == 9 and row["A_ONE.MODE"][0] == 1 and row["A_TWO.MODE"][1] == 3
    assert row["Z"] == [5.0, 6.0] and row["BOTH.MODE"] == [2.0, 4.0]
    assert sum(stream.problems().values()) == 0


def test_qualified_time_and_fine_time(path):
    # Only A_TWO is timed (by MET + FINE * 2**-16); A_ONE and BOTH take the reception order.
    spec = TimeSpec(names=("A_TWO.MET",), fine=("FINE",), epoch=1000.0)
    m = load_xtce(path, time=spec)
    assert m.layouts["A_TWO"].fine_field == "FINE" and m.layouts["A_TWO"].fine_scale == 2.0**-16
    assert set(m.untimed) == {"A_ONE", "BOTH"}
    stream = PacketStream(m)
    pk = stream.feed_packets(two(0, 5, 1, 1, 32768) + one(1, 99, 2, 2) + two(2, 6, 3, 3, 0), final=True)
    assert pk.time.tolist() == [1005.5, 1005.5, 1006.0]


def test_unknown_time_name_lists_candidates(path):
    with pytest.raises(
        ConfigError, match=r"'NOPE' is in no packet type; time-like candidates per packet type: A_ONE: MET"
    ):
        load_xtce(path, time=TimeSpec(names=("NOPE",)))
    with pytest.raises(ConfigError, match=r"--time NAME .* A_ONE: MET; A_TWO: MET, FINE; BOTH: \(none\)"):
        load_xtce(path)


def test_unsupported_containers_are_reported_and_the_rest_loads(tmp_path):
    bad_type = '<xtce:EnumeratedParameterType name="NOENC"><xtce:EnumerationList/></xtce:EnumeratedParameterType>'
    bad_param = '<xtce:Parameter name="W" parameterTypeRef="NOENC"/>'
    containers = """
   <xtce:SequenceContainer name="USES_W"><xtce:EntryList><xtce:ParameterRefEntry parameterRef="W"/></xtce:EntryList>
    <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria>
     <xtce:Comparison parameterRef="APID" value="40" useCalibratedValue="false"/></xtce:RestrictionCriteria></xtce:BaseContainer>
   </xtce:SequenceContainer>
   <xtce:SequenceContainer name="NO_APID"><xtce:EntryList><xtce:ParameterRefEntry parameterRef="Z"/></xtce:EntryList>
    <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria>
     <xtce:Comparison parameterRef="APID" value="4000" useCalibratedValue="false"/></xtce:RestrictionCriteria></xtce:BaseContainer>
   </xtce:SequenceContainer>"""
    p = tmp_path / "odd.xml"
    p.write_text(xtce(bad_type, bad_param, containers))
    m = load_xtce(p, time=TimeSpec(names=("MET",)))
    assert set(m.layouts) == {"A_ONE", "A_TWO", "BOTH"}
    assert "NOENC" in m.unsupported["USES_W"]
    assert m.unsupported["NO_APID"] == "no APID satisfies its restriction criteria"


def test_longer_and_shorter_than_layout_keep_sync(path):
    m = load_xtce(path, time=TimeSpec(names=("MET",)))
    m.shared_apids.clear()  # make APID 20 a fixed layout (A_ONE only) to test the framer's length rules
    m.layouts.pop("A_TWO")
    m.__dict__.pop("_by_apid", None)  # forget the cached APID table
    stream = PacketStream(m)
    short = one(1, 101, 8, 1)[:-1]
    short = short[:4] + struct.pack(">H", len(short) - 7) + short[6:]
    data = one(0, 100, 7, 1, pad=2) + short + one(2, 102, 9, 1) + both(30, 0, 1, 1) + one(3, 103, 4, 1, pad=5)
    pk = stream.feed_packets(data, final=True)
    c = stream.counters()
    assert c["apid"][20]["longer_than_layout"] == 2 and c["apid"][20]["shorter_than_layout"] == 1
    assert c["stream"]["resyncs"] == 0 and c["stream"]["skipped_bytes"] == 0
    col = stream.channels.index("X")
    assert pk.values[pk.apid == 20, col].tolist() == [7.0, 9.0, 4.0]  # the described prefix of the longer ones


def test_same_time_packets_are_all_kept(path):
    m = load_xtce(path, time=TimeSpec(names=("MET",)))
    stream = PacketStream(m)
    block = stream.feed(one(0, 100, 1, 1) + one(1, 100, 2, 1) + one(2, 100, 3, 1) + one(3, 101, 4, 1), final=True)
    assert block.column("X").tolist() == [1.0, 2.0, 3.0, 4.0]
    assert block.time[0] == 100.0 and np.all(np.diff(block.time) > 0) and block.time[2] - 100.0 < 1e-9
    assert stream.counters()["apid"][20]["same_time"] == 2


BLOB = """<xtce:BinaryParameterType name="BLOB_T"><xtce:BinaryDataEncoding><xtce:SizeInBits><xtce:DynamicValue>
 <xtce:ParameterInstanceRef parameterRef="NBITS"/></xtce:DynamicValue></xtce:SizeInBits></xtce:BinaryDataEncoding>
</xtce:BinaryParameterType>"""
VAR = """<xtce:SequenceContainer name="VAR"><xtce:EntryList>
 <xtce:ParameterRefEntry parameterRef="MET"/><xtce:ParameterRefEntry parameterRef="NBITS"/>
 <xtce:ParameterRefEntry parameterRef="BLOB"/><xtce:ParameterRefEntry parameterRef="CRC"/></xtce:EntryList>
 <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria>
  <xtce:Comparison parameterRef="APID" value="50" useCalibratedValue="false"/></xtce:RestrictionCriteria></xtce:BaseContainer>
</xtce:SequenceContainer>"""


@pytest.mark.parametrize("engine", ["bulk", "spp"])
def test_fields_after_a_variable_block_are_read_from_the_packet_end(tmp_path, engine):
    params = (
        '<xtce:Parameter name="NBITS" parameterTypeRef="U16"/><xtce:Parameter name="BLOB" parameterTypeRef="BLOB_T"/>'
        '<xtce:Parameter name="CRC" parameterTypeRef="U16"/>'
    )
    p = tmp_path / "var.xml"
    p.write_text(xtce(BLOB, params, VAR))
    m = load_xtce(p, time=TimeSpec(names=("MET",)))
    plan = m.layouts["VAR"].plan
    assert plan is not None and plan.variable and m.layouts["VAR"].length is None
    stream = PacketStream(m, engine=engine)
    packets = [
        pkt(50, i, struct.pack(">IH", 10 + i, 8 * n) + bytes(n) + struct.pack(">H", 1000 + i))
        for i, n in enumerate((0, 3, 40))
    ]
    too_short = pkt(50, 3, b"\x00\x00")
    pk = stream.feed_packets(b"".join(packets) + too_short, final=True)
    assert pk.values[:, stream.channels.index("CRC")].tolist() == [1000.0, 1001.0, 1002.0]
    assert pk.values[:, stream.channels.index("NBITS")].tolist() == [0.0, 24.0, 320.0]
    c = stream.counters()["apid"][50]
    assert c.get("shorter_than_layout", 0) + c.get("decode_errors", 0) == 1


def test_time_options_in_a_source_spec(path, tmp_path):
    from vigil.ingest.ccsds.source import open_packet_source

    capture = tmp_path / "c.bin"
    capture.write_bytes(one(0, 100, 1, 1) + two(1, 100, 2, 2, 16384))
    spec = (
        f"file+ccsds://{capture}?xtce={path}&time=A_ONE.MET&time=A_TWO.MET&time_fine=FINE"
        "&time_fine_scale=0.0001&time_scale=2&epoch=1970-01-02T00:00:00Z"
    )
    src = open_packet_source(spec)
    lay = src.stream.mission.layouts
    assert (lay["A_ONE"].time_field, lay["A_TWO"].time_field, lay["A_TWO"].fine_field) == ("MET", "MET", "FINE")
    assert lay["BOTH"].time_field is None
    pk = src.stream.feed_packets(capture.read_bytes(), final=True)
    assert pk.time.tolist() == [86400 + 200.0, 86400 + 200.0 + 1.6384]
    with pytest.raises(ConfigError, match="epoch"):
        open_packet_source(spec.replace("1970-01-02T00:00:00Z", "yesterday"))


def test_decode_long_by_default_wide_on_request(path, tmp_path):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from vigil.cli import app

    capture = tmp_path / "c.bin"
    capture.write_bytes(one(0, 100, 1, 1) + one(1, 100, 2, 1) + both(30, 2, 7, 3))
    base = ["packets", "decode", str(capture), "--xtce", str(path), "--time", "MET"]
    long = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "l.parquet")])
    wide = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "w.parquet"), "--wide"])
    assert long.exit_code == wide.exit_code == 0, long.output + wide.output
    t = pq.read_table(tmp_path / "l.parquet").to_pydict()
    assert t["packet"] == [0, 0, 0, 1, 1, 1, 2, 2] and t["value"][1::3][:2] == [1.0, 2.0]  # both X at t=100 kept
    assert t["channel"][-2:] == ["Z", "BOTH.MODE"] and t["time"][-1] == 100.0  # BOTH: reception order
    w = pq.read_table(tmp_path / "w.parquet").to_pydict()
    assert list(w)[0] == "time" and w["X"][:2] == [1.0, 2.0] and len(w["time"]) == 2


def test_one_sub_type_is_still_checked_packet_by_packet(tmp_path):
    """APID 20 with only the SUBTYPE == 1 type described: a SUBTYPE 2 packet is rejected, not decoded as it."""
    text = xtce()
    start = text.index('<xtce:SequenceContainer name="A_TWO">')
    text = text[:start] + text[text.index("</xtce:SequenceContainer>", start) + len("</xtce:SequenceContainer>") :]
    p = tmp_path / "one.xml"
    p.write_text(text)
    m = load_xtce(p, time=TimeSpec(names=("MET",)))
    assert m.shared_apids == {} and m.layout_for(20).selector is not None  # SUBTYPE == 1 checked on columns
    stream = PacketStream(m)
    pk = stream.feed_packets(one(0, 100, 7, 1) + two(1, 101, 9, 3, 0), final=True)
    assert pk.values[:, stream.channels.index("X")].tolist() == [7.0]
    assert stream.counters()["apid"][20]["decode_errors"] == 1


def test_sub_types_are_told_apart_in_bulk(path):
    m = load_xtce(path, time=TimeSpec(names=("MET",)))
    assert m.layouts["A_ONE"].selector is not None and m.layouts["A_TWO"].selector is not None

    def refuse(raw):
        raise AssertionError("went to space_packet_parser")

    m.definition.parse_bytes = refuse  # every packet here must be decoded in bulk
    stream = PacketStream(m)
    bad_subtype = pkt(20, 9, struct.pack(">IBHB", 102, 7, 1, 1))
    pk = stream.feed_packets(one(0, 100, 7, 1) + two(1, 101, 9, 3, 5) + bad_subtype, final=True)
    assert pk.values[:, stream.channels.index("X")].tolist()[0] == 7.0
    assert pk.values[:, stream.channels.index("FINE")].tolist()[1] == 5.0
    assert len(pk) == 2 and stream.counters()["apid"][20]["decode_errors"] == 1  # subtype 7: no type


def test_variable_block_sizes_that_disagree_with_the_packet(tmp_path):
    """A size field saying less than the packet holds: the described part decoded (longer than
    layout), trailer where the size puts it; saying more: too short. Both engines agree."""
    params = (
        '<xtce:Parameter name="NBITS" parameterTypeRef="U16"/><xtce:Parameter name="BLOB" parameterTypeRef="BLOB_T"/>'
        '<xtce:Parameter name="CRC" parameterTypeRef="U16"/>'
    )
    p = tmp_path / "var.xml"
    p.write_text(xtce(BLOB, params, VAR))
    m = load_xtce(p, time=TimeSpec(names=("MET",)))
    says_less = pkt(50, 0, struct.pack(">IH", 10, 8) + b"\x01\x02\x03" + struct.pack(">H", 1000))
    says_more = pkt(50, 1, struct.pack(">IH", 11, 800) + b"\x01\x02\x03" + struct.pack(">H", 1001))
    out = {}
    for engine in ("bulk", "spp"):
        stream = PacketStream(m, engine=engine)
        pk = stream.feed_packets(says_less + says_more, final=True)
        c = stream.counters()["apid"][50]
        out[engine] = (pk.values[:, stream.channels.index("CRC")].tolist(), c.get("longer_than_layout", 0))
        assert c.get("shorter_than_layout", 0) + c.get("decode_errors", 0) == 1
    assert out["bulk"] == out["spp"] == ([float(0x0203)], 1)


TEXT_TYPES = """<xtce:StringParameterType name="NAME_T"><xtce:StringDataEncoding encoding="UTF-8"><xtce:SizeInBits>
 <xtce:Fixed><xtce:FixedValue>32</xtce:FixedValue></xtce:Fixed></xtce:SizeInBits></xtce:StringDataEncoding>
</xtce:StringParameterType>
<xtce:BinaryParameterType name="B12_T"><xtce:BinaryDataEncoding><xtce:SizeInBits><xtce:FixedValue>12</xtce:FixedValue>
</xtce:SizeInBits></xtce:BinaryDataEncoding></xtce:BinaryParameterType>
<xtce:BinaryParameterType name="B16_T"><xtce:BinaryDataEncoding><xtce:SizeInBits><xtce:FixedValue>16</xtce:FixedValue>
</xtce:SizeInBits></xtce:BinaryDataEncoding></xtce:BinaryParameterType>"""
TXT = """<xtce:SequenceContainer name="TXT"><xtce:EntryList>
 <xtce:ParameterRefEntry parameterRef="MET"/><xtce:ParameterRefEntry parameterRef="NAME"/>
 <xtce:ParameterRefEntry parameterRef="FLAGS"/><xtce:ParameterRefEntry parameterRef="NIB"/>
 <xtce:ParameterRefEntry parameterRef="RAW"/><xtce:ParameterRefEntry parameterRef="X"/></xtce:EntryList>
 <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria>
  <xtce:Comparison parameterRef="APID" value="60" useCalibratedValue="false"/></xtce:RestrictionCriteria></xtce:BaseContainer>
</xtce:SequenceContainer>"""


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_decode_writes_binary_as_hex_and_strings_as_text(tmp_path, suffix):
    """Against space_packet_parser on the same bytes: a fixed string, a 12-bit binary field (not
    whole bytes: per packet), a byte-aligned one (sliced in bulk) and a block sized by a field."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    import space_packet_parser as spp
    from typer.testing import CliRunner

    from vigil.cli import app

    params = (
        '<xtce:Parameter name="NBITS" parameterTypeRef="U16"/><xtce:Parameter name="BLOB" parameterTypeRef="BLOB_T"/>'
        '<xtce:Parameter name="CRC" parameterTypeRef="U16"/><xtce:Parameter name="NAME" parameterTypeRef="NAME_T"/>'
        '<xtce:Parameter name="FLAGS" parameterTypeRef="B12_T"/><xtce:Parameter name="NIB" parameterTypeRef="U4"/>'
        '<xtce:Parameter name="RAW" parameterTypeRef="B16_T"/>'
    )
    p = tmp_path / "text.xml"
    p.write_text(xtce(BLOB + TEXT_TYPES + U.format(n=4), params, VAR + TXT))
    wire = [
        pkt(60, i, struct.pack(">I", 10 + i) + name + struct.pack(">HH", 0xABC0 | i, 0xBEEF) + struct.pack(">H", i))
        for i, name in enumerate((b"ABCD", b"xy\xc3\xa9", b"n0n1"))
    ]
    wire += [pkt(50, i, struct.pack(">IH", 20 + i, 8 * n) + bytes(range(n)) + b"\0\1") for i, n in enumerate((0, 5))]
    capture = tmp_path / "text.bin"
    capture.write_bytes(b"".join(wire))
    out = tmp_path / f"text{suffix}"
    args = ["packets", "decode", str(capture), "--xtce", str(p), "--time", "MET", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = (pq.read_table(out) if suffix == ".parquet" else pacsv.read_csv(out)).to_pylist()
    got = {(r["packet"], r["channel"].rpartition(".")[2]): r["text"] for r in table if r["text"]}
    definition = spp.XtcePacketDefinition.from_xtce(p)
    want = {}
    for i, raw in enumerate(wire):
        parsed = definition.parse_bytes(raw)
        for name in ("NAME", "FLAGS", "RAW", "BLOB"):
            if name in parsed:
                v = parsed[name]
                want[(i, name)] = v.hex() if isinstance(v, bytes) else str(v)
    assert got == {k: v for k, v in want.items() if v}
    assert len(got) == 3 * 3 + 1 and got[(0, "NAME")] == "ABCD"
    assert all(r["value"] is None for r in table if r["text"] is not None and r["text"] != "")
    from vigil.ingest.tabular import read_table

    block, _ = read_table(out)  # as --fit history: the numeric channels only
    assert set(block.channels) == {"TXT.X", "NIB", "NBITS", "CRC"}
