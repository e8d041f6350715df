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
from vigil.ingest.records import Source
from vigil.model import TelemetryBlock, format_time, printable
from vigil.monitor.engine import Monitor


@dataclass
class Session:
    """A monitor wired to its detector, alarm manager and store."""

    monitor: Monitor
    manager: object
    store: object
    lock: threading.RLock
    #: What reading the nominal history (``--fit``) counted and changed; ``None`` without one, or
    #: when the saved model was loaded (its fit's report lines are printed then).
    fit_report: object = None


def build_session(
    config_path: str | Path,
    fit_path: str | Path | None = None,
    store_path: str | Path = "vigil.sqlite",
    history_s: float = 3600.0,
    lateness_s: float = 0.0,
    max_jump_s: float | None = 3600.0,
    refit: bool = False,
    echo: Callable[[str], None] = lambda line: None,
    strict: bool = False,
) -> Session:
    """Load the configuration, load (or fit and save) the model, open the store, make the monitor.

    Without ``fit_path`` only the configured limits are checked (the learned detector needs
    nominal history to fit on). With it, the model saved beside the store (``<store>.model``) is
    loaded when it was fitted on the same history and configuration; else a :class:`ConfigError`
    says what changed; ``refit`` fits again and replaces it. ``echo`` hears what was done. The
    history's problems are counted in ``Session.fit_report`` (``strict``: refused, a
    :class:`~vigil.errors.DataError`).
    """
    from vigil.alarms import AlarmManager
    from vigil.config import load_config
    from vigil.detect.limits import LimitCheck
    from vigil.monitor.operator import with_operator_state
    from vigil.store.model_file import config_sha256
    from vigil.store.sqlite import SqliteStore

    config = load_config(config_path)
    channels = list(config.channels)
    if not channels:
        raise ConfigError("no channels configured", key="channels", source=str(config_path))
    identity = {"configuration": config_sha256(config)}
    fit_report = None
    if fit_path is not None:
        detector, identity["model"], fit_report = _model(
            config, identity["configuration"], fit_path, store_path, refit, echo, strict
        )
    else:
        if not config.limits():
            raise ConfigError("no limits configured and no --fit data: nothing to check", key="channels")
        empty = TelemetryBlock.from_arrays([0.0], np.full((1, len(channels)), np.nan), channels)
        detector = LimitCheck(config.limits()).fit(empty)
        identity["model"] = "limits only"
    store = SqliteStore(store_path)
    detector = with_operator_state(detector, config, store)  # run-time limits, operator-nominal patterns
    manager = AlarmManager(config, store=store)
    monitor = Monitor(
        config, detector, manager, history_s=history_s, lateness_s=lateness_s, max_jump_s=max_jump_s, store=store,
        identity=identity,
    )  # fmt: skip
    return Session(monitor, manager, store, threading.RLock(), fit_report)


def _model(config, config_hash: str, fit_path, store_path, refit: bool, echo, strict: bool) -> tuple:
    """The fitted model, its id and the history's load report (``None`` when loaded): loaded from
    beside the store if it fits, else fitted and saved."""
    from vigil.ingest.tabular import read_table
    from vigil.monitor.fitting import fit_default
    from vigil.store.model_file import file_sha256, load_model, model_path, save_model

    path = model_path(store_path)
    history = {"file": str(fit_path), "sha256": file_sha256(fit_path)}
    if path.exists() and not refit:
        detector, info = load_model(path)
        changed = [
            what
            for what, same in (
                ("nominal history", info.get("history", {}).get("sha256") == history["sha256"]),
                ("configuration", info.get("config") == config_hash),
            )
            if not same
        ]
        if changed:
            raise ConfigError(
                f"the saved model was fitted on {info.get('history', {}).get('file')} under another "
                f"{' and '.join(changed)}: pass --refit to fit it again (a stream checkpoint made with the old "
                f"model then needs --no-resume)",
                source=str(path),
            )
        echo(f"model loaded from {path} (fitted on {info['history']['file']}; --refit to fit again)")
        for line in info.get("history_report", []):
            echo(f"[fit] (when the model was fitted) {line}")
        _report_unfitted(info.get("unfitted", []), echo)
        return detector, info["model_id"], None
    started = _time.monotonic()
    nominal, report = read_table(fit_path, strict=strict)
    detector, unfitted = fit_default(config, nominal)
    info = {
        "history": history, "config": config_hash, "channels": list(config.channels), "unfitted": unfitted,
        "history_report": list(report.lines()),
    }  # fmt: skip
    model_id = save_model(path, detector, info)
    echo(f"model fitted on {fit_path} in {_time.monotonic() - started:.1f} s, saved to {path}")
    _report_unfitted(unfitted, echo)
    return detector, model_id, report


def _report_unfitted(unfitted: list[str], echo) -> None:
    if unfitted:
        shown = ", ".join(unfitted[:10]) + (f" and {len(unfitted) - 10} more" if len(unfitted) > 10 else "")
        echo(
            f"[fit] {len(unfitted)} configured channels have no usable nominal history: {shown}; they are checked "
            f"against their limits only until a --refit on history that has them"
        )


def resume(session: Session, source: Source) -> dict | None:
    """Restore the store's checkpoint into the session's monitor (``None``: there is none); a file
    replay (records, or packets from a file) then passes over the input the checkpoint covers, by
    position. Raises :class:`~vigil.monitor.engine.CheckpointMismatch` when it was written under
    another configuration or model."""
    by_position = isinstance(source, FileSource) or (
        getattr(source, "transport", None) == "file" and hasattr(source, "skip_records")
    )
    start = session.monitor.resume(replayable=by_position)
    if start is not None and by_position:
        source.skip_records, source.skip_bad = start["input"]["records"], start["input"]["bad"]
    return start


def is_replay(source: Source) -> bool:
    """A source that is a recording (a file, stdin), not live telemetry: no wall-clock checks, no
    playback marking, and a file replay resumes by position."""
    from vigil.ingest.records import StreamSource

    return isinstance(source, FileSource | StreamSource) or getattr(source, "transport", None) == "file"


class _Now:
    """Stream time now, for quiet periods: the stream clock (latest accepted record time) plus wall
    time since it advanced, times the replay speed; in a paced replay never past the time of the
    record the source is waiting to release (``horizon``), so staleness found during a gap is the
    staleness a ``--speed max`` replay finds at the next row."""

    def __init__(self, monitor: Monitor, source: Source, rate: float) -> None:
        self.monitor, self.source, self.rate = monitor, source, rate
        self._t, self._wall = -math.inf, _time.monotonic()

    def __call__(self) -> float:
        t = self.monitor.clock_.time
        if t != self._t:
            self._t, self._wall = t, _time.monotonic()
        now = t + (_time.monotonic() - self._wall) * self.rate
        return min(now, getattr(self.source, "horizon", math.inf))


def run(
    session: Session,
    source: Source,
    echo: Callable[[str], None] = print,
    report_every_s: float = 10.0,
    stop: threading.Event | None = None,
) -> dict:
    """Pump ``source`` through the monitor until it ends or ``stop`` is set; returns the counters."""
    m = session.monitor
    replay = is_replay(source)
    speed = getattr(source, "speed", None)
    paced = replay and speed is not None
    now = _Now(m, source, speed if paced else 1.0)
    next_report = _time.monotonic() + report_every_s
    ended = False
    try:
        for batch in source.batches():
            received = None if replay else _time.time()
            with session.lock:
                if batch:
                    _feed(m, batch, received)
                    if paced:  # a paced replay releases one whole time step per batch
                        m.flush(before=_cutoff(now(), m.lateness_s))
                elif math.isfinite(m.clock_.time):
                    # Quiet: the last time step is complete; staleness on the stream clock.
                    m.flush(before=_cutoff(now(), m.lateness_s))
                    m.check_staleness(now())
            if _time.monotonic() >= next_report:
                echo(counter_line(m))
                next_report = _time.monotonic() + report_every_s
            if stop is not None and stop.is_set():
                break
        else:
            ended = True
    finally:
        close_stream(session, source, ended)
    return report_end(m, echo)


def close_stream(session: Session, source, ended: bool) -> None:
    """Close ``source``. At its end, score what is held; on a stop, keep it (checkpointed) for the
    restart: a stop and restart is the uninterrupted run."""
    source.close()
    with session.lock:
        session.monitor.end_of_stream() if ended else session.monitor.save()


def report_end(m: Monitor, echo: Callable[[str], None], *more: Callable[[], str]) -> dict:
    """Print the final counters (and ``more`` lines) and the data problems; return the counters."""
    summary = m.counters(nonzero=True)
    echo(counter_line(m))
    for line in more:
        echo(line())
    for line in problem_lines(summary):
        echo(line)
    return summary


def _feed(m: Monitor, batch, received: float | None) -> None:
    """Feed a batch: a :class:`RecordBatch` of columns (its bad lines first), or a list of items."""
    if isinstance(batch, RecordBatch):
        if batch.bad:
            m.feed_records(batch.bad, received=received)
        m.feed_columns(batch.time, batch.code, batch.value, names=batch.names, received=received)
    else:
        m.feed_records(batch, received=received)


def problem_lines(counters: dict, limit: int = 20) -> list[str]:
    """Per channel with bad input, its non-zero counts (the worst ``limit`` channels), then the
    unknown channels and the latest problem messages."""
    keys = ("missing", "out_of_order", "duplicate", "malformed", "quarantined", "stale", "unscored")
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
        f"quarantined={tot['quarantined']} "
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
    quiet += " (playback)" if p.get("playback") else ""
    return printable(f"[alarm] {when} {event.get('kind')} #{event.get('alarm_id')} {p.get('state', '')}{quiet}: {text}")
