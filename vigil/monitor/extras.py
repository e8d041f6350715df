"""What hangs off a running monitor besides its alarms: the archive, notifications, time until limit.

:func:`attach` wires them through the monitor's and the manager's hooks (block sinks and
subscribers), so the monitor's own loop is unchanged:

* the archive writer (:mod:`vigil.archive`) gets every scored block;
* the notifier (:mod:`vigil.notify`) gets every committed alarm change, when ``[notify]`` is set;
* the time-until-limit forecast is the detector's own :class:`~vigil.detect.trend.TrendForecast`
  when ``[detector.trend]`` configures one (it then raises watch alarms), else one fed by a block
  sink for the API only (it decides no alarm, so it is not checkpointed: after a restart it has
  its forecasts back within ``tau_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Extras:
    archive: Any = None  # ArchiveWriter
    reader: Any = None  # ArchiveReader over it
    notifier: Any = None
    trend: Any = None  # TrendForecast

    def close(self) -> None:
        """Write what the archive buffers and send what waits (call after the monitor stopped)."""
        if self.archive is not None:
            self.archive.close()
        if self.notifier is not None:
            self.notifier.close()

    def status(self) -> dict[str, Any]:
        return {
            "archive": None if self.archive is None else self.archive.status(),
            "notify": None if self.notifier is None else self.notifier.status(),
        }


def attach(
    monitor: Any, manager: Any, archive_dir: str | Path | None = None, retention_days: float | None = None
) -> Extras:
    """Attach the archive (if ``archive_dir``), the notifier (if ``[notify]``) and the trend forecast."""
    from vigil.detect.trend import TrendForecast, find_trend

    config = monitor.config
    extras = Extras()
    if archive_dir is not None:
        from vigil.archive import ArchiveReader, ArchiveWriter

        extras.archive = ArchiveWriter(archive_dir, monitor.channels, retention_days=retention_days)
        extras.reader = ArchiveReader(archive_dir, extras.archive)
        monitor.add_block_sink(extras.archive)
    if getattr(config, "notify", None):
        from vigil.notify import Notifier, load_settings

        extras.notifier = Notifier(load_settings(config.notify, getattr(config, "source", None)))
        manager.subscribe(extras.notifier)
    extras.trend = find_trend(monitor.detector)
    limits = config.limits() if hasattr(config, "limits") else {}
    if extras.trend is None and limits:
        from vigil.model import TelemetryBlock

        channels = list(monitor.channels)
        empty = TelemetryBlock.from_arrays([0.0], np.full((1, len(channels)), np.nan), channels)
        trend = TrendForecast(limits, **dict(config.detector.get("trend", {}))).fit(empty)
        monitor.add_block_sink(lambda time, values, _scores: trend.score(monitor._block(time, values)))
        extras.trend = trend
    return extras
