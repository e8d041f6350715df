"""Where a stored checkpoint's bytes and time go, at the stream benchmark's setup.

Fits the benchmark's default detector on ``--channels`` generated channels (``vigil.bench.stream``),
scores a 200-row block and ``--ticks`` 1-row ticks through a monitor on a SQLite store (WAL,
``synchronous=FULL`` unless told), then prints: the state's bytes per top-level component and per array (as one
pickle), which share of each array's channels a tick changes, and per stored tick the time spent in
building the checkpoint, in the SQL writes and in ``COMMIT`` (WAL write, fsync, WAL checkpoint),
with the bytes written::

    python scripts/checkpoint_breakdown.py --channels 10000 --ticks 100
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from vigil.alarms import AlarmManager
from vigil.bench.stream import Series, make_config
from vigil.detect import build_detector
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor, checkpoint
from vigil.store.sqlite import SqliteStore


def _flat(obj, path: str = "") -> dict:
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _flat(value, f"{path}/{key}").items()}
    return {path: obj}


def _state_tree(monitor) -> dict:
    tree = getattr(checkpoint, "state_tree", None)  # version 2 had capture() only
    return tree(monitor) if tree is not None else pickle.loads(checkpoint.capture(monitor))


class _TimedConnection:
    """Adds up the wall time of the connection's ``COMMIT``s."""

    def __init__(self, conn, acc: dict) -> None:
        self.conn, self.acc = conn, acc

    def __getattr__(self, name: str):
        return getattr(self.conn, name)

    def execute(self, sql: str, *args):
        t0 = time.perf_counter()
        try:
            return self.conn.execute(sql, *args)
        finally:
            if sql == "COMMIT":
                self.acc["commit"] += time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--channels", type=int, default=10_000)
    p.add_argument("--ticks", type=int, default=100)
    p.add_argument("--synchronous", default="FULL", help="the store's synchronous setting (FULL, NORMAL)")
    a = p.parse_args()
    c, train = a.channels, 1000
    series = Series(c, 0, train, 2000, c // 20)
    config = make_config(series.channels)
    hist = series.block(0, train)
    detector = build_detector(config).fit(TelemetryBlock.from_arrays(hist.time, hist.values, series.channels))
    acc = {"build": 0.0, "sql": 0.0, "commit": 0.0, "bytes": [], "n": 0}
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "s.sqlite", a.synchronous) as store:
        monitor = Monitor(config, detector, AlarmManager(config, store=store, clock=lambda: 0.0), store=store)
        monitor.feed_block(series.block(train, train + 200))
        tree = _state_tree(monitor)
        size = len(pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL))
        print(f"state as one pickle: {size:,} B = {size / c:.0f} B/channel")
        parts = {k: len(pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)) / c for k, v in tree.items()}
        print(
            "per component, B/channel:", {k: round(v) for k, v in sorted(parts.items(), key=lambda x: -x[1]) if v >= 1}
        )
        window = [k for k in _flat(tree) if k.startswith("/_recent/")]
        print(f"duplicate window: {len(window)} rows of one byte per channel (one new row per tick)")
        before = {
            k: np.array(v, copy=True)
            for k, v in _flat(tree).items()
            if isinstance(v, np.ndarray) and not k.startswith("/_recent/")
        }
        monitor.feed_block(series.block(train + 200, train + 201))
        after = _flat(_state_tree(monitor))
        print("array: B/channel, share of channels one tick changes")
        for k, old in sorted(before.items(), key=lambda x: -x[1].nbytes):
            new = after.get(k)
            if old.nbytes >= 4096 and isinstance(new, np.ndarray) and new.shape == old.shape and old.ndim:
                rows = old.reshape(old.shape[0], -1).view(np.uint8) != new.reshape(new.shape[0], -1).view(np.uint8)
                print(f"  {k:34s} {old.nbytes / c:6.1f}  {rows.any(axis=1).mean():.3f}")
        # The code before the checkpoint in parts (version 2) had capture() only: this script measures both.
        for_store, save = getattr(checkpoint, "for_store", checkpoint.capture), SqliteStore.save_checkpoint

        def timed_for_store(m):
            t0 = time.perf_counter()
            state = for_store(m)
            acc["build"] += time.perf_counter() - t0
            acc["bytes"].append(len(state) if isinstance(state, bytes) else state.nbytes)
            acc["n"] += 1
            return state

        def timed_save(self, *args, **kwargs):
            t0 = time.perf_counter()
            save(self, *args, **kwargs)
            acc["sql"] += time.perf_counter() - t0

        checkpoint.for_store = checkpoint.capture = timed_for_store
        SqliteStore.save_checkpoint = timed_save
        store._conn = _TimedConnection(store._conn, acc)
        lat, cpu = [], []
        for k in range(train + 201, train + 201 + a.ticks):
            t0, c0 = time.perf_counter(), time.thread_time()
            monitor.feed_block(series.block(k, k + 1))
            lat.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
    n = max(acc["n"], 1)
    print(
        f"{a.ticks} stored ticks, {acc['n']} checkpointed: tick p50 {np.percentile(lat, 50) * 1e3:.1f} ms, "
        f"p99 {np.percentile(lat, 99) * 1e3:.1f} ms (thread CPU p50 {np.percentile(cpu, 50) * 1e3:.1f}, p99 "
        f"{np.percentile(cpu, 99) * 1e3:.1f} ms); per checkpoint: built in {acc['build'] / n * 1e3:.2f} ms, "
        f"SQL writes {acc['sql'] / n * 1e3:.2f} ms, COMMIT {acc['commit'] / n * 1e3:.2f} ms, "
        f"{np.median(acc['bytes'] or [0]) / 1e6:.2f} MB written (median)"
    )


if __name__ == "__main__":
    main()
