"""What operators decide at run time, applied to a running monitor and given back at restart.

* **Limits changed at run time.** :func:`set_limits` puts a channel's new ranges in the one place
  every reader of limits looks: the configuration's :class:`~vigil.config.ChannelConfig` (the alarm
  manager's explanations, the console) and every detector of the tree that maps limits onto its
  channels (``limits``, ``low_``, ``high_``: :class:`~vigil.detect.limits.LimitCheck` and the
  time-until-limit :class:`~vigil.detect.trend.TrendForecast`), so the next sample is checked
  against them. The store keeps each change (who, when, why, old and new) and
  :func:`with_operator_state` applies the latest per channel at start.
* **Operator-nominal patterns** (:mod:`vigil.detect.nominal`): :func:`with_operator_state` wraps the
  detector in a :class:`~vigil.detect.nominal.NominalFilter` holding the store's active patterns.

>>> from vigil.config import MonitorConfig
>>> from vigil.detect.limits import LimitCheck
>>> from vigil.model import TelemetryBlock
>>> cfg = MonitorConfig.from_dict({"channels": {"T": {"subsystem": "eps", "limits": {"warning": [0, 10]}}}})
>>> det = LimitCheck(cfg.limits()).fit(TelemetryBlock.from_arrays([0.0], [[1.0]], ["T"]))
>>> old = set_limits(det, cfg, "T", parse_limits({"warning": [0, 20]}))
>>> det.score(TelemetryBlock.from_arrays([1.0], [[15.0]], ["T"])).level.tolist(), cfg.channels["T"].limits.warning
([[0]], (0.0, 20.0))
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from vigil.config import MonitorConfig, parse_limits
from vigil.detect.base import SEVERITIES, Detector
from vigil.detect.limits import ChannelLimits
from vigil.detect.nominal import NominalFilter
from vigil.errors import ConfigError

__all__ = ["limits_from_json", "limits_json", "set_limits", "with_operator_state"]


def members(detector: Any) -> Iterator[Any]:
    """The detector and every detector inside it (ensembles, wrappers)."""
    yield detector
    for inner in getattr(detector, "detectors", None) or ([detector.inner] if hasattr(detector, "inner") else []):
        yield from members(inner)


def limits_json(limits: ChannelLimits | None) -> dict[str, list[float | None]]:
    """A channel's ranges as JSON (``None`` for an open side), severities without a range left out.

    >>> limits_json(parse_limits({"warning": [0, 10], "critical": ["-inf", 12]}))
    {'warning': [0.0, 10.0], 'critical': [None, 12.0]}
    """
    if limits is None:
        return {}
    out = {}
    for sev in SEVERITIES:
        rng = getattr(limits, sev)
        if rng is not None:
            out[sev] = [None if v is None or not math.isfinite(v) else float(v) for v in rng]
    return out


def set_limits(detector: Detector, config: MonitorConfig, channel: str, limits: ChannelLimits) -> ChannelLimits | None:
    """Check ``channel`` against ``limits`` from the next sample on; returns the ranges it had.

    Raises :class:`ConfigError` when the channel is not configured (check the ranges with
    :func:`limits_from_json` or :func:`~vigil.config.parse_limits` first).
    """
    cfg = config.channels.get(channel)
    if cfg is None:
        raise ConfigError(f"no channel {channel!r} in the configuration", key="channels")
    low, high = limits.as_arrays()
    old = cfg.limits
    config.channels[channel] = cfg.model_copy(update={"limits": limits})
    for det in members(detector):
        if isinstance(getattr(det, "limits", None), dict) and hasattr(det, "low_") and hasattr(det, "channels_"):
            det.limits[channel] = limits
            if channel in det.channels_:
                j = det.channels_.index(channel)
                det.low_[j], det.high_[j] = low, high
    return old


def limits_from_json(raw: Any) -> ChannelLimits:
    """:func:`limits_json`'s form back (``None``: an open side), checked by :func:`parse_limits`.

    >>> limits_from_json({"warning": [None, 10]}).warning
    (None, 10.0)
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a table of severity = [low, high], got {type(raw).__name__}", key="limits")
    fixed = {}
    for sev, rng in raw.items():
        if isinstance(rng, list | tuple) and len(rng) == 2:
            rng = [-math.inf if rng[0] is None else rng[0], math.inf if rng[1] is None else rng[1]]
        fixed[sev] = rng
    return parse_limits(fixed)


def with_operator_state(detector: Detector, config: MonitorConfig, store: Any) -> NominalFilter:
    """Apply the store's run-time limit changes (the latest per channel) to ``config`` and ``detector``
    and wrap it with the store's active nominal patterns. Call once, before the monitor starts."""
    changes = getattr(store, "limit_changes", None)
    latest = {c["channel"]: c["new"] for c in (changes() if changes else [])}
    for channel, new in latest.items():
        if channel in config.channels:
            set_limits(detector, config, channel, limits_from_json(new))
    patterns = getattr(store, "nominal_patterns", None)
    return NominalFilter(detector, patterns() if patterns else [])
