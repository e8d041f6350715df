"""Packet throughput: decode a CCSDS packet stream and score it, end to end (``vigil bench packets``).

The DEMOSAT generator writes a packet stream (not timed). The timed part is what a ground
station link costs Vigil: the bytes are fed in 1 MiB chunks (as a file or TCP reader delivers
them) through framing, decoding, the per-APID stream checks, block building and the mission's
alarm check (:class:`~vigil.detect.xtce_alarm.XtceAlarmCheck`). Three runs:

* ``ccsdspy+monitor``: bulk decoding, then the live :class:`~vigil.monitor.engine.Monitor` with
  its alarm manager (debounce, alarm lifecycle, history). Its rate is ``packets_per_s``.
* ``ccsdspy``: bulk decoding, then the alarm check's ``score`` alone.
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
        lines = [f"packets_per_s (ccsdspy decode + live monitor): {self.packets_per_s:,.0f} (target {TARGET_PPS:,})"]
        for name, r in self.engines.items():
            lines.append(
                f"  {name}: {r['packets']:,} packets in {r['seconds']:.3f} s = {r['packets_per_s']:,.0f} packets/s "
                f"(decode only {r['decode_packets_per_s']:,.0f}/s)"
            )
        return "\n".join(lines)


def _run(data: bytes, engine: str, mission, alarms, monitor: bool = False) -> tuple[int, float, float]:
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
    problems = {k: v for k, v in stream.problems().items() if v}
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
    """Measure both engines on DEMOSAT streams of ``packets`` (ccsdspy) and ``spp_packets`` packets."""
    mission = load_xtce(xtce_path())
    alarms = read_xtce_alarms(mission)
    per_s = sum(RATES_HZ.values())
    sc = DemoSpacecraft(seed=seed)
    engines = {}
    runs = (("ccsdspy+monitor", packets), ("ccsdspy", packets), ("spp", spp_packets))
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
    result = PacketBenchResult(engines["ccsdspy+monitor"]["packets_per_s"], engines, meta)
    if out is not None:
        Path(out).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _count(data: bytes) -> int:
    stream = PacketStream(load_xtce(xtce_path()))
    stream.framer.feed(data, final=True)
    return int(stream.framer.counters.packets.sum())
