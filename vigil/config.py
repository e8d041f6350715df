"""Channel configuration: subsystem, units, limits, expected rate, detector options, alarm settings.

The configuration is a TOML file (or the same structure in YAML, for ``.yaml``/``.yml`` files)::

    incident_window_s = 30.0
    incident_correlation = 0.9   # optional: also group channels whose recent values co-vary

    [channels.T-1]
    subsystem = "thermal"
    units = "degC"
    rate_hz = 1.0
    min_violations = 2
    latching = true
    counterpart = "T-2"         # optional: a configured twin to track (vigil.detect.counterpart)

    [channels.T-1.limits]
    warning = [-10.0, 60.0]     # [low, high]; -inf / inf for a one-sided range
    critical = [-20.0, 80.0]

    [channels.T-1.detector]
    forecast = { window = 64 }

A channel with limits and no ``min_conformance`` of its own gets
:data:`DEFAULT_LIMIT_CONFORMANCE` (10): its alarm returns to normal only after 10 nominal samples
in a row. A noisy channel sitting at a limit crosses it every few samples; with the Yamcs default
of 1 it returned to normal and was raised again dozens of times in three minutes (an acknowledged
alarm that returns to normal is finished, so each crossing was a new alarm). Ten nominal samples
in a row is rare for noise straddling the limit (about one chance in 2,000 per sample) and takes
ten seconds at 1 Hz for a channel that really is back. Set ``min_conformance = 1`` to return to
normal at the first nominal sample.

Every error is a :class:`vigil.errors.ConfigError` naming the file and the dotted key
(``channels.T-1.limits.warning``). The top-level tables ``[monitor]``, ``[detector]``, ``[ingest]``,
``[serve]`` and ``[notify]`` are free-form options read (and validated) by the layer that owns them.

>>> cfg = MonitorConfig.from_dict({"channels": {"T-1": {"subsystem": "thermal", "limits": {"warning": [0, 10]}}}})
>>> cfg.channels["T-1"].limits.warning, cfg.channels["T-1"].min_conformance
((0.0, 10.0), 10)
>>> MonitorConfig.from_dict({"channels": {"T-1": {"subsystem": "thermal", "rate_hz": -1}}})
Traceback (most recent call last):
...
vigil.errors.ConfigError: channels.T-1.rate_hz: Input should be greater than 0
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vigil.detect.base import SEVERITIES
from vigil.detect.limits import ChannelLimits
from vigil.errors import ConfigError

__all__ = ["DEFAULT_LIMIT_CONFORMANCE", "ChannelConfig", "MonitorConfig", "load_config", "parse_limits"]

#: ``min_conformance`` of a channel with limits that does not set its own (see the module docstring).
DEFAULT_LIMIT_CONFORMANCE = 10


class ChannelConfig(BaseModel):
    """How one channel is described, checked and alarmed."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    subsystem: str = Field(min_length=1)
    units: str = ""
    description: str = ""
    limits: ChannelLimits | None = None
    rate_hz: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    stale_after_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    detector: dict[str, Any] = Field(default_factory=dict)
    min_violations: int = Field(default=1, ge=1)
    min_conformance: int = Field(default=1, ge=1)
    latching: bool = False
    #: Another configured channel this one should track (its physically symmetric twin); see
    #: :mod:`vigil.detect.counterpart`.
    counterpart: str | None = Field(default=None, min_length=1)
    #: An enumerated channel's state names by raw value (``{3 = "FAULT"}``): explanations name the state.
    states: dict[int, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _limit_conformance(cls, data: Any) -> Any:
        """Limits without their own ``min_conformance`` get the anti-chatter default."""
        if isinstance(data, dict) and data.get("limits") is not None and "min_conformance" not in data:
            return {**data, "min_conformance": DEFAULT_LIMIT_CONFORMANCE}
        return data

    @field_validator("limits", mode="before")
    @classmethod
    def _check_limits(cls, value: Any) -> ChannelLimits | None:
        if value is None or isinstance(value, ChannelLimits):
            return None if value is None else parse_limits(_limits_to_dict(value))
        return parse_limits(value)

    @property
    def stale_timeout_s(self) -> float | None:
        """Seconds without a sample before the channel is stale: ``stale_after_s``, else 3 periods."""
        if self.stale_after_s is not None:
            return self.stale_after_s
        return None if self.rate_hz is None else 3.0 / self.rate_hz


class MonitorConfig(BaseModel):
    """The whole monitor configuration: channels plus incident grouping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    incident_window_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    #: Also group alarms of different subsystems whose channels' recent values correlate at least
    #: this much (absolute Pearson r over the last samples); ``None`` groups by subsystem only.
    incident_correlation: float | None = Field(default=None, gt=0, le=1)
    # Free-form sections owned (and validated) by other layers.
    monitor: dict[str, Any] = Field(default_factory=dict)
    detector: dict[str, Any] = Field(default_factory=dict)
    ingest: dict[str, Any] = Field(default_factory=dict)
    serve: dict[str, Any] = Field(default_factory=dict)
    notify: dict[str, Any] = Field(default_factory=dict)  # validated by vigil.notify.load_settings
    source: str = Field(default="<memory>", exclude=True)

    @model_validator(mode="after")
    def _check_counterparts(self) -> MonitorConfig:
        for name, ch in self.channels.items():
            if ch.counterpart is None:
                continue
            if ch.counterpart == name:
                raise ConfigError("a channel cannot be its own counterpart", key=f"channels.{name}.counterpart")
            if ch.counterpart not in self.channels:
                raise ConfigError(f"{ch.counterpart!r} is not a configured channel", key=f"channels.{name}.counterpart")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> MonitorConfig:
        """Validate a parsed configuration; errors name ``source`` (a file name) and the dotted key."""
        if not isinstance(data, dict):
            raise ConfigError(f"expected a table, got {type(data).__name__}", source=source)
        if "source" in data:
            raise ConfigError("unknown key", key="source", source=source)
        if isinstance(data.get("channels"), dict):
            for name in data["channels"]:
                _check_channel_name(name, source)
        try:
            return cls.model_validate({**data, "source": source or "<memory>"})
        except ValidationError as err:
            raise _config_error(err, source) from None

    def limits(self) -> dict[str, ChannelLimits]:
        """Limits of the channels that have them, as :class:`vigil.detect.limits.LimitCheck` takes them."""
        return {name: ch.limits for name, ch in self.channels.items() if ch.limits is not None}

    def counterparts(self) -> dict[str, str]:
        """``{channel: counterpart}`` of the channels that have one, as :class:`~vigil.detect.counterpart.CounterpartCheck` takes them."""
        return {name: ch.counterpart for name, ch in self.channels.items() if ch.counterpart is not None}

    def subsystem_of(self, channel: str) -> str:
        """The channel's subsystem, ``""`` for a channel not in the configuration."""
        ch = self.channels.get(channel)
        return "" if ch is None else ch.subsystem


def load_config(path: str | Path) -> MonitorConfig:
    """Read and validate a channel configuration: TOML, or YAML for ``.yaml``/``.yml`` files
    (YAML needs the ``yaml`` extra, PyYAML)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror or err}", source=source) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        return MonitorConfig.from_dict(_parse_yaml(text, source), source=source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}", source=source) from None
    return MonitorConfig.from_dict(data, source=source)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            "YAML configuration needs PyYAML: pip install 'vigil-telemetry[yaml]'", source=source
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", source=source) from None
    return {} if data is None else data


def parse_limits(raw: Any) -> ChannelLimits:
    """Check a ``{severity: [low, high]}`` table: known severities, ``low < high``, nested ranges.

    Infinite bounds mean "unbounded on that side". A more severe range must contain every less
    severe one (a value cannot be critical without also being a warning).

    >>> parse_limits({"warning": [0, 10], "critical": ["-inf", 12]}).critical
    (None, 12.0)
    >>> parse_limits({"warning": [0, 10], "critical": [2, 12]})
    Traceback (most recent call last):
    ...
    vigil.errors.ConfigError: critical: low 2.0 is inside the less severe warning range [0.0, 10.0]
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a table of severity = [low, high], got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SEVERITIES))
    if unknown:
        raise ConfigError(f"unknown severity; use one of {', '.join(SEVERITIES)}", key=str(unknown[0]))
    ranges: dict[str, tuple[float, float]] = {}
    for sev in SEVERITIES:
        if raw.get(sev) is not None:
            ranges[sev] = _parse_range(raw[sev], sev)
    _check_nesting(ranges)
    return ChannelLimits(**{sev: tuple(None if math.isinf(v) else v for v in rng) for sev, rng in ranges.items()})


def _check_channel_name(name: Any, source: str | None) -> None:
    """Channel names travel in CSV records (``time,channel,value``) and URLs: no commas, no
    surrounding or control whitespace, not empty."""
    text = str(name)
    if not text or text != text.strip() or "," in text or any(ord(ch) < 32 for ch in text):
        raise ConfigError(
            "channel name must be non-empty, without commas, control characters or surrounding spaces",
            key=f"channels.{text!r}" if text != text.strip() or not text else f"channels.{text}",
            source=source,
        )


def _parse_range(value: Any, key: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError("expected [low, high]", key=key)
    bounds = []
    for v in value:
        if v is None:
            v = math.nan
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"bound {v!r} is not a number", key=key) from None
        if math.isnan(x):
            raise ConfigError("bound is NaN or missing (use -inf or inf for an open side)", key=key)
        bounds.append(x)
    lo, hi = (-math.inf if math.isinf(bounds[0]) else bounds[0]), (math.inf if math.isinf(bounds[1]) else bounds[1])
    if not lo < hi:
        raise ConfigError(f"low {lo} is not below high {hi}", key=key)
    return lo, hi


def _check_nesting(ranges: dict[str, tuple[float, float]]) -> None:
    names = [s for s in SEVERITIES if s in ranges]
    for inner, outer in zip(names, names[1:]):
        (ilo, ihi), (olo, ohi) = ranges[inner], ranges[outer]
        if olo > ilo:
            raise ConfigError(f"low {olo} is inside the less severe {inner} range [{ilo}, {ihi}]", key=outer)
        if ohi < ihi:
            raise ConfigError(f"high {ohi} is inside the less severe {inner} range [{ilo}, {ihi}]", key=outer)


def _limits_to_dict(limits: ChannelLimits) -> dict[str, Any]:
    out = {}
    for sev in SEVERITIES:
        rng = getattr(limits, sev)
        if rng is not None:
            lo, hi = rng
            out[sev] = [-math.inf if lo is None else lo, math.inf if hi is None else hi]
    return out


def _config_error(err: ValidationError, source: str | None) -> ConfigError:
    """The first validation error as a ConfigError naming its dotted key; others are counted."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    message = first["msg"]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        # Our own check inside a field validator: it knows the sub-key.
        if cause.key:
            loc.append(cause.key)
        message = cause.reason
    elif first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return ConfigError(message, key=".".join(loc) or None, source=source)
