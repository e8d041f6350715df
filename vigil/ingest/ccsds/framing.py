"""Splitting a byte stream into CCSDS space packets (CCSDS 133.0-B), robust to corruption.

The framer walks the primary headers (6 bytes: version, type, secondary-header flag, APID,
sequence flags, sequence count, data length) in a numba kernel, so framing costs tens of
nanoseconds a packet. It never trusts a header blindly:

* the header's length decides where the next packet starts: a packet longer than its fixed layout
  is framed whole (its described prefix is decoded) and counted *longer_than_layout*, a shorter one
  is counted *shorter_than_layout* and skipped; both keep sync, as long as a plausible header
  (version 0, known APID) follows;
* a length that leads to no plausible header, or one above ``max_length``, is a *bad length*;
  a header with a version other than 0 is a *bad header*;
* after either, the framer has lost sync and scans forward byte by byte for the next header that
  has version 0, a known APID and a length that fits (*resync*; skipped bytes counted);
* an unknown APID met while in sync is counted and skipped by its length field (idle packets,
  APID 2047, or packets the database does not describe);
* a packet cut short by the end of the data is kept for the next call, or, at the end of a
  stream or of a datagram, counted as *truncated*.

Nothing here raises on bad bytes: every problem lands in :class:`FrameCounters`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

HEADER_BYTES = 6
N_APIDS = 2048
#: ``expected_length`` value for an APID the mission database does not describe.
UNKNOWN = -1
#: ``expected_length`` value for a known APID whose packets vary in length.
VARIABLE = 0


@dataclass
class FrameCounters:
    """Per-APID framing problems (arrays of 2048, one slot per APID) and stream-wide totals."""

    packets: np.ndarray = field(default_factory=lambda: np.zeros(N_APIDS, np.int64))
    unknown_apid: np.ndarray = field(default_factory=lambda: np.zeros(N_APIDS, np.int64))
    bad_length: np.ndarray = field(default_factory=lambda: np.zeros(N_APIDS, np.int64))
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(N_APIDS, np.int64))
    longer_than_layout: np.ndarray = field(default_factory=lambda: np.zeros(N_APIDS, np.int64))
    shorter_than_layout: np.ndarray = field(default_factory=lambda: np.zeros(N_APIDS, np.int64))
    bad_header: int = 0
    resyncs: int = 0
    skipped_bytes: int = 0


@dataclass(frozen=True)
class Frames:
    """Packets found in a buffer: where each starts, how long it is, its APID and sequence count
    (``seq_end``: a reassembled packet's last segment's count, ``None``: the same as ``seq``;
    ``dropped``: segments of its APID dropped just before it, ``None``: none)."""

    offset: np.ndarray
    length: np.ndarray
    apid: np.ndarray
    seq: np.ndarray
    seq_end: np.ndarray | None = None
    dropped: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.offset.shape[0])


class Framer:
    """Stateful packet framer for files, TCP streams (``feed``) and UDP datagrams (``frame_datagrams``).

    Args:
        expected_length: int array ``[2048]``: total packet length in bytes per APID,
            :data:`VARIABLE` for known variable-length APIDs, :data:`UNKNOWN` elsewhere.
        max_length: longest packet accepted for a variable-length APID (bytes).
    """

    def __init__(self, expected_length: np.ndarray, max_length: int = 65542) -> None:
        expected = np.asarray(expected_length, dtype=np.int64)
        if expected.shape != (N_APIDS,):
            raise ValueError(f"expected_length must have {N_APIDS} entries, got shape {expected.shape}")
        self.expected_length = expected
        self.max_length = int(max_length)
        self.counters = FrameCounters()
        self._pending = b""
        self._in_sync = True

    def feed(self, data: bytes, final: bool = False) -> tuple[np.ndarray, Frames]:
        """Frame ``data`` appended to what an earlier call left over.

        Returns the buffer the frames index into and the frames. An incomplete packet at the end is
        kept for the next call unless ``final`` (end of file or stream), when it counts as truncated.
        """
        buf = np.frombuffer(self._pending + bytes(data), dtype=np.uint8)
        frames, consumed = self._run(buf, final)
        self._pending = bytes(buf[consumed:])
        return buf, frames

    def frame_datagrams(self, datagrams: list[bytes]) -> tuple[np.ndarray, Frames]:
        """Frame many UDP datagrams at once, each on its own (one compiled pass over all of them)."""
        if not datagrams:
            return np.empty(0, np.uint8), Frames(*(np.empty(0, np.int64) for _ in range(4)))
        buf = np.frombuffer(b"".join(datagrams), dtype=np.uint8)
        bounds = np.zeros(len(datagrams) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in datagrams], out=bounds[1:])
        c = self.counters
        out = np.empty((4, buf.shape[0] // 7 + len(datagrams)), dtype=np.int64)
        stats = np.array([c.bad_header, c.resyncs, c.skipped_bytes, 1], dtype=np.int64)
        n = _frame_many(
            buf,
            bounds,
            self.expected_length,
            self.max_length,
            out,
            c.packets,
            c.unknown_apid,
            c.bad_length,
            c.truncated,
            c.longer_than_layout,
            c.shorter_than_layout,
            stats,
        )
        c.bad_header, c.resyncs, c.skipped_bytes = int(stats[0]), int(stats[1]), int(stats[2])
        return buf, Frames(out[0, :n].copy(), out[1, :n].copy(), out[2, :n].copy(), out[3, :n].copy())

    def flush(self) -> None:
        """End of stream: whatever is left over is truncated."""
        if self._pending:
            self.feed(b"", final=True)

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def _run(self, buf: np.ndarray, final: bool) -> tuple[Frames, int]:
        c = self.counters
        out = np.empty((4, buf.shape[0] // 7 + 1), dtype=np.int64)
        stats = np.array([c.bad_header, c.resyncs, c.skipped_bytes, int(self._in_sync)], dtype=np.int64)
        n, consumed = _frame_kernel(
            buf,
            self.expected_length,
            self.max_length,
            final,
            out,
            c.packets,
            c.unknown_apid,
            c.bad_length,
            c.truncated,
            c.longer_than_layout,
            c.shorter_than_layout,
            stats,
        )
        c.bad_header, c.resyncs, c.skipped_bytes = int(stats[0]), int(stats[1]), int(stats[2])
        self._in_sync = bool(stats[3])
        frames = Frames(out[0, :n].copy(), out[1, :n].copy(), out[2, :n].copy(), out[3, :n].copy())
        return frames, int(consumed)


@numba.njit(cache=True)
def _header_ok(buf, pos, expected, max_length):  # pragma: no cover - numba
    """0: no header here; 1: version 0, known APID, the length it should have; 2: same, other length;
    3: version 0, an APID the database does not describe."""
    b0 = buf[pos]
    if (b0 >> 5) != 0:
        return 0
    apid = ((b0 & 0x07) << 8) | buf[pos + 1]
    length = ((np.int64(buf[pos + 4]) << 8) | buf[pos + 5]) + 7
    exp = expected[apid]
    if exp == -1:
        return 3
    if length > max_length:
        return 0
    if exp == 0 or length == exp:
        return 1
    return 2


@numba.njit(cache=True)
def _followed(buf, pos, length, expected, max_length, final):  # pragma: no cover - numba
    """Whether a header that fits follows the packet at ``pos`` (-1: not enough data to tell)."""
    nxt = pos + length
    n_bytes = buf.shape[0]
    if nxt == n_bytes and final:
        return 1
    if nxt + 6 > n_bytes:
        return 1 if final and nxt <= n_bytes else -1
    code = _header_ok(buf, nxt, expected, max_length)
    if code != 3:
        return 1 if code != 0 else 0
    # An APID the database does not describe (idle or other instruments' packets): believe it when
    # its own length leads to another version-0 header (or to the end of the data).
    after = nxt + ((np.int64(buf[nxt + 4]) << 8) | buf[nxt + 5]) + 7
    if after + 6 > n_bytes:
        if not final:
            return -1
        return 1 if after <= n_bytes else 0
    return 1 if (buf[after] >> 5) == 0 else 0


@numba.njit(cache=True)
def _frame_kernel(
    buf, expected, max_length, final, out, packets, unknown, bad_length, truncated, longer, shorter, stats
):  # pragma: no cover - numba
    n_bytes = buf.shape[0]
    pos = 0
    n = 0
    in_sync = stats[3] == 1
    while pos + 6 <= n_bytes:
        if not in_sync:
            ok = _header_ok(buf, pos, expected, max_length)
            if ok == 3:
                ok = 0
            if ok == 2:
                f = _followed(buf, pos, ((np.int64(buf[pos + 4]) << 8) | buf[pos + 5]) + 7, expected, max_length, final)
                if f == -1:
                    break
                ok = 1 if f == 1 else 0
            if ok == 1:
                in_sync = True
            else:
                pos += 1
                stats[2] += 1
                continue
        b0 = buf[pos]
        apid = ((b0 & 0x07) << 8) | buf[pos + 1]
        length = ((np.int64(buf[pos + 4]) << 8) | buf[pos + 5]) + 7
        exp = expected[apid]
        if (b0 >> 5) != 0:
            stats[0] += 1
            stats[1] += 1
            in_sync = False
            continue
        if exp >= 0 and length > max_length:
            bad_length[apid] += 1
            stats[1] += 1
            in_sync = False
            continue
        mismatch = exp > 0 and length != exp
        if mismatch:
            f = _followed(buf, pos, length, expected, max_length, final)
            if f == -1:
                break
            if f == 0:
                bad_length[apid] += 1
                stats[1] += 1
                in_sync = False
                continue
        if pos + length > n_bytes:
            if final:
                truncated[apid] += 1
                stats[2] += n_bytes - pos
                pos = n_bytes
            break
        if exp == -1:
            unknown[apid] += 1
        elif mismatch and length < exp:
            shorter[apid] += 1
        else:
            if mismatch:
                longer[apid] += 1
            out[0, n] = pos
            out[1, n] = length
            out[2, n] = apid
            out[3, n] = ((np.int64(buf[pos + 2]) & 0x3F) << 8) | buf[pos + 3]
            packets[apid] += 1
            n += 1
        pos += length
    if final and pos < n_bytes:
        # Fewer than 6 bytes left: not even a header.
        stats[2] += n_bytes - pos
        pos = n_bytes
    stats[3] = 1 if in_sync else 0
    return n, pos


@numba.njit(cache=True)
def _frame_many(
    buf, bounds, expected, max_length, out, packets, unknown, bad_length, truncated, longer, shorter, stats
):  # pragma: no cover - numba
    """Frame each ``buf[bounds[i]:bounds[i + 1]]`` as a whole datagram; offsets into ``buf``."""
    total = 0
    for i in range(bounds.shape[0] - 1):
        a, b = bounds[i], bounds[i + 1]
        stats[3] = 1
        part = out[:, total:]
        n, _ = _frame_kernel(
            buf[a:b], expected, max_length, True, part, packets, unknown, bad_length, truncated, longer, shorter, stats
        )
        for k in range(n):
            part[0, k] += a
        total += n
    return total
