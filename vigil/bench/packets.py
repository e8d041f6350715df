"""Packet throughput: decode a CCSDS packet stream and score it, end to end (``vigil bench packets``).

The DEMOSAT generator writes a packet stream (not timed). The timed part is what a ground
station link costs Vigil: the bytes are fed in 1 MiB chunks (as a file or TCP reader delivers
them) through framing, decoding, the per-APID stream checks, block building and the mission's
alarm check (:class:`~vigil.detect.xtce_alarm.XtceAlarmCheck`). Three runs:

* ``bulk+monitor``: bulk decoding (numba bit-field plans), then the live
  :class:`~vigil.monitor.engine.Monitor` with its alarm manager (debounce, alarm lifecycle,
  history). Its rate is ``packets_per_s``.
* ``bulk``: bulk decoding, then the alarm check's ``score`` alone.
* ``spp``: space_packet_parser, packet by packet, then ``score`` (a shorter stream: it is slow).

Each run is preceded by an untimed warm-up, so numba compilation is not counted.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from vigil.detect.xtce_alarm import XtceAlarmCheck
from vigil.ingest.ccsds import PacketStream, load_xtce
from vigil.ingest.ccsds.demo.generator import RATES_HZ, DemoSpacecraft, xtce_path
from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

CHUNK = 1 << 20
TARGET_PPS = 100_000


@dataclass
class PacketBenchResult:
    packets_per_s: float
    engines: dict[str, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "packets_per_s": self.packets_per_s,
            "target_packets_per_s": TARGET_PPS,
            "engines": self.engines,
            **self.meta,
        }

    def summary(self) -> str:
        lines = [f"packets_per_s (bulk decode + live monitor): {self.packets_per_s:,.0f} (target {TARGET_PPS:,})"]
        for name, r in self.engines.items():
            lines.append(
                f"  {name}: {r['packets']:,} packets in {r['seconds']:.3f} s = {r['packets_per_s']:,.0f} packets/s "
                f"(decode only {r['decode_packets_per_s']:,.0f}/s)"
            )
        return "\n".join(lines)


def _run(
    data: bytes, engine: str, mission, alarms, monitor: bool = False, allowed: tuple[str, ...] = ()
) -> tuple[int, float, float]:
    """Feed ``data`` in chunks; returns (rows, seconds end to end, seconds decoding).

    With ``monitor`` the blocks go through the live monitor and alarm manager (scoring, debounce,
    alarm lifecycle, history), else straight to the alarm check's ``score``.
    """
    stream = PacketStream(mission, engine=engine, source="bench")
    sink = None
    decode_s = 0.0
    rows = 0
    t0 = time.perf_counter()
    for start in range(0, len(data) + 1, CHUNK):
        d0 = time.perf_counter()
        block = stream.feed(data[start : start + CHUNK], final=start + CHUNK > len(data))
        decode_s += time.perf_counter() - d0
        if block is None:
            continue
        if sink is None:
            sink = _sink(XtceAlarmCheck(alarms).fit(block), alarms, monitor)
        sink(block)
        rows += block.n_samples
    total = time.perf_counter() - t0
    problems = {k: v for k, v in stream.problems().items() if v and k not in allowed}
    if problems:
        raise RuntimeError(f"benchmark stream had problems {problems}: the generator and decoder disagree")
    return rows, total, decode_s


def _sink(check: XtceAlarmCheck, alarms, monitor: bool):
    if not monitor:
        return check.score
    from vigil.alarms import AlarmManager
    from vigil.detect.xtce_alarm import xtce_monitor_config
    from vigil.monitor.engine import Monitor

    config = xtce_monitor_config(alarms)
    return Monitor(config, check, AlarmManager(config)).feed_block


def run_benchmark(
    out: Path | None = None, packets: int = 1_000_000, spp_packets: int = 50_000, seed: int = 0
) -> PacketBenchResult:
    """Measure both engines on DEMOSAT streams of ``packets`` (bulk) and ``spp_packets`` packets."""
    mission = load_xtce(xtce_path())
    alarms = read_xtce_alarms(mission)
    per_s = sum(RATES_HZ.values())
    sc = DemoSpacecraft(seed=seed)
    engines = {}
    runs = (("bulk+monitor", packets), ("bulk", packets), ("spp", spp_packets))
    for name, n in runs:
        engine, monitor = name.split("+")[0], name.endswith("+monitor")
        data = sc.packets(n / per_s)
        n_packets = _count(data)
        _run(sc.packets(60.0), engine, mission, alarms, monitor)  # warm-up: numba compilation
        rows, total, decode_s = _run(data, engine, mission, alarms, monitor)
        engines[name] = {
            "packets": n_packets,
            "bytes": len(data),
            "rows": rows,
            "seconds": round(total, 4),
            "packets_per_s": round(n_packets / total, 1),
            "decode_packets_per_s": round(n_packets / decode_s, 1),
        }
    meta = {
        "mission": "DEMOSAT (vigil/ingest/ccsds/demo/demosat.xtce.xml), 3 APIDs, 9 channels",
        "chunk_bytes": CHUNK,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": f"vigil bench packets --packets {packets} --spp-packets {spp_packets}",
    }
    result = PacketBenchResult(engines["bulk+monitor"]["packets_per_s"], engines, meta)
    if out is not None:
        Path(out).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _count(data: bytes) -> int:
    stream = PacketStream(load_xtce(xtce_path()))
    stream.framer.feed(data, final=True)
    return int(stream.framer.counters.packets.sum())


def run_real(xtce: str | Path, capture: str | Path, times: list[str], copies: int = 50, engine: str = "bulk") -> dict:
    """A real capture end to end through the live monitor: ``copies`` back-to-back copies of it,
    each copy's time fields moved past the previous copy (so nothing is late or a duplicate).

    The time fields must be byte-aligned big-endian integers on the bulk path (true of the shared
    real captures). Returns packets, seconds and packets per second (decode + monitor).
    """
    import numpy as np

    from vigil.ingest.ccsds.source import mission_from_options

    mission = mission_from_options({"xtce": str(xtce), "time": times})
    data = _shifted_copies(mission, Path(capture).read_bytes(), copies)
    alarms = read_xtce_alarms(mission)
    # Copies repeat sequence counts; real captures hold other APIDs and longer packets: all counted.
    allowed = ("seq_gaps", "out_of_order", "unknown_apid", "longer_than_layout", "same_time")
    _run(data[: len(data) // copies], engine, mission, alarms, True, allowed)  # warm-up: numba compilation
    stream = PacketStream(mission, engine=engine, source="bench")
    stream.framer.feed(data, final=True)
    n_packets = int(stream.framer.counters.packets.sum())
    rows, total, decode_s = _run(data, engine, mission, alarms, True, allowed)
    return {
        "capture": str(capture),
        "copies": copies,
        "packets": n_packets,
        "channels": len(mission.channels),
        "rows": rows,
        "seconds": round(total, 4),
        "packets_per_s": round(n_packets / total, 1),
        "decode_packets_per_s": round(n_packets / decode_s, 1),
        "bulk_layouts": int(sum(lay.plan is not None for lay in mission.layouts.values())),
        "layouts": len(mission.layouts),
        "max_channels_per_packet": max(len(lay.channels) for lay in mission.layouts.values()),
        "ok": bool(np.isfinite(total)),
    }


def _shifted_copies(mission, data: bytes, copies: int) -> bytes:
    import numpy as np

    from vigil.ingest.ccsds.framing import Framer

    buf, frames = Framer(mission.expected_lengths()).feed(data, final=True)
    base = np.frombuffer(data, dtype=np.uint8).copy()
    fields = []  # (byte offsets of the field in every packet, byte width)
    for lay in mission.layouts.values():
        if lay.time_field is None or lay.plan is None:
            continue
        j = lay.plan.names.index(lay.time_field)
        bit, size = int(lay.plan.offset[j]), int(lay.plan.size[j])
        if bit % 8 or size % 8 or size > 64:
            raise ValueError(f"{lay.name}.{lay.time_field}: not a byte-aligned integer; cannot shift copies")
        rows = np.isin(frames.apid, lay.apids)
        fields.append((frames.offset[rows] + bit // 8, size // 8))
    out = []
    for k in range(copies):
        copy = base.copy()
        for starts, width in fields:
            idx = starts[:, None] + np.arange(width)
            raw = np.zeros(starts.shape[0], dtype=np.uint64)
            for b in range(width):
                raw = (raw << np.uint64(8)) | copy[idx[:, b]].astype(np.uint64)
            raw = raw + np.uint64(k * (int(raw.max()) - int(raw.min()) + 1) if raw.size else 0)
            for b in range(width - 1, -1, -1):
                copy[idx[:, b]] = (raw & np.uint64(0xFF)).astype(np.uint8)
                raw = raw >> np.uint64(8)
        out.append(copy.tobytes())
    return b"".join(out)


def widen_xtce(xtce: str | Path, container: str, times: int, out: str | Path) -> Path:
    """Write an XTCE whose ``container`` repeats its own entries ``times`` times (renamed ``NAME_k``).

    The benchmark's stand-in for a large housekeeping packet (IMAP-Lo's has ~340 parameters) made
    from a shared, real database: its real parameter types, encodings and calibrations, more of them.
    """
    from lxml import etree

    tree = etree.parse(str(xtce), etree.XMLParser(resolve_entities=False, no_network=True))
    root = tree.getroot()
    pset = root.find(".//{*}ParameterSet")
    params = {p.get("name"): p for p in pset.iterfind("{*}Parameter")}
    cont = next(c for c in root.iterfind(".//{*}SequenceContainer") if c.get("name") == container)
    entries = cont.find("{*}EntryList")
    own = [e for e in entries if isinstance(e.tag, str) and e.get("parameterRef") in params]
    time_like = {"SHCOARSE", "SHFINE"}
    for k in range(2, times + 1):
        for e in own:
            name = e.get("parameterRef")
            if name in time_like:
                continue
            twin = etree.fromstring(etree.tostring(params[name]))
            twin.set("name", f"{name}_{k}")
            pset.append(twin)
            ref = etree.fromstring(etree.tostring(e))
            ref.set("parameterRef", f"{name}_{k}")
            entries.append(ref)
    tree.write(str(out))
    return Path(out)


def synthetic_capture(mission, layout: str, n: int, seed: int = 0) -> bytes:
    """``n`` packets of a fixed layout: random field bits, time field counting up by one per packet."""
    import numpy as np

    lay = mission.layouts[layout]
    size = lay.length
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    apid, seq = lay.apid, np.arange(n) % 16384
    body[:, 0] = 0x08 | (apid >> 8)  # version 0, telemetry, secondary header
    body[:, 1] = apid & 0xFF
    body[:, 2] = 0xC0 | (seq >> 8)
    body[:, 3] = seq & 0xFF
    body[:, 4], body[:, 5] = (size - 7) >> 8, (size - 7) & 0xFF
    j = lay.plan.names.index(lay.time_field)
    bit, width = int(lay.plan.offset[j]), int(lay.plan.size[j])
    if bit % 8 or width % 8:
        raise ValueError("the time field must be byte-aligned")
    t = np.arange(n, dtype=np.uint64) + np.uint64(1_000_000)
    for b in range(width // 8 - 1, -1, -1):
        body[:, bit // 8 + b] = (t & np.uint64(0xFF)).astype(np.uint8)
        t = t >> np.uint64(8)
    return body.tobytes()


def udp_keeps_up(rate: float = 20_000.0, seconds: float = 5.0, monitor: bool = True, records: bool = False) -> dict:
    """Send DEMOSAT packets, one per datagram, at ``rate`` per second from another process to a
    ``udp+ccsds://`` source, decode them (and score them in the live monitor); count what arrived.

    ``lost`` = sent - decoded: datagrams the kernel dropped plus any the source counted. With
    ``records`` the source is read as ``vigil monitor --source`` reads it (record batches into
    :meth:`Monitor.feed_columns`), else as ``vigil packets monitor`` does (blocks).
    """
    import multiprocessing as mp

    from vigil.ingest.ccsds.demo.generator import split
    from vigil.ingest.ccsds.source import open_packet_source

    src = open_packet_source("udp+ccsds://127.0.0.1:0?xtce=demo", idle_s=0.5)
    n = int(rate * seconds)
    per_s = sum(RATES_HZ.values())
    packets = [p for p, _ in split(DemoSpacecraft(seed=1).packets(n / per_s + 1, anomalies=False))][:n]
    sink = None
    alarms = read_xtce_alarms(src.stream.mission)
    sender = mp.get_context("spawn").Process(target=_send, args=(packets, src.address, rate))
    t0 = time.perf_counter()
    sender.start()
    quiet = 0
    if records:
        from vigil.alarms import AlarmManager
        from vigil.detect.xtce_alarm import xtce_monitor_config
        from vigil.model import TelemetryBlock
        from vigil.monitor.engine import Monitor

        config = xtce_monitor_config(alarms)
        names = src.stream.channels
        check = XtceAlarmCheck(alarms).fit(TelemetryBlock.from_arrays([0.0], [[float("nan")] * len(names)], names))
        m = Monitor(config, check, AlarmManager(config))
        for batch in src.batches():
            if not len(batch):
                quiet += 1
                if not sender.is_alive() and quiet >= 2:
                    break
                continue
            quiet = 0
            m.feed_records(batch.bad)
            m.feed_columns(batch.time, batch.code, batch.value, names=batch.names)
        m.end_of_stream()
    for block in [] if records else src.blocks():
        if block is None:
            quiet += 1
            if not sender.is_alive() and quiet >= 2:
                break
            continue
        quiet = 0
        if monitor:
            sink = sink or _sink(XtceAlarmCheck(alarms).fit(block), alarms, True)
            sink(block)
    src.close()
    sender.join()
    decoded = int(src.stream.decoded_packets)
    return {
        "rate_sent_per_s": rate,
        "sent": len(packets),
        "decoded": decoded,
        "lost": len(packets) - decoded,
        "counters": {k: v for k, v in src.stream.problems().items() if v},
        "seconds": round(time.perf_counter() - t0, 2),
        "monitor": monitor,
        "path": "records (vigil monitor)" if records else "blocks (vigil packets monitor)",
    }


def _send(packets: list[bytes], address: tuple[str, int], rate: float) -> None:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    for i in range(0, len(packets), 200):  # paced in groups of 200 datagrams
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        for p in packets[i : i + 200]:
            sock.sendto(p, address)
    sock.close()


def run_wide_hk(xtce: str | Path, container: str, times: int = 3, n: int = 200_000, tmp: str | Path = "/tmp") -> dict:
    """A large housekeeping packet made from a real database (:func:`widen_xtce`), ``n`` synthetic
    packets (:func:`synthetic_capture`) end to end through the live monitor."""
    from vigil.ingest.ccsds.source import mission_from_options

    wide = widen_xtce(xtce, container, times, Path(tmp) / f"{container}_x{times}.xml")
    mission = mission_from_options({"xtce": str(wide), "time": ["SHCOARSE"]})
    data = synthetic_capture(mission, container, n)
    alarms = read_xtce_alarms(mission)
    size = mission.layouts[container].length
    _run(data[: size * 2000], "bulk", mission, alarms, True)  # warm-up: numba compilation
    rows, total, decode_s = _run(data, "bulk", mission, alarms, True)
    return {
        "parameters": len(mission.layouts[container].channels),
        "packet_bytes": size,
        "packets": n,
        "seconds": round(total, 4),
        "packets_per_s": round(n / total, 1),
        "decode_packets_per_s": round(n / decode_s, 1),
    }
