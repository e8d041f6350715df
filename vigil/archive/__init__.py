"""The telemetry archive: every sample the monitor accepts, kept in Parquet files beside the store.

:class:`ArchiveWriter` takes scored blocks from the monitor (a block sink, see
:meth:`vigil.monitor.Monitor.add_block_sink`) and writes them from its own thread;
:class:`ArchiveReader` serves any span of a channel (decimated for plotting) or of all channels
(to refit a detector). The layout is described in ``docs/archive.md``.
"""

from vigil.archive.reader import ArchiveReader
from vigil.archive.writer import ArchiveWriter

__all__ = ["ArchiveReader", "ArchiveWriter"]
