"""A monitor with an operator-nominal pattern, stopped and restarted at random points, gives the
uninterrupted run: the pattern comes back from the store and the filter's windows and recognised
episodes from the checkpoint (sessions built as ``vigil monitor`` builds them)."""

from __future__ import annotations

import random

import numpy as np
from restart_scenario import outcome, run_monitor
from test_nominal import FIRST, INVERTED, LARGER, T0, baseline, live_stream

from vigil.detect.nominal import episode_pattern
from vigil.store.sqlite import SqliteStore

CONFIG = """
[channels.HTR_T]
subsystem = "thermal"
units = "degC"
"""


def write_inputs(tmp):
    cfg = tmp / "cfg.toml"
    cfg.write_text(CONFIG)
    nominal = tmp / "nominal.csv"
    hist = baseline(6000, 0)
    nominal.write_text("time,HTR_T\n" + "\n".join(f"{T0 - 6000 + i:.1f},{v:.6f}" for i, v in enumerate(hist)) + "\n")
    stream = tmp / "stream.csv"
    stream.write_text(
        "time,channel,value\n" + "\n".join(f"{T0 + i:.1f},HTR_T,{v:.6f}" for i, v in enumerate(live_stream())) + "\n"
    )
    return cfg, nominal, stream


def marked_pattern(tmp, cfg, nominal, stream) -> dict:
    """The pattern the API makes when the first alarm (the heater bump) is marked nominal."""
    run_monitor(cfg, nominal, stream, tmp / "plain.sqlite", batch=10_000, batches=None)
    with SqliteStore(tmp / "plain.sqlite") as store:
        first = min(store.load_alarms(), key=lambda a: a.id)
        end = next(e.time for e in store.audit(alarm_id=first.id) if e.action == "rtn")  # as marked then
    assert FIRST <= first.first_time - T0 < FIRST + 60
    x = live_stream()
    pattern = episode_pattern(T0 + np.arange(x.size), x, first.first_time, end, window=16)
    pattern.update(level=first.level, user="ana", wall_time=T0 + 1500, comment="heater cycle")
    return pattern


def test_restarts_with_a_nominal_pattern_are_the_uninterrupted_run(tmp_path):
    cfg, nominal, stream = write_inputs(tmp_path)
    pattern = marked_pattern(tmp_path, cfg, nominal, stream)
    for name in ("ref.sqlite", "cut.sqlite"):
        with SqliteStore(tmp_path / name) as store:
            store.add_nominal_pattern("HTR_T", 1, pattern)
    run_monitor(cfg, nominal, stream, tmp_path / "ref.sqlite", batch=10_000, batches=None)
    ref = outcome(tmp_path / "ref.sqlite")
    starts = [e["time"] - T0 for e in ref["audit"] if e["action"] in ("raised", "reactivated")]
    assert not [s for s in starts if FIRST <= s < INVERTED]  # the marked episode and its recurrence: nominal
    assert [s for s in starts if INVERTED <= s < INVERTED + 60] and [s for s in starts if LARGER <= s < LARGER + 60]

    (tmp_path / "cut.sqlite.model").write_bytes((tmp_path / "ref.sqlite.model").read_bytes())
    rng = random.Random(3)
    runs = 0
    while not run_monitor(cfg, nominal, stream, tmp_path / "cut.sqlite", batch=rng.randint(100, 900), batches=1):
        runs += 1
    assert runs >= 8
    assert outcome(tmp_path / "cut.sqlite") == ref
