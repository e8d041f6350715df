"""CSV and Parquet telemetry, in long ``(time, channel, value)`` or wide ``(time, ch1, ch2, ...)`` form.

Both are read with pyarrow. ``strict=True`` (the default) raises a :class:`DataError` that names the
file, channel and row of the first bad record. ``strict=False`` keeps going and counts every problem
in the returned :class:`LoadReport`: non-finite values become missing (NaN), duplicate
``(time, channel)`` records keep the first and count the rest, unsorted rows are sorted and counted.
Nothing is dropped without being counted.

Time may be numeric (seconds, or a sample index) or an ISO-8601 timestamp (converted to seconds
since the Unix epoch).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vigil.errors import DataError
from vigil.model import TelemetryBlock

LONG_COLUMNS = ("time", "channel", "value")
#: extra columns of ``vigil packets decode`` output, which is long form too.
PACKET_COLUMNS = ("apid", "sequence_count", "packet")


@dataclass
class LoadReport:
    """What was wrong with a file read with ``strict=False``, per channel."""

    source: str
    rows: int = 0
    non_finite: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)
    out_of_order: int = 0

    @property
    def clean(self) -> bool:
        return not (self.non_finite or self.duplicates or self.out_of_order)

    def lines(self) -> list[str]:
        out = [f"{self.source}: {self.rows} rows"]
        for name, counter in (("non-finite values", self.non_finite), ("duplicate records", self.duplicates)):
            if counter:
                detail = ", ".join(f"{ch}: {n}" for ch, n in sorted(counter.items()))
                out.append(f"  {sum(counter.values())} {name} ({detail})")
        if self.out_of_order:
            out.append(f"  {self.out_of_order} rows out of time order (sorted)")
        return out


def read_table(path: str | Path, layout: str = "auto", strict: bool = True) -> tuple[TelemetryBlock, LoadReport]:
    """Read a CSV or Parquet file into a block. ``layout`` is ``"long"``, ``"wide"`` or ``"auto"``.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "t.csv")
    >>> _ = open(p, "w").write("time,channel,value\\n0,a,1\\n0,b,2\\n1,a,3\\n")
    >>> block, report = read_table(p)
    >>> block.channels, block.values.tolist()
    (('a', 'b'), [[1.0, 2.0], [3.0, nan]])
    """
    path = Path(path)
    table = _read_arrow(path)
    if table.num_rows == 0:
        raise DataError("no rows", source=str(path))
    names = [n.lower() for n in table.column_names]
    if layout == "auto":
        extra = set(names) - set(LONG_COLUMNS)
        layout = "long" if set(LONG_COLUMNS) <= set(names) and extra <= set(PACKET_COLUMNS) else "wide"
    if layout not in ("long", "wide"):
        raise DataError(f"layout must be long, wide or auto, not {layout!r}", source=str(path))
    table = table.rename_columns(names if layout == "long" else [names[0], *table.column_names[1:]])
    report = LoadReport(source=str(path), rows=table.num_rows)
    build = _from_long if layout == "long" else _from_wide
    return build(table, path, strict, report), report


def _read_arrow(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
        if suffix in (".csv", ".txt", ".gz"):
            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"cannot parse: {err}", source=str(path)) from None
    raise DataError(f"unknown file type {suffix!r} (expected .csv or .parquet)", source=str(path))


def _times(column: pa.ChunkedArray, path: Path) -> np.ndarray:
    """Seconds as float64 from a numeric or timestamp (or ISO string) column."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            column = pc.cast(column, pa.timestamp("ns"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return _first_bad_number(column, path, "time")
    if pa.types.is_timestamp(column.type):
        ns = pc.cast(column, pa.timestamp("ns")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return ns.astype(np.float64) / 1e9
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DataError(f"time column has type {column.type}, expected numbers or timestamps", source=str(path))
    t = column.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise DataError("missing or non-finite time", source=str(path), row=_row(bad[0]))
    return t


def _first_bad_number(column: pa.ChunkedArray, path: Path, what: str, channel: str | None = None):
    for i, v in enumerate(column.to_pylist()):
        try:
            float(v)
        except (TypeError, ValueError):
            raise DataError(f"{what} {v!r} is not a number", source=str(path), channel=channel, row=_row(i)) from None
    raise DataError(f"{what} column is not numeric", source=str(path), channel=channel)


def _row(i: int) -> int:
    """Line number in the file as a person counts it: 1-based, after the header line."""
    return int(i) + 2


def _numbers(column: pa.ChunkedArray, path: Path, channel: str | None) -> np.ndarray:
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
        return _first_bad_number(column, path, "value", channel)
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def _from_long(table: pa.Table, path: Path, strict: bool, report: LoadReport) -> TelemetryBlock:
    t = _times(table["time"], path)
    channel_col = pc.cast(table["channel"], pa.string())
    if channel_col.null_count:
        row = int(np.flatnonzero(channel_col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("missing channel name", source=str(path), row=_row(row))
    chan = np.asarray(channel_col.to_pylist(), dtype=object)
    v = _numbers(table["value"], path, None)
    names, first = np.unique(chan, return_index=True)
    names = names[np.argsort(first)]  # channels in order of first appearance
    code = {name: i for i, name in enumerate(names)}
    c_idx = np.fromiter((code[x] for x in chan), dtype=np.int64, count=len(chan))
    _check_values(v, c_idx, tuple(names), path, strict, report)
    if np.any(np.diff(t) < 0):
        if strict:
            row = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
            raise DataError(
                f"time {float(t[row])} is earlier than the row before",
                source=str(path),
                channel=chan[row],
                row=_row(row),
            )
        report.out_of_order = int((np.diff(t) < 0).sum())
    times, t_idx = np.unique(t, return_inverse=True)
    values = np.full((times.size, len(names)), np.nan)
    # Duplicate (time, channel) pairs: keep the first in file order, count the rest.
    key = t_idx * len(names) + c_idx
    _, first_of_key = np.unique(key, return_index=True)
    keep = np.zeros(key.size, dtype=bool)
    keep[first_of_key] = True
    if not keep.all():
        dup = np.flatnonzero(~keep)
        if strict:
            i = int(dup[0])
            raise DataError(
                f"duplicate record for time {float(t[i])}", source=str(path), channel=str(chan[i]), row=_row(i)
            )
        report.duplicates.update(Counter(str(chan[i]) for i in dup))
    values[t_idx[keep], c_idx[keep]] = v[keep]
    return TelemetryBlock(times, values, tuple(str(n) for n in names), source=str(path))


def _from_wide(table: pa.Table, path: Path, strict: bool, report: LoadReport) -> TelemetryBlock:
    names = table.column_names[1:]
    if not names:
        raise DataError("no channel columns beside the time column", source=str(path))
    t = _times(table.column(0), path)
    values = np.column_stack([_numbers(table[name], path, name) for name in names])
    c_idx = np.broadcast_to(np.arange(len(names)), values.shape).ravel()
    _check_values(values.ravel(), c_idx, tuple(names), path, strict, report, width=len(names))
    step = np.diff(t)
    if np.any(step <= 0):
        first = int(np.flatnonzero(step <= 0)[0]) + 1
        kind = "duplicate" if step[first - 1] == 0 else "out-of-order"
        if strict:
            raise DataError(f"{kind} time {float(t[first])}", source=str(path), row=_row(first))
        order = np.argsort(t, kind="stable")
        report.out_of_order = int((step < 0).sum())
        t, values = t[order], values[order]
        dup = np.flatnonzero(np.diff(t) == 0) + 1
        for name in names:
            report.duplicates[name] += int(dup.size)
        keep = np.ones(t.size, dtype=bool)
        keep[dup] = False
        t, values = t[keep], values[keep]
    return TelemetryBlock(t, values, tuple(names), source=str(path))


def _check_values(v, c_idx, names, path: Path, strict: bool, report: LoadReport, width: int | None = None) -> None:
    bad = np.flatnonzero(~np.isfinite(v))
    if not bad.size:
        return
    if strict:
        i = int(bad[0])
        row = i // width if width else i
        what = "missing" if np.isnan(v[i]) else "non-finite"
        raise DataError(f"{what} value {float(v[i])}", source=str(path), channel=names[c_idx[i]], row=_row(row))
    v[bad] = np.nan
    report.non_finite.update(Counter(names[c] for c in c_idx[bad]))
