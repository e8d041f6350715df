"""Real mission XTCE databases and captures (``../shared/data/real-packets``), through the plain CLI.

For every shared pair: ``vigil packets decode`` writes the long table, and every value in it is
compared with space_packet_parser run directly on the same bytes (its own framing, its own
container selection): 0 mismatches, and no decoded value missing. Then ``packets inspect`` and
``packets monitor`` run to the end, every packet decoded or counted under a named reason.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import space_packet_parser as spp
from space_packet_parser.generators import ccsds_generator
from typer.testing import CliRunner

from vigil.cli import app

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real-packets"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared real packets not found at {DATA}")

#: folder, XTCE, capture, --time options (these databases name no absolute time parameter)
PAIRS = [
    ("jpss1-atms", "jpss1_geolocation_xtce_v1.xml", "J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1", ["MSEC"]),
    ("imap-codice-hk", "P_COD_NHK.xml", "imap_codice_l0_hskp_20100101_v001.pkts", ["SHCOARSE"]),
    ("imap-swe", "swe_packet_definition.xml", "2024051010_SWE_SCIENCE_packet.bin", ["SHCOARSE"]),
    ("imap-hit", "hit_packet_definitions.xml", "imap_hit_l0_hk_20100105_v001.pkts", ["SC_TICK"]),
    ("imap-hit", "hit_packet_definitions.xml", "sci_sample.ccsds", ["HIT_HSKP.SC_TICK", "HIT_SCIENCE.SC_TICK"]),
    ("imap-ialirt-hit", "ialirt_hit.xml", "hit_ialirt_sample.ccsds", ["HIT_SC_TICK"]),
    ("imap-swapi", "swapi_packet_definition.xml", "imap_swapi_l0_raw_20240924_v001.pkts", ["SHCOARSE"]),
    ("imap-mag", "MAG_SCI_COMBINED.xml", "mag_l0_test_data.pkts", ["SHCOARSE"]),
]
IDS = [p[2] for p in PAIRS]
runner = CliRunner()


def _time_args(names: list[str]) -> list[str]:
    return [a for n in names for a in ("--time", n)]


def _reference(xtce: Path, capture: Path, combine: bool = False) -> list[dict]:
    """space_packet_parser alone: each packet of a type the database describes, as a dict.

    ``combine``: segmented packets joined by space_packet_parser (HIT: 4-byte secondary header),
    the joined packet's length field set to its length (space_packet_parser leaves the first's)."""
    definition = spp.XtcePacketDefinition.from_xtce(xtce)
    root = definition.containers[definition.root_container_name]
    header = {e.name for e in root.entry_list}
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for raw in _packets(capture.read_bytes(), combine):
            try:
                packet = definition.parse_bytes(raw)
            except Exception:  # noqa: BLE001 - an APID the database does not describe
                continue
            body = {k: v for k, v in packet.items() if k not in header}
            if body:
                out.append(body)
    return out


def _packets(data: bytes, combine: bool) -> list[bytes]:
    if not combine:
        return [bytes(p) for p in ccsds_generator(data)]
    joined = ccsds_generator(data, combine_segmented_packets=True, secondary_header_bytes=4)
    return [p[:4] + (len(p) - 7).to_bytes(2, "big") + p[6:] for p in map(bytes, joined)]


def _as_float(value) -> float | None:
    if isinstance(value, bytes):
        return None
    if isinstance(value, str):
        raw = getattr(value, "raw_value", None)
        return None if raw is None or isinstance(raw, (bytes, str)) else float(raw)
    return float(value)


@pytest.mark.parametrize(("folder", "xtce", "capture", "times"), PAIRS, ids=IDS)
def test_cli_decode_equals_space_packet_parser(tmp_path, folder, xtce, capture, times):
    from vigil.ingest.ccsds.source import mission_from_options

    xtce_path, capture_path = DATA / folder / xtce, DATA / folder / capture
    out = tmp_path / "decoded.parquet"
    result = runner.invoke(
        app, ["packets", "decode", str(capture_path), "--xtce", str(xtce_path), "--out", str(out), *_time_args(times)]
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pydict()
    mission = mission_from_options({"xtce": str(xtce_path), "time": times})
    reference = _reference(xtce_path, capture_path, combine=capture == "sci_sample.ccsds")
    binary = any(isinstance(v, bytes) for body in reference for v in body.values())
    assert list(table) == ["time", "channel", "value", "apid", "sequence_count", "packet"] + ["text"] * binary
    assert max(table["packet"], default=-1) < len(reference)
    time_fields = {lay.time_field for lay in mission.layouts.values()}
    expected = {
        (i, name): _as_value(v)
        for i, body in enumerate(reference)
        for name, v in body.items()
        if name not in time_fields
    }
    expected = {k: v for k, v in expected.items() if v is not None}
    param = {**{ch: p.parameter for ch, p in mission.parameters.items()}, **_text_parameters(mission)}
    texts = table.get("text", [None] * len(table["value"]))
    got = {
        (i, param[ch]): (t if t is not None else v)
        for i, ch, v, t in zip(table["packet"], table["channel"], table["value"], texts)
    }
    assert got.keys() == expected.keys()  # no decoded value missing, none invented
    mismatches = [k for k, v in got.items() if not (v == expected[k] or (v != v and expected[k] != expected[k]))]
    assert mismatches == []
    assert binary == any(t is not None for t in texts)


def _text_parameters(mission) -> dict[str, str]:
    return {f.channel: f.parameter for lay in mission.layouts.values() for f in lay.texts}


def _as_value(value) -> float | str | None:
    """A space_packet_parser value as Vigil writes it: a number, or hex for binary."""
    return value.hex() if isinstance(value, bytes) else _as_float(value)


@pytest.mark.parametrize(("folder", "xtce", "capture", "times"), PAIRS, ids=IDS)
def test_every_packet_is_decoded_or_counted_in_inspect_and_monitor(tmp_path, folder, xtce, capture, times):
    xtce_path, capture_path = DATA / folder / xtce, DATA / folder / capture
    n_bytes = capture_path.stat().st_size
    inspect = runner.invoke(
        app, ["packets", "inspect", str(capture_path), "--xtce", str(xtce_path), *_time_args(times)]
    )
    assert inspect.exit_code == 0, inspect.output
    assert "packet type" in inspect.output
    spec = f"file+ccsds://{capture_path}?xtce={xtce_path}" + "".join(f"&time={t}" for t in times)
    monitor = runner.invoke(
        app, ["packets", "monitor", "--source", spec, "--store", str(tmp_path / "a.sqlite"), "--report-every", "0"]
    )
    assert monitor.exit_code == 0, monitor.output
    assert "[packets] decoded=" in monitor.output
    # Every byte of the capture is a framed packet (decoded, or counted by APID) or a counted skip.
    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.source import mission_from_options

    stream = PacketStream(mission_from_options({"xtce": str(xtce_path), "time": times}))
    stream.feed(capture_path.read_bytes(), final=True)
    c = stream.counters()
    assert c["stream"]["skipped_bytes"] == 0 and c["stream"]["resyncs"] == 0
    # HIT science frames cut by the capture's two ends (test_ccsds_segments.py counts them exactly).
    edges = ("segment_orphan", "segment_incomplete") if capture == "sci_sample.ccsds" else ()
    lost = {
        k: v
        for k, v in stream.problems().items()
        if v and k not in ("longer_than_layout", "unknown_apid", "seq_gaps", "same_time", "late", *edges)
    }
    assert lost == {}, lost
    assert stream.decoded_packets > 0 and n_bytes > 0


def test_without_time_the_error_is_one_line_listing_candidates(tmp_path):
    folder, xtce, capture, _ = PAIRS[3]
    result = runner.invoke(
        app,
        [
            "packets",
            "decode",
            str(DATA / folder / capture),
            "--xtce",
            str(DATA / folder / xtce),
            "--out",
            str(tmp_path / "x.parquet"),
        ],
    )
    assert result.exit_code == 2
    text = result.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1
    assert "--time NAME" in text and "HIT_HSKP: HIT_HSKP.SC_TICK" in text and "HIT_SCIENCE: HIT_SCIENCE.SC_TICK" in text


def test_codice_matches_the_instrument_team_export():
    """CoDICE housekeeping (144 bytes on the wire, 142 described) against the team's raw export."""
    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.source import mission_from_options

    folder = DATA / "imap-codice-hk"
    mission = mission_from_options({"xtce": str(folder / "P_COD_NHK.xml"), "time": ["SHCOARSE"]})
    stream = PacketStream(mission)
    pk = stream.feed_packets((folder / "imap_codice_l0_hskp_20100101_v001.pkts").read_bytes(), final=True)
    truth = pacsv.read_csv(folder / "idle_export_raw.COD_NHK_20230822_122700.csv").to_pydict()
    assert stream.counters()["apid"][1136]["longer_than_layout"] == len(pk) == len(truth["SHCOARSE"]) == 99
    np.testing.assert_array_equal(pk.time, np.asarray(truth["SHCOARSE"], dtype=float))
    compared = 0
    for j, ch in enumerate(stream.channels):
        name = mission.parameters[ch].parameter
        if name in truth and mission.parameters[ch].enumeration is None:
            col = np.asarray(truth[name], dtype=float)
            np.testing.assert_array_equal(pk.values[:, j], col, err_msg=name)
            compared += 1
    assert compared > 50


def test_jpss_xtce_and_ccsdspy_table_decode_the_same_values():
    """Two independent descriptions of JPSS-1 APID 11 (XTCE; the ccsdspy table) agree on every value."""
    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.source import mission_from_options

    folder = DATA / "jpss1-atms"
    data = (folder / "J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1").read_bytes()
    a_stream = PacketStream(
        mission_from_options({"xtce": str(folder / "jpss1_geolocation_xtce_v1.xml"), "time": "MSEC"})
    )
    csv = f"11:{folder / 'ccsdspy_jpss1_geolocation.csv'}"
    b_stream = PacketStream(mission_from_options({"csv": csv, "time": "MSEC"}))
    a, b = a_stream.feed_packets(data, final=True), b_stream.feed_packets(data, final=True)
    assert len(a) == len(b) == 7200
    np.testing.assert_array_equal(a.time, b.time)
    for ch in a_stream.channels:
        np.testing.assert_array_equal(
            a.values[:, a_stream.channels.index(ch)], b.values[:, b_stream.channels.index(ch)], err_msg=ch
        )


@pytest.mark.parametrize("pair", [PAIRS[0], PAIRS[1], PAIRS[4]], ids=lambda p: p[2])
def test_mutated_real_packets_never_crash_the_stream(pair):
    """The fuzz harness's mutations on real packets: byte stream and datagrams, both engines."""
    from fuzz.packets import mutate
    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.source import mission_from_options

    folder, xtce, capture, times = pair
    mission = mission_from_options({"xtce": str(DATA / folder / xtce), "time": times})
    real = [bytes(p) for p in ccsds_generator((DATA / folder / capture).read_bytes())][:400]
    rng = np.random.default_rng(7)
    mutated = [mutate(real[i], real[(i + 1) % len(real)], rng)[0] for i in range(len(real))]
    for engine in ("bulk", "spp"):
        chunks, grams = PacketStream(mission, engine=engine), PacketStream(mission, engine=engine)
        data = b"".join(mutated)
        cuts = sorted(rng.integers(0, len(data), 20).tolist()) + [len(data)]
        blocks = [chunks.feed(data[a:b], final=b == len(data)) for a, b in zip([0, *cuts[:-1]], cuts)]
        blocks.append(grams.feed_datagrams(mutated, final=True))
        for block in blocks:
            if block is not None:
                assert np.all(np.diff(block.time) > 0)
        # HIT science: nearly every 20-packet frame has a mutated segment; the broken ones are counted.
        dropped = sum(v for k, v in chunks.problems().items() if k.startswith("segment_"))
        assert chunks.decoded_packets > 0 or dropped > 0


@pytest.mark.parametrize("pair", [PAIRS[1], PAIRS[2]], ids=lambda p: p[0])
def test_config_is_valid_toml_whatever_the_descriptions_hold(tmp_path, pair):
    import tomllib

    folder, xtce, _, times = pair
    out = tmp_path / "c.toml"
    result = runner.invoke(
        app, ["packets", "config", "--xtce", str(DATA / folder / xtce), "--out", str(out), *_time_args(times)]
    )
    assert result.exit_code == 0, result.output
    channels = tomllib.loads(out.read_text())["channels"]
    assert any("\n" in c.get("description", "") for c in channels.values())  # the case that broke hand-written TOML


def test_inspect_and_decode_exit_1_when_nothing_decodes(tmp_path):
    """JPSS packets against the CoDICE database: every packet is an unknown APID, none decoded."""
    jpss = DATA / "jpss1-atms" / "J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1"
    codice = DATA / "imap-codice-hk" / "P_COD_NHK.xml"
    args = [str(jpss), "--xtce", str(codice), "--time", "SHCOARSE"]
    inspect = runner.invoke(app, ["packets", "inspect", *args])
    decode = runner.invoke(app, ["packets", "decode", *args, "--out", str(tmp_path / "x.parquet")])
    for result in (inspect, decode):
        assert result.exit_code == 1
        assert "unknown_apid=7200" in result.output and "no packet could be decoded" in result.output


def test_live_counters_show_decoding_loss_as_it_happens(tmp_path):
    """A file source whose packets all fail to decode: the losses reach the monitor per batch."""
    from vigil.ingest.ccsds.source import open_packet_source

    jpss = DATA / "jpss1-atms" / "J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1"
    codice = DATA / "imap-codice-hk" / "P_COD_NHK.xml"
    data = jpss.read_bytes() * 3  # more than one 1 MiB chunk
    capture = tmp_path / "jpss3.bin"
    capture.write_bytes(data)
    src = open_packet_source(f"file+ccsds://{capture}?xtce={codice}&time=SHCOARSE")
    batches = list(src.batches())
    assert len(batches) >= 2  # reported chunk by chunk, not only at the end
    reasons = [b.reason for batch in batches for b in batch.bad]
    assert reasons[0].startswith("APID 11: unknown_apid +") and reasons[-1].endswith("(total 21600)")


TRUTH = [
    (
        "imap-hit",
        "hit_packet_definitions.xml",
        "imap_hit_l0_hk_20100105_v001.pkts",
        ["SC_TICK"],
        "hskp_sample_raw.csv",
        True,
    ),
    ("imap-ialirt-hit", "ialirt_hit.xml", "hit_ialirt_sample.ccsds", ["HIT_SC_TICK"], "hit_ialirt_sample.csv", True),
    (
        "imap-swe",
        "swe_packet_definition.xml",
        "2024051010_SWE_SCIENCE_packet.bin",
        ["SHCOARSE"],
        "idle_export_raw.SWE_SCIENCE_20240510_092742.csv",
        True,
    ),
    (
        "imap-swe",
        "swe_packet_definition.xml",
        "2024051010_SWE_SCIENCE_packet.bin",
        ["SHCOARSE"],
        "idle_export_eu.SWE_SCIENCE_20240510_092742.csv",
        False,
    ),
]


@pytest.mark.parametrize(("folder", "xtce", "capture", "times", "csv", "raw"), TRUTH, ids=[t[4] for t in TRUTH])
def test_decoded_values_equal_the_instrument_teams_exports(folder, xtce, capture, times, csv, raw):
    """Rows joined on the CCSDS sequence count; columns matched to parameters by name (the export may
    drop a database prefix: ``STATUS`` is ``HIT_STATUS``). A raw export is calibrated with the
    database's own calibrator before comparing; labels in an engineering export are skipped."""
    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.source import mission_from_options

    mission = mission_from_options({"xtce": str(DATA / folder / xtce), "time": times})
    stream = PacketStream(mission)
    pk = stream.feed_packets((DATA / folder / capture).read_bytes(), final=True)
    truth = pacsv.read_csv(DATA / folder / csv).to_pydict()
    seq_col = next(c for c in truth if "SEQ" in c.upper() and "CNT" in c.upper())
    packet_of = {}
    for i, s in enumerate(pk.seq.tolist()):
        packet_of[s] = None if s in packet_of else i  # a repeated count cannot be joined on
    compared, mismatches = 0, []
    for name, col in truth.items():
        found = [
            c
            for c in stream.channels
            if (p := mission.parameters[c].parameter) == name or p.endswith(("." + name, "_" + name))
        ]
        if len(found) != 1:
            continue
        j = stream.channels.index(found[0])
        cal = mission.definition.parameters[mission.parameters[found[0]].parameter].parameter_type.encoding
        cal = getattr(cal, "default_calibrator", None) if raw else None
        for r, v in enumerate(col):
            i = packet_of.get(truth[seq_col][r]) if truth[seq_col][r] is not None else None
            if v is None or isinstance(v, str) or i is None:
                continue
            want = float(cal.calibrate(float(v))) if cal is not None else float(v)
            compared += 1
            if not np.isclose(pk.values[i, j], want, rtol=1e-12, atol=0.0):
                mismatches.append((name, r, pk.values[i, j], want))
    assert mismatches == []
    assert compared >= 30


@pytest.mark.parametrize("pair", [PAIRS[0], PAIRS[2], PAIRS[6], PAIRS[7]], ids=lambda p: p[2])
def test_engines_agree_on_mutated_real_packets(pair):
    """Differential check: the bulk plans and space_packet_parser accept the same mutated packets
    (same framing) and decode the same times and values."""
    from fuzz.packets import mutate
    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.source import mission_from_options

    folder, xtce, capture, times = pair
    mission = mission_from_options({"xtce": str(DATA / folder / xtce), "time": times})
    pool = [bytes(p) for p in ccsds_generator((DATA / folder / capture).read_bytes())][:500]
    rng = np.random.default_rng(4)
    for _ in range(5):
        data = b"".join(mutate(pool[i], pool[(i + 1) % len(pool)], rng)[0] for i in rng.integers(0, len(pool), 100))
        out = []
        for engine in ("bulk", "spp"):
            stream = PacketStream(mission, engine=engine)
            out.append(stream.decoder.decode(*stream.framer.feed(data, final=True)))
        a, b = out
        np.testing.assert_array_equal(a.ok, b.ok)
        np.testing.assert_array_equal(a.time[a.ok], b.time[b.ok])
        np.testing.assert_array_equal(a.values[a.ok], b.values[b.ok])


def test_config_of_a_database_without_a_packet_layout(tmp_path):
    """BogusSAT: space_packet_parser cannot read its types; config still writes its alarms."""
    import tomllib

    out = tmp_path / "b.toml"
    result = runner.invoke(
        app, ["packets", "config", "--xtce", str(DATA / "xtce-alarms" / "BogusSAT-1.xml"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "no packet layout" in result.output and "parameter type TM_CHECKSUMType" in result.output
    volts = tomllib.loads(out.read_text())["channels"]["Battery_Voltage"]
    assert volts["units"] == "Volts" and volts["limits"]["critical"][0] == pytest.approx(12.1)
