"""Detectors: one small fit/score interface (:mod:`vigil.detect.base`), one module per detector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vigil.detect.base import Detector

if TYPE_CHECKING:  # vigil.config imports this package; import it only when type checking.
    from vigil.config import MonitorConfig

__all__ = ["build_detector"]


def build_detector(config: MonitorConfig | None = None, **forecast_options: Any) -> Detector:
    """The default detector: limit checks from ``config`` (where any channel has limits) + forecast,
    + a counterpart check where any channel names a ``counterpart``, + the time-until-limit trend
    (:mod:`vigil.detect.trend`) when ``[detector.trend]`` is given (its options, e.g. ``horizon_s``).

    Counterpart-check options come from ``[detector.counterpart]``. Forecast options come from the
    configuration's ``[detector.forecast]`` table, then from
    ``forecast_options`` (which win); per-channel ``[channels.X.detector]`` options are refused
    with a :class:`~vigil.errors.ConfigError`, since one configuration serves every channel. With
    ``config=None`` only the forecast detector is built.

    >>> build_detector(None).name
    'forecast'
    >>> from vigil.config import MonitorConfig
    >>> cfg = MonitorConfig.from_dict({"channels": {"T-1": {"subsystem": "thermal", "limits": {"warning": [0, 10]}}}})
    >>> [d.name for d in build_detector(cfg).detectors]
    ['limits', 'forecast']
    """
    from vigil.detect.counterpart import CounterpartCheck
    from vigil.detect.ensemble import Ensemble
    from vigil.detect.forecast import ForecastDetector
    from vigil.detect.limits import LimitCheck
    from vigil.errors import ConfigError

    source = getattr(config, "source", None)
    if config is not None:
        # One detector scores all channels with one configuration; say so rather than ignore.
        for name, channel in config.channels.items():
            if channel.detector:
                raise ConfigError(
                    "per-channel detector options are not supported; set [detector.forecast] for all channels",
                    key=f"channels.{name}.detector",
                    source=source,
                )
    options = dict(config.detector.get("forecast", {})) if config is not None else {}
    options.update(forecast_options)
    try:
        forecast = ForecastDetector(**options)
    except TypeError as err:
        raise ConfigError(str(err), key="detector.forecast", source=source) from None
    if config is None:
        return forecast
    detectors: list[Detector] = [LimitCheck(config.limits())] if config.limits() else []
    detectors.append(forecast)
    if config.counterparts():
        try:
            detectors.append(CounterpartCheck(config.counterparts(), **config.detector.get("counterpart", {})))
        except TypeError as err:
            raise ConfigError(str(err), key="detector.counterpart", source=source) from None
        except ConfigError as err:
            key = err.key if (err.key or "").startswith("channels.") else f"detector.counterpart.{err.key}"
            raise ConfigError(err.reason, key=key, source=source) from None
    if "trend" in config.detector and config.limits():  # time until limit, watch within the horizon
        from vigil.detect.trend import TrendForecast

        try:
            detectors.append(TrendForecast(config.limits(), **config.detector["trend"]))
        except TypeError as err:
            raise ConfigError(str(err), key="detector.trend", source=source) from None
        except ConfigError as err:
            raise ConfigError(err.reason, key=f"detector.trend.{err.key}", source=source) from None
    return detectors[0] if len(detectors) == 1 else Ensemble(detectors)
