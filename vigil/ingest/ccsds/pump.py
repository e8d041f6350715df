"""Pumping decoded packet blocks through the monitor (``vigil packets monitor``).

Blocks go to :meth:`Monitor.feed_block` whole (no record per sample), so the monitor keeps up
with bulk-decoded packets. The counter line shows the monitor's totals and, after it, the packet
stream's own: packets decoded and every loss or oddity so far, per named reason, as it happens.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable

from vigil.ingest.ccsds.source import PacketSource
from vigil.monitor.runner import Session, counter_line, problem_lines


def packet_line(src: PacketSource) -> str:
    """One line: packets decoded and the non-zero problem counters, stream-wide totals."""
    stream = src.stream
    problems = {k: v for k, v in stream.problems().items() if v}
    decoded = int(stream.decoded_packets)
    text = " ".join(f"{k}={v}" for k, v in problems.items()) or "no problems"
    return f"[packets] decoded={decoded} {text}"


def run_blocks(
    session: Session,
    src: PacketSource,
    echo: Callable[[str], None] = print,
    report_every_s: float = 10.0,
    stop: threading.Event | None = None,
) -> dict:
    """Feed ``src``'s blocks to the session's monitor until the source ends or ``stop`` is set."""
    m = session.monitor
    next_report = _time.monotonic() + report_every_s
    latest = float("-inf")
    try:
        for block in src.blocks():
            with session.lock:
                if block is not None and block.n_samples:
                    m.feed_block(block)
                    latest = max(latest, float(block.time[-1]))
                elif latest > float("-inf"):  # quiet: judge staleness at the stream's own latest time
                    m.flush()
                    m.check_staleness(latest)
            if _time.monotonic() >= next_report:
                echo(counter_line(m))
                echo(packet_line(src))
                next_report = _time.monotonic() + report_every_s
            if stop is not None and stop.is_set():
                break
    finally:
        src.close()
        with session.lock:
            m.end_of_stream()
    summary = m.counters(nonzero=True)
    echo(counter_line(m))
    echo(packet_line(src))
    for line in problem_lines(summary):
        echo(line)
    return summary
