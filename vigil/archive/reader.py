"""Reading the archive: one channel's span (for plots), or every channel's (to refit a detector).

A reader sees the chunk files on disk and, when given the live writer, the blocks it has not
written yet, so a span that ends now has no gap.
"""

from __future__ import annotations

import json
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

    def chunks(self, start: float | None = None, end: float | None = None) -> list[tuple[float, float, Path]]:
        """Chunk files overlapping ``[start, end]``, as ``(t0, t1, path)`` in time order."""
        lo = day_of(start) if start is not None else ""
        hi = day_of(end) if end is not None else "~"
        found = []
        for folder in self.root.iterdir():
            if not (folder.is_dir() and lo <= folder.name <= hi):
                continue
            for path in folder.glob("*.arrow"):
                t0, t1 = (float(x) for x in path.stem.split("_"))
                if (start is None or t1 >= start) and (end is None or t0 <= end):
                    found.append((t0, t1, path))
        return _uncovered(sorted(found))

    def read(self, channel: str, start: float | None = None, end: float | None = None) -> dict[str, np.ndarray]:
        """``channel``'s samples in ``[start, end]`` (arrays time, value, expected, low, high, level)."""
        if self.writer is not None:
            self.writer.sync()  # blocks still queued reach the writer's buffer first
        with self.writer._lock if self.writer is not None else nullcontext():
            return self._read(channel, start, end)

    def _read(self, channel: str, start: float | None, end: float | None) -> dict[str, np.ndarray]:
        parts = []
        for _t0, _t1, path in self.chunks(start, end):
            with pa.memory_map(str(path)) as source:  # touches only the rows read (uncompressed files)
                chunk = ipc.open_file(source)
                meta = chunk.schema.metadata
                row = self._index(meta[b"channels"].decode()).get(channel)
                if row is None:
                    continue
                per = int(meta[b"rows_per_batch"])
                batch = chunk.get_batch(row // per)
                cols = {name: batch.column(name)[row % per].values.to_numpy() for name, _ in FIELDS}
                parts.append({"time": chunk.get_batch(0).column("value")[0].values.to_numpy(), **cols})
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
        for _t0, _t1, path in self.chunks(start, end):
            with pa.OSFile(str(path)) as source:
                table = ipc.open_file(source).read_all()
            names = self._names(table.schema.metadata[b"channels"].decode())
            grid = table.column("value").combine_chunks().values.to_numpy().reshape(len(names), -1)
            columns = columns or list(names[1:])
            index = self._index(table.schema.metadata[b"channels"].decode())
            times.append(grid[0])
            rows = [index.get(n, -1) for n in columns]  # -1: a channel this chunk lacks (NaN)
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

    def _names(self, listing: str) -> tuple[str, ...]:
        return _listing(self.root / listing)

    def _index(self, listing: str) -> dict[str, int]:
        return _listing_index(self.root / listing)

    def _buffered(self, channel: str) -> list[dict[str, np.ndarray]]:
        j = None if self.writer is None else self.writer.index.get(channel)
        if j is None:
            return []
        return [dict(zip(NAMES, (b[0], *(a[:, j] for a in b[1:])))) for b in self.writer.buffered()]


@lru_cache(maxsize=16)
def _listing(path: Path) -> tuple[str, ...]:
    """A chunk's rows: the time row, then the channels (listing files never change once written)."""
    return ("", *json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=16)
def _listing_index(path: Path) -> dict[str, int]:
    return {name: row for row, name in enumerate(_listing(path)) if row > 0}


def _uncovered(found: list[tuple[float, float, Path]]) -> list[tuple[float, float, Path]]:
    """Leave out chunks inside another file's span (left over if a merge was cut short)."""
    keep: list[tuple[float, float, Path]] = []
    for t0, t1, path in sorted(found, key=lambda f: (f[0], -f[1])):
        if keep and t0 >= keep[-1][0] and t1 <= keep[-1][1]:
            continue
        keep.append((t0, t1, path))
    return keep
