"""The telemetry data model shared by every layer: a block of samples for many channels.

A :class:`TelemetryBlock` is what ingest produces and what detectors consume. All channels in a
block share one time axis; values of a channel that did not report at a time step are NaN and are
counted by the detectors as missing, never silently filled.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from vigil.errors import DataError


@dataclass(frozen=True)
class TelemetryBlock:
    """Samples of ``c`` channels at ``n`` shared time steps.

    Attributes:
        time: float64 ``[n]``, strictly increasing (seconds, or sample index for indexed data).
        values: float64 ``[n, c]``; NaN marks a missing sample.
        channels: ``c`` channel names, unique.
        commands: optional float64 ``[n, c, k]`` context inputs per channel (for example the
            one-hot command flags of the telemanom data), used by detectors that predict a channel
            from its commands.
        source: where the block came from, used in error messages.

    >>> b = TelemetryBlock.from_arrays([0.0, 1.0, 2.0], [[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]], ["a", "b"])
    >>> b.n_samples, b.n_channels
    (3, 2)
    >>> b.column("b").tolist()
    [5.0, 6.0, 7.0]
    >>> b.slice(1, 3).time.tolist()
    [1.0, 2.0]
    """

    time: np.ndarray
    values: np.ndarray
    channels: tuple[str, ...]
    commands: np.ndarray | None = None
    source: str = "<memory>"
    _index: dict[str, int] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self._validate()
        object.__setattr__(self, "_index", {name: i for i, name in enumerate(self.channels)})

    @classmethod
    def from_arrays(
        cls,
        time,
        values,
        channels,
        commands=None,
        source: str = "<memory>",
    ) -> TelemetryBlock:
        """Build a block from array-likes, converting to float64 and checking shapes."""
        time_arr = np.asarray(time, dtype=np.float64)
        values_arr = np.asarray(values, dtype=np.float64)
        if values_arr.ndim == 1:
            values_arr = values_arr[:, None]
        cmd_arr = None if commands is None else np.asarray(commands, dtype=np.float64)
        return cls(time_arr, values_arr, tuple(str(c) for c in channels), cmd_arr, source)

    def _validate(self) -> None:
        where = self.source
        if self.time.ndim != 1:
            raise DataError(f"time must be 1-D, got shape {self.time.shape}", source=where)
        if self.values.ndim != 2:
            raise DataError(f"values must be 2-D [samples, channels], got {self.values.shape}", source=where)
        n, c = self.values.shape
        if self.time.shape[0] != n:
            raise DataError(f"{self.time.shape[0]} timestamps for {n} rows of values", source=where)
        if len(self.channels) != c:
            raise DataError(f"{len(self.channels)} channel names for {c} value columns", source=where)
        if len(set(self.channels)) != c:
            dup = sorted({x for x in self.channels if self.channels.count(x) > 1})
            raise DataError(f"duplicate channel names {dup}", source=where)
        if not np.all(np.isfinite(self.time)):
            row = int(np.flatnonzero(~np.isfinite(self.time))[0])
            raise DataError("non-finite timestamp", source=where, row=row)
        if n > 1:
            steps = np.diff(self.time)
            bad = np.flatnonzero(steps <= 0)
            if bad.size:
                row = int(bad[0]) + 1
                kind = "duplicate" if steps[bad[0]] == 0 else "out-of-order"
                raise DataError(f"{kind} timestamp {float(self.time[row])}", source=where, row=row)
        if self.commands is not None and (self.commands.ndim != 3 or self.commands.shape[:2] != (n, c)):
            raise DataError(
                f"commands must be [samples, channels, k] = [{n}, {c}, k], got {self.commands.shape}",
                source=where,
            )

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[1])

    def index_of(self, channel: str) -> int:
        try:
            return self._index[channel]
        except KeyError:
            raise DataError(f"no channel {channel!r}", source=self.source) from None

    def column(self, channel: str) -> np.ndarray:
        return self.values[:, self.index_of(channel)]

    def slice(self, start: int, stop: int) -> TelemetryBlock:
        """Rows ``start:stop`` as a new block (views, no copy)."""
        cmd = None if self.commands is None else self.commands[start:stop]
        return TelemetryBlock(self.time[start:stop], self.values[start:stop], self.channels, cmd, self.source)

    def select(self, channels: list[str] | tuple[str, ...]) -> TelemetryBlock:
        """A block with only the named channels, in the order given."""
        idx = [self.index_of(c) for c in channels]
        cmd = None if self.commands is None else self.commands[:, idx]
        return TelemetryBlock(self.time, self.values[:, idx], tuple(channels), cmd, self.source)

    def missing_counts(self) -> dict[str, int]:
        """Number of NaN (missing) samples per channel; infinities count as missing too."""
        bad = ~np.isfinite(self.values)
        return {name: int(n) for name, n in zip(self.channels, bad.sum(axis=0)) if n}


def format_time(t: float | None) -> str:
    """Epoch seconds as a UTC clock time (ISO 8601, milliseconds when not whole); small numbers
    (sample indices, scenario seconds) as they are. The one time vocabulary of every text Vigil
    prints: explanations, incidents, the audit trail, the CLI.

    >>> format_time(1044107612.0), format_time(1044107612.25), format_time(563.0), format_time(None)
    ('2003-02-01T13:53:32Z', '2003-02-01T13:53:32.250Z', 't=563', 't=-')
    """
    if t is None or not math.isfinite(t):
        return "t=-"
    if t > 1e8:  # after 1973: a Unix time, not an index
        whole = math.floor(t)
        ms = round((t - whole) * 1000)
        if ms == 1000:
            whole, ms = whole + 1, 0
        clock = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{clock}.{ms:03d}Z" if ms else f"{clock}Z"
    return f"t={t:.6g}"


def iso_time(t: float | None) -> str | None:
    """A Unix time as a UTC clock time for JSON (beside the number); ``None`` for anything else.

    >>> iso_time(1044107612.0), iso_time(563.0), iso_time(None)
    ('2003-02-01T13:53:32Z', None, None)
    """
    if t is None or not math.isfinite(t) or t <= 1e8:
        return None
    return format_time(t)


def format_span(seconds: float | None) -> str:
    """A duration for people: seconds, minutes or hours.

    >>> format_span(4.0), format_span(90.0), format_span(7200.0), format_span(float("nan"))
    ('4 s', '1.5 min', '2 h', '-')
    """
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if abs(seconds) < 60:
        return f"{seconds:.3g} s"
    if abs(seconds) < 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


#: C0 and C1 control characters (and DEL): terminal escape sequences start with them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    r"""``text`` with control characters escaped (``\x1b``...), so a channel name or a message from
    the network cannot drive the terminal (colours, cursor moves, a forged line) when printed.

    >>> print(printable("T1\x1b[31mRED\nfake"), printable("plain name"))
    T1\x1b[31mRED\nfake plain name
    """
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


#: Pairs of channel tuples found equal, by id, both tuples kept (so neither id is reused while here).
_EQUAL: dict[tuple[int, int], tuple[tuple[str, ...], tuple[str, ...]]] = {}


def same_channels(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """``a == b`` for channel tuples, compared name by name once per pair of tuple objects: a source sends its blocks
    with one tuple, and 100,000 names compared on every tick cost milliseconds.

    >>> same_channels(("a", "b"), tuple("ab")), same_channels(("a",), ("b",))
    (True, False)
    """
    if a is b or (id(a), id(b)) in _EQUAL:
        return True
    if a != b:
        return False
    if type(a) is tuple and type(b) is tuple:  # immutable: equal for as long as both live
        if len(_EQUAL) >= 8:  # a source making a new tuple per block: keep few alive
            _EQUAL.clear()
        _EQUAL[(id(a), id(b))] = (a, b)
    return True
