"""Line records ``(time, channel, value)`` and the live sources that carry them.

A record line is CSV ``time,channel,value`` (an optional ``time,channel,value`` header is skipped)
or a JSON object ``{"time": ..., "channel": ..., "value": ...}``. Record files may instead be wide
CSV (header ``time,CH1,CH2,...``; an empty cell means that channel did not report then). Times are seconds (a number) or
ISO 8601 (converted to Unix seconds, UTC unless the text has an offset). A line that cannot be
read becomes a :class:`BadRecord` naming the source and line, so the consumer can count it; a
source never raises on bad input.

Sources yield *batches* (lists of records and bad records). Live sources (stdin, TCP, UDP) yield
an empty batch when nothing arrived for ``idle_s`` seconds, so the consumer can check staleness
while the stream is quiet. :func:`open_source` turns a spec such as ``file:data.csv``,
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
from pathlib import Path
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from vigil.errors import ConfigError

HEADER = ("time", "channel", "value")
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
    if tuple(p.lower() for p in parts) == HEADER:
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


def _is_wide_header(text: str) -> bool:
    """A wide CSV header: ``time`` then one column per channel."""
    parts = [p.strip().lower() for p in text.strip().split(",")]
    return len(parts) >= 2 and parts[0] == "time" and tuple(parts) != HEADER


class _WideParser:
    """Lines of a wide CSV (``time,ch1,ch2,...``) as one record per non-empty cell."""

    def __init__(self, header: str) -> None:
        self.channels = [p.strip() for p in header.strip().split(",")[1:]]

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


class FileSource:
    """Replay a record file at ``speed`` times real time (``None``: as fast as possible).

    Pacing follows the record times: a record is released ``(time - first_time) / speed`` seconds
    after the replay started; while waiting longer than ``idle_s``, empty batches are yielded. Records whose time is at or before ``skip_until`` are passed over
    (used to resume after a restart) and counted in :attr:`skipped`.
    """

    def __init__(
        self,
        path: str | Path,
        speed: float | None = None,
        batch_size: int = 10_000,
        skip_until: float | None = None,
        idle_s: float = 0.2,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be > 0 or None (as fast as possible), got {speed}", key="speed")
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"no such record file {str(self.path)!r}", key="source")
        self.name = str(self.path)
        self.speed = speed
        self.batch_size = batch_size
        self.skip_until = skip_until
        self.idle_s = idle_s
        self.skipped = 0
        #: Items (records and bad records) to pass over first: a restarted monitor resumes here.
        self.skip_items = 0
        #: Paced replay: the time of the record being waited for (every earlier one was released).
        self.horizon = math.inf

    def _items(self) -> Iterator[Item]:
        with open(self.path, encoding="utf-8", errors="replace", newline="") as fh:
            parse = parse_line
            for i, text in enumerate(fh, start=1):
                if i == 1 and _is_wide_header(text):
                    parse = _WideParser(text)
                    continue
                items = parse(text, self.name, i)
                for item in items if isinstance(items, list) else (items,):
                    if item is None:
                        continue
                    if self.skipped < self.skip_items:
                        self.skipped += 1
                        continue
                    if self.skip_until is not None and isinstance(item, Record) and item.time <= self.skip_until:
                        self.skipped += 1
                        continue
                    yield item

    def batches(self) -> Iterator[list[Item]]:
        if self.speed is None:
            yield from self._fast()
        else:
            yield from self._paced(self.speed)

    def _fast(self) -> Iterator[list[Item]]:
        batch: list[Item] = []
        for item in self._items():
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _paced(self, speed: float) -> Iterator[list[Item]]:
        start_wall = _time.monotonic()
        first: float | None = None
        batch: list[Item] = []
        due_t = -math.inf
        for item in self._items():
            if isinstance(item, Record):
                if first is None:
                    first = item.time
                if item.time > due_t and batch:
                    # A new time step: release what we hold, then wait until this one is due.
                    yield batch
                    batch = []
                if item.time > due_t:
                    due_t = item.time
                    due = start_wall + (item.time - first) / speed
                    self.horizon = item.time
                    # Wait in idle_s steps, yielding empty batches: the consumer checks staleness
                    # during gaps in the data, as it would live.
                    while (wait := due - _time.monotonic()) > self.idle_s:
                        _time.sleep(self.idle_s)
                        yield []
                    if wait > 0:
                        _time.sleep(wait)
            batch.append(item)
        if batch:
            yield batch

    def close(self) -> None:
        """Nothing to release: the file is closed when the replay ends."""


class _QueueSource:
    """A source fed by a reader thread through a queue, so quiet periods yield empty batches."""

    def __init__(self, name: str, idle_s: float = 0.2, batch_size: int = 10_000) -> None:
        self.name = name
        self.idle_s = idle_s
        self.batch_size = batch_size
        self._queue: queue.Queue[Item | None] = queue.Queue(maxsize=1_000_000)
        self._stop = threading.Event()
        self._ended = threading.Event()

    def _put_lines(self, text: str, origin: str, counter: list[int]) -> None:
        for line in text.splitlines():
            counter[0] += 1
            item = parse_line(line, origin, counter[0])
            if item is not None:
                self._queue.put(item)

    def batches(self) -> Iterator[list[Item]]:
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
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    yield batch
                    return
                batch.append(item)
            yield batch

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
        counter = [0]
        try:
            for text in iter(self._stream.readline, ""):  # line by line, as each arrives
                if self._stop.is_set():
                    break
                self._put_lines(text, self.name, counter)
        finally:
            self._finish()


class TcpSource(_QueueSource):
    """A TCP server taking record lines from any number of clients (binds 127.0.0.1 by default).

    Port 0 picks a free port; :attr:`address` says which. The source runs until closed.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, idle_s: float = 0.2) -> None:
        self._server = socket.create_server((host, port))
        self.address = self._server.getsockname()[:2]
        super().__init__(f"tcp://{self.address[0]}:{self.address[1]}", idle_s)
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, name="vigil-tcp", daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn: socket.socket, peer) -> None:
        origin = f"{self.name} from {peer[0]}:{peer[1]}"
        counter = [0]
        with conn, conn.makefile("r", encoding="utf-8", errors="replace", newline="") as fh:
            try:
                self._read_lines(fh, origin, counter)
            except OSError as err:  # reset by the peer, say: what it sent is in; the loss is reported
                counter[0] += 1
                self._queue.put(BadRecord(origin, counter[0], f"connection ended abnormally: {err}"))

    def _read_lines(self, fh, origin: str, counter: list[int]) -> None:
        while not self._stop.is_set():
            text = fh.readline(MAX_LINE)
            if not text:
                return
            if len(text) == MAX_LINE and not text.endswith("\n"):
                # A runaway line: report it and skip to its end rather than hold it in memory.
                while (rest := fh.readline(MAX_LINE)) and not rest.endswith("\n"):
                    pass
                counter[0] += 1
                self._queue.put(BadRecord(origin, counter[0], f"line longer than {MAX_LINE} characters"))
                continue
            self._put_lines(text, origin, counter)

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


def _file(spec: str, speed: float | None = None, skip_until: float | None = None) -> FileSource:
    path = urlsplit(spec).path if spec.startswith("file://") else spec[len("file:") :]
    return FileSource(path, speed, skip_until=skip_until)


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
