"""Decoding framed packets into arrays: in bulk for fixed layouts, space_packet_parser for the rest.

:class:`PacketDecoder` turns the packets the :mod:`~vigil.ingest.ccsds.framing` step found into
one row per packet: its APID, sequence count, packet type, time and calibrated values (NaN in the
columns of channels the packet does not carry). An APID that selects one fixed-layout packet
type by its header is decoded in one pass (``engine="bulk"``, the default; ``"ccsdspy"`` is an
alias kept for old specs); the rest, or everything with ``engine="spp"``, go through
space_packet_parser one packet at a time, which also tells sub-types of one APID apart. Both apply
the XTCE polynomial calibrations; an enumerated parameter's value is its raw number, a boolean's
0 or 1. A packet longer than its layout is decoded from its described prefix.

Decoding never raises on bad packet content: a packet a decoder rejects counts as a decode error
of its APID, and an enumeration value outside the list counts as ``bad_enum``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from vigil.ingest.ccsds.framing import N_APIDS, Frames
from vigil.ingest.ccsds.mdb import Mission, PacketLayout
from vigil.ingest.ccsds.texts import extract

ENGINES = ("bulk", "ccsdspy", "spp")


@dataclass(frozen=True)
class DecodedPackets:
    """One row per decoded packet, in stream order."""

    apid: np.ndarray
    seq: np.ndarray
    time: np.ndarray
    values: np.ndarray  # [k, c] over the mission's channels
    ok: np.ndarray  # bool [k]: decoded (False: the decoder rejected the packet)
    kind: np.ndarray  # int [k]: index of the packet type in ``PacketDecoder.layouts`` (-1: none)
    #: object [k, t]: binary (hex) and string values over ``PacketDecoder.text_channels`` (None:
    #: absent); only when the decoder was asked for them.
    text: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.apid.shape[0])

    def take(self, mask: np.ndarray | slice) -> DecodedPackets:
        """The packets a boolean mask (or a slice: views) selects."""
        if isinstance(mask, np.ndarray) and mask.all():
            return self
        return DecodedPackets(*(None if getattr(self, f) is None else getattr(self, f)[mask] for f in _FIELDS))

    @staticmethod
    def concat(parts: list[DecodedPackets]) -> DecodedPackets:
        if len(parts) == 1:
            return parts[0]
        return DecodedPackets(
            *(None if getattr(parts[0], f) is None else np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS)
        )


_FIELDS = ("apid", "seq", "time", "values", "ok", "kind", "text")


class PacketDecoder:
    """Decode framed packets of a mission into calibrated values.

    Args:
        mission: the mission database (:func:`~vigil.ingest.ccsds.mdb.load_xtce`).
        engine: ``"bulk"`` (fixed layouts in bulk, space_packet_parser for the rest) or
            ``"spp"`` (space_packet_parser for every packet).
        texts: also decode binary and string parameters (:attr:`DecodedPackets.text`).
    """

    def __init__(self, mission: Mission, engine: str = "bulk", texts: bool = False) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "spp" and mission.definition is None:
            raise ValueError("engine 'spp' needs an XTCE mission database")
        self.mission = mission
        self.engine = "bulk" if engine == "ccsdspy" else engine
        self.channels = mission.channels
        self.layouts = sorted(mission.layouts.values(), key=lambda lay: (lay.apid, lay.name))
        self._kind = {lay.name: k for k, lay in enumerate(self.layouts)}
        #: binary and string parameters, as ``TYPE.PARAM`` (columns of ``DecodedPackets.text``).
        self.text_channels = tuple(f.channel for lay in self.layouts for f in lay.texts) if texts else ()
        at = {name: j for j, name in enumerate(self.text_channels)}
        self._text_columns = [[at[f.channel] for f in lay.texts] if texts else [] for lay in self.layouts]
        col = {name: j for j, name in enumerate(self.channels)}
        self._columns = [np.array([col[c] for c in lay.channels], dtype=np.int64) for lay in self.layouts]
        self._enums = [
            [
                (j, np.array(sorted(mission.parameters[c].enumeration), dtype=np.float64))
                for j, c in enumerate(lay.channels)
                if mission.parameters[c].enumeration
            ]
            for lay in self.layouts
        ]
        #: per layout with a bulk plan: its channel columns in the plan (a slice when contiguous),
        #: the time column and the fine time column (-1: none).
        self._picks = {lay.name: _picks(lay) for lay in self.layouts if lay.plan is not None}
        self.decode_errors = np.zeros(N_APIDS, dtype=np.int64)
        self.bad_enum = np.zeros(N_APIDS, dtype=np.int64)
        self.non_finite = np.zeros(N_APIDS, dtype=np.int64)
        #: longer than a variable layout (space_packet_parser left bytes over); fixed ones: the framer.
        self.longer_than_layout = np.zeros(N_APIDS, dtype=np.int64)
        #: shorter than the fixed prefix of a layout with a variable tail (fixed ones: the framer).
        self.shorter_than_layout = np.zeros(N_APIDS, dtype=np.int64)

    def columns(self, kind: int) -> np.ndarray:
        """Block columns of the channels of packet type ``kind``."""
        return self._columns[kind]

    def decode(self, buf: np.ndarray, frames: Frames) -> DecodedPackets:
        """Decode the framed packets of ``buf``."""
        k = len(frames)
        values = np.full((k, len(self.channels)), np.nan)
        time = np.full(k, np.nan)
        ok = np.zeros(k, dtype=bool)
        kind = np.full(k, -1, dtype=np.int64)
        for apid in np.unique(frames.apid).tolist():
            rows = np.flatnonzero(frames.apid == apid)
            lay = self.mission.layout_for(apid)
            if lay is not None and lay.plan is not None and self.engine == "bulk":
                if lay.selector is not None:  # criteria beyond the APID (e.g. TYPE == 0): the rest to spp
                    hit = lay.selector.match(buf, frames.offset[rows], frames.length[rows])
                    self._bulk_rows(buf, frames, rows[hit], apid, lay, time, values, ok, kind)
                    rows = rows[~hit]
                else:
                    self._bulk_rows(buf, frames, rows, apid, lay, time, values, ok, kind)
                    continue
            if lay is None and self.engine == "bulk":
                rows = self._by_selectors(buf, frames, rows, apid, time, values, ok, kind)
            done = self._per_packet(buf, frames, rows, apid, time, values, ok, kind)
            for kd in np.unique(kind[done]).tolist():
                sub = done[kind[done] == kd]
                self._check(kd, frames.apid[sub], values[sub[:, None], self._columns[kd][None, :]])
        text = self._texts(buf, frames, ok, kind) if self.text_channels else None
        return DecodedPackets(frames.apid, frames.seq, time, values, ok, kind, text)

    def _texts(self, buf, frames: Frames, ok: np.ndarray, kind: np.ndarray) -> np.ndarray:
        """Binary (hex) and string values of the decoded packets, per text channel."""
        text = np.full((len(frames), len(self.text_channels)), None, dtype=object)
        for kd in np.unique(kind[ok]).tolist():
            lay, cols = self.layouts[kd], self._text_columns[kd]
            if not cols:
                continue
            rows = np.flatnonzero(ok & (kind == kd))
            got = extract(lay.texts, lay.plan, self.mission.definition, buf, frames.offset[rows], frames.length[rows])
            for j, column in zip(cols, got):
                text[rows, j] = column
        return text

    def _bulk_rows(self, buf, frames: Frames, rows, apid: int, lay: PacketLayout, time, values, ok, kind) -> None:
        """Packets ``rows`` of packet type ``lay`` in one pass; too short ones counted and left out."""
        kd = self._kind[lay.name]
        t, vals, status = self._bulk(buf, frames.offset[rows], frames.length[rows], lay)
        self.shorter_than_layout[apid] += int(np.count_nonzero(status == 1))
        if self.mission.layout_for(apid) is not lay or lay.plan.variable:  # else the framer counted them
            self.longer_than_layout[apid] += int(np.count_nonzero(status == 2))
        good = status != 1
        rows, t, vals = rows[good], t[good], vals[good]
        kind[rows] = kd
        ok[rows] = True
        time[rows] = t
        self._check(kd, np.full(rows.size, apid), vals)
        _put(values, rows, self._columns[kd], vals)

    def _by_selectors(self, buf, frames: Frames, rows, apid: int, time, values, ok, kind) -> np.ndarray:
        """Packets of a shared APID that exactly one type's criteria select, decoded in bulk by it;
        returns the rows left for space_packet_parser."""
        types = [self.mission.layouts[n] for n in self.mission.shared_apids.get(apid, ())]
        if not types or any(t.plan is None or t.selector is None for t in types):
            return rows
        off, length = frames.offset[rows], frames.length[rows]
        hits = np.array([t.selector.match(buf, off, length) for t in types])
        single = hits.sum(axis=0) == 1
        which = hits.argmax(axis=0)
        for i, lay in enumerate(types):
            mine = rows[single & (which == i)]
            if mine.size:
                self._bulk_rows(buf, frames, mine, apid, lay, time, values, ok, kind)
        return rows[~single]

    def _check(self, kd: int, apid: np.ndarray, v: np.ndarray) -> None:
        """Count enumeration values outside their list and non-finite values of packet type ``kd``."""
        for j, allowed in self._enums[kd]:
            bad = ~np.isin(v[:, j], allowed) & ~np.isnan(v[:, j])
            if bad.any():
                np.add.at(self.bad_enum, apid[bad], 1)
        # NaN or inf decoded from a float field: passed on (the monitor counts it missing) and counted.
        bad = ~np.isfinite(v)
        if bad.any():
            np.add.at(self.non_finite, apid, bad.sum(axis=1))

    def _bulk(self, buf, offsets: np.ndarray, lengths: np.ndarray, lay: PacketLayout) -> tuple:
        """Packets of one type in one pass: their times, channel values and decode status."""
        cols, status = lay.plan.decode(buf, offsets, lengths)
        pick, coarse, fine = self._picks[lay.name]
        c = None if coarse < 0 else cols[:, coarse]
        f = None if fine < 0 else cols[:, fine]
        return self._time(lay, c, f, cols.shape[0]), cols[:, pick], status

    def _time(self, lay: PacketLayout, coarse, fine, n: int) -> np.ndarray:
        """``epoch + scale * coarse + fine_scale * fine`` (NaN for a packet type without time)."""
        if coarse is None:
            return np.full(n, np.nan)
        spec = self.mission.time
        t = spec.epoch + spec.scale * np.asarray(coarse, dtype=np.float64)
        return t if fine is None else t + lay.fine_scale * np.asarray(fine, dtype=np.float64)

    def _per_packet(self, buf, frames: Frames, rows, apid: int, time, values, ok, kind) -> np.ndarray:
        """Packets of one APID through space_packet_parser, one at a time; the rows decoded."""
        one = self.mission.layout_for(apid)
        candidates = [one] if one is not None else [self.mission.layouts[n] for n in self.mission.shared_apids[apid]]
        definition = self.mission.definition
        for i in rows.tolist():
            raw = buf[frames.offset[i] : frames.offset[i] + frames.length[i]].tobytes()
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    packet = definition.parse_bytes(raw)
                lay = candidates[0] if len(candidates) == 1 else _selected(candidates, packet)
                kd = self._kind[lay.name]
                row = [_number(packet[p]) for p in lay.parameters]
                coarse = [_number(packet[lay.time_field])] if lay.time_field else None
                fine = [_number(packet[lay.fine_field])] if lay.fine_field else None
            except Exception:  # noqa: BLE001 - untrusted bytes: any decoder failure is a counted reject
                self.decode_errors[apid] += 1
                continue
            if caught and not (one is lay and lay.length is not None):  # else the framer counted it
                self.longer_than_layout[apid] += 1
            kind[i] = kd
            ok[i] = True
            values[i, self._columns[kd]] = row
            time[i] = self._time(lay, coarse, fine, 1)[0]
        return rows[ok[rows]]


def _picks(lay: PacketLayout) -> tuple:
    at = {name: j for j, name in enumerate(lay.plan.names)}
    idx = [at[p] for p in lay.parameters]
    # Contiguous columns: a view, not a copy.
    pick = slice(idx[0], idx[-1] + 1) if idx and idx == list(range(idx[0], idx[-1] + 1)) else np.array(idx, np.int64)
    return pick, at.get(lay.time_field, -1), at.get(lay.fine_field, -1)


def _put(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, v: np.ndarray) -> None:
    """``values[rows][:, cols] = v``, by slices where rows or columns are contiguous."""
    if not cols.size or not rows.size:
        return
    c = slice(int(cols[0]), int(cols[-1]) + 1) if cols[-1] - cols[0] + 1 == cols.size else cols
    r = slice(int(rows[0]), int(rows[-1]) + 1) if rows[-1] - rows[0] + 1 == rows.size else rows
    if isinstance(r, slice) or isinstance(c, slice):
        values[r, c] = v
    else:
        values[r[:, None], c[None, :]] = v


def _selected(candidates: list[PacketLayout], packet) -> PacketLayout:
    """The packet type whose whole chain of restriction criteria holds for a parsed packet."""
    for lay in candidates:
        if all(rc.evaluate(packet) for rc in lay.criteria):
            return lay
    raise ValueError("no packet type matches")


def _number(value) -> float:
    """A decoded space_packet_parser value as a float: enumerations give their raw number."""
    if isinstance(value, str):
        return float(value.raw_value)
    return float(value)
