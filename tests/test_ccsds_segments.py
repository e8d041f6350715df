"""Segmented CCSDS packets (first, continuations, last) joined per APID, and every broken group counted.

Synthetic cases use a small XTCE written here, shaped like IMAP HIT's science packet: a 4-byte
tick (the secondary header), a counter, then a binary block sized by the length field. The real
capture (IMAP HIT science, 20 segments a frame) is compared with space_packet_parser's
``combine_segmented_packets`` and with the IMAP pipeline's own frame assembly.
"""

from __future__ import annotations

import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vigil.cli import app
from vigil.errors import ConfigError
from vigil.ingest.ccsds import PacketStream
from vigil.ingest.ccsds.framing import Framer
from vigil.ingest.ccsds.segments import REASONS, Reassembler
from vigil.ingest.ccsds.source import mission_from_options, open_packet_source

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real-packets"
HIT = DATA / "imap-hit"
FIRST, CONT, LAST, WHOLE = 1, 0, 2, 3
runner = CliRunner()

XTCE = """<?xml version="1.0" encoding="UTF-8"?>
<xtce:SpaceSystem xmlns:xtce="http://www.omg.org/space/xtce" name="SEG">
 <xtce:TelemetryMetaData>
  <xtce:ParameterTypeSet>
   {types}
   <xtce:BinaryParameterType name="DATA_T">
    <xtce:BinaryDataEncoding><xtce:SizeInBits><xtce:DynamicValue>
     <xtce:ParameterInstanceRef parameterRef="PKT_LEN"/><xtce:LinearAdjustment slope="8" intercept="-40"/>
    </xtce:DynamicValue></xtce:SizeInBits></xtce:BinaryDataEncoding>
   </xtce:BinaryParameterType>
  </xtce:ParameterTypeSet>
  <xtce:ParameterSet>{params}<xtce:Parameter name="DATA" parameterTypeRef="DATA_T"/></xtce:ParameterSet>
  <xtce:ContainerSet>
   <xtce:SequenceContainer name="CCSDSPacket" abstract="true"><xtce:EntryList>{header}</xtce:EntryList>
   </xtce:SequenceContainer>
   <xtce:SequenceContainer name="SCI">
    <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria>
     <xtce:Comparison parameterRef="PKT_APID" value="100" useCalibratedValue="false"/>
    </xtce:RestrictionCriteria></xtce:BaseContainer>
    <xtce:EntryList><xtce:ParameterRefEntry parameterRef="TICK"/><xtce:ParameterRefEntry parameterRef="COUNT"/>
     <xtce:ParameterRefEntry parameterRef="DATA"/></xtce:EntryList>
   </xtce:SequenceContainer>
  </xtce:ContainerSet>
 </xtce:TelemetryMetaData>
</xtce:SpaceSystem>
"""
FIELDS = [("VERSION", 3), ("TYPE", 1), ("SEC_HDR_FLG", 1), ("PKT_APID", 11), ("SEQ_FLGS", 2)]
FIELDS += [("SRC_SEQ_CTR", 14), ("PKT_LEN", 16), ("TICK", 32), ("COUNT", 16)]


@pytest.fixture(scope="module")
def xtce(tmp_path_factory) -> Path:
    types = "".join(
        f'<xtce:IntegerParameterType name="U{n}" signed="false"><xtce:IntegerDataEncoding sizeInBits="{n}" '
        f'encoding="unsigned"/></xtce:IntegerParameterType>'
        for n in sorted({b for _, b in FIELDS})
    )
    params = "".join(f'<xtce:Parameter name="{f}" parameterTypeRef="U{b}"/>' for f, b in FIELDS)
    header = "".join(f'<xtce:ParameterRefEntry parameterRef="{f}"/>' for f, _ in FIELDS[:7])
    path = tmp_path_factory.mktemp("seg") / "seg.xml"
    path.write_text(XTCE.format(types=types, params=params, header=header))
    return path


@pytest.fixture(scope="module")
def mission(xtce):
    return mission_from_options({"xtce": str(xtce), "time": ["TICK"]})


def packet(flags: int, seq: int, body: bytes, sec: bool = True, apid: int = 100) -> bytes:
    """A space packet: its flags and sequence count, ``body`` as its data field."""
    head = bytes([sec << 3 | apid >> 8, apid & 0xFF, flags << 6 | seq >> 8, seq & 0xFF])
    return head + (len(body) - 1).to_bytes(2, "big") + body


def group(seq: int, tick: int, count: int, chunks: list[bytes], apid: int = 100) -> list[bytes]:
    """One data set over ``len(chunks)`` segments; each later segment carries its own tick."""
    t = tick.to_bytes(4, "big")
    out = [packet(FIRST, seq, t + count.to_bytes(2, "big") + chunks[0], apid=apid)]
    for k, chunk in enumerate(chunks[1:], 1):
        out.append(packet(LAST if k == len(chunks) - 1 else CONT, (seq + k) % 16384, t + chunk, apid=apid))
    return out


def chunks(k: int, n: int = 3) -> list[bytes]:
    return [bytes([k, j]) * 5 for j in range(n)]


def test_a_group_is_one_packet_whose_data_field_is_the_concatenation(mission):
    wire = group(16382, 1000, 11, chunks(1, 4)) + group(2, 1001, 12, chunks(2, 2)) + group(4, 1002, 13, chunks(3))
    stream = PacketStream(mission, texts=True)
    pk = stream.feed_packets(b"".join(wire), final=True)
    assert pk.time.tolist() == [1000.0, 1001.0, 1002.0]
    assert pk.values[:, stream.channels.index("COUNT")].tolist() == [11.0, 12.0, 13.0]
    assert pk.seq.tolist() == [16382, 2, 4]  # the first segment's count (the first group wraps to 1)
    assert pk.text[:, 0].tolist() == [b"".join(chunks(k, n)).hex() for k, n in ((1, 4), (2, 2), (3, 3))]
    assert stream.counters()["apid"][100] == {"packets": 9, "reassembled": 3}  # no seq_gaps between groups


def test_every_broken_group_is_counted_under_its_reason(mission):
    good = group(100, 10, 1, chunks(1))
    wire = [
        packet(CONT, 1, b"\0" * 8),  # a continuation with no first: orphan
        packet(LAST, 2, b"\0" * 8),  # orphan
        *good,
        *group(200, 11, 2, chunks(2))[:2],  # first + continuation, then a new first: restart (2 segments)
        *group(300, 12, 3, chunks(3, 4))[:2],  # then a gap: 302 is lost
        *group(300, 12, 3, chunks(3, 4))[3:],  # 303 (last): gap, 3 segments in all
        *group(400, 13, 4, chunks(4)),
        packet(CONT, 403, b"\0\0"),  # after a last: orphan
        packet(FIRST, 500, b"\0" * 8),
        packet(CONT, 501, b"\0\0"),  # secondary-header flag set, shorter than its secondary header: short
        packet(CONT, 502, b"\0" * 6),  # the rest of that group: counted under the same reason
        packet(LAST, 503, b"\0" * 6),
        *group(600, 14, 6, chunks(6))[:2],  # still open when the stream ends: incomplete
    ]
    stream = PacketStream(mission)
    pk = stream.feed_packets(b"".join(wire), final=True)
    assert pk.time.tolist() == [10.0, 13.0]
    assert stream.counters()["apid"][100] == {
        "packets": len(wire),
        "reassembled": 2,
        "seq_gaps": 97 + 98 + 1 + 96,  # 103-199, 202-299, 302, 304-399: the dropped segments came
        "segment_orphan": 3,
        "segment_gap": 3,
        "segment_restart": 2,
        "segment_short": 4,
        "segment_incomplete": 2,
    }


def test_oversize_groups_are_dropped_and_memory_stays_bounded():
    active, header = np.zeros(2048, bool), np.zeros(2048, np.int64)
    active[100], header[100] = True, 4
    framer, r = Framer(np.where(active, 0, -1)), Reassembler(active, header, max_bytes=40, max_segments=4)
    big = group(0, 1, 1, [b"x" * 20] * 3)  # 6 + 20 + 2 * 20 bytes of data: over 40
    many = group(3, 2, 2, [b"y"] * 5)  # 5 segments: over 4
    fits = group(8, 3, 3, [b"z" * 10] * 3)
    held = []
    for raw in big + many + fits:
        buf, frames = r.run(*framer.feed(raw), final=False)
        held.append(r.held_bytes)
    assert max(held) <= 40 + 4 * (6 + 4)  # joined data cap plus the headers of held segments
    assert r.counts["segment_oversize"][100] == 3 + 5 and r.counts["reassembled"][100] == 1
    assert len(frames) == 1 and frames.length[0] == 6 + 4 + 2 + 30


def test_a_continuation_without_secondary_header_keeps_all_its_bytes(mission):
    t = (5).to_bytes(4, "big")
    wire = [packet(FIRST, 0, t + b"\0\1" + b"ab"), packet(CONT, 1, b"cdef", sec=False), packet(LAST, 2, t + b"gh")]
    stream = PacketStream(mission, texts=True)
    pk = stream.feed_packets(b"".join(wire), final=True)
    assert pk.text[0, 0] == b"abcdefgh".hex()


def _stream_of_groups(rng, n_groups: int = 40) -> list[bytes]:
    """Groups of two interleaved APIDs (100 in the database, 101 not), a few broken at random."""
    wire, seq = [], 0
    for g in range(n_groups):
        parts = group(seq, 100 + g, g, chunks(g % 7, int(rng.integers(1, 6))))
        seq = (seq + len(parts)) % 16384
        if rng.random() < 0.2:
            del parts[int(rng.integers(len(parts)))]
        if rng.random() < 0.1:
            parts.insert(int(rng.integers(len(parts) + 1)), parts[0])
        wire += parts
        if rng.random() < 0.3:
            wire.append(packet(WHOLE, 0, b"\0" * 9, apid=101))
    return wire


@pytest.mark.parametrize("seed", range(5))
def test_chunks_datagrams_and_one_call_agree(mission, seed):
    rng = np.random.default_rng(seed)
    wire = _stream_of_groups(rng)
    data = b"".join(wire)
    whole = PacketStream(mission, texts=True)
    ref = whole.feed_packets(data, final=True)
    cut = PacketStream(mission, texts=True)
    edges = [0, *sorted(rng.integers(0, len(data), 15).tolist()), len(data)]
    parts = [cut.feed_packets(data[a:b]) for a, b in zip(edges[:-1], edges[1:])] + [cut.feed_packets(b"", True)]
    grams = PacketStream(mission)
    for k in range(0, len(wire), 3):
        grams.feed_datagrams(wire[k : k + 3])
    grams.close()
    assert whole.counters() == cut.counters() == grams.counters()
    got = [p for p in parts if len(p)]
    assert np.concatenate([p.seq for p in got]).tolist() == ref.seq.tolist()
    assert np.concatenate([p.text[:, 0] for p in got]).tolist() == ref.text[:, 0].tolist()
    assert whole.counters()["apid"][100]["reassembled"] == len(ref)


@pytest.mark.parametrize("seed", range(5))
def test_every_segment_is_joined_or_counted_under_one_reason(seed):
    wire = _stream_of_groups(np.random.default_rng(seed))
    active, header = np.zeros(2048, bool), np.zeros(2048, np.int64)
    active[100], header[100] = True, 4
    framer, r = Framer(np.where(active, 0, np.where(np.arange(2048) == 101, 0, -1))), Reassembler(active, header)
    buf, frames = r.run(*framer.feed(b"".join(wire), final=True), final=True)
    mine = frames.apid == 100
    assert np.all(buf[frames.offset[mine] + 2] >> 6 == FIRST)  # joined packets keep the first's header
    joined = int(np.sum((frames.seq_end[mine] - frames.seq[mine]) % 16384 + 1))
    dropped = sum(int(r.counts[k][100]) for k in REASONS)
    assert joined + dropped == sum(1 for w in wire if w[1] == 100)
    assert np.count_nonzero(frames.apid == 101) == sum(1 for w in wire if w[1] == 101)  # passed through


def test_segments_off_decodes_each_segment_and_bad_options_are_refused(mission, xtce):
    wire = b"".join(group(0, 9, 1, chunks(1)))
    off = PacketStream(mission, segments="off")
    assert len(off.feed_packets(wire, final=True)) == 3
    with pytest.raises(ConfigError):
        PacketStream(mission, segments="sometimes")
    with pytest.raises(ConfigError):
        open_packet_source(f"file+ccsds://{xtce}?xtce={xtce}&time=TICK&secondary_header_bytes=four")


def _until(src, done, hang_s: float = 120.0) -> None:
    """Read the source's blocks until ``done()`` (``hang_s`` only guards against a hang)."""
    deadline = time.monotonic() + hang_s
    for _ in src.blocks():
        if done() or time.monotonic() > deadline:
            return


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_live_sources_join_segments_across_reads(xtce, transport):
    wire = [p for g in range(30) for p in group(3 * g, 100 + g, g, chunks(g % 7))]
    src = open_packet_source(f"{transport}+ccsds://127.0.0.1:0?xtce={xtce}&time=TICK")
    joined = lambda: src.counters()["apid"].get(100, {}).get("reassembled", 0) == 30  # noqa: E731
    try:
        if transport == "tcp":
            with socket.create_connection(src.address) as tx:
                data = b"".join(wire)
                for start in range(0, len(data), 37):  # segments cut across reads
                    tx.sendall(data[start : start + 37])
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                for k, raw in enumerate(wire, 1):  # one segment per datagram, paced by the reader
                    tx.sendto(raw, src.address)
                    while src._queue.qsize() < k and not joined():
                        time.sleep(0.001)
        _until(src, joined)
    finally:
        src.close()
    assert src.counters()["apid"][100] == {"packets": 90, "reassembled": 30}


def test_segments_off_in_a_source_spec(xtce, tmp_path):
    path = tmp_path / "seg.bin"
    path.write_bytes(b"".join(group(0, 9, 1, chunks(1))))
    src = open_packet_source(f"file+ccsds://{path}?xtce={xtce}&time=TICK&segments=off")
    list(src.blocks())
    assert src.counters()["apid"][100] == {"packets": 3, "same_time": 2}


# -- the real capture: IMAP HIT science, 20 segments a frame -------------------------------------
real = pytest.mark.skipif(not HIT.is_dir(), reason=f"shared real packets not found at {DATA}")


def _hit(**options) -> tuple[PacketStream, object]:
    mission = mission_from_options({"xtce": str(HIT / "hit_packet_definitions.xml"), "time": ["SC_TICK"]})
    stream = PacketStream(mission, texts=True, **options)
    return stream, stream.feed_packets((HIT / "sci_sample.ccsds").read_bytes(), final=True)


@real
@pytest.mark.parametrize("engine", ["bulk", "spp"])
def test_hit_science_frames_equal_space_packet_parser_combined_and_the_imap_pipeline(engine):
    import space_packet_parser as spp
    from space_packet_parser.generators import ccsds_generator

    stream, pk = _hit(engine=engine)
    # 87 first segments; the capture opens inside a frame (14 continuations and its last) and ends
    # inside one (a first and 4 continuations): 86 whole frames of 20 segments.
    assert stream.counters()["apid"][1252] == {
        "packets": 1740,
        "reassembled": 86,
        "segment_orphan": 15,
        "segment_incomplete": 5,
    }
    data = (HIT / "sci_sample.ccsds").read_bytes()
    definition = spp.XtcePacketDefinition.from_xtce(HIT / "hit_packet_definitions.xml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joined = list(ccsds_generator(data, combine_segmented_packets=True, secondary_header_bytes=4))
        # space_packet_parser keeps the first segment's length field; the joined length is what
        # sizes SCIENCE_DATA (8 * PKT_LEN - 24 bits) over the whole frame.
        ref = [definition.parse_bytes(p[:4] + (len(p) - 7).to_bytes(2, "big") + p[6:]) for p in map(bytes, joined)]
        single = [definition.parse_bytes(bytes(p)) for p in ccsds_generator(data)]
    assert len(ref) == len(pk) == 86
    mismatches = 0
    for i, r in enumerate(ref):
        mine = {
            "PKT_APID": pk.apid[i],
            "SRC_SEQ_CTR": pk.seq[i],
            "HIT_SCIENCE.SC_TICK": pk.time[i],
            "HIT_SCIENCE.SCIENCE_DATA": pk.text[i, 0],
            "PKT_LEN": len(pk.text[i, 0]) // 2 + 4 - 1,
        }
        mismatches += sum(mine[k] != (r[k].hex() if isinstance(r[k], bytes) else r[k]) for k in mine)
    assert mismatches == 0
    # The IMAP pipeline's frames: the SCIENCE_DATA of 20 packets flagged 1, 0 x 18, 2 with
    # consecutive counts, concatenated; the frame's time is its first packet's.
    flags = np.array([p["SEQ_FLGS"] for p in single])
    starts = [i for i in np.flatnonzero(flags == 1) if i + 20 <= len(single) and flags[i + 19] == 2]
    frames = [b"".join(single[k]["HIT_SCIENCE.SCIENCE_DATA"] for k in range(i, i + 20)).hex() for i in starts]
    assert pk.text[:, 0].tolist() == frames
    assert pk.time.tolist() == [float(single[i]["HIT_SCIENCE.SC_TICK"]) for i in starts]


@real
def test_hit_science_in_pieces_and_datagrams_equals_one_call():
    from space_packet_parser.generators import ccsds_generator

    whole, ref = _hit()
    data = (HIT / "sci_sample.ccsds").read_bytes()
    cut = PacketStream(whole.mission, texts=True)
    parts = [cut.feed_packets(data[a : a + 4099]) for a in range(0, len(data), 4099)]
    parts.append(cut.feed_packets(b"", final=True))
    assert np.concatenate([p.text[:, 0] for p in parts if len(p)]).tolist() == ref.text[:, 0].tolist()
    grams = PacketStream(whole.mission)
    packets = [bytes(p) for p in ccsds_generator(data)]
    for k in range(0, len(packets), 7):
        grams.feed_datagrams(packets[k : k + 7])
    grams.close()
    assert cut.counters() == grams.counters() == whole.counters()


OTHERS = [
    ("jpss1-atms", "jpss1_geolocation_xtce_v1.xml", "J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1", "MSEC"),
    ("imap-codice-hk", "P_COD_NHK.xml", "imap_codice_l0_hskp_20100101_v001.pkts", "SHCOARSE"),
    ("imap-swe", "swe_packet_definition.xml", "2024051010_SWE_SCIENCE_packet.bin", "SHCOARSE"),
    ("imap-hit", "hit_packet_definitions.xml", "imap_hit_l0_hk_20100105_v001.pkts", "SC_TICK"),
    ("imap-ialirt-hit", "ialirt_hit.xml", "hit_ialirt_sample.ccsds", "HIT_SC_TICK"),
    ("imap-swapi", "swapi_packet_definition.xml", "imap_swapi_l0_raw_20240924_v001.pkts", "SHCOARSE"),
    ("imap-mag", "MAG_SCI_COMBINED.xml", "mag_l0_test_data.pkts", "SHCOARSE"),
]


@real
@pytest.mark.parametrize(("folder", "xtce", "capture", "when"), OTHERS, ids=[o[2] for o in OTHERS])
def test_unsegmented_real_captures_are_unchanged_by_reassembly(folder, xtce, capture, when):
    mission = mission_from_options({"xtce": str(DATA / folder / xtce), "time": [when]})
    data = (DATA / folder / capture).read_bytes()
    out = []
    for segments in ("auto", "off"):
        stream = PacketStream(mission, segments=segments, texts=True)
        out.append((stream.feed_packets(data, final=True), stream.counters()))
    (a, ca), (b, cb) = out
    assert ca == cb and not any(k.startswith("segment") for c in ca["apid"].values() for k in c)
    for name in ("apid", "seq", "time", "values", "ok", "kind", "text"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@real
def test_hit_science_through_the_commands_and_the_record_monitor(tmp_path):
    from vigil.ingest.records import open_source

    sci, xtce = HIT / "sci_sample.ccsds", HIT / "hit_packet_definitions.xml"
    inspect = runner.invoke(app, ["packets", "inspect", str(sci), "--xtce", str(xtce), "--time", "SC_TICK"])
    assert inspect.exit_code == 0, inspect.output
    assert "reassembled=86, segment_orphan=15, segment_incomplete=5" in inspect.output
    assert "segmented packets joined (secondary header 4 bytes)" in inspect.output
    spec = f"file+ccsds://{sci}?xtce={xtce}&time=SC_TICK"
    monitor = runner.invoke(
        app, ["packets", "monitor", "--source", spec, "--store", str(tmp_path / "m.sqlite"), "--report-every", "0"]
    )
    assert "segment_orphan=15" in monitor.output and "reassembled=86" in monitor.output, monitor.output
    off = runner.invoke(
        app, ["packets", "inspect", str(sci), "--xtce", str(xtce), "--time", "SC_TICK", "--segments", "off"]
    )
    assert "packets=1740, same_time=1304" in off.output
    # vigil monitor --source: packet problems reach the record monitor as they are counted.
    reasons = [bad.reason for batch in open_source(spec).batches() for bad in batch.bad]
    assert "APID 1252: segment_orphan +15 (total 15)" in reasons
    assert "APID 1252: segment_incomplete +5 (total 5)" in reasons
