"""Record lines parsed in bulk: a block of ``time,channel,value`` lines into columns, not objects.

:func:`parse_block` hands a whole block of text to pyarrow's CSV reader and converts the columns
in C. Only what the vectorised path cannot take as-is (a header, a comment, JSON, a bad number, a
wrong field count, an unusual time format) goes line by line through
:func:`vigil.ingest.records.parse_line`, so every line gets exactly the per-line parser's verdict:
a record, a :class:`~vigil.ingest.records.BadRecord` naming its line, or nothing (blank, comment,
header). No line is skipped without one of these.

>>> batch = parse_block(b"time,channel,value\\n0,a,1.5\\n0,b,hot\\n1,a,\\n", source="f.csv")
>>> batch.time.tolist(), batch.channels(), batch.value.tolist()
([0.0, 1.0], ['a', 'a'], [1.5, nan])
>>> batch.lines.tolist(), [str(b) for b in batch.bad]
([2, 4], ["f.csv: line 3: channel b: value 'hot' is not a number"])
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from vigil.ingest.records import BadRecord, Item, Record, parse_line

#: A plain decimal number; anything else (nan, inf, 1_000, ISO times) goes to the per-line parser.
_DECIMAL = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_COLUMNS = ("time", "channel", "value")


@dataclass
class RecordBatch:
    """Records as columns: ``time``/``value`` float64, ``code`` indexes ``names``, ``lines`` the
    line each record came from; ``bad`` the lines that could not be read. Iterating yields
    :class:`Record` then :class:`BadRecord` objects (for consumers that want objects)."""

    time: np.ndarray
    code: np.ndarray
    names: list[str]
    value: np.ndarray
    lines: np.ndarray
    bad: list[BadRecord] = field(default_factory=list)

    @classmethod
    def empty(cls) -> RecordBatch:
        return cls(np.empty(0), np.empty(0, np.int64), [], np.empty(0), np.empty(0, np.int64))

    @property
    def size(self) -> int:
        """Records (not counting bad lines)."""
        return int(self.time.size)

    def __len__(self) -> int:
        return self.size + len(self.bad)

    def __iter__(self) -> Iterator[Item]:
        names = self.names
        for t, c, v in zip(self.time.tolist(), self.code.tolist(), self.value.tolist()):
            yield Record(t, names[c], v)
        yield from self.bad

    def channels(self) -> list[str]:
        """The channel name of each record."""
        return [self.names[c] for c in self.code.tolist()]

    def take(self, a: int, b: int) -> RecordBatch:
        """Records ``a:b`` (in arrival order) with no bad lines."""
        return RecordBatch(self.time[a:b], self.code[a:b], self.names, self.value[a:b], self.lines[a:b])

    def drop_first(self, records: int, bad: int) -> tuple[RecordBatch, int, int]:
        """The batch without its first ``records`` records and ``bad`` bad lines (at most what it
        has), and how many of each it dropped: a resumed replay passes over what a checkpoint covers.

        >>> b = RecordBatch(np.arange(3.0), np.zeros(3, np.int64), ["x"], np.ones(3), np.arange(3))
        >>> rest, n, m = b.drop_first(2, 5)
        >>> rest.time.tolist(), n, m
        ([2.0], 2, 0)
        """
        n, m = min(records, self.size), min(bad, len(self.bad))
        rest = self.take(n, self.size)
        rest.bad = self.bad[m:]
        return rest, n, m

    def select(self, keep: np.ndarray) -> RecordBatch:
        """The records where ``keep`` is true, with this batch's bad lines."""
        return RecordBatch(self.time[keep], self.code[keep], self.names, self.value[keep], self.lines[keep], self.bad)

    @staticmethod
    def concat(parts: Sequence[RecordBatch | Item]) -> RecordBatch:
        """One batch from batches and single items, in order (bad lines gathered at the end)."""
        batches: list[RecordBatch] = []
        loose: list[Item] = []
        for part in parts:
            if isinstance(part, RecordBatch):
                if loose:
                    batches.append(from_items(loose))
                    loose = []
                batches.append(part)
            else:
                loose.append(part)
        if loose:
            batches.append(from_items(loose))
        if len(batches) == 1:
            return batches[0]
        names: dict[str, int] = {}
        codes = []
        for b in batches:
            lut = np.fromiter((names.setdefault(n, len(names)) for n in b.names), np.int64, len(b.names))
            codes.append(lut[b.code] if b.code.size else b.code)
        return RecordBatch(
            np.concatenate([b.time for b in batches]) if batches else np.empty(0),
            np.concatenate(codes) if codes else np.empty(0, np.int64),
            list(names),
            np.concatenate([b.value for b in batches]) if batches else np.empty(0),
            np.concatenate([b.lines for b in batches]) if batches else np.empty(0, np.int64),
            [x for b in batches for x in b.bad],
        )


def from_items(items: Sequence[Item], lines: Sequence[int] | None = None) -> RecordBatch:
    """A batch from :class:`Record`/:class:`BadRecord` objects (``lines``: of the records, in order)."""
    recs = [x for x in items if isinstance(x, Record)]
    names: dict[str, int] = {}
    code = np.fromiter((names.setdefault(r.channel, len(names)) for r in recs), np.int64, len(recs))
    return RecordBatch(
        np.fromiter((r.time for r in recs), np.float64, len(recs)),
        code,
        list(names),
        np.fromiter((r.value for r in recs), np.float64, len(recs)),
        np.zeros(len(recs), np.int64) if lines is None else np.asarray(lines, np.int64),
        [x for x in items if isinstance(x, BadRecord)],
    )


def parse_block(data: bytes, source: str = "<block>", first_line: int = 1) -> RecordBatch:
    """Parse a block of whole record lines (``time,channel,value`` or JSON), numbered from
    ``first_line``; see the module docstring. ``data`` must end at a line end (or the stream's end).
    """
    if not data:
        return RecordBatch.empty()
    data = _valid_utf8(data)
    table, row_line, rejected = _read(data, list(_COLUMNS), first_line)
    return _convert(table, row_line, rejected, source, first_line, data)


def _valid_utf8(data: bytes) -> bytes:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:  # as the per-line reader does: undecodable bytes become U+FFFD
        data = data.decode("utf-8", errors="replace").encode("utf-8")
    return data


def _read(data: bytes, columns: list[str], first_line: int) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """All fields as text; the line of each table row; the rejected lines (wrong field count)."""
    rejected: list[tuple[int, str]] = []

    def on_invalid(row) -> str:  # a wrong field count, a comment, ...: the per-line parser decides
        rejected.append((row.number, row.text))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=columns, use_threads=False, block_size=1 << 26),
        parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(columns, pa.string()), strings_can_be_null=False, check_utf8=False
        ),
    )
    row_line = np.ones(table.num_rows + len(rejected), dtype=bool)
    if rejected:
        row_line[np.fromiter((num - 1 for num, _ in rejected), np.int64, len(rejected))] = False
    return table, np.flatnonzero(row_line) + first_line, rejected


def _times(t_txt) -> np.ndarray:
    """Seconds from trimmed time fields: plain numbers, else ISO 8601 (naive = UTC) where Arrow reads
    every one of them; NaN where not read here (the per-line parser then decides)."""
    try:
        return pc.cast(t_txt, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        pass
    plain = pc.match_substring_regex(t_txt, _DECIMAL)
    t = pc.cast(pc.if_else(plain, t_txt, "nan"), pa.float64()).to_numpy(zero_copy_only=False).copy()
    other = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
    if other.size:
        iso = t_txt.take(pa.array(other))
        for target in (pa.timestamp("ns"), pa.timestamp("ns", "UTC")):
            try:
                ns = pc.cast(iso, target).cast(pa.int64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            t[other] = ns / 1e9
            break
    return t


def _convert(table: pa.Table, row_line: np.ndarray, rejected, source: str, first_line: int, data: bytes) -> RecordBatch:
    name = pc.utf8_trim_whitespace(table.column("channel"))
    try:  # the common case: every field a number Arrow reads (Arrow reads a subset of what float() reads)
        t, v = _numbers(table.column("time"), table.column("value"))
        ok = pc.greater(pc.utf8_length(name), 0).to_numpy(zero_copy_only=False) & np.isfinite(t)
    except pa.ArrowInvalid:  # some fields are not: take plain decimals and ISO times, leave the rest to parse_line
        t_txt, v_txt = (pc.utf8_trim_whitespace(table.column(k)) for k in ("time", "value"))
        plain = pc.and_(pc.match_substring_regex(v_txt, _DECIMAL), pc.greater(pc.utf8_length(name), 0))
        plain = pc.or_(plain, pc.and_(pc.equal(v_txt, ""), pc.greater(pc.utf8_length(name), 0)))
        t, v = _times(t_txt), _values(pc.if_else(plain, v_txt, "nan"))
        ok = plain.to_numpy(zero_copy_only=False) & np.isfinite(t)  # 1e999 overflows: parse_line words it
    if ok.all():
        idx = None
    else:
        idx = np.flatnonzero(ok)
        t, v, name = t[idx], v[idx], name.take(pa.array(idx))
    encoded = pc.dictionary_encode(name).combine_chunks()
    code = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    batch = RecordBatch(t, code, encoded.dictionary.to_pylist(), v, row_line if idx is None else row_line[idx])
    slow = _slow_lines(table, ok, row_line, rejected, first_line, data)
    return _merge(batch, slow, source) if slow else batch


def _numbers(t_txt, v_txt) -> tuple[np.ndarray, np.ndarray]:
    """Time and value columns as float64 (an empty value is a missing sample, NaN)."""
    return pc.cast(t_txt, pa.float64()).to_numpy(zero_copy_only=False), _values(v_txt)


def _values(v_txt) -> np.ndarray:
    return pc.cast(pc.if_else(pc.equal(v_txt, ""), "nan", v_txt), pa.float64()).to_numpy(zero_copy_only=False)


def _slow_lines(table, ok_np, row_line, rejected, first_line: int, data: bytes) -> list[tuple[int, str]]:
    """``(line number, text)`` of every line the vectorised path did not take."""
    out = [(first_line + num - 1, text) for num, text in rejected]
    miss = np.flatnonzero(~ok_np)
    if miss.size:
        cols = [table.column(k).take(pa.array(miss)).to_pylist() for k in _COLUMNS]
        out += [(int(row_line[i]), f"{a},{b},{c}") for i, a, b, c in zip(miss.tolist(), *cols)]
    if any(text == ",," for _, text in out):  # a blank line reads as three empty fields too
        original = data.splitlines()
        out = [(n, original[n - first_line].decode() if t == ",," else t) for n, t in out]
    return out


def _merge(batch: RecordBatch, slow: list[tuple[int, str]], source: str) -> RecordBatch:
    """Add the per-line parser's records (in line order) and bad lines to ``batch``."""
    slow.sort()
    items, lines = [], []
    for line, text in slow:
        item = parse_line(text, source, line)
        if item is not None:
            items.append(item)
            if isinstance(item, Record):
                lines.append(line)
    if not items:
        return batch
    extra = from_items(items, lines)
    both = RecordBatch.concat([batch, extra])
    if extra.size:  # back into line (arrival) order
        order = np.argsort(both.lines, kind="stable")
        both = RecordBatch(
            both.time[order], both.code[order], both.names, both.value[order], both.lines[order], both.bad
        )
    return both


def parse_wide_block(data: bytes, channels: list[str], source: str = "<block>", first_line: int = 1) -> RecordBatch:
    """Parse whole lines of a wide CSV (a time, then one cell per channel of ``channels``): one
    record per non-empty cell, in line then column order, with exactly the verdicts of the per-line
    wide parser (a line it cannot take in bulk goes through it; so does a cell that is not a plain
    number).

    >>> b = parse_wide_block(b"0,1.5,\\n1,hot,2\\n", ["T1", "V1"], "w.csv", 2)
    >>> list(zip(b.time.tolist(), b.channels(), b.value.tolist())), [str(x) for x in b.bad]
    ([(0.0, 'T1', 1.5), (1.0, 'V1', 2.0)], ["w.csv: line 3: channel T1: value 'hot' is not a number"])
    """
    from vigil.ingest.records import _number, _WideParser

    if not data:
        return RecordBatch.empty()
    data = _valid_utf8(data)
    n = len(channels)
    table, row_line, rejected = _read(data, ["t", *(f"c{k}" for k in range(n))], first_line)
    t = _times(pc.utf8_trim_whitespace(table.column(0)))
    ok_row = np.isfinite(t)
    values = np.full((table.num_rows, n), np.nan)
    has = np.zeros((table.num_rows, n), dtype=bool)
    odd: list[tuple[int, int, str]] = []  # (row, column, cell) of cells that are not plain numbers
    for k in range(n):
        cell = pc.utf8_trim_whitespace(table.column(k + 1))
        plain = pc.match_substring_regex(cell, _DECIMAL).to_numpy(zero_copy_only=False)
        present = pc.greater(pc.utf8_length(cell), 0).to_numpy(zero_copy_only=False) & ok_row
        values[:, k] = _values(pc.if_else(pa.array(plain), cell, "nan"))
        has[:, k] = present & plain
        for r in np.flatnonzero(present & ~plain).tolist():
            odd.append((r, k, cell[r].as_py()))
    r, c = np.nonzero(has)  # row-major: line, then column order
    key = row_line[r] * (n + 1) + c
    batch = RecordBatch(t[r], c.astype(np.int64), list(channels), values[r, c], row_line[r])
    items, keys = [], []
    for r_odd, k, cell in odd:
        line = int(row_line[r_odd])
        try:
            items.append(Record(float(t[r_odd]), channels[k], _number(cell, "value")))
            keys.append(line * (n + 1) + k)
        except ValueError as err:
            text = ",".join(table.column(j)[r_odd].as_py() for j in range(n + 1)).strip()
            batch.bad.append(BadRecord(source, line, str(err), channels[k], text[:200]))
    whole = [(first_line + num - 1, text) for num, text in rejected]
    rows = np.flatnonzero(~ok_row)
    cols = [table.column(j).take(pa.array(rows)).to_pylist() for j in range(n + 1)] if rows.size else []
    whole += [(int(row_line[i]), ",".join(parts)) for i, *parts in zip(rows.tolist(), *cols)]
    if any(set(text) <= {","} for _, text in whole):  # a blank line reads as empty fields too
        original = data.splitlines()
        whole = [(ln, original[ln - first_line].decode() if set(text) <= {","} else text) for ln, text in whole]
    parse = _WideParser(",".join(["time", *channels]))
    for line, text in sorted(whole):
        got = parse(text, source, line)
        for j, item in enumerate(x for x in got if isinstance(x, Record)):
            items.append(item)
            keys.append(line * (n + 1) + j)  # a whole line: its own records, in order
        batch.bad += [x for x in got if isinstance(x, BadRecord)]
    batch.bad.sort(key=lambda b: b.line)
    if not items:
        return batch
    extra = from_items(items, [k // (n + 1) for k in keys])
    both = RecordBatch.concat([batch, extra])
    order = np.argsort(np.concatenate((key, np.asarray(keys, dtype=np.int64))), kind="stable")
    return RecordBatch(both.time[order], both.code[order], both.names, both.value[order], both.lines[order], both.bad)
