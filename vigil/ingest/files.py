"""Record files replayed as a source: parsed in bulk, as fast as possible or paced by their times.

:class:`FileSource` is what ``file:PATH`` opens (:func:`vigil.ingest.records.open_source`). Long
files (``time,channel,value``) and wide ones (a time column, then one column per channel; the time
column recognised by name, :data:`~vigil.ingest.records.TIME_NAMES`, or else the first, and
said) are read in blocks and parsed by :mod:`vigil.ingest.bulk`.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from vigil.errors import ConfigError
from vigil.ingest.records import (
    TIME_NAMES,
    Record,
    _is_long_header,
    _is_wide_header,
    _numeric,
    _time_value,
    _WideParser,
    parse_line,
)


class FileSource:
    """Replay a record file at ``speed`` times real time (``None``: as fast as possible).

    Long files (``time,channel,value``) are parsed in blocks of ``block_bytes`` by
    :func:`vigil.ingest.bulk.parse_block` and yielded as :class:`~vigil.ingest.bulk.RecordBatch`
    columns (at most ``batch_size`` records each); wide files go line by line. Pacing follows the
    record times: a record is released ``(time - first_time) / speed`` seconds after the replay
    started (a record earlier than one already released goes out at once), whole time steps at a
    time and at most one batch per ``tick_s`` of wall time (steps due meanwhile go out together, at
    most ``tick_s`` late: a fast replay is not one store transaction per step); while waiting
    longer than ``idle_s``, empty batches are yielded. Records whose time is at
    or before ``skip_until`` are passed over (used to resume after a restart) and counted in
    :attr:`skipped`.
    """

    def __init__(
        self,
        path: str | Path,
        speed: float | None = None,
        batch_size: int = 200_000,
        skip_until: float | None = None,
        idle_s: float = 0.2,
        block_bytes: int = 4 << 20,
        tick_s: float = 0.02,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be > 0 or None (as fast as possible), got {speed}", key="speed")
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"no such record file {str(self.path)!r}", key="source")
        self.name = str(self.path)
        self.speed = speed
        self.batch_size = batch_size
        self.block_bytes = block_bytes
        self.skip_until = skip_until
        self.idle_s = idle_s
        self.tick_s = tick_s
        self._next_release = -math.inf
        self.skipped = 0
        #: What the reader assumed about the file (printed by ``vigil monitor``).
        self.notes: list[str] = []
        #: Records and unreadable lines to pass over first (each in file order): where a restarted
        #: monitor resumes (its checkpoint's ``input`` position).
        self.skip_records = self.skip_bad = 0
        #: Paced replay: the time of the record being waited for (every earlier one was released).
        self.horizon = math.inf

    def _parsed(self) -> Iterator:
        """The file as :class:`RecordBatch` blocks, ``skip_until`` applied."""
        from vigil.ingest.bulk import parse_block, parse_wide_block

        with open(self.path, "rb") as fh:
            head, second = fh.readline(), fh.readline()
            text = head.decode("utf-8", errors="replace")
            if _is_wide_header(text) or self._unnamed_wide(text, second.decode("utf-8", errors="replace")):
                channels = _WideParser(text).channels
                line, rest = 2, second

                def parse(block: bytes, line: int):
                    return parse_wide_block(block, channels, self.name, line)
            else:
                line, rest = 1, head + second

                def parse(block: bytes, line: int):
                    return parse_block(block, self.name, line)

            while True:
                data = fh.read(self.block_bytes)
                buf = rest + data
                cut = buf.rfind(b"\n") + 1 if data else len(buf)  # whole lines (all at the end)
                block, rest = buf[:cut], buf[cut:]
                if block:
                    yield self._skip(parse(block, line))
                    line += block.count(b"\n")
                if not data:
                    return

    def _unnamed_wide(self, head: str, second: str) -> bool:
        """A header whose first column is not named like a time, over lines that are not records:
        a wide file after all, its first column taken as time (and a note saying so)."""
        parts = [p.strip() for p in head.strip().split(",")]
        if len(parts) < 2 or head.lstrip()[:1] in ("{", "#") or _is_long_header(parts):
            return False
        try:
            _time_value(parts[0])
            return False  # a record line, not a header
        except ValueError:
            pass
        record = parse_line(second)
        if isinstance(record, Record) and not _numeric(record.channel):
            return False  # a bad first line over long records: counted as malformed like any other
        self.notes.append(
            f"{self.name}: no column is named like a time ({', '.join(sorted(TIME_NAMES)[:6])}, ...): "
            f"the first column, {parts[0]!r}, was taken as time"
        )
        return True

    def _skip(self, batch):
        if self.skip_records or self.skip_bad:
            batch, n, b = batch.drop_first(self.skip_records, self.skip_bad)
            self.skip_records, self.skip_bad, self.skipped = (
                self.skip_records - n,
                self.skip_bad - b,
                self.skipped + n + b,
            )
        if self.skip_until is None or not batch.size:
            return batch
        keep = batch.time > self.skip_until
        self.skipped += int(batch.size - keep.sum())
        return batch if keep.all() else batch.select(keep)

    def batches(self) -> Iterator:
        if self.speed is None:
            yield from self._fast()
        else:
            yield from self._paced(self.speed)

    def _fast(self) -> Iterator:
        for batch in self._parsed():
            for a in range(0, max(batch.size, 1), self.batch_size):
                part = batch.take(a, a + self.batch_size)
                if a == 0:
                    part.bad = batch.bad
                if len(part):
                    yield part

    def _paced(self, speed: float) -> Iterator:
        from vigil.ingest.bulk import RecordBatch

        start_wall = _time.monotonic()
        first: float | None = None
        due_t = -math.inf
        held = None  # a block's last time step: it may go on in the next block
        for batch, final in _with_last(self._parsed()):
            if held is not None:
                batch, held = RecordBatch.concat([held, batch]), None
            if not batch.size:
                if batch.bad:
                    yield batch
                continue
            if first is None:
                first = float(batch.time[0])
            # A record earlier than the latest time released goes out with the step it arrives in.
            step = np.maximum.accumulate(np.r_[due_t, batch.time])[1:]
            n = batch.size if final else int(np.searchsorted(step, step[-1], side="left"))
            if n < batch.size:
                held = batch.take(n, batch.size)
            now = batch.take(0, n)
            now.bad = batch.bad
            if n:
                due_t = float(step[n - 1])
            yield from self._release(now, start_wall + (step[:n] - first) / speed)

    def _release(self, batch, due: np.ndarray) -> Iterator:
        """Yield ``batch`` in slices as their due (monotonic) times pass, at most one slice per
        ``tick_s`` (records due meanwhile go together: late by at most ``tick_s``, never early);
        idle ticks while waiting."""
        pos, bad = 0, batch.bad
        while pos < batch.size:
            now = _time.monotonic()
            end = int(np.searchsorted(due, now, side="right"))
            if end > pos and now >= self._next_release:
                part = batch.take(pos, end)
                part.bad, bad = bad, []
                yield part
                pos, self._next_release = end, now + self.tick_s
                continue
            wait = max(due[pos], self._next_release) - _time.monotonic()
            self.horizon = float(batch.time[pos])
            if wait > self.idle_s:
                # Empty batches while waiting: the consumer checks staleness during gaps in the
                # data, as it would live.
                _time.sleep(self.idle_s)
                yield []
            elif wait > 0:
                _time.sleep(wait)
        if bad:
            part = batch.take(0, 0)
            part.bad = bad
            yield part

    def close(self) -> None:
        """Nothing to release: the file is closed when the replay ends."""


def _with_last(items: Iterable) -> Iterator[tuple]:
    """``(item, is_last)`` pairs."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True
