"""What ``vigil monitor`` runs: build the detector, manager, store and monitor, then pump a source.

The loop takes batches from a source and feeds them to the monitor while holding ``lock`` (the
API thread, if any, reads under the same lock). A quiet live source yields empty batches: the
loop then scores the rows it holds (a live tick is complete once the source goes quiet) and checks
staleness on the stream clock. Alarm changes are printed as the manager reports them; counters
every ``report_every_s`` seconds and at the end.
"""

from __future__ import annotations

import json
import math
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.errors import ConfigError
from vigil.ingest.bulk import RecordBatch
from vigil.ingest.files import FileSource
from vigil.ingest.records import Record, Source
from vigil.model import TelemetryBlock, format_time, printable
from vigil.monitor.engine import Monitor


@dataclass
class Session:
    """A monitor wired to its detector, alarm manager and store."""

    monitor: Monitor
    manager: object
    store: object
    lock: threading.RLock
    #: What reading the nominal history (``--fit``) counted and changed; ``None`` without one.
    fit_report: object = None


def build_session(
    config_path: str | Path,
    fit_path: str | Path | None = None,
    store_path: str | Path = "vigil.sqlite",
    history_s: float = 3600.0,
    lateness_s: float = 0.0,
    max_jump_s: float | None = 3600.0,
    strict: bool = False,
) -> Session:
    """Load the configuration, fit the default detector, open the store, make the monitor.

    Without ``fit_path`` only the configured limits are checked (the learned detector needs
    nominal history to fit on). The history's problems are counted in ``Session.fit_report``
    (``strict``: refused, a :class:`~vigil.errors.DataError`).
    """
    from vigil.alarms import AlarmManager
    from vigil.config import load_config
    from vigil.detect import build_detector
    from vigil.detect.limits import LimitCheck
    from vigil.monitor.operator import with_operator_state
    from vigil.store.sqlite import SqliteStore

    config = load_config(config_path)
    channels = list(config.channels)
    if not channels:
        raise ConfigError("no channels configured", key="channels", source=str(config_path))
    if fit_path is not None:
        from vigil.ingest.tabular import read_table

        nominal, fit_report = read_table(fit_path, strict=strict)
        absent = [c for c in channels if c not in nominal.channels]
        if absent:
            raise ConfigError(f"nominal data {fit_path} lacks configured channels {absent[:5]}", key="channels")
        detector = build_detector(config).fit(nominal.select(channels))
    else:
        fit_report = None
        if not config.limits():
            raise ConfigError("no limits configured and no --fit data: nothing to check", key="channels")
        empty = TelemetryBlock.from_arrays([0.0], np.full((1, len(channels)), np.nan), channels)
        detector = LimitCheck(config.limits()).fit(empty)
    store = SqliteStore(store_path)
    detector = with_operator_state(detector, config, store)  # run-time limits, operator-nominal patterns
    manager = AlarmManager(config, store=store)
    monitor = Monitor(
        config, detector, manager, history_s=history_s, lateness_s=lateness_s, max_jump_s=max_jump_s, store=store
    )
    return Session(monitor, manager, store, threading.RLock(), fit_report)


class StreamClock:
    """Stream time now: the latest record time, advanced by wall time at ``rate`` since it arrived."""

    def __init__(self, rate: float = 1.0) -> None:
        self.rate = rate
        self._t = -math.inf
        self._wall = _time.monotonic()

    def observe(self, t: float) -> None:
        if t > self._t:
            self._t, self._wall = t, _time.monotonic()

    def now(self) -> float:
        return self._t + (_time.monotonic() - self._wall) * self.rate


def run(
    session: Session,
    source: Source,
    echo: Callable[[str], None] = print,
    report_every_s: float = 10.0,
    stop: threading.Event | None = None,
) -> dict:
    """Pump ``source`` through the monitor until it ends or ``stop`` is set; returns the counters."""
    m = session.monitor
    paced = isinstance(source, FileSource) and source.speed is not None
    clock = StreamClock(rate=source.speed if isinstance(source, FileSource) and source.speed else 1.0)
    next_report = _time.monotonic() + report_every_s
    try:
        for batch in source.batches():
            with session.lock:
                if batch:
                    latest = _feed(m, batch)
                    if latest is not None:
                        clock.observe(latest)
                    if paced:  # a paced replay releases one whole time step per batch
                        m.flush(before=_cutoff(clock.now(), m.lateness_s))
                elif math.isfinite(clock.now()):  # a quiet live source: its last time step is complete
                    m.flush(before=_cutoff(clock.now(), m.lateness_s))
                    m.check_staleness(clock.now())
            if _time.monotonic() >= next_report:
                echo(counter_line(m))
                next_report = _time.monotonic() + report_every_s
            if stop is not None and stop.is_set():
                break
    finally:
        source.close()
        with session.lock:
            m.end_of_stream()
    summary = m.counters(nonzero=True)
    echo(counter_line(m))
    for line in problem_lines(summary):
        echo(line)
    return summary


def _feed(m: Monitor, batch) -> float | None:
    """Feed a batch (a :class:`RecordBatch` of columns, or a list of items); its latest record time."""
    if isinstance(batch, RecordBatch):
        if batch.bad:
            m.feed_records(batch.bad)
        m.feed_columns(batch.time, batch.code, batch.value, names=batch.names)
        return float(batch.time.max()) if batch.size else None
    m.feed_records(batch)
    times = [r.time for r in batch if isinstance(r, Record)]
    return max(times) if times else None


def problem_lines(counters: dict, limit: int = 20) -> list[str]:
    """Per channel with bad input, its non-zero counts (the worst ``limit`` channels), then the
    unknown channels and the latest problem messages."""
    keys = ("missing", "out_of_order", "duplicate", "malformed", "stale", "unscored")
    rows = sorted(counters["channels"].items(), key=lambda kv: -sum(kv[1][k] for k in keys))
    lines = []
    for name, c in rows[:limit]:
        lines.append(f"[channel] {name}: " + " ".join(f"{k}={c[k]}" for k in keys if c[k]))
    if len(rows) > limit:
        lines.append(f"[channel] ... and {len(rows) - limit} more channels with bad input")
    if counters["unknown"]:
        top = sorted(counters["unknown"].items(), key=lambda kv: -kv[1])[:limit]
        lines.append("[unknown] " + " ".join(f"{name}={n}" for name, n in top))
    lines += [f"[error] {msg}" for msg in counters["recent_errors"][-5:]]
    return [printable(line) for line in lines]  # channel names and messages come from the network


def _cutoff(now: float, lateness_s: float) -> float | None:
    """Score rows older than the lateness window (all rows when there is none)."""
    return None if lateness_s == 0 else now - lateness_s


def counter_line(m: Monitor) -> str:
    """One line of totals for the console."""
    c = m.counters(nonzero=True)
    tot = c["totals"]
    stale_now = sum(1 for ch in c["channels"].values() if ch["is_stale"])
    return (
        f"[counters] {format_time(c['last_time'])} rows={c['rows']} scored={tot['scored']} missing={tot['missing']} "
        f"out_of_order={tot['out_of_order']} duplicate={tot['duplicate']} malformed={tot['malformed']} "
        f"unparsable={c['unparsable']} unknown={sum(c['unknown'].values())} replayed={c['replayed']} "
        f"stale_now={stale_now} errors={c['errors']}"
    )


def event_line(event: dict) -> str:
    """One alarm or incident change, readable: time, kind, id, then the alarm's own explanation."""
    p = event.get("payload") or {}
    when = format_time(event.get("time"))
    if event.get("type") == "incident":
        names = ",".join(str(c.get("channel", "?")) for c in p.get("channels", []))
        return printable(f"[incident] {when} #{p.get('id')} {p.get('subsystem', '')}: {names}")
    text = p.get("explanation") or json.dumps(p, default=str)
    quiet = "" if event.get("notify", True) else " (shelved)"
    return printable(f"[alarm] {when} {event.get('kind')} #{event.get('alarm_id')} {p.get('state', '')}{quiet}: {text}")
