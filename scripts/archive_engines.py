"""Which embedded engine should hold the telemetry archive? The same samples into each, measured.

Workload: ``--channels`` generated 1 Hz channels for ``--hours`` hours, handed over in chunks of
``--flush-rows`` rows (what the archive writer buffers before it writes; 800 rows is its buffer at
10,000 channels), each chunk sorted by channel. Per engine: samples written per second (one thread),
bytes on disk per sample, and the time to read one channel's whole span back (median of 5)::

    python scripts/archive_engines.py --channels 200 --hours 24
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

COLS = ("time", "value", "expected", "low", "high", "level")


def chunks(channels: int, rows: int, flush_rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    period = rng.uniform(60, 6000, channels)
    for a in range(0, rows, flush_rows):
        t = np.arange(a, min(a + flush_rows, rows), dtype=np.float64) + 1.7e9
        expected = np.sin(2 * np.pi * t[:, None] / period)
        values = expected + rng.normal(0, 0.05, expected.shape)
        n = t.size
        # channel-major long form
        yield {
            "channel": np.repeat(np.arange(channels, dtype=np.int32), n),
            "time": np.tile(t, channels),
            "value": values.T.ravel(),
            "expected": expected.T.ravel().astype(np.float32),
            "low": (expected.T.ravel() - 0.3).astype(np.float32),
            "high": (expected.T.ravel() + 0.3).astype(np.float32),
            "level": np.zeros(n * channels, dtype=np.int8),
        }


def parquet_write(root: Path, data) -> None:
    for k, cols in enumerate(data):
        pq.write_table(pa.table(cols), root / f"chunk-{k:06d}.parquet", compression="zstd", row_group_size=64 * 1024)


def parquet_read(root: Path, channel: int) -> int:
    dataset = ds.dataset(root, format="parquet")
    return dataset.to_table(filter=ds.field("channel") == channel).num_rows


def duckdb_write(root: Path, data) -> None:
    import duckdb

    con = duckdb.connect(str(root / "a.duckdb"))
    con.execute(
        "create table s (channel integer, time double, value double, expected float, low float, high float, level tinyint)"
    )
    for cols in data:
        tbl = pa.table(cols)  # noqa: F841 - read by duckdb's replacement scan
        con.execute("insert into s select * from tbl")
    con.close()


def duckdb_read(root: Path, channel: int) -> int:
    import duckdb

    con = duckdb.connect(str(root / "a.duckdb"), read_only=True)
    n = len(
        con.execute(
            "select time, value, expected, low, high, level from s where channel = ? order by time", [channel]
        ).fetchnumpy()["time"]
    )
    con.close()
    return n


def sqlite_write(root: Path, data) -> None:
    con = sqlite3.connect(root / "a.sqlite")
    con.execute("pragma journal_mode=wal")
    con.execute(
        "create table s (channel integer, time real, value real, expected real, low real, high real, level integer,"
        " primary key (channel, time)) without rowid"
    )
    for cols in data:
        with con:
            con.executemany(
                "insert into s values (?,?,?,?,?,?,?)", zip(*(cols[k].tolist() for k in ("channel", *COLS)))
            )
    con.close()


def sqlite_read(root: Path, channel: int) -> int:
    con = sqlite3.connect(root / "a.sqlite")
    rows = con.execute(
        "select time, value, expected, low, high, level from s where channel = ? order by time", (channel,)
    ).fetchall()
    arr = np.asarray(rows)
    con.close()
    return len(arr)


def du(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--channels", type=int, default=200)
    p.add_argument("--hours", type=float, default=24)
    p.add_argument("--flush-rows", type=int, default=800)
    p.add_argument("--engines", default="parquet,duckdb,sqlite")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    rows = int(a.hours * 3600)
    n = rows * a.channels
    out = {"channels": a.channels, "rows": rows, "flush_rows": a.flush_rows, "engines": {}}
    for name in a.engines.split(","):
        write, read = globals()[f"{name}_write"], globals()[f"{name}_read"]
        root = Path(tempfile.mkdtemp(prefix=f"arch-{name}-"))
        gen = list(chunks(a.channels, rows, a.flush_rows))
        t0 = time.process_time(), time.perf_counter()
        write(root, iter(gen))
        cpu, wall = time.process_time() - t0[0], time.perf_counter() - t0[1]
        lat = []
        for _ in range(5):
            t1 = time.perf_counter()
            got = read(root, a.channels // 2)
            lat.append(time.perf_counter() - t1)
        assert got == rows, (name, got, rows)
        out["engines"][name] = {
            "samples_written_per_s_wall": round(n / wall),
            "write_cpu_ns_per_sample": round(cpu / n * 1e9, 1),
            "bytes_per_sample": round(du(root) / n, 2),
            "read_one_channel_ms_median": round(float(np.median(lat)) * 1e3, 1),
        }
        print(name, out["engines"][name], flush=True)
        shutil.rmtree(root)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
