"""What the monitor is given, as channel indices: records, record columns and blocks.

Every input form becomes the same arrays (time, channel index, value) or, for a block, values in
the monitor's channel order. What cannot be used is handed to the caller's counters, never dropped
silently: a record that cannot be read goes to ``bad(channel or None, message)``, a channel the
detector does not know to ``unknown(name, n)``; :func:`count_unknown` keeps at most
:data:`MAX_UNKNOWN` distinct unknown names (the rest are counted together under ``<other>``).

Kept apart from the monitor because this is the per-record Python on the input path (the rest is
array work): what it accepts and how it counts the rest is decided here, once per input form.

>>> bad, unknown = [], []
>>> t, j, v = records([(1.0, "A", 2.0), (1.0, "Z", 3.0), ("x", "A")], {"A": 0},
...                   lambda ch, msg: bad.append(ch), lambda ch, n=1: unknown.append(ch))
>>> t.tolist(), j.tolist(), v.tolist(), bad, unknown
([1.0], [0], [2.0], ['A'], ['Z'])
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from vigil.ingest.records import BadRecord, Record
from vigil.model import TelemetryBlock, same_channels

#: Most distinct unknown channel names tracked; the rest are counted together.
MAX_UNKNOWN = 1_000

Bad = Callable[[str | None, str], None]
Unknown = Callable[..., None]


def records(
    items: Sequence, index: dict[str, int], bad: Bad, unknown: Unknown
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records ``(time, channel, value)`` (or :class:`BadRecord`) as arrays, in the order given."""
    ts: list[float] = []
    js: list[int] = []
    vs: list[float] = []
    for item in items:
        if isinstance(item, BadRecord):
            bad(item.channel, str(item))
            continue
        try:
            t, channel, v = item if type(item) is Record else _as_record(item)
        except (TypeError, ValueError) as err:
            bad(_channel_of(item), f"record {item!r}: {err}")
            continue
        j = index.get(channel)
        if j is None:
            unknown(channel)
            continue
        ts.append(t)
        js.append(j)
        vs.append(v)
    return np.asarray(ts, dtype=np.float64), np.asarray(js, dtype=np.int64), np.asarray(vs, dtype=np.float64)


def columns(
    time, channel, value, names: list[str] | None, index: dict[str, int], unknown: Unknown
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Record columns as arrays of known channels. ``channel`` holds names, or, with ``names``, codes
    indexing ``names``; names are looked up once each, unknown ones counted by name."""
    t = np.asarray(time, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64)
    if names is None:
        names, codes = np.unique(np.asarray(channel, dtype=object).astype(str), return_inverse=True)
        names = names.tolist()
    else:
        codes = np.asarray(channel, dtype=np.int64)
    if not (t.shape == v.shape == codes.shape):
        raise ValueError(f"time, channel and value differ in length: {t.shape}, {codes.shape}, {v.shape}")
    lut = np.fromiter((index.get(n, -1) for n in names), np.int64, len(names))
    j = lut[codes] if codes.size else codes
    known = j >= 0
    if not known.all():
        per_name = np.bincount(codes[~known], minlength=len(names))
        for k in np.flatnonzero(per_name).tolist():
            unknown(names[k], int(per_name[k]))
        t, j, v = t[known], j[known], v[known]
    return t, j, v


def aligned(
    block: TelemetryBlock, channels: tuple[str, ...], index: dict[str, int], unknown: Unknown
) -> tuple[np.ndarray, np.ndarray]:
    """The block's values in the order of ``channels``, and which channels the block has (0/1);
    the samples of channels not in ``index`` are counted as unknown."""
    present = np.zeros(len(channels), dtype=np.int64)
    if same_channels(block.channels, channels):
        present[:] = 1
        return block.values, present
    values = np.full((block.n_samples, len(channels)), np.nan)
    for k, name in enumerate(block.channels):
        j = index.get(name)
        if j is None:
            n = int(np.isfinite(block.values[:, k]).sum())
            if n:
                unknown(name, n)
        else:
            values[:, j] = block.values[:, k]
            present[j] = 1
    return values, present


def count_unknown(counter: Counter, channel: str, n: int = 1) -> None:
    """Count ``n`` samples of an unknown channel (under ``<other>`` past :data:`MAX_UNKNOWN` names)."""
    key = channel if channel in counter or len(counter) < MAX_UNKNOWN else "<other>"
    counter[key] += n


def _as_record(item) -> tuple[float, str, float]:
    t, channel, v = item
    v = math.nan if v is None else float(v)
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"time {t!r} is not finite")
    return t, str(channel), v


def _channel_of(item) -> str | None:
    """The channel a malformed record names, if it names one."""
    try:
        return str(item[1])
    except (TypeError, IndexError, KeyError):
        return None
