"""Merging an hour's chunk files into one, so that reading a channel's day opens 24 files, not 300.

The writer calls :func:`compact_hour` for every closed hour (one with a later chunk written). The
merged file has the chunk format (see :mod:`vigil.archive.writer`); it is written to a temporary
name, renamed, and only then are the chunks deleted. A reader that meets both (after a crash
between the two) uses the merged file and skips the chunks it covers.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from vigil.archive.writer import BATCH_BYTES, BYTES_PER_SAMPLE, FIELDS


def span_of(path: Path) -> tuple[float, float]:
    """The first and last time of a chunk file, from its name.

    >>> span_of(Path("1700000000.0_1700000399.0.arrow"))
    (1700000000.0, 1700000399.0)
    """
    t0, t1 = path.stem.split("_")
    return float(t0), float(t1)


class _Cursor:
    """Reads one chunk file's rows in order, decompressing each record batch once."""

    def __init__(self, path: Path) -> None:
        self.source = pa.memory_map(str(path))  # zero-copy batches (uncompressed files)
        self.file = ipc.open_file(self.source)
        self.per = int(self.file.schema.metadata[b"rows_per_batch"])
        self._at, self._batch = -1, None
        self.times = self.file.get_batch(0).column("value")[0].values.to_numpy()

    def _slices(self, name: str, a: int, b: int) -> list[pa.Array]:
        """Rows ``a..b-1`` of column ``name``, one slice per record batch they span."""
        out = []
        for k in range(a // self.per, (b - 1) // self.per + 1):
            if k != self._at:
                self._at, self._batch = k, self.file.get_batch(k)
            lo, hi = max(a, k * self.per) - k * self.per, min(b, (k + 1) * self.per) - k * self.per
            out.append(self._batch.column(name).slice(lo, hi - lo))
        return out

    def rows(self, name: str, a: int, b: int) -> np.ndarray:
        """Rows ``a..b-1`` of sample field ``name`` as ``[b - a, n]``."""
        parts = [s.flatten().to_numpy(zero_copy_only=False).reshape(len(s), -1) for s in self._slices(name, a, b)]
        return np.concatenate(parts)

    def labels(self, a: int, b: int) -> pa.Array:
        return pa.concat_arrays(self._slices("channel", a, b))


def compact_hour(paths: list[Path], compression: str | None = None, lock: Any = None) -> Path | None:
    """Merge chunk files (one hour, time order, same channel listing) into one; returns its path.

    Returns ``None`` (and leaves the chunks) when there is nothing to merge or the chunks follow
    different channel listings (the configuration changed within the hour).
    """
    if len(paths) < 2:
        return None
    cursors = [_Cursor(p) for p in paths]
    try:
        return _merge(paths, cursors, compression, lock)
    finally:
        for cursor in cursors:
            cursor.source.close()


def _merge(paths: list[Path], cursors: list[_Cursor], compression: str | None, lock: Any) -> Path | None:
    metas = {c.file.schema.metadata[b"channels"] for c in cursors}
    if len(metas) != 1:
        return None
    first = cursors[0].file
    listing = paths[0].parent.parent / first.schema.metadata[b"channels"].decode()
    rows_total = 1 + len(json.loads(listing.read_text(encoding="utf-8")))  # the time row, the channels
    times = np.concatenate([c.times for c in cursors])
    n = times.size
    per = max(1, BATCH_BYTES // (n * BYTES_PER_SAMPLE))
    meta = {b"channels": metas.pop(), b"rows_per_batch": str(per).encode()}
    fields = [("channel", pa.string()), *((name, pa.list_(typ, n)) for name, typ in FIELDS)]
    schema = pa.schema(fields, metadata=meta)
    path = paths[0].with_name(f"{float(times[0])!r}_{float(times[-1])!r}.arrow")
    tmp = path.with_suffix(".tmp")
    with ipc.new_file(tmp, schema, options=ipc.IpcWriteOptions(compression=compression)) as out:
        for a in range(0, rows_total, per):
            b = min(a + per, rows_total)
            arrays = [cursors[0].labels(a, b)]
            for name, typ in FIELDS:
                grid = np.concatenate([c.rows(name, a, b) for c in cursors], axis=1)
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(grid.ravel(), typ), n))
            out.write_batch(pa.record_batch(arrays, schema=schema))
    with lock if lock is not None else nullcontext():  # readers see the chunks or the merged file
        tmp.replace(path)
        for p in paths:
            p.unlink(missing_ok=True)
    return path
