"""Errors that say where: file, channel, row, key."""

from __future__ import annotations


class VigilError(Exception):
    """Base class of every error Vigil raises on purpose."""


class DataError(VigilError, ValueError):
    """Bad telemetry input. The message names the source, channel and row where known.

    >>> str(DataError("NaN value", source="a.csv", channel="T-1", row=7))
    'a.csv: channel T-1: row 7: NaN value'
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        channel: str | None = None,
        row: int | None = None,
    ) -> None:
        self.source = source
        self.channel = channel
        self.row = row
        self.reason = message
        parts = []
        if source:
            parts.append(str(source))
        if channel is not None:
            parts.append(f"channel {channel}")
        if row is not None:
            parts.append(f"row {row}")
        parts.append(message)
        super().__init__(": ".join(parts))


class ConfigError(VigilError, ValueError):
    """Bad configuration. The message names the file and the key.

    >>> str(ConfigError("must be positive", key="channels.T-1.rate_hz", source="vigil.toml"))
    'vigil.toml: channels.T-1.rate_hz: must be positive'
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.key = key
        self.source = source
        self.reason = message
        parts = [p for p in (source, key) if p]
        parts.append(message)
        super().__init__(": ".join(parts))
