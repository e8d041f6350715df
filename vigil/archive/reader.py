"""Reading the archive: one channel's span (for plots), or every channel's (to refit a detector).

A reader sees the hour files on disk and, when given the live writer, the blocks it has not
written yet, so a span that ends now has no gap. A file torn by a crash is read up to its last
whole chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from vigil.archive.writer import FIELDS, ArchiveWriter, day_of
from vigil.errors import DataError
from vigil.model import TelemetryBlock
from vigil.monitor.history import decimate

NAMES = ("time", *(name for name, _ in FIELDS))


class ArchiveReader:
    """Read the archive under ``root`` (and what ``writer`` still buffers, if given)."""

    def __init__(self, root: str | Path, writer: ArchiveWriter | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"no archive at {self.root}", source=str(self.root))
        self.writer = writer

    def files(self, start: float | None = None, end: float | None = None) -> list[Path]:
        """Hour files that may hold samples in ``[start, end]``, in time order."""
        lo = day_of(start) if start is not None else ""
        hi = day_of(end) if end is not None else "~"
        found = []
        for folder in self.root.iterdir():
            if not (folder.is_dir() and lo <= folder.name <= hi):
                continue
            for path in folder.glob("*.arrows"):
                hour_start, stamp = (int(x) for x in path.stem.split("_"))
                if (start is None or hour_start + 3600 > start) and (end is None or hour_start <= end):
                    found.append((hour_start, stamp, path))
        return [path for *_key, path in sorted(found)]

    def read(self, channel: str, start: float | None = None, end: float | None = None) -> dict[str, np.ndarray]:
        """``channel``'s samples in ``[start, end]`` (arrays time, value, expected, low, high, level)."""
        if self.writer is not None:
            self.writer.sync()  # blocks still queued reach the writer's buffer first
        with self.writer._lock if self.writer is not None else nullcontext():
            return self._read(channel, start, end)

    def _read(self, channel: str, start: float | None, end: float | None) -> dict[str, np.ndarray]:
        parts = []
        for path in self.files(start, end):
            with pa.memory_map(str(path)) as source:  # touches only the rows read (uncompressed files)
                for batch, listing in _batches(source):
                    row = _listing_index(self.root / listing).get(channel)
                    if row is None:
                        continue
                    time = batch.column("value")[0].values.to_numpy().copy()  # the map closes below
                    if (start is not None and time[-1] < start) or (end is not None and time[0] > end):
                        continue
                    cols = {name: batch.column(name)[row].values.to_numpy() for name, _ in FIELDS}
                    parts.append({"time": time, **{k: v.copy() for k, v in cols.items()}})  # as above
        parts += self._buffered(channel)
        if not parts:
            return {name: np.empty(0) for name in NAMES}
        series = {name: np.concatenate([p[name] for p in parts]) for name in NAMES}
        keep = np.isfinite(series["value"])
        if start is not None:
            keep &= series["time"] >= start
        if end is not None:
            keep &= series["time"] <= end
        return {name: a[keep] for name, a in series.items()}

    def history(
        self, channel: str, start: float | None = None, end: float | None = None, max_points: int = 2000
    ) -> dict[str, np.ndarray]:
        """:meth:`read`, min/max-decimated to at most ``max_points`` samples (spikes survive)."""
        return decimate(self.read(channel, start, end), max_points)

    def block(
        self, start: float | None = None, end: float | None = None, channels: list[str] | None = None
    ) -> TelemetryBlock:
        """Every archived row in ``[start, end]`` as one block (NaN where a channel had no sample)."""
        times, parts = [], []
        columns = channels
        for path in self.files(start, end):
            with pa.memory_map(str(path)) as source:
                for batch, listing in _batches(source):
                    names = _listing(self.root / listing)
                    grid = batch.column("value").values.to_numpy().reshape(len(names), -1)
                    columns = columns or list(names[1:])
                    index = _listing_index(self.root / listing)
                    rows = [index.get(n, -1) for n in columns]  # -1: a channel this chunk lacks (NaN)
                    times.append(grid[0].copy())
                    parts.append(np.vstack([grid, np.full(grid.shape[1], np.nan)])[rows].T)
        if not parts:
            raise DataError(f"no archived samples between {start} and {end}", source=str(self.root))
        time, values = np.concatenate(times), np.concatenate(parts)
        keep = np.ones(time.size, dtype=bool)
        if start is not None:
            keep &= time >= start
        if end is not None:
            keep &= time <= end
        return TelemetryBlock.from_arrays(time[keep], values[keep], columns, source=str(self.root))

    def _buffered(self, channel: str) -> list[dict[str, np.ndarray]]:
        j = None if self.writer is None else self.writer.index.get(channel)
        rows = None if j is None else self.writer.buffered(j)
        return [] if rows is None else [rows]


def _batches(source: pa.NativeFile) -> Iterator[tuple[pa.RecordBatch, str]]:
    """The whole chunks of a stream file (a torn last one, after a crash, ends the file)."""
    try:
        stream = ipc.open_stream(source)
    except pa.ArrowInvalid:  # not even the schema was written
        return
    listing = stream.schema.metadata[b"channels"].decode()
    while True:
        try:
            yield stream.read_next_batch(), listing
        except (StopIteration, pa.ArrowInvalid, OSError):
            return


@lru_cache(maxsize=16)
def _listing(path: Path) -> tuple[str, ...]:
    """A chunk's rows: the time row, then the channels (listing files never change once written)."""
    return ("", *json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=16)
def _listing_index(path: Path) -> dict[str, int]:
    return {name: row for row, name in enumerate(_listing(path)) if row > 0}
