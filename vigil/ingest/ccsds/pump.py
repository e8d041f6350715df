"""Pumping decoded packet blocks through the monitor (``vigil packets monitor``).

Blocks go to :meth:`Monitor.feed_block` whole (no record per sample), so the monitor keeps up
with bulk-decoded packets. The counter line shows the monitor's totals and, after it, the packet
stream's own: packets decoded and every loss or oddity so far, per named reason, as it happens.
"""

from __future__ import annotations

import math
import threading
import time as _time
from collections.abc import Callable
from pathlib import Path

from vigil.ingest.ccsds.source import PacketSource
from vigil.monitor.runner import Session, close_stream, counter_line, report_end


def packet_line(src: PacketSource) -> str:
    """One line: packets decoded and the non-zero problem counters, stream-wide totals."""
    stream = src.stream
    problems = {k: v for k, v in stream.problems().items() if v}
    decoded = int(stream.decoded_packets)
    text = " ".join(f"{k}={v}" for k, v in problems.items()) or "no problems"
    return f"[packets] decoded={decoded} {text}"


def packet_session(src: PacketSource, alarms, store_path: str | Path) -> Session:
    """The session ``vigil packets monitor`` runs: the mission's own alarms (``alarms``, read from
    its XTCE by :func:`~vigil.ingest.ccsds.xtce_alarms.read_xtce_alarms`) on ``src``'s channels,
    with the alarm manager and the store at ``store_path``. Its checkpoints carry the alarm
    configuration's and the database file's SHA-256: resuming under others is refused."""
    from vigil.alarms import AlarmManager
    from vigil.detect.xtce_alarm import XtceAlarmCheck, xtce_monitor_config
    from vigil.model import TelemetryBlock
    from vigil.monitor.engine import Monitor
    from vigil.store.model_file import config_sha256, file_sha256
    from vigil.store.sqlite import SqliteStore

    config = xtce_monitor_config(alarms)
    channels = src.stream.channels
    empty = TelemetryBlock.from_arrays([0.0], [[float("nan")] * len(channels)], channels)
    detector = XtceAlarmCheck(alarms).fit(empty)
    xtce = src.stream.mission.xtce_path
    identity = {
        "configuration": config_sha256(config),
        "model": f"xtce {file_sha256(xtce)}" if xtce is not None else "packet definitions",
    }
    store = SqliteStore(store_path)
    manager = AlarmManager(config, store=store)
    monitor = Monitor(config, detector, manager, store=store, identity=identity)
    return Session(monitor, manager, store, threading.RLock())


def resume(session: Session, src: PacketSource) -> dict | None:
    """Restore the store's checkpoint into the session's monitor (``None``: there is none), as
    :func:`vigil.monitor.runner.resume` does for ``vigil monitor``: a packet file is replayed from
    its start, its decoded rows up to the checkpoint's input position passed over; a live source's
    rows at or before the checkpoint time are counted as ``replayed``. Raises
    :class:`~vigil.monitor.engine.CheckpointMismatch` when it was written under another
    configuration or mission database."""
    replay = src.transport == "file"
    start = session.monitor.resume(replayable=replay)
    if start is not None and replay:
        src.skip_rows = int(start["input"]["records"])
    return start


def run_blocks(
    session: Session,
    src: PacketSource,
    echo: Callable[[str], None] = print,
    report_every_s: float = 10.0,
    stop: threading.Event | None = None,
) -> dict:
    """Feed ``src``'s blocks to the session's monitor until the source ends or ``stop`` is set.

    At the source's end what is held is scored; on a stop (or Ctrl-C) it is checkpointed instead
    (:meth:`~vigil.monitor.engine.Monitor.save`), so a stop and restart is the uninterrupted run.
    """
    m = session.monitor
    next_report = _time.monotonic() + report_every_s
    ended = False
    try:
        for block in src.blocks():
            with session.lock:
                if block is not None and block.n_samples:
                    m.feed_block(block)
                elif math.isfinite(m.clock_.time):  # quiet: judge staleness at the stream's own latest time
                    m.flush()
                    m.check_staleness(m.clock_.time)
            if _time.monotonic() >= next_report:
                echo(counter_line(m))
                echo(packet_line(src))
                next_report = _time.monotonic() + report_every_s
            if stop is not None and stop.is_set():
                break
        else:
            ended = True
    finally:
        close_stream(session, src, ended)
    return report_end(m, echo, lambda: packet_line(src))
