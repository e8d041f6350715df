"""A stream whose alarms depend on everything a restart must carry over (shared by the restart tests).

Learned detector (``--fit``): S1 departs from its forecast (rows 250-269), S2 freezes (400-459).
Limits: T flickers over its warning limit (needs 3 consecutive violations, ``min_violations = 3``;
2 nominal samples to return, ``min_conformance = 2``), then goes critical. Staleness: V stops for
20 s (``stale_after_s = 5``) from row 300. One channel (U) is not in the nominal history: it runs
on its limits only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

T0 = 10_000.0
N_ROWS = 600
CHANNELS = ("S1", "S2", "T", "V", "U")


class StoppedAfter:
    """A source, stopped (as by SIGTERM) after ``n`` batches: the ``stop`` event is set as the n-th is given."""

    def __init__(self, source, stop, n: int = 1) -> None:
        self.source, self.stop, self.n = source, stop, n
        self.name, self.speed = source.name, source.speed

    def batches(self):
        for k, batch in enumerate(self.source.batches()):
            if k + 1 >= self.n:
                self.stop.set()
            yield batch

    def close(self) -> None:
        self.source.close()


def run_monitor(cfg, nominal, stream, store, batch: int, batches: int | None, setup=None) -> bool:
    """One monitor 'process' over the stream file in batches of ``batch`` rows, resumed from ``store``
    and stopped after ``batches`` batches (``None``: to the end); True when the source ended.
    ``setup(session)`` runs before it resumes."""
    import threading

    from vigil.ingest.records import FileSource
    from vigil.monitor.runner import build_session, resume, run

    session = build_session(cfg, fit_path=nominal, store_path=store)
    try:
        if setup is not None:
            setup(session)
        src = FileSource(stream, speed=None, batch_size=batch)
        resume(session, src)
        stop = threading.Event()
        run(session, src if batches is None else StoppedAfter(src, stop, batches), echo=lambda line: None, stop=stop)
        return not stop.is_set()
    finally:
        session.store.close()


CONFIG = """
incident_window_s = 30.0
[channels.S1]
subsystem = "attitude"
min_violations = 3
min_conformance = 2
[channels.S2]
subsystem = "attitude"
min_violations = 2
[channels.T]
subsystem = "thermal"
min_violations = 3
min_conformance = 2
[channels.T.limits]
warning = [-5.0, 5.0]
critical = [-8.0, 8.0]
[channels.V]
subsystem = "power"
stale_after_s = 5.0
[channels.V.limits]
warning = [20.0, 32.0]
[channels.U]
subsystem = "power"
min_violations = 2
[channels.U.limits]
warning = [0.0, 10.0]
"""


def _signals(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s1 = np.sin(2 * np.pi * t / 60.0) + rng.normal(0, 0.05, t.size)
    s2 = np.cos(2 * np.pi * t / 45.0) + rng.normal(0, 0.05, t.size)
    temp = 2.0 * np.sin(2 * np.pi * t / 300.0) + rng.normal(0, 0.1, t.size)
    volt = 28.0 + rng.normal(0, 0.1, t.size)
    u = 5.0 + rng.normal(0, 0.2, t.size)
    return np.c_[s1, s2, temp, volt, u]


def write_inputs(tmp: Path, n_rows: int = N_ROWS) -> tuple[Path, Path, Path]:
    """Configuration, nominal history (wide CSV, without U) and the stream (long CSV records)."""
    rng = np.random.default_rng(11)
    cfg = tmp / "cfg.toml"
    cfg.write_text(CONFIG)
    th = np.arange(3000.0)
    hist = _signals(th, rng)
    nominal = tmp / "nominal.csv"
    lines = ["time,S1,S2,T,V"] + [f"{t:g}," + ",".join(f"{x:.6f}" for x in row[:4]) for t, row in zip(th, hist)]
    nominal.write_text("\n".join(lines) + "\n")
    t = T0 + np.arange(n_rows, dtype=float)
    x = _signals(t, rng)
    x[250:270, 0] += 3.0  # S1 departs from its forecast
    x[400:460, 1] = x[399, 1]  # S2 frozen
    flicker = {150: 5.5, 151: 4.0, 152: 5.5, 153: 5.6, 154: 5.7, 155: 4.5, 156: 5.2, 157: 4.0, 158: 3.9}
    for i, v in flicker.items():  # 3 in a row raise at 154; 2 nominal in a row return at 158
        x[i, 2] = v
    x[500:505, 2] = 9.0  # critical
    x[320:323, 4] = 12.0  # U over its limit (no history: limits only)
    rows = []
    for i in range(n_rows):
        for k, ch in enumerate(CHANNELS):
            if ch == "V" and 300 <= i < 320:
                continue  # V silent for 20 s
            rows.append(f"{t[i]:g},{ch},{x[i, k]:.6f}")
    stream = tmp / "stream.csv"
    stream.write_text("time,channel,value\n" + "\n".join(rows) + "\n")
    return cfg, nominal, stream


def outcome(store_path: Path) -> dict:
    """What must be identical between a run and its interrupted copies: every alarm, the audit
    trail (wall-clock times aside), incidents and the final checkpoint position."""
    from vigil.store.sqlite import SqliteStore

    with SqliteStore(store_path) as store:
        alarms = [a.to_dict() for a in store.load_alarms()]
        audit = [{k: v for k, v in e.to_dict().items() if not k.startswith("wall_time")} for e in store.audit()]
        incidents = [i.to_dict() for i in store.load_incidents()]
        position = store.load_checkpoint("monitor")
    return {"alarms": alarms, "audit": audit, "incidents": incidents, "position": position}
