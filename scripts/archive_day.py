"""One channel's day at 1 Hz read back from the archive: how long, and how many bytes a sample takes.

Writes ``--hours`` hours of ``--channels`` generated 1 Hz channels (sine + noise values, the band
of a detector around them, level 0) through :class:`vigil.archive.ArchiveWriter` in 100-row
blocks, as the monitor hands them over, then reads one channel's whole span raw and decimated to
2,000 points, five times each (median)::

    python scripts/archive_day.py --channels 10000 --hours 24 --out archive-day.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vigil.archive import ArchiveReader, ArchiveWriter
from vigil.detect.base import Scores

T0 = 1_764_460_800.0  # 2025-11-30T00:00:00Z


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--channels", type=int, default=10_000)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vigil-archive-day-"))
    names = [f"ch{j:05d}" for j in range(a.channels)]
    rng = np.random.default_rng(0)
    period = rng.uniform(60.0, 6000.0, a.channels)
    rows = int(a.hours * 3600)
    wall = cpu = 0.0
    with ArchiveWriter(root, names) as writer:
        for start in range(0, rows, 100):
            t = T0 + np.arange(start, min(start + 100, rows), dtype=np.float64)
            expected = np.sin(2 * np.pi * t[:, None] / period)
            scores = Scores.empty(t.size, a.channels, "bench")
            scores.expected[:] = expected
            scores.low[:], scores.high[:] = expected - 0.3, expected + 0.3
            values = expected + rng.normal(0.0, 0.05, expected.shape)
            w0, c0 = time.perf_counter(), time.process_time()
            writer.append(t, values, scores)
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
        w0 = time.perf_counter()
        writer.flush(timeout=None)
        backlog = time.perf_counter() - w0
        status = writer.status()
    files = sorted(root.rglob("*.arrows"))
    reader = ArchiveReader(root)
    channel = names[len(names) // 2]
    raw, decimated = [], []
    for _ in range(5):
        t = time.perf_counter()
        n = reader.read(channel)["time"].size
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        reader.history(channel, max_points=2000)
        decimated.append(time.perf_counter() - t)
    result = {
        "channels": a.channels,
        "hours": a.hours,
        "samples": status["samples_written"],
        "bytes_on_disk": sum(f.stat().st_size for f in files),
        "bytes_per_sample": round(sum(f.stat().st_size for f in files) / status["samples_written"], 2),
        "files": len(files),
        "monitor_thread_ns_per_sample": round(wall / status["samples_written"] * 1e9, 1),
        "writer_backlog_at_end_s": round(backlog, 1),
        "read_one_channel_samples": n,
        "read_one_channel_ms_median": round(float(np.median(raw)) * 1e3, 1),
        "read_one_channel_decimated_ms_median": round(float(np.median(decimated)) * 1e3, 1),
        "dropped": status["dropped"],
        "errors": status["errors"],
    }
    print(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
