"""Streaming benchmark: many channels through the monitor, detector and alarm manager.

Generates ``channels`` synthetic channels (an orbit-like sine per channel plus noise, with limits
and a few injected excursions so the alarm manager has work), fits the default detector
(:func:`vigil.detect.build_detector`) on nominal history, then measures:

* ``samples_per_s``: channel-samples scored per second, fed as blocks of ``block_rows`` rows
  through :meth:`vigil.monitor.Monitor.feed_block` (detector + alarm manager + counters + history),
  the median of ``repeats`` passes of ``rows`` rows (each pass's rate is listed too);
* ``tick_latency_*_ms``: wall time of one 1-row tick of every channel (a 1 Hz tick scored live),
  over ``ticks`` ticks after each pass, pooled; ``*_sqlite``: the same ticks with the alarms and
  the checkpoint committed to a SQLite store (WAL, ``synchronous=FULL``) on every tick;
* ``ms_per_million_samples``: where the block passes spent their time (detector ``score``,
  manager ``update``, the monitor's own gridding, counters, history and staleness);
* ``record_lines_parsed_per_s`` and ``records_fed_per_s``: the record path of file/socket sources,
  parsing CSV record lines, then gridding and scoring parsed records (``record_rows`` rows);
* ``state_bytes_per_channel``: detector, manager and monitor state (without the plotting history,
  which is reported separately as ``history_bytes_per_channel``);
* with ``archive``, the archive writer (:mod:`vigil.archive`) keeps every scored sample in a
  temporary folder while the passes run: ``archive.samples_per_s_incl_backlog`` adds the time
  the writer still needed after the last pass, ``archive.bytes_per_sample`` is on disk.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from vigil.config import MonitorConfig
from vigil.model import TelemetryBlock


def make_channels(n_channels: int, n_rows: int, seed: int) -> TelemetryBlock:
    """Sines of varied period and phase plus noise, one per channel, 1 Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows, dtype=np.float64)
    period = rng.uniform(60.0, 600.0, n_channels)
    phase = rng.uniform(0.0, 2 * np.pi, n_channels)
    values = np.sin(2 * np.pi * t[:, None] / period + phase) + rng.normal(0.0, 0.05, (n_rows, n_channels))
    names = [f"ch{j:05d}" for j in range(n_channels)]
    return TelemetryBlock.from_arrays(t, values, names, source="bench")


def make_config(channels: tuple[str, ...]) -> MonitorConfig:
    """Every channel with limits, a 1 Hz expected rate and a subsystem of 100 channels."""
    table = {
        name: {
            "subsystem": f"sub{j // 100:03d}",
            "rate_hz": 1.0,
            "limits": {"warning": [-1.5, 1.5], "critical": [-3.0, 3.0]},
        }
        for j, name in enumerate(channels)
    }
    return MonitorConfig.from_dict({"channels": table})


def _inject(block: TelemetryBlock, seed: int, n_events: int) -> TelemetryBlock:
    """Excursions of 20 samples on random channels (limit and forecast alarms)."""
    rng = np.random.default_rng(seed)
    values = block.values.copy()
    n, c = values.shape
    for _ in range(n_events):
        j, i = int(rng.integers(c)), int(rng.integers(0, max(1, n - 20)))
        values[i : i + 20, j] += rng.choice([-4.0, 4.0])
    return TelemetryBlock(block.time, values, block.channels, source=block.source)


def _array_bytes(obj) -> int:
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


class _Timed:
    """Forwards ``method`` calls of ``target`` and adds up their wall time (for the cost breakdown)."""

    def __init__(self, target, method: str) -> None:
        self.target, self.method, self.seconds = target, method, 0.0

    def __getattr__(self, name: str):
        attr = getattr(self.target, name)
        if name != self.method:
            return attr

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def _record_path(monitor_factory, block: TelemetryBlock) -> dict:
    """Lines parsed per second and parsed records gridded + scored per second (one core)."""
    from vigil.ingest.records import Record, parse_line

    recs = [Record(float(t), ch, float(v)) for t, row in zip(block.time, block.values.tolist())
            for ch, v in zip(block.channels, row)]  # fmt: skip
    lines = [f"{r.time!r},{r.channel},{r.value!r}" for r in recs]
    t0 = time.perf_counter()
    for line in lines:
        parse_line(line)
    parse_s = time.perf_counter() - t0
    monitor = monitor_factory()
    t0 = time.perf_counter()
    for a in range(0, len(recs), 50_000):
        monitor.feed_records(recs[a : a + 50_000])
    monitor.flush()
    feed_s = time.perf_counter() - t0
    return {"record_lines_parsed_per_s": round(len(lines) / parse_s), "records_fed_per_s": round(len(recs) / feed_s)}


def _ticks_with_sqlite(config: MonitorConfig, detector, rows: TelemetryBlock) -> np.ndarray:
    """Tick latencies of a monitor whose alarms and checkpoint go to a SQLite file (WAL, FULL)."""
    from vigil.alarms import AlarmManager
    from vigil.monitor import Monitor
    from vigil.store.sqlite import SqliteStore

    detector.reset()
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "bench.sqlite") as store:
        monitor = Monitor(config, detector, AlarmManager(config, store=store, clock=lambda: 0.0), store=store)
        lat = np.empty(rows.n_samples)
        for k in range(rows.n_samples):
            tick = rows.slice(k, k + 1)
            t0 = time.perf_counter()
            monitor.feed_block(tick)
            lat[k] = time.perf_counter() - t0
    return lat


def _archive_writer(monitor):
    """An archive in a temporary folder, fed by ``monitor`` (removed at the end of the run)."""
    from vigil.archive import ArchiveWriter

    folder = tempfile.mkdtemp(prefix="vigil-bench-archive-")
    writer = ArchiveWriter(folder, monitor.channels)
    monitor.add_block_sink(writer)
    return writer


def _archive_figures(writer, monitor, rates: list[float], per_pass: int) -> dict:
    """What archiving cost: the backlog left after the passes, bytes per sample, a channel read back."""
    import shutil

    from vigil.archive import ArchiveReader

    t0 = time.perf_counter()
    writer.flush(timeout=None)
    backlog_s = time.perf_counter() - t0
    passes_s = per_pass / np.asarray(rates)
    reader = ArchiveReader(writer.root, writer)
    t0 = time.perf_counter()
    got = reader.history(monitor.channels[len(monitor.channels) // 2], max_points=2000)
    read_ms = (time.perf_counter() - t0) * 1e3
    status = writer.status()
    writer.close()
    shutil.rmtree(writer.root, ignore_errors=True)
    return {
        "archive": {
            "samples_written": status["samples_written"],
            "bytes_per_sample": round(status["bytes"] / max(status["samples_written"], 1), 2),
            "files_written": status["files"],
            "dropped": status["dropped"],
            "errors": status["errors"],
            "backlog_flush_s": round(backlog_s, 3),
            "samples_per_s_incl_backlog": round(len(rates) * per_pass / (passes_s.sum() + backlog_s)),
            "read_one_channel_ms": round(read_ms, 1),
            "read_points": len(got["time"]),
        }
    }


def run_stream_bench(
    channels: int = 10_000,
    rows: int = 1_000,
    block_rows: int = 100,
    ticks: int = 300,
    train_rows: int = 1_000,
    repeats: int = 3,
    record_rows: int = 50,
    seed: int = 0,
    archive: bool = False,
    history_points: int | None = None,
) -> dict:
    """Run the benchmark and return its results (see the module docstring)."""
    from vigil.alarms import AlarmManager
    from vigil.detect import build_detector
    from vigil.monitor import Monitor

    per_pass = rows + ticks
    warm = 1 + block_rows
    # One series per channel, split in time: the monitor scores the continuation of what it learned.
    series = make_channels(channels, train_rows + warm + repeats * per_pass, seed)
    train = series.slice(0, train_rows)
    config = make_config(train.channels)
    started = time.perf_counter()
    detector = build_detector(config).fit(train)
    fit_s = time.perf_counter() - started
    manager = AlarmManager(config, clock=lambda: 0.0)
    timed_det, timed_man = _Timed(detector, "score"), _Timed(manager, "update")
    monitor = Monitor(config, timed_det, timed_man, **({} if history_points is None else {"history_points": history_points}))
    writer = _archive_writer(monitor) if archive else None
    test = _inject(series.slice(train_rows, series.n_samples), seed + 1, channels // 20)

    # Warm-up, not timed: numba compiles each kernel for 1-row and many-row blocks, and the
    # manager's raise path runs for the first time.
    monitor.feed_block(test.slice(0, 1))
    monitor.feed_block(test.slice(1, warm))
    rates, lat, split = [], [], np.zeros(3)
    for r in range(repeats):  # the stream goes on: pass r scores rows the previous passes did not
        start = warm + r * per_pass
        blocks = [test.slice(a, min(a + block_rows, start + rows)) for a in range(start, start + rows, block_rows)]
        before = (timed_det.seconds, timed_man.seconds)
        t0 = time.perf_counter()
        for block in blocks:
            monitor.feed_block(block)
        took = time.perf_counter() - t0
        rates.append(rows * channels / took)
        det_s, man_s = timed_det.seconds - before[0], timed_man.seconds - before[1]
        split += (det_s, man_s, took - det_s - man_s)
        for k in range(start + rows, start + per_pass):
            tick = test.slice(k, k + 1)
            t0 = time.perf_counter()
            monitor.feed_block(tick)
            lat.append(time.perf_counter() - t0)
    lat = np.asarray(lat)
    archived = _archive_figures(writer, monitor, rates, rows * channels) if writer is not None else {}
    stored = _ticks_with_sqlite(config, detector, test.slice(1, 1 + ticks))
    detector.reset()
    records = _record_path(lambda: Monitor(config, detector, AlarmManager(config)), test.slice(1, 1 + record_rows))

    state = detector.state_nbytes() + _array_bytes(manager) + monitor.state_nbytes(include_history=False)
    return {
        "benchmark": "stream",
        "channels": channels,
        "block_rows": block_rows,
        "samples_scored_per_pass": rows * channels,
        "repeats": repeats,
        "samples_per_s": round(float(np.median(rates))),
        "samples_per_s_passes": [round(x) for x in rates],
        "ticks": int(lat.size),
        "tick_latency_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
        "tick_latency_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
        "tick_latency_max_ms": round(float(lat.max()) * 1e3, 3),
        "ms_per_million_samples": dict(
            zip(("detector", "manager", "monitor"), (split * 1e9 / (repeats * rows * channels)).round(1).tolist())
        ),
        **records,
        "tick_latency_p50_ms_sqlite": round(float(np.percentile(stored, 50)) * 1e3, 3),
        "tick_latency_p99_ms_sqlite": round(float(np.percentile(stored, 99)) * 1e3, 3),
        "state_bytes_per_channel": round(state / channels, 1),
        "detector_bytes_per_channel": round(detector.state_nbytes() / channels, 1),
        "history_bytes_per_channel": round(monitor.rings_.nbytes / channels, 1),
        "detector": getattr(detector, "name", type(detector).__name__),
        "fit_seconds": round(fit_s, 3),
        "alarms": len(manager.alarms()),
        **archived,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def write_results(result: dict, out: str | Path) -> None:
    Path(out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def summary(result: dict) -> str:
    return (
        f"{result['channels']} channels: {result['samples_per_s']:,} samples/s in blocks of "
        f"{result['block_rows']} rows; 1-row tick p50 {result['tick_latency_p50_ms']} ms, "
        f"p99 {result['tick_latency_p99_ms']} ms (with SQLite store: p99 {result['tick_latency_p99_ms_sqlite']} ms); state {result['state_bytes_per_channel']} B/channel "
        f"(+ {result['history_bytes_per_channel']} B/channel plotting history); {result['alarms']} alarms"
    )
