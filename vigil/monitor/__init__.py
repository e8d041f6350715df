"""The live monitor: streaming records or blocks through a detector into the alarm manager."""

from vigil.monitor.engine import Monitor

__all__ = ["Monitor"]
