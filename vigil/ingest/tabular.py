"""CSV and Parquet telemetry, in long ``(time, channel, value)`` or wide ``(time, ch1, ch2, ...)`` form.

Both are read with pyarrow. By default (``strict=False``) every problem is counted in the returned
:class:`LoadReport`, whose :meth:`~LoadReport.lines` say what was changed: non-finite values become
missing (NaN), duplicate ``(time, channel)`` records (a repeated timestamp, say a daylight-saving
repeat) keep the first and count the rest, unsorted rows are sorted and counted. Nothing is
dropped or changed without being counted. ``strict=True`` refuses instead: a :class:`DataError`
names the file, channel and row of the first bad record.

The time column is the one named like a time (:data:`~vigil.ingest.records.TIME_NAMES`: ``time``,
``timestamp``, ``t``, ``datetime``, ``date``, ``epoch``, ``utc``, ``met``, ..., any case);
without one, the first column is taken as time and the report says so (an error about its
values names it). Time may be numeric (seconds, or a sample index) or an ISO-8601 timestamp
(converted to seconds since the Unix epoch). A long file has exactly three columns: a time, a
channel (``channel``, ``name``, ``parameter``, ...) and a value (``value``, ``val``, ...).
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
from vigil.ingest.records import CHANNEL_NAMES, TIME_NAMES, VALUE_NAMES
from vigil.model import TelemetryBlock

LONG_COLUMNS = ("time", "channel", "value")
#: extra columns of ``vigil packets decode`` output, which is long form too.
PACKET_COLUMNS = ("apid", "sequence_count", "packet", "text")


@dataclass
class LoadReport:
    """What was wrong with a file read with ``strict=False``, per channel."""

    source: str
    rows: int = 0
    non_finite: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)
    out_of_order: int = 0
    no_time: int = 0  # rows dropped: no readable time
    #: The column read as time, and why when it was not recognised by name.
    time_column: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing was changed or dropped."""
        return not (self.non_finite or self.duplicates or self.out_of_order or self.no_time)

    def lines(self) -> list[str]:
        """What was read and, if anything was changed or dropped, what and how much (per channel)."""
        out = [f"{self.source}: {self.rows} rows, time from column {self.time_column!r}"]
        out += [f"  {note}" for note in self.notes]
        what = (
            ("non-finite values (read as missing)", self.non_finite),
            ("duplicate records (the first kept, the rest dropped)", self.duplicates),
        )
        for name, counter in what:
            if counter:
                detail = ", ".join(f"{ch}: {n}" for ch, n in sorted(counter.items())[:20])
                more = ", ..." if len(counter) > 20 else ""
                out.append(f"  {sum(counter.values())} {name} ({detail}{more})")
        if self.out_of_order:
            out.append(f"  {self.out_of_order} rows out of time order (sorted into order)")
        if self.no_time:
            out.append(f"  {self.no_time} rows without a readable time in {self.time_column!r} (dropped)")
        return out


def read_table(path: str | Path, layout: str = "auto", strict: bool = False) -> tuple[TelemetryBlock, LoadReport]:
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
    if layout not in ("long", "wide", "auto"):
        raise DataError(f"layout must be long, wide or auto, not {layout!r}", source=str(path))
    roles = _long_roles(table.column_names)
    if layout == "auto":
        layout = "long" if roles is not None else "wide"
    report = LoadReport(source=str(path), rows=table.num_rows)
    if layout == "long":
        if roles is None:
            raise DataError(
                f"a long file needs three columns: time, channel, value; got {table.column_names[:5]}",
                source=str(path),
            )
        report.time_column = table.column_names[roles[0]]
        table = _without_texts(table, roles[2])
        table = table.select(list(roles)).rename_columns(list(LONG_COLUMNS))
        return _from_long(table, path, strict, report), report
    k = _time_column(table.column_names, report)
    order = [k] + [i for i in range(table.num_columns) if i != k]
    return _from_wide(table.select(order), path, strict, report), report


def _without_texts(table: pa.Table, value: int) -> pa.Table:
    """Rows of binary or string parameters (``vigil packets decode`` with a ``text`` column: their
    ``value`` is empty, where a numeric row has a number or NaN) are not samples."""
    if "text" not in [n.strip().lower() for n in table.column_names]:
        return table
    return table.filter(pc.is_valid(table.column(value)))


def _long_roles(names: list[str]) -> tuple[int, int, int] | None:
    """Indices of the time, channel and value columns of a long table, or ``None``."""
    low = [n.strip().lower() for n in names]
    find = [
        next((i for i, n in enumerate(low) if n in group), None) for group in (TIME_NAMES, CHANNEL_NAMES, VALUE_NAMES)
    ]
    if None in find or len(set(find)) < 3:
        return None
    # Decoded packets carry where each value came from (``vigil packets decode``): allowed beside.
    extra = {n for i, n in enumerate(low) if i not in find}
    return tuple(find) if extra <= set(PACKET_COLUMNS) else None


def _time_column(names: list[str], report: LoadReport) -> int:
    """The column named like a time, else the first (and a note saying so)."""
    k = next((i for i, n in enumerate(names) if n.strip().lower() in TIME_NAMES), None)
    if k is None:
        k = 0
        report.notes.append(
            f"no column is named like a time ({', '.join(sorted(TIME_NAMES)[:8])}, ...): "
            f"the first column, {names[0]!r}, was taken as time"
        )
    report.time_column = names[k]
    return k


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


def _times(column: pa.ChunkedArray, path: Path, report: LoadReport, strict: bool) -> np.ndarray:
    """Seconds as float64 from a numeric or timestamp (or ISO string) column; NaN where a row has
    no readable time (``strict``: an error naming the time column and the row)."""
    name = report.time_column
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = _cast_times(column)
    if pa.types.is_timestamp(column.type):
        ns = pc.cast(column, pa.timestamp("ns")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        t = np.where(column.is_null().to_numpy(zero_copy_only=False), np.nan, ns.astype(np.float64) / 1e9)
    elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
        t = column.to_numpy(zero_copy_only=False).astype(np.float64)
    elif pa.types.is_string(column.type):  # some rows are neither numbers nor ISO 8601
        t = np.array([_time_or_nan(x) for x in column.to_pylist()], dtype=np.float64)
    else:
        raise DataError(
            f"time column {name!r} has type {column.type}, expected numbers or timestamps", source=str(path)
        )
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size and strict:
        value = column.slice(int(bad[0]), 1).to_pylist()[0]
        raise DataError(f"time column {name!r}: {value!r} is not a time", source=str(path), row=_row(bad[0]))
    report.no_time = int(bad.size)
    return t


def _cast_times(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO strings as timestamps (numbers in text as float64); unchanged if some rows are neither."""
    for target in (pa.float64(), pa.timestamp("ns"), pa.timestamp("ns", "UTC")):
        try:
            return pc.cast(column, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return column


def _time_or_nan(text) -> float:
    from vigil.ingest.records import _time_value

    try:
        return _time_value(text)
    except ValueError:
        return float("nan")


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
    t = _times(table["time"], path, report, strict)
    channel_col = pc.cast(table["channel"], pa.string())
    if channel_col.null_count:
        row = int(np.flatnonzero(channel_col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("missing channel name", source=str(path), row=_row(row))
    encoded = pc.dictionary_encode(channel_col).combine_chunks()  # names in order of first appearance
    names = encoded.dictionary.to_pylist()
    c_idx = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    chan = _Names(names, c_idx)
    v = _numbers(table["value"], path, None)
    _check_values(v, c_idx, tuple(names), path, strict, report)
    if report.no_time:
        ok = np.isfinite(t)
        t, v, c_idx = t[ok], v[ok], c_idx[ok]
        chan = _Names(names, c_idx)
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
        report.duplicates.update(Counter(names[k] for k in c_idx[dup].tolist()))
    values[t_idx[keep], c_idx[keep]] = v[keep]
    return TelemetryBlock(times, values, tuple(names), source=str(path))


def _from_wide(table: pa.Table, path: Path, strict: bool, report: LoadReport) -> TelemetryBlock:
    names = table.column_names[1:]
    if not names:
        raise DataError("no channel columns beside the time column", source=str(path))
    t = _times(table.column(0), path, report, strict)
    values = np.column_stack([_numbers(table[name], path, name) for name in names])
    if report.no_time:
        ok = np.isfinite(t)
        t, values = t[ok], values[ok]
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


class _Names:
    """The channel name of row ``i`` (``chan[i]``) without a Python string per row."""

    def __init__(self, names: list[str], codes: np.ndarray) -> None:
        self.names, self.codes = names, codes

    def __getitem__(self, i) -> str:
        return self.names[int(self.codes[i])]


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
