"""``vigil demo``: the STS-107 entry plus a few SMAP/MSL-like channels, replayed into the console.

The demo data are generated, not downloaded: the STS-107 scenario (:mod:`vigil.scenarios.sts107`)
gives the failed entry and nominal entries to learn from; :func:`vigil.bench.synthetic.make_dataset`
gives four spacecraft-like channels with one injected anomaly each (spike, level shift, drift,
frozen), laid on the same time axis so everything replays together.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vigil.model import TelemetryBlock

#: Names, subsystem and description of the generated SMAP/MSL-like channels, one per anomaly kind.
EXTRA_CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("SMAP-P1", "smap-like", "spike"),
    ("SMAP-E2", "smap-like", "level_shift"),
    ("MSL-T3", "msl-like", "drift"),
    ("MSL-M4", "msl-like", "frozen"),
)


@dataclass
class DemoData:
    """What the demo replays and what its detector learns from."""

    config: Any  # MonitorConfig
    training: TelemetryBlock
    replay: TelemetryBlock
    events: list[dict]  # the scenario's timeline: time (epoch s), kind, label, t_from_ei_s


def build_demo_data(seed: int = 0) -> DemoData:
    """The STS-107 failed entry with the SMAP/MSL-like channels added as extra columns."""
    from vigil.bench.synthetic import make_dataset
    from vigil.config import MonitorConfig
    from vigil.scenarios.sts107 import build_scenario, channel_config

    scenario = build_scenario(seed=seed, config=False)
    train = scenario.training_block()
    failed = scenario.failed
    synth = make_dataset(
        n_channels=len(EXTRA_CHANNELS),
        n_train=train.n_samples,
        n_test=failed.n_samples,
        seed=seed,
        kinds=tuple(kind for _n, _s, kind in EXTRA_CHANNELS),
    )
    names = tuple(name for name, _s, _k in EXTRA_CHANNELS)
    raw = channel_config()
    for (name, subsystem, kind), injected in zip(EXTRA_CHANNELS, synth.anomalies):
        raw["channels"][name] = {
            "subsystem": subsystem,
            "description": f"generated {subsystem.split('-')[0].upper()}-like channel; injected {kind} "
            f"at replay sample {injected.start}",
            "rate_hz": 1.0,
            "stale_after_s": 10.0,
            "min_violations": 2,
            "min_conformance": 5,
        }
    config = MonitorConfig.from_dict(raw, source="vigil demo")
    return DemoData(
        config=config,
        training=_join(train, synth.train.values, names),
        replay=_join(failed, synth.test.values, names),
        events=[
            {
                "time": scenario.ei_epoch + e["t_from_ei_s"],
                "kind": e["kind"],
                "label": e["label"],
                "t_from_ei_s": e["t_from_ei_s"],
            }
            for e in scenario.events
        ],  # fmt: skip
    )


def _join(block: TelemetryBlock, extra: np.ndarray, names: tuple[str, ...]) -> TelemetryBlock:
    """``block`` with ``extra`` columns (same rows) appended."""
    return TelemetryBlock(block.time, np.hstack([block.values, extra]), block.channels + names, None, block.source)


@dataclass
class Demo:
    """A ready console: the app, the monitor stack behind it and the replay feeding it."""

    app: Any
    monitor: Any
    manager: Any
    store: Any
    replay: Any
    store_path: Path


def build_demo(
    token: str,
    speed: float = 10.0,
    store_path: Path | None = None,
    seed: int = 0,
    allowed_hosts: list[str] | None = None,
) -> Demo:
    """Fit the default detector on the nominal entries and wire monitor, alarms, store and console.

    The replay thread is created but not started (``demo.replay.start()``).
    """
    import threading

    from vigil.alarms import AlarmManager
    from vigil.detect import build_detector
    from vigil.monitor import Monitor
    from vigil.monitor.extras import attach
    from vigil.monitor.operator import with_operator_state
    from vigil.serve.app import create_app
    from vigil.serve.runner import BlockReplay
    from vigil.store.sqlite import SqliteStore

    data = build_demo_data(seed)
    if store_path is None:
        store_path = Path(tempfile.mkdtemp(prefix="vigil-demo-")) / "alarms.sqlite"
    store = SqliteStore(store_path)
    manager = AlarmManager(data.config, store=store)
    detector = with_operator_state(build_detector(data.config).fit(data.training), data.config, store)
    span = float(data.replay.time[-1] - data.replay.time[0]) + 60.0
    monitor = Monitor(data.config, detector, manager, history_s=span, history_points=4096, store=store)
    lock = threading.RLock()
    app = create_app(
        monitor, manager, store, token, lock=lock, title="Vigil demo: STS-107 entry", events=data.events,
        allowed_hosts=allowed_hosts, extras=attach(monitor, manager),  # time until limit beside each channel
    )  # fmt: skip
    replay = BlockReplay(monitor, lock, data.replay, speed=speed)
    app.state.feeders.append(replay)
    return Demo(app, monitor, manager, store, replay, store_path)
