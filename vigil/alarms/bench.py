"""Cost of ``AlarmManager.update()``: the vectorised nominal path and the per-transition Python path.

    python -m vigil.alarms.bench --channels 10000

Each case feeds 1-row ticks of ``channels`` channels with synthetic detector levels (no detector
runs: this times the alarm layer alone) and reports the median and 99th-percentile time per tick:

* ``nominal``: every channel nominal (the fast path);
* ``steady``: 1% of the channels in a steady alarm (vectorised run/last-value/peak bookkeeping);
* ``flipping``: 1% of the channels alternate warning / nominal every tick, so every tick raises or
  reactivates, or returns to normal, that many alarms (the Python path, audit and events).

Each case runs against the in-memory store and the SQLite store (WAL, synchronous=FULL) in a
temporary directory. Last, the latency of one ``acknowledge()`` (one committed transaction) on
SQLite with synchronous=FULL and =NORMAL: the price of surviving a power cut, not just a kill.
And a loss of signal: every channel reported stale, then fresh, inside one store transaction (as a
monitor does), SQLite.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vigil.alarms.manager import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.base import Scores
from vigil.model import TelemetryBlock


def time_case(case: str, channels: int, ticks: int, store=None) -> np.ndarray:
    """Milliseconds per ``update()`` call, one per tick after a short warm-up."""
    names = [f"ch{i}" for i in range(channels)]
    cfg = MonitorConfig.from_dict({"channels": {n: {"subsystem": f"s{i % 50}"} for i, n in enumerate(names)}})
    manager = AlarmManager(cfg, store)
    hot = max(1, channels // 100)
    rng = np.random.default_rng(0)
    out = []
    for t in range(ticks + 5):
        block = TelemetryBlock.from_arrays([float(t)], rng.normal(size=(1, channels)), names)
        scores = Scores.empty(1, channels, "limits")
        scores.score[:] = 0.5
        if case == "steady":
            scores.level[0, :hot] = 2
        elif case == "flipping":
            scores.level[0, :hot] = 2 * (t % 2)
        start = time.perf_counter()
        manager.update(block, scores)
        out.append(time.perf_counter() - start)
    return np.array(out[5:]) * 1e3


def time_acknowledge(store, alarms: int = 100) -> np.ndarray:
    """Milliseconds per ``acknowledge()`` of ``alarms`` open alarms."""
    names = [f"ch{i}" for i in range(alarms)]
    manager = AlarmManager(MonitorConfig.from_dict({"channels": {n: {"subsystem": "s"} for n in names}}), store)
    scores = Scores.empty(1, alarms, "limits")
    scores.level[:] = 2
    manager.update(TelemetryBlock.from_arrays([0.0], np.zeros((1, alarms)), names), scores)
    out = []
    for alarm in manager.alarms():
        start = time.perf_counter()
        manager.acknowledge(alarm.id, "bench")
        out.append(time.perf_counter() - start)
    return np.array(out) * 1e3


def time_loss_of_signal(channels: int, store) -> tuple[float, float]:
    """Seconds to report every channel stale, then fresh, each inside one transaction."""
    names = [f"ch{i}" for i in range(channels)]
    cfg = MonitorConfig.from_dict({"channels": {n: {"subsystem": f"s{i % 50}"} for i, n in enumerate(names)}})
    manager = AlarmManager(cfg, store)
    out = []
    for report in (lambda n: manager.report_stale(n, 100.0, 90.0), lambda n: manager.report_fresh(n, 101.0)):
        start = time.perf_counter()
        with store.transaction():
            for name in names:
                report(name)
        out.append(time.perf_counter() - start)
    return out[0], out[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=200)
    args = parser.parse_args(argv)
    from vigil.store.sqlite import SqliteStore  # the benchmark, not the alarm layer, picks the store

    print(f"{args.channels} channels, 1-row ticks, {args.ticks} ticks per case")
    print("case      store    median ms  p99 ms")
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("nominal", "steady", "flipping"):
            for label in ("memory", "sqlite"):
                store = SqliteStore(Path(tmp) / f"{case}.sqlite") if label == "sqlite" else None
                ms = time_case(case, args.channels, args.ticks, store)
                print(f"{case:9} {label:8} {np.median(ms):9.3f}  {np.percentile(ms, 99):6.3f}")
        for sync in ("FULL", "NORMAL"):
            ms = time_acknowledge(SqliteStore(Path(tmp) / f"ack-{sync}.sqlite", synchronous=sync))
            print(f"{'ack':9} {sync.lower():8} {np.median(ms):9.3f}  {np.percentile(ms, 99):6.3f}")
        stale, fresh = time_loss_of_signal(args.channels, SqliteStore(Path(tmp) / "los.sqlite"))
        print(f"loss of signal, {args.channels} channels: all stale {stale:.2f} s, all fresh again {fresh:.2f} s")


if __name__ == "__main__":
    main()
