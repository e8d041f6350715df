"""Streaming benchmark: many channels through the monitor, detector and alarm manager.

Generates ``channels`` synthetic channels (an orbit-like sine per channel plus noise, with limits
and a few injected excursions so the alarm manager has work; made block by block, see
:class:`Series`, so the benchmark's own data does not dominate its memory), fits the default detector
(:func:`vigil.detect.build_detector`) on nominal history, then measures:

* ``samples_per_s``: channel-samples scored per second, fed as blocks of ``block_rows`` rows
  through :meth:`vigil.monitor.Monitor.feed_block` (detector + alarm manager + counters + history),
  the median of ``repeats`` passes of ``rows`` rows (each pass's rate is listed too);
* ``tick_latency_*_ms``: wall time of one 1-row tick of every channel (a 1 Hz tick scored live),
  over ``ticks`` ticks after each pass, pooled; ``*_sqlite``: the same ticks with the alarms and
  the checkpoint committed to a SQLite store (WAL, ``synchronous=FULL``) on every tick that
  changes an alarm (and every 10 s of stream time); ``checkpoint_bytes_written_median`` is what one
  such checkpoint writes (the changes since the last), ``checkpoint_bytes_held`` what the store
  holds at the end;
* ``ms_per_million_samples``: where the block passes spent their time (detector ``score``,
  manager ``update``, the monitor's own gridding, counters, history and staleness);
* ``record_lines_parsed_per_s`` and ``records_fed_per_s``: the record path of file/socket sources,
  parsing CSV record lines, then gridding and scoring parsed records (``record_rows`` rows, at most
  a million records);
* ``peak_rss_mb``: the monitor process's peak resident memory; the detector is fitted in a child
  process (as ``vigil fit`` fits apart from the monitor), whose peak is ``fit_peak_rss_mb``;
* ``state_bytes_per_channel``: detector, manager and monitor state (without the plotting history,
  which is reported separately as ``history_bytes_per_channel``);
* with ``archive``, the archive writer (:mod:`vigil.archive`) keeps every scored sample in a
  temporary folder while the passes run: ``archive.samples_per_s_incl_backlog`` adds the time
  the writer still needed after the last pass, ``archive.bytes_per_sample`` is on disk, and
  ``archive.cpu_share_of_monitor`` is the CPU time of archiving (the writer thread, and the monitor
  thread handing blocks over) over the monitor's own CPU time in ``feed_block``: on one core,
  throughput would fall by ``share / (1 + share)``.
"""

from __future__ import annotations

import json
import pickle
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from vigil.config import MonitorConfig
from vigil.model import TelemetryBlock

#: Most cells (rows x channels) per block fed in the throughput passes, as the monitor grids records
#: (vigil.monitor.engine.MAX_CELLS): at 100,000 channels, blocks of 20 rows.
MAX_BLOCK_CELLS = 2_000_000


class Series:
    """Generated 1 Hz channels, made block by block so the benchmark holds one block at a time.

    Each channel is a sine of its own period and phase plus noise (the noise of rows ``a..b`` is
    drawn from a generator seeded by ``(seed, a)``: the same request gives the same rows); from row
    ``inject_from`` on, ``n_events`` excursions of 20 samples (+-4) on random channels.
    """

    def __init__(self, n_channels: int, seed: int, inject_from: int, inject_rows: int, n_events: int) -> None:
        rng = np.random.default_rng(seed)
        self.period = rng.uniform(60.0, 600.0, n_channels)
        self.phase = rng.uniform(0.0, 2 * np.pi, n_channels)
        self.seed = seed
        self.channels = tuple(f"ch{j:05d}" for j in range(n_channels))
        self._index = {name: j for j, name in enumerate(self.channels)}
        ev = np.random.default_rng(seed + 1)
        self.events = [
            (int(ev.integers(n_channels)), inject_from + int(ev.integers(0, max(1, inject_rows - 20))), float(ev.choice([-4.0, 4.0])))
            for _ in range(n_events)
        ]  # fmt: skip

    def block(self, a: int, b: int) -> TelemetryBlock:
        t = np.arange(a, b, dtype=np.float64)
        values = np.sin(2 * np.pi * t[:, None] / self.period + self.phase)
        values += np.random.default_rng((self.seed, a)).normal(0.0, 0.05, values.shape)
        for j, i, size in self.events:
            if i < b and i + 20 > a:
                values[max(i, a) - a : min(i + 20, b) - a, j] += size
        block = object.__new__(TelemetryBlock)  # built here, valid by construction: skip re-indexing
        for name, value in (("time", t), ("values", values), ("channels", self.channels), ("commands", None),
                            ("source", "bench"), ("_index", self._index)):  # fmt: skip
            object.__setattr__(block, name, value)
        return block


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


def _ticks_with_sqlite(config: MonitorConfig, detector, rows: list[TelemetryBlock]) -> tuple[np.ndarray, dict]:
    """Tick latencies of a monitor whose alarms and checkpoint go to a SQLite file (WAL, FULL), and
    the checkpoint's bytes: written per checkpoint (the changes) and held by the store at the end."""
    from vigil.alarms import AlarmManager
    from vigil.monitor import Monitor
    from vigil.store.sqlite import SqliteStore

    detector.reset()
    written: list[int] = []
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "bench.sqlite") as store:
        save = store.save_checkpoint

        def counted(key, position, state=None):
            written.append(len(state) if isinstance(state, bytes) else getattr(state, "nbytes", 0))
            save(key, position, state)

        store.save_checkpoint = counted
        monitor = Monitor(config, detector, AlarmManager(config, store=store, clock=lambda: 0.0), store=store)
        lat = np.empty(len(rows))
        for k, tick in enumerate(rows):
            t0 = time.perf_counter()
            monitor.feed_block(tick)
            lat[k] = time.perf_counter() - t0
        held = store.load_stream_state(monitor.checkpoint_key)
    held_bytes = (
        len(held)
        if isinstance(held, bytes)
        else sum(map(len, held.parts.values())) + sum(len(p[2]) for p in held.patches)
    )
    return lat, {
        "checkpoints_sqlite": len(written),
        "checkpoint_bytes_written_median": int(np.median(written[1:] or written)),  # the first writes everything
        "checkpoint_bytes_held": held_bytes,
    }


def _archive_writer(monitor):
    """An archive in a temporary folder, fed by ``monitor`` (removed at the end of the run)."""
    from vigil.archive import ArchiveWriter

    folder = tempfile.mkdtemp(prefix="vigil-bench-archive-")
    writer = ArchiveWriter(folder, monitor.channels)
    monitor.add_block_sink(writer)
    return writer


def _archive_figures(writer, monitor, rates: list[float], per_pass: int, feed_cpu_s: float) -> dict:
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
    # CPU, not wall time: on a shared machine the wall-clock passes vary by more than the archive costs.
    monitor_cpu = feed_cpu_s - writer.append_cpu_s
    share = (writer.cpu_s + writer.append_cpu_s) / monitor_cpu
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
            "cpu_share_of_monitor": round(share, 3),
            "writer_cpu_s": round(writer.cpu_s, 3),
            "hand_over_cpu_s": round(writer.append_cpu_s, 3),
            "monitor_cpu_s": round(monitor_cpu, 3),
            "read_points": len(got["time"]),
        }
    }


def _fit_child(channels: int, seed: int, train_rows: int, stream_rows: int) -> tuple[bytes, float, int]:
    """Fit the default detector on the series' first ``train_rows`` rows (in a child process)."""
    from vigil.detect import build_detector

    series = Series(channels, seed, train_rows, stream_rows, channels // 20)
    train = series.block(0, train_rows)
    train = TelemetryBlock.from_arrays(train.time, train.values, series.channels, source="bench")
    started = time.perf_counter()
    detector = build_detector(make_config(series.channels)).fit(train)
    took = time.perf_counter() - started
    return pickle.dumps(detector), took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _fit_in_child(channels: int, seed: int, train_rows: int, stream_rows: int):
    """The fitted detector, its fit time and the fit's peak RSS. Fitting runs in a child process, as
    ``vigil fit`` runs apart from the monitor, which loads the saved model: the monitor's own peak
    memory is then what this benchmark's ``peak_rss_mb`` reports."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        model, took, rss = pool.submit(_fit_child, channels, seed, train_rows, stream_rows).result()
    return pickle.loads(model), took, rss


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
    from vigil.monitor import Monitor

    block_rows = max(1, min(block_rows, MAX_BLOCK_CELLS // channels))
    per_pass = rows + ticks
    warm = 1 + block_rows
    # One series per channel, split in time: the monitor scores the continuation of what it learned.
    # Rows are made block by block (not timed): 100,000 channels x 5,000 rows would be 4 GB.
    series = Series(channels, seed, train_rows, warm + repeats * per_pass, channels // 20)
    config = make_config(series.channels)
    detector, fit_s, fit_rss = _fit_in_child(channels, seed, train_rows, warm + repeats * per_pass)
    manager = AlarmManager(config, clock=lambda: 0.0)
    timed_det, timed_man = _Timed(detector, "score"), _Timed(manager, "update")
    monitor = Monitor(
        config, timed_det, timed_man, **({} if history_points is None else {"history_points": history_points})
    )
    writer = _archive_writer(monitor) if archive else None
    first = train_rows  # row of the series where the scored stream starts

    # Warm-up, not timed: numba compiles each kernel for 1-row and many-row blocks, and the
    # manager's raise path runs for the first time.
    feed_cpu = [0.0]  # the monitor thread's CPU time in feed_block (for the archive's share)

    def feed(block: TelemetryBlock) -> None:
        c0 = time.thread_time()
        monitor.feed_block(block)
        feed_cpu[0] += time.thread_time() - c0

    feed(series.block(first, first + 1))
    feed(series.block(first + 1, first + warm))
    rates, lat, split = [], [], np.zeros(3)
    for r in range(repeats):  # the stream goes on: pass r scores rows the previous passes did not
        start = first + warm + r * per_pass
        before = (timed_det.seconds, timed_man.seconds)
        took = 0.0
        for a in range(start, start + rows, block_rows):
            block = series.block(a, min(a + block_rows, start + rows))
            t0 = time.perf_counter()
            feed(block)
            took += time.perf_counter() - t0
        rates.append(rows * channels / took)
        det_s, man_s = timed_det.seconds - before[0], timed_man.seconds - before[1]
        split += (det_s, man_s, took - det_s - man_s)
        for k in range(start + rows, start + per_pass):
            tick = series.block(k, k + 1)
            t0 = time.perf_counter()
            feed(tick)
            lat.append(time.perf_counter() - t0)
    lat = np.asarray(lat)
    archived = _archive_figures(writer, monitor, rates, rows * channels, feed_cpu[0]) if writer is not None else {}
    stored, stored_bytes = _ticks_with_sqlite(
        config, detector, [series.block(k, k + 1) for k in range(first + 1, first + 1 + ticks)]
    )
    detector.reset()
    record_rows = max(1, min(record_rows, 1_000_000 // channels))  # at most a million records
    records = _record_path(
        lambda: Monitor(config, detector, AlarmManager(config)), series.block(first + 1, first + 1 + record_rows)
    )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

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
        **stored_bytes,
        "state_bytes_per_channel": round(state / channels, 1),
        "detector_bytes_per_channel": round(detector.state_nbytes() / channels, 1),
        "history_bytes_per_channel": round(monitor.rings_.nbytes / channels, 1),
        "history_points": monitor.rings_.size,
        "peak_rss_mb": round(peak_rss / 2**20),
        "record_rows": record_rows,
        "detector": getattr(detector, "name", type(detector).__name__),
        "fit_seconds": round(fit_s, 3),
        "fit_peak_rss_mb": round(fit_rss / 2**20),
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
        f"(+ {result['history_bytes_per_channel']} B/channel plotting history); {result['alarms']} alarms; "
        f"peak RSS {result['peak_rss_mb']} MB"
    )
