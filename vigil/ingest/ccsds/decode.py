"""Decoding framed packets into arrays: ccsdspy in bulk, space_packet_parser packet by packet.

:class:`PacketDecoder` turns the packets the :mod:`~vigil.ingest.ccsds.framing` step found into
one row per packet: its APID, sequence count, time and calibrated values (NaN in the columns of
parameters the packet does not carry). Fixed-layout APIDs go to ccsdspy in one call per APID
(``engine="ccsdspy"``, the default); the rest, or everything with ``engine="spp"``, go through
space_packet_parser one packet at a time. Both apply the XTCE polynomial calibrations; an
enumerated parameter's value is its raw number (labels are in the mission's ``ParameterInfo``).

Decoding never raises on bad packet content: a packet a decoder rejects counts as a decode error
of its APID, and an enumeration value outside the list counts as ``bad_enum``.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from vigil.ingest.ccsds.framing import N_APIDS, Frames
from vigil.ingest.ccsds.mdb import Mission

ENGINES = ("ccsdspy", "spp")
_CCSDSPY_LOG = logging.getLogger("ccsdspy")


@dataclass(frozen=True)
class DecodedPackets:
    """One row per decoded packet, in stream order."""

    apid: np.ndarray
    seq: np.ndarray
    time: np.ndarray
    values: np.ndarray  # [k, c] over the mission's channels
    ok: np.ndarray  # bool [k]: decoded (False: the decoder rejected the packet)

    def __len__(self) -> int:
        return int(self.apid.shape[0])


class PacketDecoder:
    """Decode framed packets of a mission into calibrated values.

    Args:
        mission: the mission database (:func:`~vigil.ingest.ccsds.mdb.load_xtce`).
        engine: ``"ccsdspy"`` (bulk for fixed layouts, space_packet_parser for the rest) or
            ``"spp"`` (space_packet_parser for every packet).
    """

    def __init__(self, mission: Mission, engine: str = "ccsdspy") -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "spp" and mission.definition is None:
            raise ValueError("engine 'spp' needs an XTCE mission database")
        self.mission = mission
        self.engine = engine
        self.channels = mission.channels
        col = {name: j for j, name in enumerate(self.channels)}
        self._columns = {
            apid: np.array([col[p] for p in lay.parameters], dtype=np.int64) for apid, lay in mission.layouts.items()
        }
        self._enums = {
            apid: [
                (j, np.array(sorted(mission.parameters[p].enumeration), dtype=np.float64))
                for j, p in enumerate(lay.parameters)
                if mission.parameters[p].enumeration
            ]
            for apid, lay in mission.layouts.items()
        }
        self.decode_errors = np.zeros(N_APIDS, dtype=np.int64)
        self.bad_enum = np.zeros(N_APIDS, dtype=np.int64)
        self.non_finite = np.zeros(N_APIDS, dtype=np.int64)

    def decode(self, buf: np.ndarray, frames: Frames) -> DecodedPackets:
        """Decode the framed packets of ``buf``."""
        k = len(frames)
        values = np.full((k, len(self.channels)), np.nan)
        time = np.full(k, np.nan)
        ok = np.zeros(k, dtype=bool)
        for apid in np.unique(frames.apid):
            rows = np.flatnonzero(frames.apid == apid)
            layout = self.mission.layouts[int(apid)]
            if self.engine == "ccsdspy" and layout.fixed is not None:
                t, v, good = self._bulk(buf, frames.offset[rows], layout)
            else:
                t, v, good = self._per_packet(buf, frames.offset[rows], frames.length[rows], layout)
            self._check_enums(int(apid), v, good)
            # NaN or inf decoded from a float field: passed on (the monitor counts it missing) and counted here.
            self.non_finite[apid] += int(np.count_nonzero(~np.isfinite(v[good])))
            time[rows] = t
            values[rows[:, None], self._columns[int(apid)][None, :]] = v
            ok[rows] = good
        return DecodedPackets(frames.apid, frames.seq, time, values, ok)

    def _bulk(self, buf: np.ndarray, offsets: np.ndarray, layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All packets of one fixed-layout APID through ccsdspy in one call."""
        size = layout.length
        packed = buf[offsets[:, None] + np.arange(size)].tobytes()
        level = _CCSDSPY_LOG.level
        with warnings.catch_warnings():
            # ccsdspy warns and logs about sequence gaps; the stream counts those itself.
            warnings.simplefilter("ignore")
            _CCSDSPY_LOG.setLevel(logging.ERROR)
            try:
                arrays = layout.fixed.load(io.BytesIO(packed), include_primary_header=False)
            finally:
                _CCSDSPY_LOG.setLevel(level)
        time = _calibrated(arrays[self.mission.time_parameter], layout.calibrators.get(self.mission.time_parameter))
        values = np.empty((offsets.shape[0], len(layout.parameters)))
        for j, name in enumerate(layout.parameters):
            values[:, j] = _calibrated(arrays[name], layout.calibrators.get(name))
        return time, values, np.ones(offsets.shape[0], dtype=bool)

    def _per_packet(self, buf, offsets, lengths, layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Packets of one APID through space_packet_parser, one at a time."""
        definition = self.mission.definition
        n = offsets.shape[0]
        time = np.full(n, np.nan)
        values = np.full((n, len(layout.parameters)), np.nan)
        good = np.zeros(n, dtype=bool)
        with warnings.catch_warnings():
            # A length mismatch is a warning in space_packet_parser; here it rejects the packet.
            warnings.simplefilter("error")
            for i in range(n):
                raw = buf[offsets[i] : offsets[i] + lengths[i]].tobytes()
                try:
                    packet = definition.parse_bytes(raw)
                    time[i] = _number(packet[self.mission.time_parameter])
                    values[i] = [_number(packet[p]) for p in layout.parameters]
                except Exception:  # noqa: BLE001 - untrusted bytes: any decoder failure is a counted reject
                    self.decode_errors[layout.apid] += 1
                    continue
                good[i] = True
        return time, values, good

    def _check_enums(self, apid: int, values: np.ndarray, good: np.ndarray) -> None:
        for j, allowed in self._enums[apid]:
            col = values[good, j]
            self.bad_enum[apid] += int(np.count_nonzero(~np.isin(col, allowed) & ~np.isnan(col)))


def _calibrated(raw: np.ndarray, calibrator) -> np.ndarray:
    # Corrupted floats decode to NaN or inf: kept, so the monitor counts them as missing.
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.asarray(raw, dtype=np.float64)
        return x if calibrator is None else np.asarray(calibrator.calibrate(x), dtype=np.float64)


def _number(value) -> float:
    """A decoded space_packet_parser value as a float: enumerations give their raw number."""
    if isinstance(value, str):
        return float(value.raw_value)
    return float(value)
