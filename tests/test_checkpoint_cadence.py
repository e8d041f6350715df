"""Checkpoint cadence: every block that changes an alarm is checkpointed with it; quiet blocks only
every ``checkpoint_every_s`` of stream time, and the end of the stream always."""

from __future__ import annotations

import numpy as np

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor
from vigil.store.sqlite import SqliteStore


def _monitor(store, every: float) -> Monitor:
    config = MonitorConfig.from_dict(
        {"channels": {"T": {"subsystem": "s", "limits": {"warning": [0, 10]}, "min_conformance": 1}}}
    )
    empty = TelemetryBlock.from_arrays([0.0], [[np.nan]], ["T"])
    detector = LimitCheck(config.limits()).fit(empty)
    return Monitor(config, detector, AlarmManager(config, store=store), store=store, checkpoint_every_s=every)


def test_quiet_blocks_are_checkpointed_on_the_cadence_alarm_changes_always(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite")
    saved: list[float] = []
    original = store.save_checkpoint

    def save(key, position, state=None):
        saved.append(position["time"])
        original(key, position, state)

    store.save_checkpoint = save
    m = _monitor(store, every=10.0)
    values = np.full(40, 5.0)
    values[23] = 50.0  # raised at t=23, back to normal (RTN) at t=24
    for t, v in enumerate(values):
        m.feed_block(TelemetryBlock.from_arrays([float(t)], [[v]], ["T"]))
    m.end_of_stream()
    assert saved == [0.0, 10.0, 20.0, 23.0, 24.0, 34.0, 39.0]
    assert store.load_checkpoint("monitor")["time"] == 39.0
    store.close()


def test_every_block_is_checkpointed_with_a_zero_cadence(tmp_path):
    with SqliteStore(tmp_path / "s.sqlite") as store:
        m = _monitor(store, every=0.0)
        for t in range(5):
            m.feed_block(TelemetryBlock.from_arrays([float(t)], [[5.0]], ["T"]))
            assert store.load_checkpoint("monitor")["time"] == float(t)
