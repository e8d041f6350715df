"""Ensemble of detectors and build_detector."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.config import MonitorConfig
from vigil.detect import build_detector
from vigil.detect.base import Scores
from vigil.detect.ensemble import Ensemble
from vigil.detect.forecast import ForecastDetector
from vigil.detect.limits import ChannelLimits, LimitCheck
from vigil.errors import ConfigError, DataError
from vigil.model import TelemetryBlock


def _blocks() -> tuple[TelemetryBlock, TelemetryBlock]:
    rng = np.random.default_rng(0)
    t = np.arange(4000.0)
    x = np.c_[np.sin(t / 15.0), np.cos(t / 40.0)] + rng.normal(0.0, 0.02, (4000, 2))
    x[3000:3040, 1] += 0.4  # a level shift within the limits: only the forecast sees it
    x[3500, 0] = 9.0  # far outside the warning limits of "a"
    block = TelemetryBlock.from_arrays(t, x, ["a", "b"])
    return block.slice(0, 2000), block.slice(2000, 4000)


def _ensemble() -> Ensemble:
    limits = {"a": ChannelLimits(warning=(-2.0, 2.0), critical=(-5.0, 5.0))}
    return Ensemble([LimitCheck(limits), ForecastDetector()])


def test_highest_level_wins_and_says_by_which_detector():
    train, test = _blocks()
    s = _ensemble().fit(train).score(test)
    assert s.detector == ("limits", *ForecastDetector.CHECKS)
    assert s.level[1500, 0] == 4 and s.by[1500, 0] == 0  # the critical limit, first on ties
    shift = s.level[1000:1040, 1]
    assert (shift > 0).any()
    assert all(s.detector[b].startswith("forecast.") for b in s.by[1000:1040, 1][shift > 0])
    assert not s.flagged[:1000].any()


def test_chunked_equals_one_call_and_reset_restarts():
    train, test = _blocks()
    ens = _ensemble().fit(train)
    whole = ens.score(test)
    ens.reset()
    parts = Scores.concat([ens.score(test.slice(a, b)) for a, b in [(0, 333), (333, 334), (334, 2000)]])
    for name in ("level", "score", "expected", "by"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(parts, name), err_msg=name)
    assert ens.state_nbytes() > 0


def test_ensemble_checks_channels_and_needs_detectors():
    train, test = _blocks()
    with pytest.raises(ConfigError, match="detectors"):
        Ensemble([])
    with pytest.raises(DataError, match="do not match"):
        _ensemble().fit(train).score(test.select(["b", "a"]))


def test_build_detector_without_config_is_the_forecast_detector():
    det = build_detector(None)
    assert isinstance(det, ForecastDetector)
    assert build_detector(None, span=7).span == 7


def test_build_detector_adds_limits_and_reads_forecast_options():
    cfg = MonitorConfig.from_dict(
        {
            "channels": {"a": {"subsystem": "power", "limits": {"warning": [-2, 2]}}},
            "detector": {"forecast": {"n_lags": 5}},
        }
    )
    det = build_detector(cfg)
    assert [d.name for d in det.detectors] == ["limits", "forecast"]
    assert det.detectors[1].n_lags == 5
    train, test = _blocks()
    s = det.fit(train).score(test)
    # The limit check says warning, the forecast (9.0 is far outside anything seen) says critical.
    assert s.level[1500, 0] == 4 and s.detector[s.by[1500, 0]] == "forecast.novelty"
    assert s.level[1000:1040, 0].max() == 0


def test_build_detector_without_limits_is_forecast_only_and_bad_options_name_the_key():
    cfg = MonitorConfig.from_dict({"channels": {"a": {"subsystem": "power"}}})
    assert isinstance(build_detector(cfg), ForecastDetector)
    bad = MonitorConfig.from_dict({"detector": {"forecast": {"no_such_option": 1}}}, source="vigil.toml")
    with pytest.raises(ConfigError, match="vigil.toml: detector.forecast"):
        build_detector(bad)


def test_build_detector_refuses_per_channel_options_instead_of_ignoring_them():
    cfg = MonitorConfig.from_dict({"channels": {"a": {"subsystem": "power", "detector": {"forecast": {"span": 5}}}}})
    with pytest.raises(ConfigError, match="channels.a.detector"):
        build_detector(cfg)
