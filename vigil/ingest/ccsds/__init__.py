"""CCSDS space packets (CCSDS 133.0-B) described by XTCE (CCSDS 660.0) or ccsdspy CSV definitions.

``load_xtce`` reads the mission database (packet time per :class:`TimeSpec`), ``PacketStream`` turns bytes into telemetry blocks
(segmented packets joined) and counts every stream problem per APID, ``read_xtce_alarms`` imports the mission's alarm limits.
"""

from vigil.ingest.ccsds.mdb import Mission, load_csv_definitions, load_xtce
from vigil.ingest.ccsds.stream import PacketStream
from vigil.ingest.ccsds.timespec import TimeSpec

__all__ = ["Mission", "PacketStream", "TimeSpec", "load_csv_definitions", "load_xtce"]
