"""Reassembling segmented CCSDS space packets (sequence flags first, continuation, last).

A mission may split one user data set (a HIT science frame: 20 packets) over several packets of
one APID: the first carries sequence flags ``01``, the continuations ``00``, the last ``10``, with
consecutive sequence counts (modulo 16384). :class:`Reassembler` sits between the framer and the
decoder and turns each complete group into one packet: the first segment's primary header and
whole data field, then the data field of every later segment without its secondary header (when
that segment's secondary-header flag is set), with the length field set to the joined data
length, so that a size the database takes from the length field (IMAP HIT's science block,
``8 * PKT_LEN - 24`` bits) spans the whole data set. This is what space_packet_parser's
``ccsds_generator(combine_segmented_packets=True, secondary_header_bytes=N)`` joins (it leaves the
first segment's length field as it was) and what IMAP's pipeline concatenates for HIT.

Memory is bounded: one open group per APID, at most ``max_bytes`` joined data bytes (the most a
CCSDS length field describes) and ``max_segments`` segments. Segments that cannot be joined are
dropped and counted per APID under a named reason (:data:`REASONS`); nothing raises.

>>> import numpy as np
>>> from vigil.ingest.ccsds.framing import Framer
>>> def packet(flags, seq, data):
...     return bytes([0x08, 0x64, flags << 6 | seq >> 8, seq & 0xFF, 0, len(data) - 1]) + data
>>> wire = packet(1, 7, b"TTab") + packet(0, 8, b"TTcd") + packet(2, 9, b"TTef")
>>> active, header = np.zeros(2048, bool), np.zeros(2048, np.int64)
>>> active[100], header[100] = True, 2
>>> r = Reassembler(active, header)
>>> buf, frames = r.run(*Framer(np.where(active, 0, -1)).feed(wire, final=True), final=True)
>>> bytes(buf[frames.offset[0] : frames.offset[0] + frames.length[0]])[6:]
b'TTabcdef'
>>> int(frames.seq[0]), int(frames.seq_end[0]), int(r.counts["reassembled"][100])
(7, 9, 1)
"""

from __future__ import annotations

import numba
import numpy as np

from vigil.ingest.ccsds.framing import HEADER_BYTES, N_APIDS, Frames

#: why segments were dropped, counted per APID (in segments, i.e. packets):
#: a continuation or last with no first before it; a sequence count not one after the previous
#: segment's; a new first before the open group's last; a group over ``max_bytes`` or
#: ``max_segments``; a continuation shorter than its secondary header; a group still open when
#: the stream ended.
REASONS = (
    "segment_orphan",
    "segment_gap",
    "segment_restart",
    "segment_oversize",
    "segment_short",
    "segment_incomplete",
)
#: data bytes a CCSDS length field can describe (the joined packet must fit it).
MAX_BYTES = 65536
MAX_SEGMENTS = 4096
_FIRST, _CONT, _LAST, _UNSEG = 1, 0, 2, 3
# fates: passed through, a group's last segment (the joined packet goes here), a member of a
# group joined later, held (group still open at the end of the call); dropped: -(reason + 1)
_PASS, _EMIT, _MEMBER, _HELD = 0, 1, 2, 3


class Reassembler:
    """Join segmented packets of the APIDs in ``active`` across calls (files, TCP, datagrams).

    Args:
        active: bool ``[2048]``: APIDs whose segments are joined (others pass through as framed).
        secondary_header_bytes: int ``[2048]``: bytes of secondary header a later segment drops
            when its secondary-header flag is set.
        max_bytes: most joined data bytes of one group; ``max_segments``: most segments.
    """

    def __init__(
        self,
        active: np.ndarray,
        secondary_header_bytes: np.ndarray,
        max_bytes: int = MAX_BYTES,
        max_segments: int = MAX_SEGMENTS,
    ) -> None:
        self.active = np.asarray(active, dtype=np.bool_)
        self.secondary_header_bytes = np.asarray(secondary_header_bytes, dtype=np.int64)
        self.max_bytes, self.max_segments = int(max_bytes), int(max_segments)
        #: per APID: ``reassembled`` (joined packets) and the segments dropped per reason.
        self.counts = {name: np.zeros(N_APIDS, np.int64) for name in ("reassembled", *REASONS)}
        self._held_buf = np.empty(0, np.uint8)
        self._held = _frames(*(np.empty(0, np.int64) for _ in range(4)))
        self._any = bool(self.active.any())
        self._discard = np.full(N_APIDS, -1, np.int64)
        self._dropped = np.zeros(N_APIDS, np.int64)  # segments dropped since the APID's last packet out

    @property
    def held_bytes(self) -> int:
        """Bytes of the segments of groups still open (at most ``max_bytes`` plus headers per APID)."""
        return int(self._held_buf.shape[0])

    def run(self, buf: np.ndarray, frames: Frames, final: bool = False) -> tuple[np.ndarray, Frames]:
        """The buffer and frames with every complete group joined at its last segment's place.

        ``frames.seq`` of a joined packet is its first segment's count, ``frames.seq_end`` its last's.
        With ``final``, groups still open are dropped as ``segment_incomplete``.
        """
        if not self._any:
            return buf, frames
        if not len(self._held):
            flags = buf[frames.offset + 2] >> 6 if len(frames) else np.empty(0, np.uint8)
            if not np.any((flags != _UNSEG) & self.active[frames.apid]):
                return buf, frames
        buf, frames = self._with_held(buf, frames)
        off, length, apid, seq = frames.offset, frames.length, frames.apid, frames.seq
        flags = (buf[off + 2] >> 6).astype(np.int64)
        second = ((buf[off] >> 3) & 1).astype(np.int64)
        stats = np.zeros((len(REASONS) + 1, N_APIDS), np.int64)
        shb = self.secondary_header_bytes
        fate, prev, out_len = _group(
            apid,
            seq,
            flags,
            second,
            length,
            self.active,
            shb,
            self.max_bytes,
            self.max_segments,
            final,
            self._discard,
            stats,
        )
        self.counts["reassembled"] += stats[0]
        for k, name in enumerate(REASONS):
            self.counts[name] += stats[k + 1]
        emit = (fate == _PASS) | (fate == _EMIT)
        out = np.empty(int(out_len[emit].sum()), np.uint8)
        new_off, first_seq = _assemble(buf, off, length, seq, second, apid, shb, fate, prev, out_len, out)
        dropped = _dropped_before(apid, fate, self.active, self._dropped)
        self._keep(buf, frames, fate == _HELD)
        if final:  # a new connection starts with no broken group
            self._discard[:] = -1
        return out, _frames(new_off[emit], out_len[emit], apid[emit], first_seq[emit], seq[emit], dropped[emit])

    def _with_held(self, buf: np.ndarray, frames: Frames) -> tuple[np.ndarray, Frames]:
        """Segments held from earlier calls put in front of this call's."""
        if not len(self._held):
            return buf, frames
        n = self._held_buf.shape[0]
        joined = np.concatenate([self._held_buf, buf])
        h, f = self._held, frames
        return joined, _frames(
            *(np.concatenate([getattr(h, k), getattr(f, k) + (n if k == "offset" else 0)]) for k in _FIELDS)
        )

    def _keep(self, buf: np.ndarray, frames: Frames, held: np.ndarray) -> None:
        """Copy the segments of groups still open, for the next call."""
        idx = np.flatnonzero(held)
        if not idx.size:
            self._held_buf = np.empty(0, np.uint8)
            self._held = _frames(*(np.empty(0, np.int64) for _ in range(4)))
            return
        lengths = frames.length[idx]
        starts = np.zeros(idx.size, np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        self._held_buf = np.concatenate([buf[o : o + n] for o, n in zip(frames.offset[idx], lengths)])
        self._held = _frames(starts, lengths, frames.apid[idx], frames.seq[idx])


_FIELDS = ("offset", "length", "apid", "seq")


def _frames(offset, length, apid, seq, seq_end=None, dropped=None) -> Frames:
    return Frames(offset, length, apid, seq, seq if seq_end is None else seq_end, dropped)


def secondary_header_bytes(layouts) -> np.ndarray:
    """Per APID, the bytes of the packet time fields that directly follow the primary header (the
    CCSDS secondary header: HIT's ``SC_TICK``, IMAP's ``SHCOARSE`` + ``SHFINE``); 0 where a layout
    has none there or is not on the bulk path. An APID several types share takes their smallest."""
    out = np.full(N_APIDS, -1, np.int64)
    for lay in layouts:
        n = 0
        if lay.plan is not None:
            at = {name: j for j, name in enumerate(lay.plan.names)}
            bit = HEADER_BYTES * 8
            for name in (lay.time_field, lay.fine_field):
                j = at.get(name) if name else None
                if j is not None and lay.plan.offset[j] == bit and not lay.plan.size[j] % 8:
                    bit += int(lay.plan.size[j])
            n = bit // 8 - HEADER_BYTES
        for a in lay.apids:
            out[a] = n if out[a] < 0 else min(out[a], n)
    return np.maximum(out, 0)


@numba.njit(cache=True)
def _drop(a, reason, head, tail, nseg, prev, fate, stats):  # pragma: no cover - numba
    """Drop APID ``a``'s open group, counting its segments under ``reason``."""
    i = tail[a]
    while i >= 0:
        fate[i] = -(reason + 1)
        i = prev[i]
    stats[reason + 1, a] += nseg[a]
    head[a] = -1
    tail[a] = -1
    nseg[a] = 0


@numba.njit(cache=True)
def _group(
    apid, seq, flags, second, length, active, shb, max_bytes, max_segments, final, discard, stats
):  # pragma: no cover - numba
    """Each frame's fate, the previous member of its group, and the bytes each emitted packet has.

    ``discard[a]``: the reason the rest of APID ``a``'s broken group is dropped under (-1: none),
    kept across calls."""
    n = apid.shape[0]
    fate = np.zeros(n, np.int64)
    prev = np.full(n, -1, np.int64)
    out_len = length.copy()
    head = np.full(2048, -1, np.int64)
    tail = np.full(2048, -1, np.int64)
    nseg = np.zeros(2048, np.int64)
    nbytes = np.zeros(2048, np.int64)
    last_seq = np.zeros(2048, np.int64)
    for i in range(n):
        a = apid[i]
        f = flags[i]
        if not active[a] or f == 3:
            continue
        if f == 1:
            if head[a] >= 0:
                _drop(a, 2, head, tail, nseg, prev, fate, stats)
            discard[a] = -1
            head[a] = i
            tail[a] = i
            fate[i] = 2
            nseg[a] = 1
            nbytes[a] = length[i] - 6
            last_seq[a] = seq[i]
            if nbytes[a] > max_bytes:
                _drop(a, 3, head, tail, nseg, prev, fate, stats)
                discard[a] = 3
            continue
        if head[a] < 0:
            reason = discard[a] if discard[a] >= 0 else 0
            fate[i] = -(reason + 1)
            stats[reason + 1, a] += 1
            if f == 2:
                discard[a] = -1
            continue
        add = length[i] - 6 - (shb[a] if second[i] else 0)
        reason = -1
        if seq[i] != (last_seq[a] + 1) % 16384:
            reason = 1
        elif add < 0:
            reason = 4
        elif nbytes[a] + add > max_bytes or nseg[a] + 1 > max_segments:
            reason = 3
        if reason >= 0:
            _drop(a, reason, head, tail, nseg, prev, fate, stats)
            fate[i] = -(reason + 1)
            stats[reason + 1, a] += 1
            discard[a] = reason if f == 0 else -1
            continue
        prev[i] = tail[a]
        tail[a] = i
        nseg[a] += 1
        nbytes[a] += add
        last_seq[a] = seq[i]
        fate[i] = 2
        if f == 2:
            fate[i] = 1
            out_len[i] = 6 + nbytes[a]
            stats[0, a] += 1
            head[a] = -1
            tail[a] = -1
            nseg[a] = 0
    for a in range(2048):
        if head[a] < 0:
            continue
        if final:
            _drop(a, 5, head, tail, nseg, prev, fate, stats)
        else:
            i = tail[a]
            while i >= 0:
                fate[i] = 3
                i = prev[i]
    return fate, prev, out_len


@numba.njit(cache=True)
def _dropped_before(apid, fate, active, pending):  # pragma: no cover - numba
    """Per frame, the segments of its APID dropped since the APID's previous packet out (received,
    so not missing: the sequence check leaves them out of ``seq_gaps``); ``pending`` carries over."""
    out = np.zeros(apid.shape[0], np.int64)
    for i in range(apid.shape[0]):
        a = apid[i]
        if not active[a]:
            continue
        if fate[i] < 0:
            pending[a] += 1
        elif fate[i] == 0 or fate[i] == 1:
            out[i] = pending[a]
            pending[a] = 0
    return out


@numba.njit(cache=True)
def _assemble(buf, off, length, seq, second, apid, shb, fate, prev, out_len, out):  # pragma: no cover - numba
    """Copy passed-through packets and joined groups into ``out`` in stream order."""
    n = off.shape[0]
    new_off = np.zeros(n, np.int64)
    first_seq = seq.copy()
    chain = np.empty(n, np.int64)
    pos = 0
    for i in range(n):
        if fate[i] == 0:
            out[pos : pos + length[i]] = buf[off[i] : off[i] + length[i]]
            new_off[i] = pos
            pos += length[i]
        elif fate[i] == 1:
            k = 0
            j = i
            while j >= 0:
                chain[k] = j
                k += 1
                j = prev[j]
            first = chain[k - 1]
            new_off[i] = pos
            first_seq[i] = seq[first]
            out[pos : pos + length[first]] = buf[off[first] : off[first] + length[first]]
            p = pos + length[first]
            for m in range(k - 2, -1, -1):
                j = chain[m]
                skip = 6 + (shb[apid[j]] if second[j] else 0)
                nb = length[j] - skip
                out[p : p + nb] = buf[off[j] + skip : off[j] + length[j]]
                p += nb
            data = out_len[i] - 7
            out[pos + 4] = (data >> 8) & 0xFF
            out[pos + 5] = data & 0xFF
            pos += out_len[i]
    return new_off, first_seq
