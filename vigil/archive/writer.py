"""Writing the archive from a thread of its own, so the monitor only hands over its scored blocks.

Layout: ``ROOT/YYYY-MM-DD/<hour start>_<writer id>.arrows``: one folder per UTC day of the stream's
clock, one Arrow IPC *stream* file per hour (and per start of the writer, so a restart never
appends to a file a crash may have torn), uncompressed by default; ``ROOT/channels-<digest>.json``
lists the channels the rows follow. The writer buffers blocks and appends them to the hour's file
as one record batch per *chunk*: one row per channel (row 0, channel ``""``, holds the times), in
the monitor's column order, whose list cells hold the chunk's samples in time order: ``value``
(float64, NaN where the channel had no sample), ``expected``, ``low``, ``high`` (float32, the
detector's band) and ``level`` (int8). Readers map the file and touch only the rows they read.

The monitor's thread only copies the block into a queue bounded in cells
(:meth:`ArchiveWriter.append`); when the queue is full it waits for the writer (a sample the
monitor accepted is never dropped by the archive while the writer works). A writer that failed
counts what it could not keep (``dropped``) and says why (``last_error``); it never raises into
the monitor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import shutil
import threading
import time as _time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

log = logging.getLogger(__name__)

#: Name of the row holding a chunk's times (a channel name is never empty, see vigil.config).
TIME_ROW = ""
#: The per-sample fields and their stored types.
FIELDS = (("value", pa.float64()), ("expected", pa.float32()), ("low", pa.float32()), ("high", pa.float32()),
          ("level", pa.int8()))  # fmt: skip
#: Most rows in one chunk, whatever the channel count.
MAX_CHUNK_ROWS = 65_536
_FLUSH = object()
_SYNC = object()
_STOP = object()


def _hour(t: float) -> int:
    return math.floor(float(t) / 3600.0)


def day_of(t: float) -> str:
    """The UTC day folder of stream time ``t`` (seconds since 1970).

    >>> day_of(0.0), day_of(86400 * 365.0 + 1.5)
    ('1970-01-01', '1971-01-01')
    """
    return datetime.fromtimestamp(math.floor(t / 86400) * 86400, UTC).strftime("%Y-%m-%d")


class ArchiveWriter:
    """Keep every scored sample of ``channels`` under ``root``.

    Args:
        root: the archive folder (created).
        channels: the monitor's channels, in its column order.
        retention_days: day folders ending more than this many days before the latest sample are
            deleted after each write (``None``: keep everything).
        flush_cells: write a chunk once this many cells (rows x channels) are buffered (at most
            :data:`MAX_CHUNK_ROWS` rows); the buffer is allocated at this size, 21 bytes a cell.
        flush_span_s: ... or once the buffer spans this many seconds of stream time, so that a
            killed process loses at most that much of the archive (alarms and the checkpoint are in
            the store, not here).
        queue_cells: cells (rows x channels) the monitor may hand over before it waits for the
            writer (a block larger than this still goes through when the queue is empty).
        compression: Arrow IPC codec (``lz4`` or ``zstd``); ``None`` (the default): telemetry's
            float noise gained 5 % from LZ4 for a third more CPU, and uncompressed files are read
            memory-mapped, touching only the channel asked for.
    """

    def __init__(
        self,
        root: str | Path,
        channels: tuple[str, ...] | list[str],
        *,
        retention_days: float | None = None,
        flush_cells: int = 8_000_000,
        flush_span_s: float = 900.0,
        queue_cells: int = 2_000_000,
        compression: str | None = None,
    ) -> None:
        if retention_days is not None and not retention_days > 0:
            raise ValueError(f"retention_days must be > 0, got {retention_days}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.channels = tuple(channels)
        self.index = {name: j for j, name in enumerate(self.channels)}
        self._names = pa.array([TIME_ROW, *self.channels], pa.string())
        listing = json.dumps(self.channels).encode()
        self._list_name = f"channels-{hashlib.sha1(listing).hexdigest()[:16]}.json"
        if not (self.root / self._list_name).exists():
            (self.root / self._list_name).write_bytes(listing)
        self.retention_days = retention_days
        self.flush_cells = max(1, int(flush_cells))
        self.flush_span_s = flush_span_s
        self.compression = compression
        self._queue: queue.Queue = queue.Queue()
        self.queue_cells = max(1, int(queue_cells))
        self._queued = 0  # cells handed over and not yet taken by the writer
        self._room = threading.Condition()
        # Guards the buffer and the files' names: a reader holding it sees each sample exactly once.
        self._lock = threading.RLock()
        # The buffer is the next chunk itself: [1 + c, cap] per field, filled column by column as
        # blocks arrive (row 0: the times), written without another copy once full.
        self._cap = max(1, min(self.flush_cells // max(len(self.channels), 1), MAX_CHUNK_ROWS))
        self._grids = {
            name: np.empty((len(self.channels) + 1, self._cap), typ.to_pandas_dtype()) for name, typ in FIELDS
        }
        for name, grid in self._grids.items():
            if name != "value":
                grid[0] = 0 if name == "level" else np.nan
        self._filled = 0  # columns of the grids in use
        self._finite = 0  # samples among them
        self._hour_of_buffer: int | None = None
        self._cells = 0
        self.samples_written = 0
        self.files_written = 0
        self.bytes_written = 0
        self._out: ipc.RecordBatchStreamWriter | None = None  # the open hour's file
        self._sink: Any = None
        self._out_hour: int | None = None
        self._started = _time.time_ns()  # names this writer's files: a restart never appends to a torn file
        fields = [pa.field("channel", pa.string()), *(pa.field(name, pa.list_(typ)) for name, typ in FIELDS)]
        self._schema = pa.schema(fields, metadata={"channels": self._list_name})
        self.dropped = 0
        self.cpu_s = 0.0  # CPU time of the writer thread's writes and merges
        self.append_cpu_s = 0.0  # CPU time the monitor's thread spent handing blocks over (waits excluded)
        self.errors = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="vigil-archive", daemon=True)
        self._thread.start()

    # -- the monitor's side ------------------------------------------------------------------------
    def append(self, time: np.ndarray, values: np.ndarray, scores: Any = None) -> None:
        """Hand over scored rows (``values`` ``[n, c]`` in the writer's channel order; ``scores`` may be None)."""
        if time.size == 0:
            return
        started = _time.thread_time()
        try:
            self._hand_over(time, values, scores)
        finally:
            self.append_cpu_s += _time.thread_time() - started

    def _hand_over(self, time: np.ndarray, values: np.ndarray, scores: Any) -> None:
        if not self._thread.is_alive():
            self.dropped += int(np.isfinite(values).sum())
            return
        n, c = values.shape
        if scores is None:
            level, band = np.zeros((n, c), np.int8), np.full((n, c), np.nan, np.float32)
            item = (time.copy(), values.copy(), band, band, band, level)
        else:  # the detector's arrays are fresh per call and never written again: no copy needed
            item = (time.copy(), values.copy(), scores.expected, scores.low, scores.high, scores.level)
        with self._room:  # bounded in cells, not blocks: a 100,000-channel block is 100x a 1,000-channel one
            while self._queued and self._queued + values.size > self.queue_cells and self._thread.is_alive():
                self._room.wait(0.5)
            self._queued += values.size
        self._queue.put(item)

    def __call__(self, time: np.ndarray, values: np.ndarray, scores: Any = None) -> None:
        self.append(time, values, scores)

    def flush(self, timeout: float | None = 60.0) -> None:
        """Write everything handed over so far; returns once it is on disk."""
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        done.wait(timeout)

    def sync(self, timeout: float | None = 60.0) -> None:
        """Wait until the writer has taken everything handed over (into its buffer or to disk)."""
        done = threading.Event()
        self._queue.put((_SYNC, done))
        done.wait(timeout)

    def close(self) -> None:
        """Write what is buffered and stop the writer thread."""
        if self._thread.is_alive():
            self._queue.put((_STOP, None))
            self._thread.join()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> dict[str, Any]:
        """Counters for ``/api/health``: what was written, what was lost and why."""
        return {
            "root": str(self.root),
            "samples_written": self.samples_written,
            "files": self.files_written,
            "bytes": self.bytes_written,
            "buffered_cells": self._cells,
            "cpu_s": round(self.cpu_s, 3),
            "dropped": self.dropped,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def buffered(self, j: int) -> dict[str, np.ndarray] | None:
        """Channel ``j``'s samples not yet on disk (for readers): time and the fields, copied."""
        with self._lock:
            n = self._filled
            if n == 0:
                return None
            out = {"time": self._grids["value"][0, :n].copy()}
            out.update({name: grid[1 + j, :n].copy() for name, grid in self._grids.items()})
            return out

    # -- the writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item[0] is _SYNC:
                item[1].set()
                continue
            if item[0] is _FLUSH or item[0] is _STOP:
                self._write_guarded()
                if item[0] is _STOP:
                    self._close_hour()
                    return
                item[1].set()
                continue
            with self._room:
                self._queued -= item[1].size
                self._room.notify_all()
            self._take(item)

    def _take(self, item: tuple[np.ndarray, ...]) -> None:
        """Copy a block into the chunk grids, writing a chunk whenever it is full, the hour changes
        (a chunk never straddles two hours: one file per hour) or it spans ``flush_span_s``."""
        time = item[0]
        a = 0
        while a < time.size:
            hour = _hour(time[a])
            if self._filled and hour != self._hour_of_buffer:
                self._write_guarded()
            b = min(time.size, a + self._cap - self._filled, int(np.searchsorted(time, (hour + 1) * 3600.0)))
            with self._lock:
                f, m = self._filled, b - a
                for k, (name, _typ) in enumerate(FIELDS, start=1):
                    self._grids[name][1:, f : f + m] = item[k][a:b].T
                self._grids["value"][0, f : f + m] = time[a:b]
                self._filled, self._hour_of_buffer, self._cells = f + m, hour, (f + m) * len(self.channels)
                self._finite += int(np.isfinite(item[1][a:b]).sum())
            a = b
            span = float(time[a - 1]) - float(self._grids["value"][0, 0])
            if self._filled == self._cap or span >= self.flush_span_s:
                self._write_guarded()

    def _write_guarded(self) -> None:
        if not self._filled:
            return
        started = _time.thread_time()
        try:
            self._write()
        except Exception as err:  # disk full, permissions...: counted, reported, the monitor goes on
            self.errors += 1
            self.last_error = f"{type(err).__name__}: {err}"
            log.exception("archive write failed")
            with self._lock:
                self.dropped += self._finite
                self._filled = self._finite = self._cells = 0
        finally:
            self.cpu_s += _time.thread_time() - started

    def _write(self) -> None:
        n = self._filled
        time0 = float(self._grids["value"][0, 0])
        columns = [self._names]
        for name, typ in FIELDS:
            grid = self._grids[name]  # [1 + c, cap]: each channel's samples contiguous
            flat = grid.ravel() if n == self._cap else np.ascontiguousarray(grid[:, :n]).ravel()
            offsets = pa.array(np.arange(0, flat.size + 1, n, dtype=np.int32))
            columns.append(pa.ListArray.from_arrays(offsets, pa.array(flat, typ)))
        batch = pa.record_batch(columns, schema=self._schema)
        out = self._hour_file(_hour(time0), time0)
        with self._lock:  # the chunk reaches the file as it leaves the buffer: readers see it once
            before = self._sink.tell()
            out.write_batch(batch)
            latest = float(self._grids["value"][0, n - 1])
            self.samples_written += self._finite
            self._filled = self._finite = self._cells = 0
        self.bytes_written += self._sink.tell() - before
        self._expire(latest)

    def _hour_file(self, hour: int, t: float) -> ipc.RecordBatchStreamWriter:
        """The open hour's stream file (a new one for each hour and each start of the writer)."""
        if self._out is None or self._out_hour != hour:
            self._close_hour()
            folder = self.root / day_of(t)
            folder.mkdir(exist_ok=True)
            path = folder / f"{hour * 3600}_{self._started}.arrows"
            self._sink = pa.OSFile(str(path), "wb")
            options = ipc.IpcWriteOptions(compression=self.compression)
            self._out, self._out_hour = ipc.new_stream(self._sink, self._schema, options=options), hour
            self.files_written += 1
        return self._out

    def _close_hour(self) -> None:
        if self._out is not None:
            with self._lock:
                self._out.close()
                self._sink.close()
            self._out = self._sink = None

    def _expire(self, latest: float) -> None:
        if self.retention_days is None:
            return
        cutoff = day_of(latest - self.retention_days * 86400.0)
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 10 and folder.name < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
