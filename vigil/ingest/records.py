"""Line records ``(time, channel, value)`` and the live sources that carry them.

A record line is CSV ``time,channel,value`` (an optional header such as ``time,channel,value`` is
skipped) or a JSON object ``{"time": ..., "channel": ..., "value": ...}``. Record files may instead
be wide CSV (header ``time,CH1,CH2,...``; an empty cell means that channel did not report then).
Times are seconds (a number) or ISO 8601 (converted to Unix seconds, UTC unless the text has an offset). A line that cannot be
read becomes a :class:`BadRecord` naming the source and line, so the consumer can count it; a
source never raises on bad input.

:func:`parse_line` is the per-line parser and the reference: files (:mod:`vigil.ingest.files`),
standard input and TCP connections are parsed in blocks by :mod:`vigil.ingest.bulk`, which gives
every line the same verdict. The header's column names may vary (:data:`TIME_NAMES`,
:data:`CHANNEL_NAMES`, :data:`VALUE_NAMES`).

Sources yield *batches*: lists of records and bad records, or one
:class:`~vigil.ingest.bulk.RecordBatch` of columns (iterating it gives the same objects). Live
sources (stdin, TCP, UDP) yield an empty batch when nothing arrived for ``idle_s`` seconds, so the
consumer can check staleness while the stream is quiet. :func:`open_source` turns a spec such as ``file:data.csv``,
``stdin``, ``tcp://127.0.0.1:7000`` or ``udp://127.0.0.1:7000`` into a source; other packages add
schemes with :func:`register_source`.

>>> parse_line("12.5,T-1,3.25")
Record(time=12.5, channel='T-1', value=3.25)
>>> parse_line('{"time": 1, "channel": "P", "value": null}').value
nan
>>> print(parse_line("12.5,T-1,hot", source="a.csv", line=4))
a.csv: line 4: channel T-1: value 'hot' is not a number
"""

from __future__ import annotations

import json
import math
import queue
import socket
import sys
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from vigil.errors import ConfigError

HEADER = ("time", "channel", "value")
#: Column names read as the time column (any case), in record files and tables.
TIME_NAMES = frozenset(
    {"time", "timestamp", "t", "datetime", "date", "epoch", "utc", "met", "time_s", "time_utc", "timestamp_utc",
     "seconds", "sec", "unix_time", "gps_time", "scet", "ert", "obt"}
)  # fmt: skip
#: Column names read as the channel and value columns of a long file (any case).
CHANNEL_NAMES = frozenset({"channel", "name", "parameter", "param", "mnemonic", "signal", "channel_id", "chan"})
VALUE_NAMES = frozenset({"value", "val", "eng_value", "engineering_value", "reading", "measurement"})
#: Longest line a socket source accepts; longer ones are reported as bad records and skipped.
MAX_LINE = 65_536


class Record(NamedTuple):
    """One sample of one channel. ``value`` is NaN for a sample reported as missing."""

    time: float
    channel: str
    value: float


@dataclass(frozen=True)
class BadRecord:
    """A line that could not be read; ``channel`` is set when the line named one."""

    source: str
    line: int
    reason: str
    channel: str | None = None
    text: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: line {self.line}"
        if self.channel is not None:
            where += f": channel {self.channel}"
        return f"{where}: {self.reason}"


Item = Record | BadRecord


def _number(text, what: str) -> float:
    """A float from a JSON number or text; ``None``/empty/'nan' give NaN (missing)."""
    if text is None:
        return math.nan
    if isinstance(text, bool):
        raise ValueError(f"{what} {text!r} is not a number")
    if isinstance(text, int | float):
        try:
            return float(text)
        except OverflowError:  # a JSON integer beyond float range
            raise ValueError(f"{what} is too large for a float") from None
    s = str(text).strip()
    if s == "":
        return math.nan
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"{what} {s!r} is not a number") from None


def _time_value(text) -> float:
    """Seconds from a number or an ISO 8601 timestamp."""
    try:
        t = _number(text, "time")
    except ValueError:
        try:
            stamp = datetime.fromisoformat(str(text).strip())
        except ValueError:
            raise ValueError(f"time {str(text).strip()!r} is neither seconds nor ISO 8601") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        t = stamp.timestamp()
    if not math.isfinite(t):
        raise ValueError(f"time {text!r} is not finite")
    return t


def parse_line(text: str, source: str = "<line>", line: int = 0) -> Item | None:
    """Read one record line; ``None`` for blank lines, comments (``#``) and the CSV header."""
    s = text.strip()
    if not s or s[0] == "#":
        return None
    if s[0] == "{":
        return _parse_json(s, source, line)
    raw = s.split(",")
    if len(raw) == 3:  # the common case, fast: two plain numbers around a channel name
        try:
            t, v = float(raw[0]), float(raw[2])
        except ValueError:
            pass
        else:
            name = raw[1].strip()
            if name and math.isfinite(t):
                return Record(t, name, v)
    parts = [p.strip() for p in raw]
    if _is_long_header(parts):
        return None
    if len(parts) != 3:
        channel = parts[1] if len(parts) > 3 and parts[1] else None
        return BadRecord(source, line, f"expected 3 comma-separated fields, got {len(parts)}", channel, s[:200])
    return _build(parts[0], parts[1], parts[2], source, line, s)


def _parse_json(s: str, source: str, line: int) -> Item:
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as err:
        return BadRecord(source, line, f"invalid JSON: {err.msg}", None, s[:200])
    except (ValueError, RecursionError) as err:  # an integer over the digit limit, nesting too deep
        return BadRecord(source, line, f"invalid JSON: {type(err).__name__}", None, s[:200])
    if not isinstance(obj, dict):
        return BadRecord(source, line, "JSON record must be an object", None, s[:200])
    missing = [k for k in HEADER if k not in obj]
    channel = obj.get("channel")
    channel = str(channel) if channel not in (None, "") else None
    if missing:
        return BadRecord(source, line, f"JSON record lacks {missing}", channel, s[:200])
    return _build(obj["time"], obj["channel"], obj["value"], source, line, s)


def _build(t, channel, value, source: str, line: int, s: str) -> Item:
    name = str(channel).strip()
    if not name:
        return BadRecord(source, line, "empty channel name", None, s[:200])
    try:
        return Record(_time_value(t), name, _number(value, "value"))
    except ValueError as err:
        return BadRecord(source, line, str(err), name, s[:200])


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_long_header(parts: list[str]) -> bool:
    """``time,channel,value`` (or ``timestamp,parameter,value``, ``"time","channel","value"``, ...)."""
    low = [p.strip('"').lower() for p in parts]
    return len(low) == 3 and low[0] in TIME_NAMES and low[1] in CHANNEL_NAMES and low[2] in VALUE_NAMES


def _is_wide_header(text: str) -> bool:
    """A wide CSV header: a time column name (``time``, ``timestamp``, ...) then one column per channel."""
    parts = [p.strip() for p in text.strip().split(",")]
    return len(parts) >= 2 and parts[0].strip('"').lower() in TIME_NAMES and not _is_long_header(parts)


class _WideParser:
    """Lines of a wide CSV (``time,ch1,ch2,...``) as one record per non-empty cell."""

    def __init__(self, header: str) -> None:
        self.channels = [p.strip().strip('"') for p in header.strip().split(",")[1:]]

    def __call__(self, text: str, source: str, line: int) -> list[Item]:
        s = text.strip()
        if not s or s.startswith("#"):
            return []
        parts = [p.strip() for p in s.split(",")]
        if len(parts) != len(self.channels) + 1:
            return [
                BadRecord(source, line, f"expected {len(self.channels) + 1} fields, got {len(parts)}", None, s[:200])
            ]
        try:
            t = _time_value(parts[0])
        except ValueError as err:
            return [BadRecord(source, line, str(err), None, s[:200])]
        out: list[Item] = []
        for name, cell in zip(self.channels, parts[1:]):
            if cell == "":
                continue  # this channel did not report at this time
            try:
                out.append(Record(t, name, _number(cell, "value")))
            except ValueError as err:
                out.append(BadRecord(source, line, str(err), name, s[:200]))
        return out


def parse_lines(lines: Iterable[str], source: str = "<lines>", first_line: int = 1) -> list[Item]:
    """Parse many lines, numbering them from ``first_line``; blank lines and headers are skipped."""
    out: list[Item] = []
    for i, text in enumerate(lines, start=first_line):
        item = parse_line(text, source, i)
        if item is not None:
            out.append(item)
    return out


class Source(Protocol):
    """Anything that yields batches of records; an empty batch means 'nothing new yet'."""

    name: str

    def batches(self) -> Iterator[list[Item]]: ...

    def close(self) -> None: ...


def _joined(parts: list):
    """Queued items as a list, or as one RecordBatch when bulk-parsed blocks are among them."""
    if not any(hasattr(p, "code") for p in parts):
        return parts
    from vigil.ingest.bulk import RecordBatch

    return RecordBatch.concat(parts)


class _QueueSource:
    """A source fed by a reader thread through a queue, so quiet periods yield empty batches."""

    def __init__(self, name: str, idle_s: float = 0.2, batch_size: int = 10_000) -> None:
        self.name = name
        self.idle_s = idle_s
        self.batch_size = batch_size
        self._queue: queue.Queue[Item | None] = queue.Queue(maxsize=1_000_000)
        self._stop = threading.Event()
        self._ended = threading.Event()

    def _read_blocks(self, read: Callable[[int], bytes], origin: str, counter: list[int]) -> None:
        """Whatever has arrived (``read(n)``: up to ``n`` bytes, ``b""`` at the end), parsed in
        bulk up to its last whole line (:func:`vigil.ingest.bulk.parse_block`); ``counter[0]``:
        the lines read so far. A line longer than :data:`MAX_LINE` bytes is reported and skipped."""
        from vigil.ingest.bulk import parse_block

        rest, runaway = b"", False
        while not self._stop.is_set():
            data = read(1 << 20)
            eof = not data
            if runaway and not eof:  # skip to the end of a line too long to hold
                nl = data.find(b"\n")
                if nl < 0:
                    continue
                data, runaway = data[nl + 1 :], False
            buf = rest + data
            cut = len(buf) if eof else buf.rfind(b"\n") + 1  # whole lines (all of it at the end)
            block, rest = buf[:cut], buf[cut:]
            if block:
                while self._queue.qsize() > 64 and not self._stop.is_set():  # bounded memory
                    _time.sleep(0.01)
                self._queue.put(parse_block(block, origin, counter[0] + 1))
                counter[0] += block.count(b"\n") + (not block.endswith(b"\n"))
            if len(rest) > MAX_LINE:
                counter[0] += 1
                self._queue.put(BadRecord(origin, counter[0], f"line longer than {MAX_LINE} bytes"))
                rest, runaway = b"", True
            if eof:
                return

    def _put_lines(self, text: str, origin: str, counter: list[int]) -> None:
        for line in text.splitlines():
            counter[0] += 1
            item = parse_line(line, origin, counter[0])
            if item is not None:
                self._queue.put(item)

    def batches(self) -> Iterator:
        """Lists of items, or one :class:`~vigil.ingest.bulk.RecordBatch` when a reader queued
        bulk-parsed blocks; an empty list when nothing arrived for ``idle_s``."""
        while True:
            try:
                first = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                if self._ended.is_set() and self._queue.empty():
                    return
                yield []
                continue
            if first is None:
                return
            batch, n, ended = [first], len(first) if hasattr(first, "code") else 1, False
            while n < self.batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    ended = True
                    break
                batch.append(item)
                n += len(item) if hasattr(item, "code") else 1
            yield _joined(batch)
            if ended:
                return

    def _finish(self) -> None:
        self._ended.set()
        self._queue.put(None)

    def close(self) -> None:
        self._stop.set()


class StreamSource(_QueueSource):
    """Record lines from a text stream (standard input by default) until it ends."""

    def __init__(self, stream=None, name: str = "stdin", idle_s: float = 0.2) -> None:
        super().__init__(name, idle_s)
        self._stream = stream if stream is not None else sys.stdin
        threading.Thread(target=self._read, name=f"vigil-{name}", daemon=True).start()

    def _read(self) -> None:
        try:
            raw = getattr(self._stream, "buffer", None)
            if raw is not None and hasattr(raw, "read1"):
                self._read_blocks(raw.read1, self.name, [0])
            else:
                counter = [0]
                for text in iter(self._stream.readline, ""):  # line by line, as each arrives
                    if self._stop.is_set():
                        break
                    self._put_lines(text, self.name, counter)
        finally:
            self._finish()


class TcpSource(_QueueSource):
    """A TCP server taking record lines from up to ``max_connections`` clients at once (binds
    127.0.0.1 by default).

    Port 0 picks a free port; :attr:`address` says which. The source runs until closed. The accept
    loop outlives a full file table (EMFILE, ENFILE) and other accept errors: it backs off (up to
    one second), counts them and keeps accepting. A client beyond the connection cap is closed at
    once and counted. :meth:`stats` reports both (``/api/health`` shows them); refusals also reach
    the monitor as bad records, so they are counted there too.
    """

    #: Longest wait between accept attempts while the system refuses new file descriptors.
    MAX_BACKOFF_S = 1.0

    def __init__(self, host: str = "127.0.0.1", port: int = 0, idle_s: float = 0.2, max_connections: int = 64) -> None:
        if max_connections < 1:
            raise ConfigError(f"must be >= 1, got {max_connections}", key="max_connections")
        self._server = socket.create_server((host, port))
        self.address = self._server.getsockname()[:2]
        super().__init__(f"tcp://{self.address[0]}:{self.address[1]}", idle_s)
        self.max_connections = max_connections
        self.connections = 0
        self.accepted = 0
        self.refused = 0
        self.accept_errors = 0
        self.last_accept_error: str | None = None
        self._count = threading.Lock()
        self._server.settimeout(0.2)
        self._acceptor = threading.Thread(target=self._accept, name="vigil-tcp", daemon=True)
        self._acceptor.start()

    def stats(self) -> dict[str, object]:
        """Connections open and accepted, refusals over the cap, accept errors (EMFILE...)."""
        return {
            "listening": self._acceptor.is_alive(),
            "connections": self.connections,
            "max_connections": self.max_connections,
            "accepted": self.accepted,
            "refused": self.refused,
            "accept_errors": self.accept_errors,
            "last_accept_error": self.last_accept_error,
        }

    def _accept(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                conn, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError as err:
                if self._stop.is_set() or self._server.fileno() < 0:
                    break  # closed
                # Out of file descriptors (or another transient failure): the pending client waits
                # in the backlog; wait, say so, and try again rather than die.
                self.accept_errors += 1
                self.last_accept_error = f"{type(err).__name__}: {err.strerror or err}"
                backoff = min(self.MAX_BACKOFF_S, max(0.01, backoff * 2))
                self._stop.wait(backoff)
                continue
            backoff = 0.0
            with self._count:
                full = self.connections >= self.max_connections
                if not full:
                    self.connections += 1
                    self.accepted += 1
            if full:
                self._refuse(conn, peer)
                continue
            try:
                threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()
            except RuntimeError as err:  # no thread to be had: as good as a full table
                self._release()
                conn.close()
                self.accept_errors += 1
                self.last_accept_error = f"RuntimeError: {err}"

    def _refuse(self, conn: socket.socket, peer) -> None:
        conn.close()
        self.refused += 1
        reason = f"connection refused: {self.max_connections} connections open (the limit)"
        self._queue.put(BadRecord(f"{self.name} from {peer[0]}:{peer[1]}", 0, reason))

    def _release(self) -> None:
        with self._count:
            self.connections -= 1

    def _serve(self, conn: socket.socket, peer) -> None:
        origin = f"{self.name} from {peer[0]}:{peer[1]}"
        counter = [0]
        try:
            with conn, conn.makefile("rb") as fh:
                try:
                    self._read_blocks(fh.read1, origin, counter)
                except OSError as err:  # reset by the peer, say: what it sent is in; the loss is reported
                    counter[0] += 1
                    self._queue.put(BadRecord(origin, counter[0], f"connection ended abnormally: {err}"))
        finally:
            self._release()

    def close(self) -> None:
        super().close()
        self._server.close()


class UdpSource(_QueueSource):
    """Record lines in UDP datagrams (one or more lines each; binds 127.0.0.1 by default)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, idle_s: float = 0.2) -> None:
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.address = self._sock.getsockname()[:2]
        super().__init__(f"udp://{self.address[0]}:{self.address[1]}", idle_s)
        self._dropped = 0
        threading.Thread(target=self._receive, name="vigil-udp", daemon=True).start()

    def _receive(self) -> None:
        counter = [0]
        while not self._stop.is_set():
            try:
                data, _peer = self._sock.recvfrom(65_535)
            except TimeoutError:
                continue
            except OSError:
                break
            self._put_datagram(data.decode("utf-8", errors="replace"), counter)

    def _put_datagram(self, text: str, counter: list[int]) -> None:
        """Never block: a blocked reader lets the kernel drop datagrams uncounted. When the monitor
        falls this far behind, records are dropped here instead, counted, and reported once there is room."""
        for line in text.splitlines():
            counter[0] += 1
            item = parse_line(line, self.name, counter[0])
            if item is None:
                continue
            try:
                if self._dropped:
                    self._queue.put_nowait(
                        BadRecord(
                            self.name,
                            counter[0],
                            f"{self._dropped} records dropped before this line: the monitor fell behind",
                        )
                    )
                    self._dropped = 0
                self._queue.put_nowait(item)
            except queue.Full:
                self._dropped += 1

    def close(self) -> None:
        super().close()
        self._sock.close()


SourceFactory = Callable[..., Source]
_REGISTRY: dict[str, SourceFactory] = {}


def register_source(scheme: str, factory: SourceFactory) -> None:
    """Make ``scheme://...`` specs open with ``factory(spec, speed=..., skip_until=...)``."""
    _REGISTRY[scheme] = factory


def _host_port(spec: str) -> tuple[str, int]:
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError as err:
        raise ConfigError(f"bad port in {spec!r}: {err}", key="source") from None
    if port is None:
        raise ConfigError(f"{spec!r} needs a port, e.g. {parts.scheme}://127.0.0.1:7000", key="source")
    return parts.hostname or "127.0.0.1", port


def _file(spec: str, speed: float | None = None, skip_until: float | None = None):
    from vigil.ingest.files import FileSource

    path = urlsplit(spec).path if spec.startswith("file://") else spec[len("file:") :]
    return FileSource(path, speed, skip_until=skip_until)


def __getattr__(name: str):
    """``FileSource`` lives in :mod:`vigil.ingest.files` (file replays); importable from here too."""
    if name == "FileSource":
        from vigil.ingest.files import FileSource

        return FileSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_source("file", _file)
register_source("stdin", lambda spec, speed=None, skip_until=None: StreamSource())
register_source("tcp", lambda spec, speed=None, skip_until=None: TcpSource(*_host_port(spec)))
register_source("udp", lambda spec, speed=None, skip_until=None: UdpSource(*_host_port(spec)))


def open_source(spec: str, speed: float | None = None, skip_until: float | None = None) -> Source:
    """A source from ``file:PATH``, ``stdin`` (or ``-``), ``tcp://HOST:PORT`` or ``udp://HOST:PORT``.

    ``speed`` paces file replays (``None`` = as fast as possible); ``skip_until`` makes a file
    replay pass over records at or before that time (resuming after a restart).
    """
    if spec in ("stdin", "-"):
        scheme = "stdin"
    elif "://" in spec:
        scheme = spec.split("://", 1)[0]
    elif spec.startswith("file:"):
        scheme = "file"
    else:
        raise ConfigError(
            f"unknown source {spec!r}; use file:PATH, stdin, tcp://HOST:PORT or udp://HOST:PORT", key="source"
        )
    factory = _REGISTRY.get(scheme)
    if factory is None:
        raise ConfigError(f"unknown source scheme {scheme!r}; known: {sorted(_REGISTRY)}", key="source")
    return factory(spec, speed=speed, skip_until=skip_until)
