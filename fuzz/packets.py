"""Mutation fuzzing of the CCSDS decoding path: ``python -m fuzz.packets --count 1000000``.

Valid DEMOSAT packets (or, with ``--xtce FILE --capture FILE [--time NAME]``, the packets of a
real capture) are mutated (bit flips, byte overwrites, truncation, extension, random
length, APID, version and time fields, splices of two packets, repeats, pure garbage) and pushed
through everything a live monitor runs on received bytes:

* the byte-stream path (file/TCP): :meth:`PacketStream.feed` in random-sized chunks, ccsdspy engine;
* the datagram path (UDP): :meth:`PacketStream.feed_datagrams`, one mutated packet per datagram;
* every 8th batch also through the space_packet_parser engine;
* scoring of every block produced with :class:`~vigil.detect.xtce_alarm.XtceAlarmCheck`.

A *crash* is any exception; a *hang* is a batch that runs longer than ``--hang-s`` (a watchdog
then aborts the process with a traceback, so even a hang in compiled code is caught). Each
crashing batch is saved under ``--crash-dir`` to replay. The run is deterministic for a seed.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from space_packet_parser.generators import ccsds_generator

from vigil.detect.xtce_alarm import XtceAlarmCheck
from vigil.ingest.ccsds import PacketStream, load_xtce
from vigil.ingest.ccsds.demo.generator import DemoSpacecraft, split, xtce_path
from vigil.ingest.ccsds.timespec import TimeSpec
from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

MUTATIONS = (
    "bitflip",
    "overwrite",
    "truncate",
    "extend",
    "length",
    "apid",
    "version",
    "time",
    "splice",
    "repeat",
    "garbage",
    "intact",
)


def mutate(packet: bytes, other: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One mutated packet and the mutation applied."""
    kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    b = bytearray(packet)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b) * 8))
            b[i // 8] ^= 1 << (i % 8)
    elif kind == "overwrite":
        for _ in range(int(rng.integers(1, 5))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
    elif kind == "truncate":
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == "extend":
        b += rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
    elif kind == "length":
        b[4:6] = int(rng.integers(0, 65536)).to_bytes(2, "big")
    elif kind == "apid":
        word = (b[0] << 8 | b[1]) & 0xF800 | int(rng.integers(0, 2048))
        b[0:2] = word.to_bytes(2, "big")
    elif kind == "version":
        b[0] = (b[0] & 0x1F) | (int(rng.integers(1, 8)) << 5)
    elif kind == "time":
        b[6:12] = rng.choice([0, 2**48 - 1, int(rng.integers(0, 2**48))]).item().to_bytes(6, "big")
    elif kind == "splice":
        cut = int(rng.integers(0, len(b)))
        b = b[:cut] + other[int(rng.integers(0, len(other))) :]
    elif kind == "repeat":
        b = b + b
    elif kind == "garbage":
        b = bytearray(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes())
    return bytes(b), kind


class Harness:
    """Holds the mission, the alarm check and a pool of valid packets to mutate.

    By default DEMOSAT; given ``xtce`` and ``capture`` (and ``time`` names when the database has
    no absolute time parameter), the packets of a real capture and its mission database.
    """

    def __init__(
        self, seed: int = 0, xtce: Path | None = None, capture: Path | None = None, time: list[str] | None = None
    ) -> None:
        if xtce is None:
            self.mission = load_xtce(xtce_path())
            self.pool = [p for p, _ in split(DemoSpacecraft(seed=seed).packets(600.0))]
        else:
            self.mission = load_xtce(xtce, time=TimeSpec.from_strings(time))
            self.pool = [bytes(p) for p in ccsds_generator(Path(capture).read_bytes())]
        self.alarms = read_xtce_alarms(self.mission)
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> list[bytes]:
        idx = self.rng.integers(0, len(self.pool), size=(size, 2))
        return [mutate(self.pool[i], self.pool[j], self.rng)[0] for i, j in idx]

    def run_batch(self, packets: list[bytes], with_spp: bool) -> dict[str, int]:
        """Every decoding path over one batch; returns the problems counted."""
        problems: dict[str, int] = {}
        stream_bytes = b"".join(packets)
        engines = ("bulk", "spp") if with_spp else ("bulk",)
        for engine in engines:
            stream = PacketStream(self.mission, engine=engine, source="fuzz")
            check = XtceAlarmCheck(self.alarms)
            cuts = np.sort(self.rng.integers(0, len(stream_bytes) + 1, size=3))
            pieces = np.split(np.frombuffer(stream_bytes, dtype=np.uint8), cuts)
            blocks = [stream.feed(p.tobytes()) for p in pieces] + [stream.close()]
            blocks.append(stream.feed_datagrams(packets, final=True))
            for block in blocks:
                if block is None:
                    continue
                if not hasattr(check, "channels_"):
                    check.fit(block)
                check.score(block)
            for k, v in stream.problems().items():
                problems[k] = problems.get(k, 0) + v
        return problems


def run(
    count: int,
    seed: int = 0,
    batch: int = 64,
    hang_s: float = 30.0,
    crash_dir: Path | None = None,
    harness: Harness | None = None,
) -> dict:
    """Fuzz ``count`` mutated packets (of ``harness``, DEMOSAT by default); returns the summary."""
    harness = harness or Harness(seed)
    done = crashes = 0
    slowest = 0.0
    totals: dict[str, int] = {}
    start = time.perf_counter()
    i = 0
    while done < count:
        packets = harness.batch(min(batch, count - done))
        faulthandler.dump_traceback_later(hang_s, exit=True)
        t0 = time.perf_counter()
        try:
            problems = harness.run_batch(packets, with_spp=(i % 8 == 0))
            for k, v in problems.items():
                totals[k] = totals.get(k, 0) + v
        except Exception:  # noqa: BLE001 - a crash is what the fuzzer looks for: record it and go on
            crashes += 1
            traceback.print_exc()
            if crash_dir is not None:
                crash_dir.mkdir(parents=True, exist_ok=True)
                (crash_dir / f"seed{seed}-batch{i}.bin").write_bytes(b"".join(packets))
        finally:
            faulthandler.cancel_dump_traceback_later()
        slowest = max(slowest, time.perf_counter() - t0)
        done += len(packets)
        i += 1
    elapsed = time.perf_counter() - start
    return {
        "mutated_packets": done,
        "batches": i,
        "seed": seed,
        "crashes": crashes,
        "hangs": 0,  # a hang aborts the run via the watchdog, so a finished run has none
        "slowest_batch_s": round(slowest, 4),
        "elapsed_s": round(elapsed, 1),
        "problems_counted": totals,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="mutated packets to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64, help="mutated packets per decoding call")
    parser.add_argument("--hang-s", type=float, default=30.0, help="seconds after which a batch is a hang")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz/crashes"))
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON here")
    parser.add_argument("--xtce", type=Path, default=None, help="a real mission database (with --capture)")
    parser.add_argument("--capture", type=Path, default=None, help="real packets to mutate (with --xtce)")
    parser.add_argument("--time", action="append", default=None, help="packet time parameter (repeatable)")
    args = parser.parse_args(argv)
    if (args.xtce is None) != (args.capture is None):
        parser.error("--xtce and --capture go together")
    harness = Harness(args.seed, args.xtce, args.capture, args.time)
    summary = run(args.count, args.seed, args.batch, args.hang_s, args.crash_dir, harness)
    summary["command"] = "python -m fuzz.packets " + " ".join(argv if argv is not None else sys.argv[1:])
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 1 if summary["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
