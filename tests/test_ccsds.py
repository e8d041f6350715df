"""CCSDS decoding and stream checks on hand-built packets with hand-worked expected values."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.errors import ConfigError
from vigil.ingest.ccsds import PacketStream, load_csv_definitions, load_xtce
from vigil.ingest.ccsds.demo.generator import DemoSpacecraft, split, xtce_path

T0 = 1_795_000_000


def packet(apid: int, seq: int, t: float, body: bytes, length_delta: int = 0, version: int = 0) -> bytes:
    """A telemetry packet with a secondary header time (seconds, 1/65536 s), built with struct."""
    data = struct.pack(">IH", int(t), round((t % 1) * 65536)) + body
    w0 = (version << 13) | (1 << 11) | apid
    w1 = (3 << 14) | seq
    return struct.pack(">HHH", w0, w1, len(data) - 1 + length_delta) + data


def power(seq: int, t: float, volts_raw=28000, amps_raw=-150, bus_raw=40000, mode=1, **kw) -> bytes:
    return packet(100, seq, t, struct.pack(">HhHB", volts_raw, amps_raw, bus_raw, mode), **kw)


def thermal(seq: int, t: float, heater: int, panel: float) -> bytes:
    return packet(101, seq, t, struct.pack(">Bf", heater, panel))


@pytest.fixture(scope="module")
def mission():
    return load_xtce(xtce_path())


@pytest.mark.parametrize("engine", ["bulk", "ccsdspy", "spp"])
def test_calibrations_enumerations_and_time(mission, engine):
    stream = PacketStream(mission, engine=engine)
    block = stream.feed(power(5, T0 + 0.5, mode=3) + thermal(0, T0 + 0.5, 1, -12.5), final=True)
    assert block.time.tolist() == [T0 + 0.5]
    row = dict(zip(block.channels, block.values[0]))
    assert row["BATT_V"] == pytest.approx(28.0)  # 28000 * 0.001
    assert row["BATT_I"] == pytest.approx(-1.5)  # -150 * 0.01
    assert row["BUS_T"] == pytest.approx(56.0)  # -40 + 0.002 * 40000 + 1e-8 * 40000**2
    assert row["PWR_MODE"] == 3.0  # FAULT, kept as its raw number
    assert row["HTR_STATE"] == 1.0
    assert row["PANEL_T"] == -12.5
    assert all(math.isnan(row[f"WHEEL_RPM_{k}"]) for k in (1, 2, 3))
    assert sum(stream.problems().values()) == 0


def test_engines_agree_on_generated_stream(mission):
    data = DemoSpacecraft(seed=3).packets(30.0)
    a = PacketStream(mission, engine="ccsdspy").feed(data, final=True)
    b = PacketStream(mission, engine="spp").feed(data, final=True)
    assert a.n_samples == b.n_samples == 30 * 10 * 2 + 30  # 10 Hz + 10 Hz (offset) + 1 Hz rows
    np.testing.assert_array_equal(a.time, b.time)
    np.testing.assert_allclose(a.values, b.values, equal_nan=True)


def test_chunked_feed_equals_one_call(mission):
    data = DemoSpacecraft(seed=1).packets(20.0)
    whole = PacketStream(mission).feed(data, final=True)
    stream = PacketStream(mission)
    cuts = [0, 1, 7, 500, 501, 3000, len(data)]
    parts = [stream.feed(data[a:b], final=b == len(data)) for a, b in zip(cuts[:-1], cuts[1:])]
    parts = [p for p in parts if p is not None]
    np.testing.assert_array_equal(np.concatenate([p.time for p in parts]), whole.time)
    np.testing.assert_array_equal(np.concatenate([p.values for p in parts]), whole.values)


def test_sequence_gaps_duplicates_and_out_of_order(mission):
    stream = PacketStream(mission)
    p = [power(s, T0 + s) for s in range(6)]
    # 0, 1, 3 (gap of one), 3 again (duplicate), 5 (gap of one), 2 (late: fills the first gap), 4 (late)
    block = stream.feed(p[0] + p[1] + p[3] + p[3] + p[5] + p[2] + p[4], final=True)
    counts = stream.counters()["apid"][100]
    assert counts["packets"] == 7
    assert counts["duplicates"] == 1
    assert counts["out_of_order"] == 2
    assert counts.get("seq_gaps", 0) == 0  # both missing packets arrived late
    assert block.time.tolist() == [T0 + s for s in range(6)]


def test_sequence_count_wraps_without_a_gap(mission):
    stream = PacketStream(mission)
    stream.feed(power(16382, T0) + power(16383, T0 + 1) + power(0, T0 + 2) + power(2, T0 + 3), final=True)
    assert stream.counters()["apid"][100]["seq_gaps"] == 1  # only seq 1 is missing


def test_bad_length_resyncs_on_next_packet(mission):
    stream = PacketStream(mission)
    bad = power(1, T0 + 1, length_delta=2)  # 19 bytes whose length field says 21
    block = stream.feed(power(0, T0) + bad + power(2, T0 + 2), final=True)
    c = stream.counters()
    assert c["apid"][100]["bad_length"] == 1
    assert c["stream"] == {"bad_header": 0, "resyncs": 1, "skipped_bytes": 19, "queue_full": 0}
    assert block.time.tolist() == [T0, T0 + 2]


def test_unknown_apid_bad_version_and_truncation(mission):
    stream = PacketStream(mission)
    unknown = packet(500, 0, T0 + 1, b"\x00" * 4)  # 16 bytes, skipped by its length field
    data = power(0, T0) + unknown + power(1, T0 + 1, version=1) + power(2, T0 + 2) + power(3, T0 + 3)[:-3]
    block = stream.feed(data, final=True)
    c = stream.counters()
    assert c["apid"][500] == {"unknown_apid": 1}
    assert c["apid"][100]["truncated"] == 1
    # skipped: the 19-byte packet with version 1 while resyncing, then the 16 bytes left of the cut one
    assert c["stream"] == {"bad_header": 1, "resyncs": 1, "skipped_bytes": 19 + 16, "queue_full": 0}
    assert block.time.tolist() == [T0, T0 + 2]


def test_corrupt_time_does_not_blind_the_stream(mission):
    stream = PacketStream(mission)
    far = power(1, 0)
    far = far[:6] + (2**48 - 1).to_bytes(6, "big") + far[12:]  # time field all ones: year 2106
    block = stream.feed(power(0, T0) + far + power(2, T0 + 2), final=True)
    assert stream.counters()["apid"][100]["bad_time"] == 1
    assert block.time.tolist() == [T0, T0 + 2]


def test_late_packets_after_a_block_are_counted(mission):
    stream = PacketStream(mission)
    stream.feed(power(0, T0 + 10), final=True)
    assert stream.feed(power(1, T0 + 5), final=True) is None
    assert stream.counters()["apid"][100]["late"] == 1


def test_datagrams(mission):
    stream = PacketStream(mission)
    two = power(0, T0) + thermal(0, T0 + 0.25, 0, 20.0)
    cut = power(1, T0 + 1)[:-1]
    block = stream.feed_datagrams([two, cut, power(2, T0 + 2)])
    assert block.time.tolist() == [T0, T0 + 0.25]  # T0 + 2 is held until the step is complete
    assert stream.counters()["apid"][100]["truncated"] == 1
    assert stream.flush().time.tolist() == [T0 + 2]


def test_one_time_step_split_across_calls_is_one_row(mission):
    stream = PacketStream(mission)
    first = stream.feed(power(0, T0) + power(1, T0 + 1))
    second = stream.feed(thermal(0, T0 + 1, 0, 20.0) + power(2, T0 + 2), final=True)
    assert first.time.tolist() == [T0]
    assert second.time.tolist() == [T0 + 1, T0 + 2]
    row = dict(zip(second.channels, second.values[0]))
    assert row["BATT_V"] == pytest.approx(28.0) and row["PANEL_T"] == 20.0
    assert stream.problems()["late"] == 0


def test_time_jump_check_follows_the_stream(mission):
    # Sparse packets spanning three days in one call: each step is under a day, none is corrupt.
    stream = PacketStream(mission)
    times = [T0 + k * 20 * 3600 for k in range(5)]
    block = stream.feed(b"".join(power(k, t) for k, t in enumerate(times)), final=True)
    assert block.time.tolist() == times and stream.problems()["bad_time"] == 0


def test_undefined_enumeration_value_is_counted(mission):
    stream = PacketStream(mission)
    block = stream.feed(power(0, T0, mode=9), final=True)
    assert stream.counters()["apid"][100]["bad_enum"] == 1
    assert block.column("PWR_MODE").tolist() == [9.0]


def test_ccsdspy_csv_definition(tmp_path, mission):
    csv = tmp_path / "thermal.csv"
    csv.write_text("name,data_type,bit_length\nSC_TIME,uint,48\nHTR_STATE,uint,8\nPANEL_T,float,32\n")
    csv_mission = load_csv_definitions({101: csv}, time_parameter="SC_TIME", time_scale=1 / 65536)
    data = thermal(0, T0 + 0.5, 1, 3.25) + power(0, T0 + 1) + thermal(1, T0 + 1.5, 0, -7.75)
    stream = PacketStream(csv_mission)
    block = stream.feed(data, final=True)
    assert block.channels == ("HTR_STATE", "PANEL_T")
    assert block.time.tolist() == [T0 + 0.5, T0 + 1.5]
    assert block.column("PANEL_T").tolist() == [3.25, -7.75]
    assert stream.counters()["apid"][100] == {"unknown_apid": 1}


def test_xtce_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<SpaceSystem><not closed")
    with pytest.raises(ConfigError, match="bad.xml"):
        load_xtce(bad)
    with pytest.raises(
        ConfigError, match="'NOPE' is in no packet type; time-like candidates per packet type: ADCS: SC_TIME; HK_POWER"
    ):
        load_xtce(xtce_path(), time_parameter="NOPE")


def test_generator_stream_splits_into_known_packets():
    data = DemoSpacecraft().packets(10.0)
    sizes = {len(p) for p, _ in split(data)}
    assert sizes == {19, 17, 18}  # HK_POWER, HK_THERMAL, ADCS: header 6 + time 6 + fields
    assert len(split(data)) == 10 * 10 + 10 + 10 * 10


XTCE_STRING = """<?xml version="1.0"?>
<xtce:SpaceSystem xmlns:xtce="http://www.omg.org/spec/XTCE/20180204" name="STR">
 <xtce:TelemetryMetaData>
  <xtce:ParameterTypeSet>
   <xtce:IntegerParameterType name="U5"><xtce:IntegerDataEncoding sizeInBits="5"/></xtce:IntegerParameterType>
   <xtce:IntegerParameterType name="U11"><xtce:IntegerDataEncoding sizeInBits="11"/></xtce:IntegerParameterType>
   <xtce:IntegerParameterType name="U32"><xtce:IntegerDataEncoding sizeInBits="32"/></xtce:IntegerParameterType>
   <xtce:AbsoluteTimeParameterType name="T"><xtce:Encoding><xtce:IntegerDataEncoding sizeInBits="32"/></xtce:Encoding>
   </xtce:AbsoluteTimeParameterType>
   <xtce:StringParameterType name="S"><xtce:StringDataEncoding encoding="UTF-8"><xtce:SizeInBits><xtce:Fixed>
    <xtce:FixedValue>32</xtce:FixedValue></xtce:Fixed></xtce:SizeInBits></xtce:StringDataEncoding>
    <xtce:DefaultAlarm><xtce:StaticAlarmRanges/></xtce:DefaultAlarm>
   </xtce:StringParameterType>
   <xtce:IntegerParameterType name="U16"><xtce:IntegerDataEncoding sizeInBits="16"/></xtce:IntegerParameterType>
  </xtce:ParameterTypeSet>
  <xtce:ParameterSet>
   <xtce:Parameter name="H0" parameterTypeRef="U5"/><xtce:Parameter name="APID" parameterTypeRef="U11"/>
   <xtce:Parameter name="H1" parameterTypeRef="U32"/><xtce:Parameter name="TIME" parameterTypeRef="T"/>
   <xtce:Parameter name="LABEL" parameterTypeRef="S"/><xtce:Parameter name="COUNT" parameterTypeRef="U16"/>
  </xtce:ParameterSet>
  <xtce:ContainerSet>
   <xtce:SequenceContainer name="CCSDSPacket" abstract="true"><xtce:EntryList>
    <xtce:ParameterRefEntry parameterRef="H0"/><xtce:ParameterRefEntry parameterRef="APID"/>
    <xtce:ParameterRefEntry parameterRef="H1"/><xtce:ParameterRefEntry parameterRef="TIME"/>
   </xtce:EntryList></xtce:SequenceContainer>
   <xtce:SequenceContainer name="EVT">
    <xtce:EntryList><xtce:ParameterRefEntry parameterRef="LABEL"/><xtce:ParameterRefEntry parameterRef="COUNT"/>
    </xtce:EntryList>
    <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria>
     <xtce:Comparison parameterRef="APID" value="9" useCalibratedValue="false"/>
    </xtce:RestrictionCriteria></xtce:BaseContainer>
   </xtce:SequenceContainer>
  </xtce:ContainerSet>
 </xtce:TelemetryMetaData>
</xtce:SpaceSystem>
"""


def test_fixed_size_string_parameters_are_skipped_on_the_bulk_path(tmp_path):
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

    path = tmp_path / "str.xml"
    path.write_text(XTCE_STRING)
    mission = load_xtce(path)
    assert mission.channels == ("COUNT",)
    assert "EVT.LABEL" in mission.skipped
    assert mission.layouts["EVT"].plan is not None  # a fixed-size string is stepped over, not a reason to go slow
    body = struct.pack(">I", T0) + b"SAFE" + struct.pack(">H", 513)
    pkt = struct.pack(">HHH", (1 << 11) | 9, (3 << 14) | 0, len(body) - 1) + body
    stream = PacketStream(mission)
    block = stream.feed(pkt + pkt[:6] + struct.pack(">I", T0 + 1) + b"WARN" + struct.pack(">H", 514), final=True)
    assert block.time.tolist() == [T0, T0 + 1]
    assert block.column("COUNT").tolist() == [513.0, 514.0]
    assert sum(stream.problems().values()) == 0
    assert any(u.parameter == "EVT.LABEL" for u in read_xtce_alarms(mission).unmapped)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    junk=st.lists(st.tuples(st.integers(0, 60), st.binary(max_size=24)), max_size=6),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_framing_in_chunks_equals_framing_at_once(mission, junk, cuts):
    """Valid packets with garbage spliced in: any chunking frames exactly like one call."""
    from vigil.ingest.ccsds.framing import Framer

    data = bytearray(DemoSpacecraft(seed=5).packets(1.0))
    for pos, blob in junk:
        data[pos * 6 : pos * 6] = blob
    data = bytes(data)
    whole = Framer(mission.expected_lengths())
    _, ref = whole.feed(data, final=True)
    chunked = Framer(mission.expected_lengths())
    offsets, apids = [], []
    base = 0
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    for a, b in zip(bounds[:-1], bounds[1:]):
        _, frames = chunked.feed(data[a:b], final=b == len(data))
        offsets += (frames.offset + base).tolist()
        apids += frames.apid.tolist()
        base = b - chunked.pending_bytes
    assert offsets == ref.offset.tolist() and apids == ref.apid.tolist()
    for name in ("packets", "unknown_apid", "bad_length", "truncated"):
        np.testing.assert_array_equal(getattr(chunked.counters, name), getattr(whole.counters, name))
    assert (chunked.counters.skipped_bytes, chunked.counters.resyncs) == (
        whole.counters.skipped_bytes,
        whole.counters.resyncs,
    )
