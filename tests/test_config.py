"""Channel configuration: a valid TOML file loads; every mistake is named by file and dotted key."""

from __future__ import annotations

import math
import textwrap

import pytest

from vigil.config import ChannelConfig, MonitorConfig, load_config
from vigil.detect.limits import ChannelLimits
from vigil.errors import ConfigError

GOOD = """
incident_window_s = 12.5

[serve]
token_env = "VIGIL_TOKEN"

[channels.T-1]
subsystem = "thermal"
units = "degC"
description = "radiator inlet"
rate_hz = 2.0
min_violations = 3
min_conformance = 2
latching = true

[channels.T-1.limits]
warning = [-10.0, 60.0]
critical = [-20, 80]
severe = [-inf, 95.0]

[channels.T-1.detector]
forecast = { window = 64 }

[channels.V58P0157A]
subsystem = "left-wing-hydraulics"
stale_after_s = 5
"""


def write(tmp_path, text: str):
    path = tmp_path / "vigil.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_valid_file_loads(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.incident_window_s == 12.5
    assert cfg.serve == {"token_env": "VIGIL_TOKEN"}
    t1 = cfg.channels["T-1"]
    assert (t1.subsystem, t1.units, t1.description, t1.rate_hz) == ("thermal", "degC", "radiator inlet", 2.0)
    assert (t1.min_violations, t1.min_conformance, t1.latching) == (3, 2, True)
    assert t1.limits == ChannelLimits(warning=(-10.0, 60.0), critical=(-20.0, 80.0), severe=(None, 95.0))
    assert t1.detector == {"forecast": {"window": 64}}
    assert t1.stale_timeout_s == 1.5  # three periods at 2 Hz
    hyd = cfg.channels["V58P0157A"]
    assert (hyd.limits, hyd.rate_hz, hyd.stale_timeout_s, hyd.min_violations, hyd.latching) == (
        None,
        None,
        5.0,
        1,
        False,
    )
    assert cfg.limits() == {"T-1": t1.limits}
    assert (cfg.subsystem_of("V58P0157A"), cfg.subsystem_of("nope")) == ("left-wing-hydraulics", "")
    assert cfg.source.endswith("vigil.toml")


def test_defaults():
    cfg = MonitorConfig()
    assert (cfg.channels, cfg.incident_window_s) == ({}, 30.0)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[channels.T-1]\nunits = 'V'\n", "channels.T-1.subsystem", "required key is missing"),
        ("[channels.T-1]\nsubsystem = ''\n", "channels.T-1.subsystem", "at least 1 character"),
        ("[channels.T-1]\nsubsystem = 'p'\nlimts = {}\n", "channels.T-1.limts", "unknown key"),
        ("[channels.T-1]\nsubsystem = 'p'\nrate_hz = -1\n", "channels.T-1.rate_hz", "greater than 0"),
        ("[channels.T-1]\nsubsystem = 'p'\nrate_hz = nan\n", "channels.T-1.rate_hz", "finite number"),
        ("[channels.T-1]\nsubsystem = 'p'\nstale_after_s = 0\n", "channels.T-1.stale_after_s", "greater than 0"),
        ("[channels.T-1]\nsubsystem = 'p'\nmin_violations = 0\n", "channels.T-1.min_violations", "greater than or"),
        ("[channels.T-1]\nsubsystem = 'p'\nmin_conformance = 1.5\n", "channels.T-1.min_conformance", "integer"),
        ("[channels.T-1]\nsubsystem = 'p'\nlatching = 'yes please'\n", "channels.T-1.latching", "boolean"),
        ("[channels.T-1]\nsubsystem = 'p'\ndetector = 3\n", "channels.T-1.detector", "dictionary"),
        ("[channels.T-1]\nsubsystem = 'p'\nlimits = [1, 2]\n", "channels.T-1.limits", "expected a table"),
        ("incident_window_s = 0\n", "incident_window_s", "greater than 0"),
        ("incident_windows_s = 10\n", "incident_windows_s", "unknown key"),
        ("channels = 3\n", "channels", "dictionary"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, key, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert err.value.key == key
    assert err.value.source == str(path)
    assert str(err.value).startswith(f"{path}: {key}: ")


@pytest.mark.parametrize(
    ("limits", "key", "message"),
    [
        ("warning = [5.0, 1.0]", "warning", "low 5.0 is not below high 1.0"),
        ("warning = [1.0, 1.0]", "warning", "low 1.0 is not below high 1.0"),
        ("warning = [1.0]", "warning", r"expected \[low, high\]"),
        ("warning = [1.0, 'x']", "warning", "bound 'x' is not a number"),
        ("warning = [nan, 1.0]", "warning", "NaN"),
        ("warning = 4", "warning", r"expected \[low, high\]"),
        ("warnign = [0, 1]", "warnign", "unknown severity"),
        ("warning = [0, 10]\ncritical = [2, 12]", "critical", "low 2.0 is inside the less severe warning range"),
        ("watch = [0, 10]\nsevere = [-5, 9]", "severe", "high 9.0 is inside the less severe watch range"),
    ],
)
def test_limit_errors_name_the_severity_key(tmp_path, limits, key, message):
    path = write(tmp_path, f"[channels.T-1]\nsubsystem = 'thermal'\n[channels.T-1.limits]\n{limits}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert err.value.key == f"channels.T-1.limits.{key}"


def test_several_errors_are_counted(tmp_path):
    path = write(tmp_path, "[channels.a]\nsubsystem = 'p'\nrate_hz = 0\nmin_violations = 0\nlatching = 'x'\n")
    with pytest.raises(ConfigError, match=r"channels\.a\.rate_hz: .* \(and 2 more errors\)"):
        load_config(path)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read") as err:
        load_config(tmp_path / "missing.toml")
    assert err.value.source.endswith("missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML.*line 2"):
        load_config(write(tmp_path, "[channels.a]\nsubsystem = \n"))


def test_channel_limits_given_in_code_are_checked_too():
    ok = ChannelConfig(subsystem="p", limits=ChannelLimits(warning=(0.0, 1.0), critical=(None, 2.0)))
    assert ok.limits.critical == (None, 2.0)
    with pytest.raises(ValueError, match="not below"):
        ChannelConfig(subsystem="p", limits=ChannelLimits(warning=(3.0, 1.0)))
    assert MonitorConfig(channels={"x": ok}).limits()["x"].warning == (0.0, 1.0)
    bad = {"channels": {"x": {"subsystem": "p", "limits": ChannelLimits(warning=(0.0, math.inf), critical=(1.0, 5.0))}}}
    with pytest.raises(ConfigError, match="low 1.0 is inside the less severe warning range") as err:
        MonitorConfig.from_dict(bad, source="scenario")
    assert (err.value.source, err.value.key) == ("scenario", "channels.x.limits.critical")


def test_yaml_files_load_and_name_the_key(tmp_path):
    path = tmp_path / "vigil.yaml"
    path.write_text(
        "incident_window_s: 10\n"
        "channels:\n"
        "  T-1:\n"
        "    subsystem: thermal\n"
        "    limits:\n"
        "      warning: [0, 10]\n"
        "      critical: [-.inf, 20]\n"
    )
    cfg = load_config(path)
    assert cfg.incident_window_s == 10.0
    assert cfg.channels["T-1"].limits == ChannelLimits(warning=(0.0, 10.0), critical=(None, 20.0))
    path.write_text("channels:\n  T-1:\n    subsystem: thermal\n    limits:\n      warning: [10, 0]\n")
    with pytest.raises(ConfigError, match="low 10.0 is not below high 0.0") as err:
        load_config(path)
    assert (err.value.source, err.value.key) == (str(path), "channels.T-1.limits.warning")
    path.write_text("channels: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_vigil_config_check(tmp_path):
    from typer.testing import CliRunner

    from vigil.cli import app

    good = write(tmp_path, GOOD)
    result = CliRunner().invoke(app, ["config", "check", str(good)])
    assert result.exit_code == 0
    assert result.output == f"{good}: ok, 2 channels in 2 subsystems, 1 with limits, incident window 12.5 s\n"
    bad = write(tmp_path, "[channels.T-1]\nsubsystem = 'p'\n[channels.T-1.limits]\nwarning = [3, 1]\n")
    result = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    assert "channels.T-1.limits.warning: low 3.0 is not below high 1.0" in result.output


@pytest.mark.parametrize(
    ("name", "key"), [('"a,b"', "channels.a,b"), ('""', "channels.''"), ('" T "', "channels.' T '")]
)
def test_channel_names_that_cannot_travel_in_records_are_refused(tmp_path, name, key):
    path = write(tmp_path, f"[channels.{name}]\nsubsystem = 'p'\n")
    with pytest.raises(ConfigError, match="channel name must be non-empty") as err:
        load_config(path)
    assert err.value.key == key
