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
``longer_than_layout``   longer than its layout: the described prefix is decoded (kept)
``shorter_than_layout``  shorter than its fixed layout: skipped (framing stays in sync)
``same_time``      same packet type and time as an earlier packet: kept, as its own block row
                   one float step (ulp) later, so no value overwrites another
``bad_length``     length field leads to no plausible next header (framer resyncs)
``truncated``      packet cut short by the end of the data or of its datagram
``unknown_apid``   APID not in the mission database: skipped
``decode_errors``  the decoder rejected the packet
``bad_enum``       enumerated value not in the enumeration list (kept as its raw number)
``non_finite``     NaN or infinite value decoded from a float field (kept: it reads as missing)
``bad_time``       non-finite time, or more than ``max_time_jump_s`` ahead of the stream: dropped
``late``           time not after the last block already emitted: left out of blocks
``reassembled``    segmented packets joined into one (:mod:`~vigil.ingest.ccsds.segments`)
``segment_*``      segments dropped, by reason (:data:`~vigil.ingest.ccsds.segments.REASONS`)
=================  ==============================================================================

plus stream-wide ``bad_header`` (version not 0), ``resyncs`` and ``skipped_bytes``. Rows of a
block are the distinct packet times; channels are every parameter of the mission, NaN where no
packet at that time carried them (so detectors see missing, never invented, samples).

A packet type without a time field (see :attr:`Mission.untimed`) takes the time of the latest
timed packet before it in the stream (reception order); in a database with no time at all, the
packet's position in the stream is its time.
"""

from __future__ import annotations

import numba
import numpy as np

from vigil.errors import ConfigError
from vigil.ingest.ccsds.decode import DecodedPackets, PacketDecoder
from vigil.ingest.ccsds.framing import N_APIDS, VARIABLE, Framer, Frames
from vigil.ingest.ccsds.mdb import Mission
from vigil.ingest.ccsds.output import write_long, write_wide
from vigil.ingest.ccsds.segments import REASONS, Reassembler, secondary_header_bytes
from vigil.model import TelemetryBlock

_HISTORY = 16  # recent (sequence count, time) pairs kept per APID to spot duplicates
PER_APID = (
    "packets",
    "longer_than_layout",
    "shorter_than_layout",
    "same_time",
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
    "reassembled",
    *REASONS,
)
#: ``segments=`` settings: join segmented packets where the database sizes the packet by its
#: length field (``auto``), or frame every segment on its own (``off``).
SEGMENTS = ("auto", "off")
STREAM_WIDE = ("bad_header", "resyncs", "skipped_bytes", "queue_full")
__all__ = ["PacketStream", "write_long", "write_wide"]


class PacketStream:
    """Decode a CCSDS packet stream of one mission into telemetry blocks.

    Args:
        mission: the mission database.
        engine: decoder, ``"ccsdspy"`` (bulk) or ``"spp"`` (space_packet_parser per packet).
        source: name used in blocks and messages (a file name or a URL).
        max_time_jump_s: a packet time further than this ahead of the latest accepted time is
            counted as ``bad_time`` (a corrupted time field would otherwise hide every later packet).
        segments: ``"auto"``: segmented packets of an APID whose packets have no fixed size in the
            database are joined into one (:mod:`~vigil.ingest.ccsds.segments`); ``"off"``: each
            segment is framed and decoded on its own.
        secondary_header_bytes: bytes a later segment drops when its secondary-header flag is set;
            default: the time fields right after the primary header, per packet type.
        texts: also decode binary and string parameters (for :func:`write_long`).
    """

    def __init__(
        self,
        mission: Mission,
        engine: str = "bulk",
        source: str = "<packets>",
        max_time_jump_s: float = 86400.0,
        segments: str = "auto",
        secondary_header_bytes: int | None = None,
        texts: bool = False,
    ) -> None:
        if segments not in SEGMENTS:
            raise ConfigError(f"segments must be one of {list(SEGMENTS)}, got {segments!r}", key="segments")
        self.mission = mission
        self.source = source
        self.max_time_jump_s = float(max_time_jump_s)
        expected = mission.expected_lengths()
        self.framer = Framer(expected)
        self.decoder = PacketDecoder(mission, engine, texts=texts)
        self.reassembler = Reassembler(
            (expected == VARIABLE) & (segments == "auto"),
            _header_bytes(self.decoder.layouts, secondary_header_bytes),
        )
        self.channels = self.decoder.channels
        self._counts = {
            name: np.zeros(N_APIDS, dtype=np.int64)
            for name in ("seq_gaps", "out_of_order", "duplicates", "bad_time", "late", "same_time")
        }
        self._high_seq = np.full(N_APIDS, -1, dtype=np.int64)
        self._hist_seq = np.full((N_APIDS, _HISTORY), -1, dtype=np.int64)
        self._hist_time = np.full((N_APIDS, _HISTORY), np.nan)
        self._hist_pos = np.zeros(N_APIDS, dtype=np.int64)
        self.last_time_ = -np.inf
        self._latest = np.full(1, np.nan)  # latest accepted packet time (the jump check's reference)
        self._held: DecodedPackets | None = None
        self._last_timed = np.nan  # time of the latest timed packet (for packet types without time)
        self._queue_full = 0
        #: packets the decoder accepted (before the stream checks).
        self.decoded_packets = 0
        self._n_seen = 0  # packets decoded so far (the time of packets in a database without time)
        self._all_untimed = len(mission.untimed) == len(mission.layouts)
        self._untimed_kinds = np.array(
            [k for k, lay in enumerate(self.decoder.layouts) if lay.time_field is None], dtype=np.int64
        )

    # -- input --------------------------------------------------------------------------------
    def feed(self, data: bytes, final: bool = False) -> TelemetryBlock | None:
        """Bytes of a file or TCP stream (packets may span calls). ``None`` when no new rows.

        The latest time step is held back until a later packet (or ``final``) shows it complete,
        since packets of several APIDs stamped with one time may straddle two calls.
        """
        return self._to_block(self.feed_packets(data, final), final)

    def feed_packets(self, data: bytes, final: bool = False) -> DecodedPackets:
        """Bytes of a file or TCP stream to the packets they hold that pass the stream checks.

        Every one of them is returned, late ones included (``decode`` writes them all); what is
        dropped (duplicates, bad times, rejects) is counted.
        """
        buf, frames = self.reassembler.run(*self.framer.feed(data, final=final), final=final)
        return self._accept(self.decoder.decode(buf, frames), frames)

    def feed_datagrams(self, datagrams: list[bytes], final: bool = False) -> TelemetryBlock | None:
        """UDP datagrams, each holding whole packets (the segments of one group may come in
        several). ``None`` when no new rows."""
        buf, frames = self.reassembler.run(*self.framer.frame_datagrams(datagrams), final=final)
        return self._to_block(self._accept(self.decoder.decode(buf, frames), frames), final)

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
        stream = {k: int(getattr(fc, k)) for k in STREAM_WIDE[:3]}
        stream["queue_full"] = self._queue_full
        return {"apid": {a: {k: int(per[k][a]) for k in PER_APID if per[k][a]} for a in apids}, "stream": stream}

    def count_stream(self, what: str) -> None:
        """Count a stream-wide problem seen by the transport (``queue_full``: a datagram not queued)."""
        if what != "queue_full":
            raise ValueError(f"unknown stream counter {what!r}")
        self._queue_full += 1

    def problems(self) -> dict[str, int]:
        """Totals of every problem counter (all APIDs), zero included."""
        per = self._per_apid()
        out = {k: int(per[k].sum()) for k in PER_APID if k not in ("packets", "reassembled")}
        out.update(self.counters()["stream"])
        return out

    def report(self) -> str:
        """Counters as lines an operator can read."""
        c = self.counters()
        names: dict[int, str] = {}
        for lay in self.mission.layouts.values():
            for a in lay.apids:
                names[a] = f"{names[a]}, {lay.name}" if a in names else lay.name
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
            "longer_than_layout": fc.longer_than_layout + self.decoder.longer_than_layout,
            "shorter_than_layout": fc.shorter_than_layout + self.decoder.shorter_than_layout,
            "unknown_apid": fc.unknown_apid,
            "decode_errors": self.decoder.decode_errors,
            "bad_enum": self.decoder.bad_enum,
            "non_finite": self.decoder.non_finite,
            **self._counts,
            **self.reassembler.counts,
        }

    def _accept(self, pk: DecodedPackets, frames: Frames) -> DecodedPackets:
        """Times for packet types without one, then the stream checks; the packets that pass.

        A reassembled packet's sequence checks use its last segment's count (its ``seq`` stays the
        first's), so the next group's first segment follows it without a gap."""
        if not len(pk):
            return pk
        self.decoded_packets += int(pk.ok.sum())
        self._fill_untimed(pk)
        keep = pk.ok & ~_stream_checks(
            pk.apid,
            pk.seq,
            pk.seq if frames.seq_end is None else frames.seq_end,
            np.zeros(len(pk), np.int64) if frames.dropped is None else frames.dropped,
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
        return pk.take(keep)

    def _fill_untimed(self, pk: DecodedPackets) -> None:
        """Reception order for packet types without a time field (see the module docstring)."""
        n = len(pk)
        if self._all_untimed:
            pk.time[:] = self._n_seen + np.arange(n, dtype=np.float64)
        elif self._untimed_kinds.size:
            untimed = np.isin(pk.kind, self._untimed_kinds) & pk.ok
            if untimed.any():
                src = np.where(untimed | ~pk.ok, np.nan, pk.time)
                src = np.concatenate([[self._last_timed], src])
                idx = np.where(np.isnan(src), 0, np.arange(n + 1))
                filled = src[np.maximum.accumulate(idx)][1:]
                if np.isnan(filled).any() and (~np.isnan(src)).any():  # before any timed packet: the first one
                    filled[np.isnan(filled)] = src[~np.isnan(src)][0]
                pk.time[untimed] = filled[untimed]
        timed = pk.ok & np.isfinite(pk.time)
        if timed.any():
            self._last_timed = float(pk.time[np.flatnonzero(timed)[-1]])
        self._n_seen += n

    def _to_block(self, pk: DecodedPackets | None, final: bool) -> TelemetryBlock | None:
        parts = [self._held] if self._held is not None else []
        if pk is not None and len(pk):
            late = pk.time <= self.last_time_
            np.add.at(self._counts["late"], pk.apid[late], 1)
            parts.append(pk.take(~late))
        self._held = None
        if not parts:
            return None
        pk = DecodedPackets.concat(parts)
        if not final and len(pk):
            cut = pk.time.max()
            if pk.time[-1] == cut and np.all(pk.time[1:] >= pk.time[:-1]):  # in order: views, no copies
                k = int(np.searchsorted(pk.time, cut, side="left"))
                self._held, pk = pk.take(slice(k, None)), pk.take(slice(0, k))
            else:
                self._held = pk.take(pk.time == cut)
                pk = pk.take(pk.time < cut)
        if not len(pk):
            return None
        if pk.time.shape[0] < 2 or bool(np.all(pk.time[1:] > pk.time[:-1])):
            # Strictly increasing times (one packet per time): the packets are the rows.
            self.last_time_ = float(pk.time[-1])
            return TelemetryBlock(pk.time, pk.values, self.channels, None, self.source)
        rank = _rank_within(pk.time, pk.kind)
        np.add.at(self._counts["same_time"], pk.apid[rank > 0], 1)
        # The k-th packet of one type at one time gets its own row, k float steps later: kept, not overwritten.
        row_time = pk.time + rank * np.spacing(pk.time)
        time, inverse = np.unique(row_time, return_inverse=True)
        values = np.full((time.shape[0], len(self.channels)), np.nan)
        for kd in np.unique(pk.kind).tolist():
            rows = np.flatnonzero(pk.kind == kd)
            cols = self.decoder.columns(kd)
            values[inverse[rows][:, None], cols[None, :]] = pk.values[rows[:, None], cols[None, :]]
        self.last_time_ = float(time[-1])
        return TelemetryBlock(time, values, self.channels, None, self.source)

    def _seed_time(self, pk: DecodedPackets) -> float:
        """Reference for the time-jump check: the latest accepted time, at first the median one."""
        if np.isnan(self._latest[0]):
            # A median, so that one corrupt time at the very start cannot become the reference.
            good = pk.ok & np.isfinite(pk.time)
            self._latest[0] = float(np.median(pk.time[good])) if good.any() else np.nan
        return float(self._latest[0])


def _header_bytes(layouts, fixed: int | None) -> np.ndarray:
    if fixed is None:
        return secondary_header_bytes(layouts)
    if fixed < 0:
        raise ConfigError(f"secondary_header_bytes must be >= 0, got {fixed}", key="secondary_header_bytes")
    return np.full(N_APIDS, int(fixed), np.int64)


def _rank_within(time: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """For each packet, how many packets of its type with the same time came before it."""
    n = time.shape[0]
    order = np.lexsort((np.arange(n), kind, time))
    t, k = time[order], kind[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (t[1:] != t[:-1]) | (k[1:] != k[:-1])
    starts = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(n) - starts
    return rank


@numba.njit(cache=True)
def _stream_checks(
    apid,
    first,
    seq,
    seen,
    time,
    ok,
    seed,
    max_jump,
    latest,
    high,
    hist_seq,
    hist_time,
    hist_pos,
    gaps,
    ooo,
    dups,
    bad_time,
):  # pragma: no cover - numba
    """In stream order: bad times, duplicates (both flagged for removal), sequence gaps, late packets.

    ``first``/``seq``: a packet's first and last sequence count (they differ for a reassembled one);
    ``seen``: segments dropped just before it (received: not missing)."""
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
        d = (first[i] - high[a]) % 16384
        if d == 0:
            continue
        if d <= 8192:
            gaps[a] += max(d - 1 - seen[i], 0)
            high[a] = s
        else:
            # Behind the highest count: a late packet, which an earlier gap counted as missing.
            ooo[a] += 1
            if gaps[a] > 0:
                gaps[a] -= 1
    latest[0] = ref
    return drop
