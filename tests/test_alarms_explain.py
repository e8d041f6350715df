"""Explanations tell the truth: each check in its own terms, about the sample that set the alarm's
current severity, with the peak apart; UTC clock times; nothing printed can drive a terminal.

The first three cases are the texts an operator was shown (issue 8) that contradicted the data."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.base import Scores
from vigil.detect.forecast import ForecastDetector
from vigil.model import TelemetryBlock
from vigil.store.sqlite import SqliteStore

T0 = 1_044_107_600.0  # 2003-02-01T13:53:20Z
NAN = np.nan


def scores(level, score, expected, low, high, by, detectors) -> Scores:
    col = lambda x: np.asarray(x, dtype=float)[:, None]  # noqa: E731
    return Scores(
        level=np.asarray(level, dtype=np.int8)[:, None],
        score=col(score),
        expected=col(expected),
        low=col(low),
        high=col(high),
        detector=tuple(detectors),
        by=np.asarray(by, dtype=np.int8)[:, None],
    )


def one(channel: str, values, cfg: dict | None = None, t0: float = T0) -> tuple[TelemetryBlock, MonitorConfig]:
    block = TelemetryBlock.from_arrays(t0 + np.arange(len(values)), values, [channel])
    return block, MonitorConfig.from_dict({"channels": {channel: {"subsystem": "thermal", **(cfg or {})}}})


def numbers(text: str) -> list[str]:
    return re.findall(r"-?\d+(?:\.\d+)?", text)


def test_an_escalation_by_a_limit_explains_the_limit_crossed_not_the_raising_sample():
    # Raised as a warning by the forecast error at 22.25 degC; later 49.8 degC crosses the configured
    # critical limit 40: the text was "value 22.25 degC above nominal band [22.89, 23.09]".
    block, cfg = one("TCS_T", [22.25, 30.0, 49.8], {"units": "degC", "limits": {"critical": [-20, 40]}})
    s = scores(
        level=[2, 2, 4],
        score=[1.2, 1.4, 2.0],
        expected=[22.99, 23.0, NAN],
        low=[22.89, 22.9, -20],
        high=[23.09, 23.1, 40],
        by=[0, 0, 1],
        detectors=("forecast.error", "limits"),
    )
    m = AlarmManager(cfg)
    m.update(block, s)
    a = m.get(1)
    assert (a.severity, a.detector, a.trigger_value, a.threshold) == ("critical", "limits", 49.8, 40.0)
    text = a.explanation
    assert "at 2003-02-01T13:53:22Z value 49.8 degC above the critical limit 40 degC" in text
    assert "22.25" not in text and "22.89" not in text  # nothing of the raising sample's band
    assert text.startswith("TCS_T (thermal): critical by limits since 2003-02-01T13:53:20Z")


def test_a_forecast_error_inside_the_band_is_not_called_outside_it():
    # The smoothed error crossed its threshold while the value itself lay inside expected +- threshold:
    # the text was "value 1303 outside band [1299, 1307]".
    block, cfg = one("RW_SPEED", [1303.0])
    s = scores([2], [1.05], [1303.4], [1299.4], [1307.4], [0], ("forecast.error",))
    m = AlarmManager(cfg)
    m.update(block, s)
    text = m.get(1).explanation
    assert "outside" not in text and "above" not in text and "below" not in text
    assert (
        "value 1303, expected 1303 (band [1299, 1307]): smoothed prediction error 4.2 is 1.05x its threshold 4" in text
    )


def test_a_value_above_the_range_is_called_above_it():
    # The text was "value 8.905 below nominal band [-6, 6]".
    block, cfg = one("GYRO_X", [8.905])
    s = scores([2], [1.45], [0.1], [-6.0], [6.0], [1], ("forecast.error", "forecast.novelty"))
    m = AlarmManager(cfg)
    m.update(block, s)
    a = m.get(1)
    assert a.direction == "high"
    assert "value 8.905 above the range seen in history [-6, 6] by 2.905 (1.45x the margin allowed)" in a.explanation
    assert "below" not in a.explanation


def test_the_peak_is_kept_apart_from_the_sample_that_set_the_severity():
    block, cfg = one("P", [120.0, 180.0, 150.0], {"units": "kPa", "limits": {"warning": [0, 100]}})
    s = scores([2, 2, 2], [1.2, 1.8, 1.5], [NAN] * 3, [0] * 3, [100] * 3, [0] * 3, ("limits",))
    m = AlarmManager(cfg)
    m.update(block, s)
    a = m.get(1)
    assert (a.trigger_value, a.peak_value, a.last_value) == (120.0, 180.0, 150.0)
    assert "at 2003-02-01T13:53:20Z value 120 kPa above the warning limit 100 kPa" in a.explanation
    assert "peak 180 kPa at 2003-02-01T13:53:21Z" in a.explanation
    assert "latest flagged 150 kPa at 2003-02-01T13:53:22Z; ongoing" in a.explanation


def test_an_enumerated_state_is_named():
    cfg = {"states": {0: "OFF", 1: "NOMINAL", 3: "FAULT"}}
    block, config = one("PDU_MODE", [1.0, 3.0], cfg)
    s = scores([0, 4], [0.0, 1.0], [NAN] * 2, [NAN] * 2, [NAN] * 2, [0, 0], ("xtce",))
    m = AlarmManager(config)
    m.update(block, s)
    a = m.get(1)
    assert a.value_label == "FAULT"
    assert "state FAULT (raw value 3) is a critical state" in a.explanation


def test_a_stuck_value_says_since_when_it_repeats_across_blocks():
    block, cfg = one("FLOW", [1.0, 2.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    n = block.n_samples
    s = scores([0] * 6 + [2, 2], [0.1] * 6 + [1.2, 1.4], [5.0] * n, [4.0] * n, [6.0] * n, [0] * n, ("forecast.stuck",))
    m = AlarmManager(cfg)
    for i in range(n):  # one row per call, as the live monitor feeds: the repeat began 4 blocks earlier
        m.update(
            block.slice(i, i + 1),
            Scores(
                *(getattr(s, f)[i : i + 1] for f in ("level", "score", "expected", "low", "high")),
                detector=s.detector,
                by=s.by[i : i + 1],
            ),
        )
    text = m.get(1).explanation
    assert "value 5 repeated exactly since 2003-02-01T13:53:22Z (1.2x the longest repeat allowed)" in text


def test_control_characters_in_names_are_escaped_in_every_text():
    # A channel the configuration does not know, named by whoever sent the record.
    evil = "T1\x1b[2J\x1b[31mOK\nforged"
    block = TelemetryBlock.from_arrays([T0], [50.0], [evil])
    s = scores([2], [9.0], [NAN], [0], [10], [0], ("limits",))
    m = AlarmManager(MonitorConfig.from_dict({"channels": {}}))
    m.update(block, s)
    for text in (m.get(1).explanation, m.incidents()[0].explanation):
        assert not re.search(r"[\x00-\x1f\x7f-\x9f]", text), text
        assert "T1\\x1b[2J\\x1b[31mOK\\nforged" in text


def test_a_real_novelty_alarm_names_the_range_its_value_left():
    rng = np.random.default_rng(0)
    t = np.arange(3000.0)
    hist = TelemetryBlock.from_arrays(T0 + t, np.sin(t / 20) + 0.01 * rng.normal(size=t.size), ["V"])
    det = ForecastDetector().fit(hist)
    live = np.sin((t[:200] + 3000) / 20)
    live[150:] = 6.0  # far outside anything seen
    block = TelemetryBlock.from_arrays(T0 + 3000 + t[:200], live, ["V"])
    s = det.score(block)
    m = AlarmManager(MonitorConfig.from_dict({"channels": {"V": {"subsystem": "s"}}}))
    m.update(block, s)
    novelty = [a for a in m.alarms("all") if a.detector == "forecast.novelty"]
    assert novelty, [a.explanation for a in m.alarms("all")]
    a = novelty[0]
    lo, hi = a.low, a.high
    assert -1.1 < lo < -0.9 and 0.9 < hi < 1.1  # the range seen in history, not a prediction band
    assert a.trigger_value > hi and f"above the range seen in history [{lo:.4g}, {hi:.4g}]" in a.explanation


def test_audit_and_incident_texts_use_clock_times(tmp_path):
    path = tmp_path / "a.sqlite"
    store = SqliteStore(path)
    block, cfg = one("P", [120.0], {"limits": {"warning": [0, 100]}})
    m = AlarmManager(cfg, store=store)
    m.update(block, scores([2], [1.2], [NAN], [0], [100], [0], ("limits",)))
    store.close()
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "alarms", "--store", str(path), "--audit", "5"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "audit 2003-02-01T13:53:20Z alarm 1 by system: raised" in out
    assert "e+09" not in out and "t=1.0" not in out
    inc = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "alarms", "--store", str(path), "--incidents"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "onset 2003-02-01T13:53:20Z" in inc and "e+09" not in inc


@pytest.mark.parametrize("t", [T0, T0 + 0.5])
def test_explanations_never_print_exponent_times(t):
    block, cfg = one("P", [120.0], {"limits": {"warning": [0, 100]}}, t0=t)
    m = AlarmManager(cfg)
    m.update(block, scores([2], [1.2], [NAN], [0], [100], [0], ("limits",)))
    assert "e+09" not in m.get(1).explanation and "2003-02-01T13:53:2" in m.get(1).explanation


def test_monitor_output_escapes_names_from_the_network():
    from vigil.monitor.runner import event_line, problem_lines

    evil = "X\x1b]0;owned\x07\x1b[2J"
    counters = {"channels": {}, "unknown": {evil: 3}, "recent_errors": [f"line 1: channel {evil}: bad"]}
    event = {"type": "incident", "time": T0, "payload": {"id": 1, "subsystem": "", "channels": [{"channel": evil}]}}
    for line in [*problem_lines(counters), event_line(event)]:
        assert not re.search(r"[\x00-\x1f\x7f-\x9f]", line), line
    assert event_line(event).startswith("[incident] 2003-02-01T13:53:20Z #1")


def test_the_demosat_fault_state_is_named_from_the_xtce_enumeration():
    """The enumeration labels travel from the XTCE database through the monitor configuration to
    the explanation: an enumerated fault reads FAULT, not 3."""
    from vigil.detect.xtce_alarm import XtceAlarmCheck, xtce_monitor_config
    from vigil.ingest.ccsds import PacketStream, load_xtce
    from vigil.ingest.ccsds.demo.generator import DemoSpacecraft, xtce_path
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

    mission = load_xtce(xtce_path())
    alarms = read_xtce_alarms(mission)
    config = xtce_monitor_config(alarms)
    assert config.channels["PWR_MODE"].states[3] == "FAULT"
    sc = DemoSpacecraft(seed=0)
    block = PacketStream(mission).feed(sc.packets(2400.0), final=True)
    m = AlarmManager(config)
    m.update(block, XtceAlarmCheck(alarms).fit(block).score(block))
    mode = [a for a in m.alarms("all") if a.channel == "PWR_MODE" and a.severity == "critical"]
    assert mode, [a.explanation for a in m.alarms("all")]
    assert mode[0].value_label == "FAULT"
    assert "state FAULT (raw value 3) is a critical state" in mode[0].explanation


def test_an_xtce_context_range_is_not_mistaken_for_the_default_limits():
    # The configuration holds the default ranges; under a context alarm the band in force differs.
    block, cfg = one("BUS_T", [35.0, 12.0], {"limits": {"warning": [0, 10]}})
    s = scores([2, 0], [2.0, 0.0], [NAN, NAN], [20.0, 0.0], [30.0, 10.0], [0, 0], ("xtce",))
    m = AlarmManager(cfg)
    m.update(
        block.slice(0, 1),
        Scores(
            *(getattr(s, f)[:1] for f in ("level", "score", "expected", "low", "high")),
            detector=s.detector,
            by=s.by[:1],
        ),
    )
    assert "value 35 above the band in force [20, 30]" in m.get(1).explanation
    block, cfg = one("BUS_T", [12.0], {"limits": {"warning": [0, 10]}})
    m = AlarmManager(cfg)
    m.update(block, scores([2], [1.4], [NAN], [0.0], [10.0], [0], ("xtce",)))
    assert "value 12 above the warning limit 10" in m.get(1).explanation


def test_a_real_stuck_alarm_says_when_the_value_froze():
    rng = np.random.default_rng(0)
    t = np.arange(3000.0)
    # A noisy level with no recurring shape: a freeze can only be told by its repeats.
    hist = TelemetryBlock.from_arrays(T0 + t, np.round(5 + 0.1 * rng.normal(size=t.size), 3), ["V"])
    det = ForecastDetector().fit(hist)
    live = np.round(5 + 0.1 * rng.normal(size=600), 3)
    live[100:] = 5.0  # frozen from row 100 on, at the middle of the nominal level
    block = TelemetryBlock.from_arrays(T0 + 3000 + t[:600], live, ["V"])
    m = AlarmManager(MonitorConfig.from_dict({"channels": {"V": {"subsystem": "s"}}}))
    for i in range(0, 600, 7):  # blocks of 7 rows: the freeze began many blocks before the alarm
        part = block.slice(i, min(i + 7, 600))
        m.update(part, det.score(part))
    stuck = [a for a in m.alarms("all") if a.detector == "forecast.stuck"]
    assert stuck, [a.explanation for a in m.alarms("all")]
    assert stuck[0].since == T0 + 3100
    assert f"value {live[100]:.4g} repeated exactly since 2003-02-01T14:45:00Z" in stuck[0].explanation


def test_state_names_survive_the_generated_toml(tmp_path):
    from vigil.config import load_config
    from vigil.ingest.ccsds import load_xtce
    from vigil.ingest.ccsds.demo.generator import xtce_path
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

    path = tmp_path / "demosat.toml"
    path.write_text(read_xtce_alarms(load_xtce(xtce_path())).to_toml())
    assert load_config(path).channels["PWR_MODE"].states[3] == "FAULT"


def test_the_api_gives_clock_times_beside_the_numbers():
    from fastapi.testclient import TestClient

    from vigil.detect.limits import LimitCheck
    from vigil.monitor import Monitor
    from vigil.serve.app import create_app

    block, cfg = one("P", [5.0, 120.0], {"limits": {"warning": [0, 100]}})
    manager = AlarmManager(cfg)
    monitor = Monitor(cfg, LimitCheck(cfg.limits()).fit(block), manager)
    monitor.feed_block(block)
    with TestClient(create_app(monitor, manager, None, "token-0123456789abcdef")) as client:
        alarm = client.get("/api/alarms").json()[0]
        assert (alarm["first_time"], alarm["first_time_utc"]) == (T0 + 1, "2003-02-01T13:53:21Z")
        assert alarm["rtn_time_utc"] is None
        audit = client.get("/api/audit").json()[0]
        assert audit["time_utc"] == "2003-02-01T13:53:21Z" and audit["wall_time_utc"].endswith("Z")
        incident = client.get("/api/incidents").json()[0]
        assert incident["first_time_utc"] == "2003-02-01T13:53:21Z"
