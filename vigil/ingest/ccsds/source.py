"""Packet sources for the live monitor: files, TCP and UDP carrying CCSDS space packets.

A source spec names the transport, the address and the mission database::

    udp+ccsds://127.0.0.1:10025?xtce=mission.xml        one or more whole packets per datagram
    tcp+ccsds://127.0.0.1:10026?xtce=mission.xml        a packet byte stream (listens, one peer at a time)
    file+ccsds://recorded.bin?xtce=mission.xml&speed=10  a recorded packet file, replayed

``xtce=demo`` selects the packaged DEMOSAT database; ``engine=spp`` decodes every packet with
space_packet_parser. Packet time, when the database has no single absolute time parameter:
``time=SHCOARSE`` (repeatable or comma-separated; ``CONTAINER.PARAM`` for one packet type),
``time_fine=SHFINE``, ``time_fine_scale=``, ``time_scale=SECONDS_PER_UNIT``, ``epoch=ISO8601``
(see :class:`~vigil.ingest.ccsds.timespec.TimeSpec`). Instead of XTCE, ccsdspy packet definition
tables can describe the packets:
``csv=100:power.csv,101:thermal.csv&time=SC_TIME&time_scale=1.52587890625e-05``.
Sockets bind where the spec says (127.0.0.1 in these examples).

:class:`PacketSource` yields telemetry blocks (:meth:`~PacketSource.blocks`) or, for the record
monitor, batches of :class:`~vigil.ingest.records.Record` (:meth:`~PacketSource.batches`); both
yield an empty result when nothing arrived for ``idle_s`` seconds, so staleness can be checked.
Importing this module registers the three schemes with :func:`vigil.ingest.records.register_source`.
"""

from __future__ import annotations

import queue
import socket
import threading
import time as _time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from vigil.errors import ConfigError
from vigil.ingest.bulk import RecordBatch
from vigil.ingest.ccsds.decode import ENGINES
from vigil.ingest.ccsds.mdb import Mission, load_csv_definitions, load_xtce
from vigil.ingest.ccsds.stream import PacketStream
from vigil.ingest.ccsds.timespec import TimeSpec
from vigil.ingest.records import BadRecord, register_source
from vigil.model import TelemetryBlock

SCHEMES = ("udp+ccsds", "tcp+ccsds", "file+ccsds")
#: source-spec (and ``vigil packets`` option) names of the packet time settings.
TIME_OPTIONS = ("time", "time_fine", "time_scale", "time_fine_scale", "epoch")
#: source-spec names of the segmented-packet settings (:class:`PacketStream` arguments).
SEGMENT_OPTIONS = ("segments", "secondary_header_bytes")
_CHUNK = 1 << 20
#: counters of packets decoded and kept in full: not reported to the monitor as bad input.
_KEPT = ("packets", "longer_than_layout", "same_time", "reassembled")
_UDP_RCVBUF = 16 << 20


class PacketSource:
    """Packets from a file, a TCP stream or UDP datagrams, decoded by a :class:`PacketStream`.

    Args:
        stream: decodes and counts (its mission and engine).
        transport: ``"udp"``, ``"tcp"`` or ``"file"``.
        address: ``(host, port)`` for sockets, the path for files.
        speed: file replay speed (``None``: as fast as possible).
        idle_s: quiet time after which an empty result is yielded.
    """

    def __init__(
        self,
        stream: PacketStream,
        transport: str,
        address: tuple[str, int] | str | Path,
        speed: float | None = None,
        idle_s: float = 0.2,
    ) -> None:
        if transport not in ("udp", "tcp", "file"):
            raise ConfigError(f"unknown transport {transport!r}", key="source")
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be > 0, got {speed}", key="source.speed")
        self.stream = stream
        self.transport = transport
        self.speed = speed
        self.idle_s = idle_s
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=100_000)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self.accept_errors, self.last_accept_error = 0, None  # a TCP listener's (EMFILE...), shown in health
        # A file replay resumed from a checkpoint: decoded rows to pass over (the checkpoint covers
        # them), and how many were (``vigil packets monitor`` resumes by this input position).
        self.skip_rows = self.skipped = 0
        # The same for ``vigil monitor`` (the records protocol, :meth:`batches`): present samples and
        # problem records to pass over, in the order the batches give them.
        self.skip_records = self.skip_bad = 0
        if transport == "file":
            self.path = Path(address)
            if not self.path.is_file():
                raise ConfigError(f"no such packet file {str(self.path)!r}", key="source")
            self.name = f"file+ccsds://{self.path}"
        else:
            host, port = address
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
            self._sock = socket.socket(family, kind)
            if transport == "tcp":
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            else:  # room for bursts while the decoder works (the kernel may cap it: net.core.rmem_max)
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
            self._sock.bind((host, port))
            if transport == "tcp":
                self._sock.listen(1)
            self._sock.settimeout(0.2)
            self.address = self._sock.getsockname()[:2]
            self.name = f"{transport}+ccsds://{self.address[0]}:{self.address[1]}"
            reader = self._receive_udp if transport == "udp" else self._accept_tcp
            threading.Thread(target=reader, name=f"vigil-{transport}-ccsds", daemon=True).start()
        stream.source = self.name

    def stats(self) -> dict[str, object]:
        """Accept errors of a TCP listener (EMFILE...), for ``/api/health``."""
        return {"accept_errors": self.accept_errors, "last_accept_error": self.last_accept_error}

    # -- consuming ----------------------------------------------------------------------------
    def blocks(self) -> Iterator[TelemetryBlock | None]:
        """Decoded blocks; ``None`` when nothing new came for ``idle_s``. Ends with the file or on close."""
        if self.transport == "file":
            yield from self._file_blocks()
            return
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                # Quiet: the held-back time step is complete.
                yield self.stream.flush()
                continue
            items = [first]
            while len(items) < 10_000:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            segment: list[bytes] = []
            for item in items:
                if item is None:  # TCP peer gone: its unfinished packet is truncated
                    yield self._decode(segment)
                    yield self.stream.close()
                    segment = []
                else:
                    segment.append(item)
            if segment:
                yield self._decode(segment)

    def batches(self) -> Iterator[RecordBatch]:
        """The records protocol of :mod:`vigil.ingest.records`, as columns (a
        :class:`~vigil.ingest.bulk.RecordBatch`: no object per sample): present samples of each block.

        Packet problems counted since the previous batch come as :class:`BadRecord` items (one
        per APID and counter, the count in the reason), so the monitor counts and shows them as
        they happen. Packets decoded in full (``longer_than_layout``: the described prefix;
        ``same_time``) are not problems of the input the monitor gets: they stay in the report.
        """
        seen: dict[tuple[int | str, str], int] = {}
        names = list(self.stream.channels)
        for block in self.blocks():
            if block is None:
                batch = RecordBatch.empty()
            else:
                rows, cols = np.nonzero(~np.isnan(block.values))
                batch = RecordBatch(
                    block.time[rows],
                    cols.astype(np.int64),
                    names,
                    block.values[rows, cols],
                    np.zeros(rows.size, np.int64),
                )
            batch.bad = self._new_problems(seen)
            batch = self._pass_over_records(batch)
            if len(batch) or self.transport != "file":  # an empty batch means "the source is quiet"
                yield batch

    def _pass_over_records(self, batch: RecordBatch) -> RecordBatch:
        """The batch without the samples and problem records a checkpoint already covers (a file
        decodes to the same batches every time, so a position in them is exact)."""
        if not (self.skip_records or self.skip_bad):
            return batch
        rest, n, b = batch.drop_first(self.skip_records, self.skip_bad)
        self.skip_records, self.skip_bad, self.skipped = self.skip_records - n, self.skip_bad - b, self.skipped + n + b
        return rest

    def _new_problems(self, seen: dict[tuple[int | str, str], int]) -> list[BadRecord]:
        c = self.stream.counters()
        now = {(apid, k): v for apid, counts in c["apid"].items() for k, v in counts.items() if k not in _KEPT}
        now.update({("stream", k): v for k, v in c["stream"].items() if v})
        out = []
        for (apid, key), value in now.items():
            delta = value - seen.get((apid, key), 0)
            if delta > 0:
                where = f"APID {apid}" if apid != "stream" else "stream"
                out.append(BadRecord(self.name, 0, f"{where}: {key} +{delta} (total {value})"))
        seen.update(now)
        return out

    def counters(self) -> dict:
        return self.stream.counters()

    def report(self) -> str:
        return self.stream.report()

    def close(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()

    # -- internals ----------------------------------------------------------------------------
    def _decode(self, items: list[bytes]) -> TelemetryBlock | None:
        if not items:
            return None
        if self.transport == "udp":
            return self.stream.feed_datagrams(items)
        return self.stream.feed(b"".join(items))

    def _file_blocks(self) -> Iterator[TelemetryBlock | None]:
        start_wall = _time.monotonic()
        first: float | None = None
        with open(self.path, "rb") as fh:
            while not self._stop.is_set():
                data = fh.read(_CHUNK)
                block = self._pass_over(self.stream.feed(data, final=not data))
                if block is None:
                    yield None  # nothing decoded from this chunk: the counters still report its losses
                elif self.speed is None:
                    yield block
                else:
                    first = block.time[0] if first is None else first
                    yield from _paced(block, first, start_wall, self.speed)
                if not data:
                    break

    def _pass_over(self, block: TelemetryBlock | None) -> TelemetryBlock | None:
        """The block without the rows still to skip (decoded all the same: the counters are the
        whole file's, as in an uninterrupted run)."""
        if block is None or not self.skip_rows:
            return block
        n = min(self.skip_rows, block.n_samples)
        self.skip_rows -= n
        self.skipped += n
        return block.slice(n, block.n_samples) if n < block.n_samples else None

    def _receive_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, _peer = self._sock.recvfrom(65_535)
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                self._queue.put_nowait(data)
            except queue.Full:  # never block: the kernel would then drop datagrams uncounted
                self.stream.count_stream("queue_full")

    def _accept_tcp(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                conn, _peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as err:
                if self._stop.is_set() or self._sock.fileno() < 0:
                    break  # closed
                # Out of file descriptors (EMFILE) or another transient failure: back off, count, go on.
                self.accept_errors += 1
                self.last_accept_error = f"{type(err).__name__}: {err.strerror or err}"
                backoff = min(1.0, max(0.01, backoff * 2))
                self._stop.wait(backoff)
                continue
            backoff = 0.0
            with conn:
                conn.settimeout(0.2)
                while not self._stop.is_set():
                    try:
                        data = conn.recv(_CHUNK)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    self._queue.put(data)
            self._queue.put(None)


def _paced(block: TelemetryBlock, first: float, start_wall: float, speed: float) -> Iterator[TelemetryBlock]:
    """Release a block's rows one second of stream time at a time, ``speed`` times real time."""
    seconds = np.floor(block.time - first)
    cuts = [0, *(np.flatnonzero(np.diff(seconds)) + 1).tolist(), block.n_samples]
    for a, b in zip(cuts[:-1], cuts[1:]):
        wait = start_wall + (block.time[a] - first) / speed - _time.monotonic()
        if wait > 0:
            _time.sleep(wait)
        yield block.slice(a, b)


def open_packet_source(spec: str, speed: float | None = None, idle_s: float = 0.2) -> PacketSource:
    """A :class:`PacketSource` from a ``udp+ccsds://``, ``tcp+ccsds://`` or ``file+ccsds://`` spec."""
    parts = urlsplit(spec)
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"unknown packet source {spec!r}; use one of {[s + '://...' for s in SCHEMES]}", key="source")
    query: dict = {k: (v if k in ("time", "time_fine") else v[-1]) for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {*TIME_OPTIONS, *SEGMENT_OPTIONS, "xtce", "csv", "engine", "speed"}
    if unknown:
        raise ConfigError(f"unknown options {sorted(unknown)} in {spec!r}", key="source")
    mission = mission_from_options(query, spec)
    engine = query.get("engine", "bulk")
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r}: use one of {list(ENGINES)}", key="source.engine")
    stream = PacketStream(mission, engine=engine, **segment_options(query))
    transport = parts.scheme.split("+")[0]
    if "speed" in query and query["speed"] != "max":
        try:
            speed = float(query["speed"])
        except ValueError:
            raise ConfigError(f"speed {query['speed']!r} is not a number", key="source.speed") from None
    if transport == "file":
        path = parts.netloc + parts.path
        return PacketSource(stream, "file", path, speed=speed, idle_s=idle_s)
    try:
        port = parts.port
    except ValueError as err:
        raise ConfigError(f"bad port in {spec!r}: {err}", key="source") from None
    if port is None:
        raise ConfigError(f"{spec!r} needs a port, e.g. {parts.scheme}://127.0.0.1:10025", key="source")
    return PacketSource(stream, transport, (parts.hostname or "127.0.0.1", port), idle_s=idle_s)


def segment_options(options: dict) -> dict:
    """``segments=auto|off`` and ``secondary_header_bytes=N`` of a spec as :class:`PacketStream` arguments."""
    out: dict = {}
    if options.get("segments"):
        out["segments"] = options["segments"]
    n = options.get("secondary_header_bytes")
    if n not in (None, ""):
        if not str(n).isdigit():
            raise ConfigError(f"secondary_header_bytes {n!r} is not a byte count", key="source.secondary_header_bytes")
        out["secondary_header_bytes"] = int(n)
    return out


def mission_from_options(options: dict, where: str = "source") -> Mission:
    """The mission named by source options: ``xtce=FILE`` (or ``demo``), or ccsdspy CSV tables
    ``csv=APID:FILE,APID:FILE``; with the time options of :data:`TIME_OPTIONS`.
    """
    xtce, csv = options.get("xtce"), options.get("csv")
    if bool(xtce) == bool(csv):
        raise ConfigError(
            f"{where!r} needs exactly one of ?xtce=FILE (or xtce=demo) and ?csv=APID:FILE,...", key="source"
        )
    spec = TimeSpec.from_strings(
        options.get("time"),
        options.get("time_fine"),
        options.get("time_scale"),
        options.get("time_fine_scale"),
        options.get("epoch"),
    )
    if xtce:
        if xtce == "demo":
            from vigil.ingest.ccsds.demo.generator import xtce_path

            xtce = xtce_path()
        return load_xtce(xtce, time=spec)
    if not spec.names:
        raise ConfigError(f"{where!r}: csv definitions need time=FIELD", key="source.time")
    tables = {}
    for item in csv.split(","):
        apid, _, path = item.partition(":")
        if not apid.strip().isdigit() or not path:
            raise ConfigError(f"csv entry {item!r} is not APID:FILE", key="source.csv")
        tables[int(apid)] = path
    return load_csv_definitions(tables, time=spec)


def _factory(spec: str, speed: float | None = None, skip_until: float | None = None) -> PacketSource:
    # skip_until (resume after restart) is left to the monitor, which drops records it has seen.
    return open_packet_source(spec, speed=speed)


for _scheme in SCHEMES:
    register_source(_scheme, _factory)
