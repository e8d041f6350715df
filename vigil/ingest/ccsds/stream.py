"""A packet stream: bytes in, :class:`~vigil.model.TelemetryBlock` (or records) out, every problem counted.

:class:`PacketStream` chains framing, decoding and the stream checks a ground station makes per
APID, and keeps one set of counters for all of them:

=================  ==============================================================================
counter            meaning
=================  ==============================================================================
``packets``        packets framed with a known APID
``seq_gaps``       packets missing according to the 14-bit source sequence count
``out_of_order``   packets whose sequence count is behind the highest seen (they arrived late)
``duplicates``     same APID, sequence count and time as a recent packet: dropped
``bad_length``     length field disagrees with the mission database (framer resyncs)
``truncated``      packet cut short by the end of the data or of its datagram
``unknown_apid``   APID not in the mission database: skipped
``decode_errors``  the decoder rejected the packet
``bad_enum``       enumerated value not in the enumeration list (kept as its raw number)
``non_finite``     NaN or infinite value decoded from a float field (kept: it reads as missing)
``bad_time``       non-finite time, or more than ``max_time_jump_s`` ahead of the stream: dropped
``late``           time not after the last block already emitted: left out of blocks
=================  ==============================================================================

plus stream-wide ``bad_header`` (version not 0), ``resyncs`` and ``skipped_bytes``. Rows of a
block are the distinct packet times; channels are every parameter of the mission, NaN where no
packet at that time carried them (so detectors see missing, never invented, samples).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vigil.errors import ConfigError
from vigil.ingest.ccsds.decode import DecodedPackets, PacketDecoder
from vigil.ingest.ccsds.framing import N_APIDS, Framer
from vigil.ingest.ccsds.mdb import Mission
from vigil.model import TelemetryBlock

_HISTORY = 16  # recent (sequence count, time) pairs kept per APID to spot duplicates
PER_APID = (
    "packets",
    "seq_gaps",
    "out_of_order",
    "duplicates",
    "bad_length",
    "truncated",
    "unknown_apid",
    "decode_errors",
    "bad_enum",
    "non_finite",
    "bad_time",
    "late",
)
STREAM_WIDE = ("bad_header", "resyncs", "skipped_bytes")


class PacketStream:
    """Decode a CCSDS packet stream of one mission into telemetry blocks.

    Args:
        mission: the mission database.
        engine: decoder, ``"ccsdspy"`` (bulk) or ``"spp"`` (space_packet_parser per packet).
        source: name used in blocks and messages (a file name or a URL).
        max_time_jump_s: a packet time further than this ahead of the latest accepted time is
            counted as ``bad_time`` (a corrupted time field would otherwise hide every later packet).
    """

    def __init__(
        self, mission: Mission, engine: str = "ccsdspy", source: str = "<packets>", max_time_jump_s: float = 86400.0
    ) -> None:
        self.mission = mission
        self.source = source
        self.max_time_jump_s = float(max_time_jump_s)
        self.framer = Framer(mission.expected_lengths())
        self.decoder = PacketDecoder(mission, engine)
        self.channels = self.decoder.channels
        self._counts = {
            name: np.zeros(N_APIDS, dtype=np.int64)
            for name in ("seq_gaps", "out_of_order", "duplicates", "bad_time", "late")
        }
        self._high_seq = np.full(N_APIDS, -1, dtype=np.int64)
        self._hist_seq = np.full((N_APIDS, _HISTORY), -1, dtype=np.int64)
        self._hist_time = np.full((N_APIDS, _HISTORY), np.nan)
        self._hist_pos = np.zeros(N_APIDS, dtype=np.int64)
        self.last_time_ = -np.inf
        self._latest = np.full(1, np.nan)  # latest accepted packet time (the jump check's reference)
        self._held: DecodedPackets | None = None

    # -- input --------------------------------------------------------------------------------
    def feed(self, data: bytes, final: bool = False) -> TelemetryBlock | None:
        """Bytes of a file or TCP stream (packets may span calls). ``None`` when no new rows.

        The latest time step is held back until a later packet (or ``final``) shows it complete,
        since packets of several APIDs stamped with one time may straddle two calls.
        """
        buf, frames = self.framer.feed(data, final=final)
        return self._to_block(self.decoder.decode(buf, frames), final)

    def feed_datagrams(self, datagrams: list[bytes], final: bool = False) -> TelemetryBlock | None:
        """UDP datagrams, each holding whole packets. ``None`` when no new rows."""
        parts = [self.framer.frame_datagram(d) for d in datagrams]
        decoded = [self.decoder.decode(buf, frames) for buf, frames in parts if len(frames)]
        return self._to_block(_concat(decoded) if decoded else None, final)

    def flush(self) -> TelemetryBlock | None:
        """Release the held-back time step (the source went quiet: it is complete)."""
        return self._to_block(None, True)

    def close(self) -> TelemetryBlock | None:
        """End of stream: a packet left incomplete counts as truncated; held rows are released."""
        return self.feed(b"", final=True)

    # -- output -------------------------------------------------------------------------------
    def counters(self) -> dict:
        """Non-zero counters: ``{"apid": {APID: {counter: n}}, "stream": {...}}``."""
        per = self._per_apid()
        apids = sorted({int(a) for arr in per.values() for a in np.flatnonzero(arr)})
        fc = self.framer.counters
        return {
            "apid": {a: {k: int(per[k][a]) for k in PER_APID if per[k][a]} for a in apids},
            "stream": {k: int(getattr(fc, k)) for k in STREAM_WIDE},
        }

    def problems(self) -> dict[str, int]:
        """Totals of every problem counter (all APIDs), zero included."""
        per = self._per_apid()
        out = {k: int(per[k].sum()) for k in PER_APID if k != "packets"}
        out.update(self.counters()["stream"])
        return out

    def report(self) -> str:
        """Counters as lines an operator can read."""
        c = self.counters()
        names = {lay.apid: lay.name for lay in self.mission.layouts.values()}
        lines = [f"{self.source}: stream " + ", ".join(f"{k}={v}" for k, v in c["stream"].items())]
        for apid, counts in c["apid"].items():
            label = names.get(apid, "not in the mission database")
            lines.append(f"  APID {apid} ({label}): " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        return "\n".join(lines)

    # -- internals ----------------------------------------------------------------------------
    def _per_apid(self) -> dict[str, np.ndarray]:
        fc = self.framer.counters
        return {
            "packets": fc.packets,
            "bad_length": fc.bad_length,
            "truncated": fc.truncated,
            "unknown_apid": fc.unknown_apid,
            "decode_errors": self.decoder.decode_errors,
            "bad_enum": self.decoder.bad_enum,
            "non_finite": self.decoder.non_finite,
            **self._counts,
        }

    def _to_block(self, pk: DecodedPackets | None, final: bool) -> TelemetryBlock | None:
        parts = [self._held] if self._held is not None else []
        if pk is not None and len(pk):
            keep = pk.ok & ~_stream_checks(
                pk.apid,
                pk.seq,
                pk.time,
                pk.ok,
                self._seed_time(pk),
                self.max_time_jump_s,
                self._latest,
                self._high_seq,
                self._hist_seq,
                self._hist_time,
                self._hist_pos,
                self._counts["seq_gaps"],
                self._counts["out_of_order"],
                self._counts["duplicates"],
                self._counts["bad_time"],
            )
            late = keep & (pk.time <= self.last_time_)
            np.add.at(self._counts["late"], pk.apid[late], 1)
            parts.append(_take(pk, keep & ~late))
        self._held = None
        if not parts:
            return None
        pk = _concat(parts)
        if not final and len(pk):
            cut = pk.time.max()
            self._held = _take(pk, pk.time == cut)
            pk = _take(pk, pk.time < cut)
        if not len(pk):
            return None
        time, inverse = np.unique(pk.time, return_inverse=True)
        values = np.full((time.shape[0], len(self.channels)), np.nan)
        # Several packets at one time fill different columns; NaN never overwrites a value.
        r, c = np.nonzero(~np.isnan(pk.values))
        values[inverse[r], c] = pk.values[r, c]
        self.last_time_ = float(time[-1])
        return TelemetryBlock(time, values, self.channels, None, self.source)

    def _seed_time(self, pk: DecodedPackets) -> float:
        """Reference for the time-jump check: the latest accepted time, at first the median one."""
        if np.isnan(self._latest[0]):
            # A median, so that one corrupt time at the very start cannot become the reference.
            good = pk.ok & np.isfinite(pk.time)
            self._latest[0] = float(np.median(pk.time[good])) if good.any() else np.nan
        return float(self._latest[0])


def block_records(block: TelemetryBlock) -> Iterator[tuple[float, str, float]]:
    """``(time, channel, value)`` records of a block's present (non-NaN) samples, in time order."""
    rows, cols = np.nonzero(~np.isnan(block.values))
    for i, j in zip(rows.tolist(), cols.tolist()):
        yield float(block.time[i]), block.channels[j], float(block.values[i, j])


def write_long(block: TelemetryBlock, path: str | Path) -> int:
    """Write a block's present samples as a long ``time,channel,value`` table (.parquet or .csv).

    The form :func:`vigil.ingest.tabular.read_table` reads, e.g. as nominal history for ``--fit``.
    Returns the number of records written.
    """
    path = Path(path)
    rows, cols = np.nonzero(~np.isnan(block.values))
    table = pa.table(
        {
            "time": block.time[rows],
            "channel": pa.array(np.asarray(block.channels, dtype=object)[cols], pa.string()),
            "value": block.values[rows, cols],
        }
    )
    if path.suffix.lower() == ".parquet":
        pq.write_table(table, path)
    elif path.suffix.lower() == ".csv":
        pacsv.write_csv(table, path)
    else:
        raise ConfigError(f"unknown table format {path.suffix!r}: use .parquet or .csv", key="out", source=str(path))
    return int(rows.shape[0])


def _take(pk: DecodedPackets, mask: np.ndarray) -> DecodedPackets:
    return DecodedPackets(pk.apid[mask], pk.seq[mask], pk.time[mask], pk.values[mask], pk.ok[mask])


def _concat(parts: list[DecodedPackets]) -> DecodedPackets:
    if len(parts) == 1:
        return parts[0]
    return DecodedPackets(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("apid", "seq", "time", "values", "ok"))
    )


@numba.njit(cache=True)
def _stream_checks(
    apid, seq, time, ok, seed, max_jump, latest, high, hist_seq, hist_time, hist_pos, gaps, ooo, dups, bad_time
):  # pragma: no cover - numba
    """In stream order: bad times, duplicates (both flagged for removal), sequence gaps, late packets."""
    n = apid.shape[0]
    depth = hist_seq.shape[1]
    drop = np.zeros(n, dtype=np.bool_)
    ref = seed
    for i in range(n):
        if not ok[i]:
            continue
        a = apid[i]
        t = time[i]
        if not np.isfinite(t) or (np.isfinite(ref) and t > ref + max_jump):
            drop[i] = True
            bad_time[a] += 1
            continue
        if not np.isfinite(ref) or t > ref:
            ref = t
        s = seq[i]
        is_dup = False
        for k in range(depth):
            if hist_seq[a, k] == s and hist_time[a, k] == t:
                is_dup = True
                break
        if is_dup:
            drop[i] = True
            dups[a] += 1
            continue
        p = hist_pos[a]
        hist_seq[a, p] = s
        hist_time[a, p] = t
        hist_pos[a] = (p + 1) % depth
        if high[a] < 0:
            high[a] = s
            continue
        d = (s - high[a]) % 16384
        if d == 0:
            continue
        if d <= 8192:
            gaps[a] += d - 1
            high[a] = s
        else:
            # Behind the highest count: a late packet, which an earlier gap counted as missing.
            ooo[a] += 1
            if gaps[a] > 0:
                gaps[a] -= 1
    latest[0] = ref
    return drop
