"""Loader for the telemanom layout (NASA SMAP/MSL, Hundman et al., KDD 2018).

Layout::

    DIR/train/<chan>.npy          float [n, 1 + k]: column 0 the value, columns 1.. command flags
    DIR/test/<chan>.npy           same layout
    DIR/labeled_anomalies.csv     chan_id, spacecraft, anomaly_sequences, class, num_values

Two quirks of the published label file, handled on purpose:

* **P-2 has two rows** (windows [5350, 6575] and [5300, 6420]). telemanom evaluates each row of the
  file separately, so its published totals count 105 labelled sequences with P-2 twice. The loader
  keeps both rows (``TelemanomDataset.label_rows``) so Vigil can be scored by the same protocol, and
  also gives the per-channel union (``TelemanomChannel.anomalies``: P-2 -> one sequence [5300, 6575]).
* **T-10 has data but no label row.** It is loaded, fitted and scored like every channel, with no
  labelled anomaly; its spacecraft is inferred from its width (55 columns: MSL). The telemanom
  protocol does not score it (no row); the strict protocol counts its detections as false positives.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vigil.errors import DataError
from vigil.model import TelemetryBlock

_WIDTH_TO_SPACECRAFT = {25: "SMAP", 55: "MSL"}


@dataclass(frozen=True)
class LabelRow:
    """One row of ``labeled_anomalies.csv``."""

    chan_id: str
    spacecraft: str
    sequences: tuple[tuple[int, int], ...]
    classes: tuple[str, ...]
    num_values: int
    line: int


@dataclass
class TelemanomChannel:
    """A channel's train and test data (value + command flags) and its labelled anomalies."""

    chan_id: str
    spacecraft: str
    train: TelemetryBlock
    test: TelemetryBlock
    anomalies: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class TelemanomDataset:
    channels: list[TelemanomChannel]
    label_rows: list[LabelRow]
    notes: list[str]

    def channel(self, chan_id: str) -> TelemanomChannel:
        for ch in self.channels:
            if ch.chan_id == chan_id:
                return ch
        raise KeyError(chan_id)


def read_labels(path: Path) -> list[LabelRow]:
    """Parse ``labeled_anomalies.csv``; malformed rows raise :class:`DataError` naming the line."""
    rows: list[LabelRow] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"chan_id", "spacecraft", "anomaly_sequences"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"missing columns {sorted(missing)}", source=str(path))
        for line, rec in enumerate(reader, start=2):
            chan = (rec["chan_id"] or "").strip()
            try:
                seqs = ast.literal_eval(rec["anomaly_sequences"])
                pairs = tuple((int(a), int(b)) for a, b in seqs)
            except (ValueError, SyntaxError, TypeError) as err:
                raise DataError(
                    f"unreadable anomaly_sequences: {err}", source=str(path), channel=chan, row=line
                ) from None
            for a, b in pairs:
                if a < 0 or b < a:
                    raise DataError(f"bad sequence [{a}, {b}]", source=str(path), channel=chan, row=line)
            classes = tuple(c.strip() for c in (rec.get("class") or "").strip("[]").split(",") if c.strip())
            num = rec.get("num_values") or "0"
            rows.append(LabelRow(chan, rec["spacecraft"].strip(), pairs, classes, int(num), line))
    return rows


def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of inclusive intervals.

    >>> merge_intervals([(5350, 6575), (5300, 6420), (10, 20)])
    [(10, 20), (5300, 6575)]
    """
    out: list[list[int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def load_array(path: Path, chan_id: str) -> np.ndarray:
    """A channel's ``.npy`` as float64 ``[n, 1 + k]``; non-finite or ill-shaped data raise with the row."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read: {err}", source=str(path), channel=chan_id) from None
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise DataError(
            f"expected a 2-D array [samples, 1 + commands], got shape {arr.shape}", source=str(path), channel=chan_id
        )
    if arr.shape[0] == 0:
        raise DataError("empty array", source=str(path), channel=chan_id)
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"non-numeric dtype {arr.dtype}", source=str(path), channel=chan_id)
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(x) for x in np.argwhere(bad)[0])
        raise DataError(
            f"non-finite value {arr[row, col]} in column {col} ({int(bad.sum())} in all)",
            source=str(path),
            channel=chan_id,
            row=row,
        )
    return arr


def _block(arr: np.ndarray, chan_id: str, source: str) -> TelemetryBlock:
    n = arr.shape[0]
    return TelemetryBlock(
        time=np.arange(n, dtype=np.float64),
        values=arr[:, :1].copy(),
        channels=(chan_id,),
        commands=arr[:, None, 1:].copy(),
        source=source,
    )


def load_telemanom(root: str | Path, channels: list[str] | None = None) -> TelemanomDataset:
    """Load every channel that has both a train and a test array (or only ``channels``)."""
    root = Path(root)
    for sub in ("train", "test"):
        if not (root / sub).is_dir():
            raise DataError(f"no {sub}/ folder (expected the telemanom layout)", source=str(root))
    label_path = root / "labeled_anomalies.csv"
    if not label_path.is_file():
        raise DataError("no labeled_anomalies.csv", source=str(root))
    rows = read_labels(label_path)
    by_chan: dict[str, list[LabelRow]] = {}
    for r in rows:
        by_chan.setdefault(r.chan_id, []).append(r)

    names = sorted(p.stem for p in (root / "test").glob("*.npy"))
    if channels is not None:
        unknown = sorted(set(channels) - set(names))
        if unknown:
            raise DataError(f"no test array for channels {unknown}", source=str(root / "test"))
        names = [n for n in names if n in set(channels)]
    notes = []
    for chan, chan_rows in by_chan.items():
        if len(chan_rows) > 1:
            lines = ", ".join(str(r.line) for r in chan_rows)
            notes.append(
                f"{chan}: {len(chan_rows)} label rows (lines {lines}); scored per row as telemanom did, union for the strict protocol"
            )
    loaded = []
    for chan in names:
        train = load_array(root / "train" / f"{chan}.npy", chan)
        test = load_array(root / "test" / f"{chan}.npy", chan)
        if train.shape[1] != test.shape[1]:
            raise DataError(f"train has {train.shape[1]} columns, test {test.shape[1]}", source=str(root), channel=chan)
        chan_rows = by_chan.get(chan, [])
        if chan_rows:
            spacecraft = chan_rows[0].spacecraft
        else:
            spacecraft = _WIDTH_TO_SPACECRAFT.get(test.shape[1], "unknown")
            notes.append(
                f"{chan}: no label row; scored with no labelled anomaly, spacecraft {spacecraft} from its {test.shape[1]} columns"
            )
        anomalies = merge_intervals([s for r in chan_rows for s in r.sequences])
        for a, b in anomalies:
            if b >= test.shape[0]:
                raise DataError(
                    f"labelled sequence [{a}, {b}] beyond the {test.shape[0]} test samples",
                    source=str(label_path),
                    channel=chan,
                )
        loaded.append(
            TelemanomChannel(
                chan_id=chan,
                spacecraft=spacecraft,
                train=_block(train, chan, str(root / "train" / f"{chan}.npy")),
                test=_block(test, chan, str(root / "test" / f"{chan}.npy")),
                anomalies=anomalies,
            )
        )
    return TelemanomDataset(channels=loaded, label_rows=rows, notes=notes)
