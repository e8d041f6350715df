"""Writing the archive from a thread of its own, so the monitor only hands over its scored blocks.

Layout: ``ROOT/YYYY-MM-DD/<t0>_<t1>.arrow``, one folder per UTC day of the stream's clock, one
Arrow IPC file (Feather v2, uncompressed by default) per *chunk* (the rows buffered between two writes);
``ROOT/channels-<digest>.json`` lists the channels a chunk's rows follow. A chunk has one row per channel,
in the monitor's column order, whose list cells hold the chunk's samples in time order: ``value`` (float64, NaN
where the channel had no sample), ``expected``, ``low``, ``high`` (float32, the detector's band) and
``level`` (int8). Row 0 (channel ``""``) holds the chunk's times in its ``value`` cell. A reader
maps the file and touches only the rows it reads. Why Arrow IPC rather than Parquet, DuckDB or SQLite: ``docs/archive.md`` (measured).

The monitor's thread only copies the block into a bounded queue (:meth:`ArchiveWriter.append`); when
the queue is full it waits for the writer (a sample the monitor accepted is never dropped by the
archive while the writer works). A writer that failed counts what it could not keep (``dropped``)
and says why (``last_error``); it never raises into the monitor.
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
BYTES_PER_SAMPLE = 21  # value 8 + expected/low/high 4 each + level 1, before compression
#: Bytes of samples per record batch. Uncompressed files are read memory-mapped, so a reader of one
#: channel touches only its row's pages: big batches cost it nothing and save the writer Python calls.
BATCH_BYTES = 8_000_000
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
        flush_cells: write a chunk once this many cells (rows x channels) are buffered.
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
        flush_cells: int = 2_000_000,
        flush_span_s: float = 300.0,
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
        self._grids: dict[str, np.ndarray] = {}  # reused between writes: no page faults on fresh memory
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
        self._buffer: list[tuple[np.ndarray, ...]] = []
        self._cells = 0
        self.samples_written = 0
        self.files_written = 0
        self.bytes_written = 0
        self.files_merged = 0
        self._hours: dict[int, list[Path]] = {}  # chunk files of hours not merged yet
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

    def buffered(self) -> list[tuple[np.ndarray, ...]]:
        """The blocks not yet on disk (for readers), oldest first."""
        with self._lock:
            return list(self._buffer)

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
                    return
                item[1].set()
                continue
            with self._room:
                self._queued -= item[1].size
                self._room.notify_all()
            if self._buffer and _hour(item[0][0]) != _hour(self._buffer[-1][0][-1]):
                self._write_guarded()  # a chunk never straddles two hours (an hour is merged once closed)
            with self._lock:
                self._buffer.append(item)
                self._cells += item[1].size
            span = float(item[0][-1]) - float(self._buffer[0][0][0])
            if self._cells >= self.flush_cells or span >= self.flush_span_s:
                self._write_guarded()

    def _write_guarded(self) -> None:
        if not self._buffer:
            return
        started = _time.thread_time()
        try:
            self._write()
        except Exception as err:  # disk full, permissions...: counted, reported, the monitor goes on
            self.errors += 1
            self.last_error = f"{type(err).__name__}: {err}"
            log.exception("archive write failed")
            with self._lock:
                self.dropped += sum(int(np.isfinite(b[1]).sum()) for b in self._buffer)
                self._buffer, self._cells = [], 0
        finally:
            self.cpu_s += _time.thread_time() - started

    def _write(self) -> None:
        blocks = self._buffer
        time = np.concatenate([b[0] for b in blocks])
        n = time.size
        folder = self.root / day_of(float(time[0]))
        per = max(1, BATCH_BYTES // (n * BYTES_PER_SAMPLE))  # rows per record batch
        folder.mkdir(exist_ok=True)
        columns = {"channel": self._names}
        for k, (name, typ) in enumerate(FIELDS, start=1):
            grid = self._grid(name, n, typ.to_pandas_dtype())  # [1 + c, n]: each channel's samples contiguous
            grid[0] = time if name == "value" else (0 if name == "level" else np.nan)
            a = 0
            for b in blocks:
                grid[1:, a : a + b[0].size] = b[k].T
                a += b[0].size
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(grid.ravel(), typ), n)
        table = pa.table(columns).replace_schema_metadata({"channels": self._list_name, "rows_per_batch": str(per)})
        path = folder / f"{float(time[0])!r}_{float(time[-1])!r}.arrow"
        tmp = path.with_suffix(".tmp")
        with ipc.new_file(tmp, table.schema, options=ipc.IpcWriteOptions(compression=self.compression)) as out:
            out.write_table(table, max_chunksize=per)
        with self._lock:  # the chunk appears on disk as it leaves the buffer
            tmp.replace(path)
            self._buffer, self._cells = [], 0
        finite = int(sum(np.isfinite(b[1]).sum() for b in blocks))
        self.samples_written += finite
        self.files_written += 1
        self.bytes_written += path.stat().st_size
        self._merge_closed_hours(path, _hour(time[0]))
        self._expire(float(time[-1]))

    def _merge_closed_hours(self, path: Path, hour: int) -> None:
        """Remember the chunk; once a later hour starts, merge the previous hour's chunks into one file."""
        from vigil.archive.compact import compact_hour

        done = [h for h in self._hours if h < hour]
        for h in done:
            try:
                merged = compact_hour(self._hours.pop(h), self.compression, self._lock)
            except Exception as err:  # the chunks stay and are read as they are
                self.errors += 1
                self.last_error = f"merging hour {h}: {type(err).__name__}: {err}"
                log.exception("archive merge failed")
                continue
            self.files_merged += merged is not None
        self._hours.setdefault(hour, []).append(path)

    def _grid(self, name: str, n: int, dtype: np.dtype) -> np.ndarray:
        grid = self._grids.get(name)
        if grid is None or grid.shape[1] != n:
            grid = self._grids[name] = np.empty((len(self.channels) + 1, n), dtype=dtype)
        return grid

    def _expire(self, latest: float) -> None:
        if self.retention_days is None:
            return
        cutoff = day_of(latest - self.retention_days * 86400.0)
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 10 and folder.name < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
