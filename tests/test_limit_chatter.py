"""A noisy channel sitting at its limit raises one alarm, not one per crossing (the default
``min_conformance`` of channels with limits)."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.alarms import AlarmManager
from vigil.config import DEFAULT_LIMIT_CONFORMANCE, MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.model import TelemetryBlock


def raises_in_three_minutes(channel: dict, seed: int) -> int:
    """Alarms raised on 180 s of a 1 Hz channel whose noise straddles its high limit, with every
    alarm acknowledged as it is raised (an acknowledged alarm that returns to normal is finished,
    so each return and crossing makes a new alarm)."""
    cfg = MonitorConfig.from_dict({"channels": {"T": channel}})
    rng = np.random.default_rng(seed)
    block = TelemetryBlock.from_arrays(np.arange(180.0), (30 + rng.normal(0, 0.5, 180))[:, None], ["T"])
    detector = LimitCheck(cfg.limits()).fit(block)
    manager = AlarmManager(cfg, clock=lambda: 0.0)
    raised = 0
    for i in range(block.n_samples):  # one sample at a time, as live
        row = block.slice(i, i + 1)
        for event in manager.update(row, detector.score(row)) or []:
            if event.kind == "raised":
                raised += 1
                manager.acknowledge(event.alarm_id, user="op")
    return raised


@pytest.mark.parametrize("seed", range(5))
def test_noisy_channel_at_its_limit_raises_once(seed):
    channel = {"subsystem": "thermal", "rate_hz": 1.0, "limits": {"warning": [10.0, 30.0]}}
    assert MonitorConfig.from_dict({"channels": {"T": channel}}).channels["T"].min_conformance == 10
    assert raises_in_three_minutes(channel, seed) == 1
    # The Yamcs default of one nominal sample: an alarm per crossing.
    assert raises_in_three_minutes({**channel, "min_conformance": 1}, seed) >= 20


def test_default_applies_only_to_limits_left_unset():
    cfg = MonitorConfig.from_dict(
        {
            "channels": {
                "A": {"subsystem": "s", "limits": {"warning": [0, 1]}},
                "B": {"subsystem": "s", "limits": {"warning": [0, 1]}, "min_conformance": 2},
                "C": {"subsystem": "s"},
            }
        }
    )
    got = [cfg.channels[c].min_conformance for c in "ABC"]
    assert got == [DEFAULT_LIMIT_CONFORMANCE, 2, 1]
