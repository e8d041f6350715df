"""Decoded packets as tables: the long form (one row per value) and the wide form (one column per channel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vigil.errors import ConfigError
from vigil.ingest.ccsds.decode import DecodedPackets, PacketDecoder
from vigil.model import TelemetryBlock


def write_long(packets: DecodedPackets, decoder: PacketDecoder, path: str | Path, first_index: int = 0) -> int:
    """Write every decoded value, one row each: ``time, channel, value, apid, sequence_count, packet``.

    ``packet`` is the packet's position among the decoded packets (from ``first_index``), so values
    of packets with the same time stay apart. Rows come in packet order, then the packet's channel
    order. Binary and string parameters (when the decoder decoded them) add a ``text`` column:
    lowercase hex for binary, the text for strings, ``value`` empty on their rows. The form
    :func:`vigil.ingest.tabular.read_table` reads (e.g. as nominal history for ``--fit``, which
    leaves text rows out). Returns the number of rows written.
    """
    parts, texts = [], []
    index = first_index + np.arange(len(packets), dtype=np.int64)
    n_num = len(decoder.channels)
    for kd in np.unique(packets.kind).tolist():
        rows = np.flatnonzero(packets.kind == kd)
        cols = decoder.columns(kd)
        if cols.size:
            parts.append(_part(packets, index, rows, cols, packets.values[rows[:, None], cols[None, :]].ravel()))
    if packets.text is not None:
        for j in range(len(decoder.text_channels)):
            rows = np.flatnonzero(packets.text[:, j] != None)  # noqa: E711 - elementwise on an object array
            if rows.size:
                parts.append(_part(packets, index, rows, np.array([n_num + j]), np.full(rows.size, np.nan)))
                texts.append((len(parts) - 1, packets.text[rows, j]))
    cat = [np.concatenate([p[i] for p in parts]) if parts else np.empty(0) for i in range(6)]
    order = np.lexsort((np.arange(cat[0].size), cat[0])) if parts else np.empty(0, dtype=np.int64)
    names = np.asarray((*decoder.channels, *decoder.text_channels), dtype=object)
    code = cat[1][order].astype(np.int64)
    channel = pa.array(names[code], pa.string())
    value = pa.array(cat[3][order], pa.float64(), mask=code >= n_num if texts else None)
    del code
    columns = {
        "time": pa.array(cat[2][order], pa.float64()),
        "channel": channel,
        "value": value,
        "apid": pa.array(cat[4][order].astype(np.int32), pa.int32()),
        "sequence_count": pa.array(cat[5][order].astype(np.int32), pa.int32()),
        "packet": pa.array(cat[0][order].astype(np.int64), pa.int64()),
    }
    if texts:
        text = np.full(cat[0].size, None, dtype=object)
        starts = np.cumsum([0, *(p[0].size for p in parts)])
        for k, values in texts:
            text[starts[k] : starts[k + 1]] = values
        columns["text"] = pa.array(text[order], pa.string())
    table = pa.table(columns)
    _write(table, path)
    return table.num_rows


def _part(packets: DecodedPackets, index: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray):
    m = cols.size
    return (
        np.repeat(index[rows], m),
        np.tile(cols, rows.size),
        np.repeat(packets.time[rows], m),
        values,
        np.repeat(packets.apid[rows], m),
        np.repeat(packets.seq[rows], m),
    )


def write_wide(block: TelemetryBlock, path: str | Path) -> int:
    """Write a block as one column per channel (``time`` first). Returns the number of rows."""
    table = pa.table({"time": block.time, **{c: block.values[:, j] for j, c in enumerate(block.channels)}})
    _write(table, path)
    return table.num_rows


def _write(table: pa.Table, path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        pq.write_table(table, path)
    elif path.suffix.lower() == ".csv":
        pacsv.write_csv(table, path)
    else:
        raise ConfigError(f"unknown table format {path.suffix!r}: use .parquet or .csv", key="out", source=str(path))
