"""Bulk decoding plans: where each wanted field of a fixed-size packet sits, decoded by a numba kernel.

A layout whose fields all have a fixed size (integers of any width, IEEE floats, booleans and
enumerations with an integer encoding, fixed-size binary and string fields, which are stepped
over), or whose only variable-size fields (binary or string blocks) come after every numeric
field, gets a :class:`BulkPlan`: bit offset, width and kind of each field Vigil keeps. All packets
of such a layout are then decoded in one pass over the byte buffer, and polynomial calibrations
are applied to whole columns. Anything else (variable sizes, non-polynomial or context
calibrations, odd little-endian widths, MIL-STD-1750A floats) says why, and its packets are decoded
one by one by space_packet_parser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from space_packet_parser.xtce import calibrators, encodings, parameter_types

UINT, INT, FLOAT = 0, 1, 2


@dataclass(frozen=True)
class Tail:
    """A variable-size field among the planned ones (a science data block).

    Its size in bits is ``slope * column[ref] + intercept`` (the XTCE ``DynamicValue`` with its
    ``LinearAdjustment``), so fields after it are found packet by packet; ``ref = -1``: size
    unknown, and then nothing after it is planned.
    """

    prefix_bits: int
    ref: int
    slope: float
    intercept: float
    trailer_bits: int


@dataclass
class BulkPlan:
    """Fields to pull out of every packet of a layout (offsets in bits from the packet start, or,
    for fields after a variable-size one, from its end)."""

    names: tuple[str, ...]
    offset: np.ndarray
    size: np.ndarray
    kind: np.ndarray
    little: np.ndarray
    #: per field: ``None``, ``"bool"`` (raw != 0) or a polynomial calibrator applied to the column.
    convert: tuple
    #: bytes a packet of the layout has (the described prefix of a longer one); with a tail, the
    #: fewest bytes that hold the planned fields.
    length: int
    tail: Tail | None = None
    #: per field: after the variable-size one.
    after: np.ndarray | None = None

    @property
    def variable(self) -> bool:
        return self.tail is not None

    def decode(self, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated values ``[n, fields]`` of the packets at ``offsets`` (``lengths`` bytes) in
        ``buf``, and a status per packet: 0 decoded, 1 too short for what it describes (its row is
        NaN), 2 longer than what it describes (the described part decoded)."""
        n = offsets.shape[0]
        offsets, lengths = offsets.astype(np.int64), lengths.astype(np.int64)
        status = np.where(lengths < self.length, 1, 0).astype(np.int8)
        shift = np.zeros(n, dtype=np.int64)
        if self.tail is not None and self.tail.ref >= 0:
            t = self.tail
            var_bits = self._tail_bits(buf, offsets, lengths, status)
            shift = t.prefix_bits + var_bits
            total = shift + t.trailer_bits
            status[(var_bits < 0) | (total > lengths * 8)] = 1
            status[(status == 0) & (total < lengths * 8)] = 2
        elif self.tail is None:
            status[(status == 0) & (lengths > self.length)] = 2
        return self._columns(buf, offsets, lengths, shift, status), status

    def tail_bits(self, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Bits of the variable-size block of each packet, from its size field (-1: unreadable)."""
        offsets, lengths = offsets.astype(np.int64), lengths.astype(np.int64)
        return self._tail_bits(buf, offsets, lengths, np.where(lengths < self.length, 1, 0).astype(np.int8))

    def _tail_bits(self, buf, offsets, lengths, status) -> np.ndarray:
        t = self.tail
        ref = self._columns(buf, offsets, lengths, np.zeros(offsets.shape[0], np.int64), status, only=t.ref)
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(ref), t.slope * ref + t.intercept, -1.0).astype(np.int64)

    def _columns(self, buf, offsets, lengths, shift, status, only: int = -1) -> np.ndarray:
        fields = np.arange(len(self.names)) if only < 0 else np.array([only])
        raw = np.full((offsets.shape[0], fields.size), np.nan)
        good = status != 1
        after = self.after if self.after is not None else np.zeros(len(self.names), np.bool_)
        part = np.empty((int(good.sum()), fields.size))
        _extract(
            buf,
            offsets[good],
            shift[good],
            self.offset[fields],
            self.size[fields],
            self.kind[fields],
            self.little[fields],
            after[fields],
            part,
        )
        raw[good] = part
        for k, j in enumerate(fields.tolist()):
            conv = self.convert[j]
            if conv is None:
                continue
            if isinstance(conv, str):  # "bool"
                raw[:, k] = np.where(np.isnan(raw[:, k]), np.nan, raw[:, k] != 0)
            else:
                with np.errstate(invalid="ignore", over="ignore"):
                    raw[:, k] = np.asarray(conv.calibrate(raw[:, k]), dtype=np.float64)
        return raw[:, 0] if only >= 0 else raw


def plan_fields(entries: list, wanted: set[str]) -> tuple[BulkPlan | None, str]:
    """A plan for the ``wanted`` parameters of a packet whose entries (header included) are ``entries``.

    One field of variable size (a science data block) may sit among them. Fields after it are
    planned when its size comes from a field before it (``DynamicValue`` with a linear adjustment,
    as IMAP's ``PKT_LEN``-based blocks). Returns ``(plan, "")``, or ``(None, reason)`` naming the
    field that keeps the layout off the bulk path.
    """
    placed: dict[str, tuple] = {}  # name -> (bit offset, size, kind, little, conversion, after the variable field)
    bits = 0
    tail = None  # (the variable field, its encoding, prefix bits)
    for p in entries:
        size, kind, conv, why = _field(p.parameter_type, p.name in wanted)
        if why:
            if tail or p.name in wanted or "variable size" not in why:
                return None, f"{p.name}: {why}" + (f" (after {tail[0]})" if tail else "")
            tail, bits = (p.name, p.parameter_type.encoding, bits), 0
            continue
        little = getattr(p.parameter_type.encoding, "byte_order", "") == "leastSignificantByteFirst"
        if p.name in wanted and p.name not in placed:
            if little and (size % 8 or bits % 8):
                return None, f"{p.name}: little-endian field of {size} bits at bit {bits}"
            placed[p.name] = (bits, size, kind, little, conv, tail is not None)
        bits += size
    if tail is None:
        if bits % 8:
            return None, f"packet is {bits} bits, not whole bytes"
        return _plan(placed, bits // 8, None), ""
    name, enc, prefix = tail
    ref, slope, intercept = _size_of(enc)
    if any(x[5] for x in placed.values()) and (ref is None or ref not in {p.name for p in entries}):
        return None, f"{name}: variable size not given by a field before it, fields follow it"
    if ref is not None:
        ref_param = next((p for p in entries if p.name == ref), None)
        offset = offset_of(entries, ref)
        if ref_param is None or offset is None or offset >= prefix:
            return None, f"{name}: its size field {ref} is not before it"
        size, kind, conv, why = _field(ref_param.parameter_type, True)
        if why or conv is not None:
            return None, f"{name}: size field {ref}: {why or 'calibrated'}"
        placed.setdefault(ref, (offset, size, kind, False, None, False))
    ref_col = list(placed).index(ref) if ref is not None else -1
    return _plan(placed, (prefix + bits + 7) // 8, Tail(prefix, ref_col, slope, intercept, bits)), ""


def _plan(placed: dict, length: int, tail: Tail | None) -> BulkPlan:
    rows = list(placed.values())
    return BulkPlan(
        tuple(placed),
        np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.int64),
        np.array([r[3] for r in rows], np.bool_),
        tuple(r[4] for r in rows),
        length,
        tail,
        np.array([r[5] for r in rows], np.bool_),
    )


def _size_of(enc) -> tuple[str | None, float, float]:
    """(size field, slope, intercept) of a variable-size binary or string encoding; (None, ...) if
    its size is not a linear function of one field (which must have no calibrator: see plan_fields)."""
    ref = getattr(enc, "size_reference_parameter", None) or getattr(enc, "dynamic_length_reference", None)
    adjust = getattr(enc, "linear_adjuster", None) or getattr(enc, "length_linear_adjuster", None)
    if ref is None or getattr(enc, "termination_character", None):
        return None, 0.0, 0.0
    if isinstance(enc, encodings.StringDataEncoding) and getattr(enc, "leading_length_size", None):
        return None, 0.0, 0.0
    if adjust is None:
        return ref, 1.0, 0.0
    intercept = float(adjust(0))
    return ref, float(adjust(1)) - intercept, intercept


def offset_of(entries: list, name: str) -> int | None:
    """Bit offset of field ``name`` when every field before it has a fixed size (else ``None``)."""
    bits = 0
    for p in entries:
        if p.name == name:
            return bits
        size, _kind, _conv, why = _field(p.parameter_type, False)
        if why:
            return None
        bits += size
    return None


def field_size(ptype) -> int | None:
    """Bits of a field of fixed size (``None``: variable size or no bulk decoder)."""
    size, _kind, _conv, why = _field(ptype, False)
    return None if why else size


def _field(ptype, wanted: bool) -> tuple[int, int, object, str]:
    """Size in bits, kind, conversion and "" for a fixed-size field, else a reason."""
    enc = ptype.encoding
    if isinstance(enc, encodings.BinaryDataEncoding):
        if enc.fixed_size_in_bits and not enc.size_reference_parameter and not enc.size_discrete_lookup_list:
            return int(enc.fixed_size_in_bits), UINT, None, ""
        return 0, 0, None, "binary field of variable size"
    if isinstance(enc, encodings.StringDataEncoding):
        fixed = getattr(enc, "fixed_length", None)
        if fixed and not enc.dynamic_length_reference and not enc.discrete_lookup_length:
            return int(fixed), UINT, None, ""
        return 0, 0, None, "string field of variable size"
    if not isinstance(enc, (encodings.IntegerDataEncoding, encodings.FloatDataEncoding)):
        return 0, 0, None, f"{type(enc).__name__} has no bulk decoder"
    size = int(enc.size_in_bits)
    if size > 64:
        return 0, 0, None, f"{size}-bit field"
    if isinstance(enc, encodings.FloatDataEncoding):
        if enc.encoding not in ("IEEE754", "IEEE754_1985"):
            return 0, 0, None, f"{enc.encoding} floats are decoded per packet"
        kind = FLOAT
    else:
        kind = INT if enc.encoding in ("signed", "twosComplement", "twosCompliment") else UINT
        if enc.encoding not in ("unsigned", "signed", "twosComplement", "twosCompliment"):
            return 0, 0, None, f"{enc.encoding} integers are decoded per packet"
    if not wanted:
        return size, kind, None, ""
    if getattr(enc, "context_calibrators", None):
        return 0, 0, None, "context calibrators are applied per packet"
    if isinstance(ptype, parameter_types.BooleanParameterType):
        return size, kind, "bool", ""
    if isinstance(ptype, parameter_types.EnumeratedParameterType):
        return size, kind, None, ""  # the channel value is the raw number
    cal = getattr(enc, "default_calibrator", None)
    if cal is not None and not isinstance(cal, calibrators.PolynomialCalibrator):
        return 0, 0, None, f"{type(cal).__name__} is applied per packet"
    return size, kind, cal, ""


@numba.njit(cache=True)
def _extract(buf, starts, shift, offset, size, kind, little, after, out):  # pragma: no cover - numba
    """Big-endian bit fields (or byte-aligned little-endian ones) of every packet into ``out``.

    A field after a variable-size one starts ``shift[i]`` bits further in packet ``i``.
    """
    n = starts.shape[0]
    for f in range(offset.shape[0]):
        nbits = size[f]
        for i in range(n):
            bit = offset[f] + shift[i] if after[f] else offset[f]
            first = bit >> 3
            shift0 = bit & 7
            nbytes = (shift0 + nbits + 7) >> 3
            base = starts[i] + first
            acc = np.uint64(0)
            if little[f]:
                for b in range(nbytes - 1, -1, -1):
                    acc = (acc << np.uint64(8)) | np.uint64(buf[base + b])
            else:
                for b in range(nbytes):
                    acc = (acc << np.uint64(8)) | np.uint64(buf[base + b])
                if nbytes == 9:  # a field of up to 64 bits spread over 9 bytes
                    acc = np.uint64(0)
                    for b in range(8):
                        acc = (acc << np.uint64(8)) | np.uint64(buf[base + b])
                    r = shift0 + nbits - 64
                    acc = (acc << np.uint64(r)) | (np.uint64(buf[base + 8]) >> np.uint64(8 - r))
                else:
                    acc = acc >> np.uint64(nbytes * 8 - shift0 - nbits)
            if nbits < 64:
                acc = acc & ((np.uint64(1) << np.uint64(nbits)) - np.uint64(1))
            k = kind[f]
            if k == 0:
                out[i, f] = np.float64(acc)
            elif k == 1:
                if nbits < 64 and (acc >> np.uint64(nbits - 1)) & np.uint64(1):
                    out[i, f] = np.float64(np.int64(acc) - (np.int64(1) << np.int64(nbits)))
                else:
                    out[i, f] = np.float64(np.int64(acc))
            elif nbits == 32:
                out[i, f] = np.float64(_u32_to_f32(np.uint32(acc)))
            elif nbits == 64:
                out[i, f] = _u64_to_f64(acc)
            else:
                out[i, f] = _half(np.uint16(acc))


@numba.njit(cache=True)
def _u32_to_f32(x):  # pragma: no cover - numba
    return np.array([x], dtype=np.uint32).view(np.float32)[0]


@numba.njit(cache=True)
def _u64_to_f64(x):  # pragma: no cover - numba
    return np.array([x], dtype=np.uint64).view(np.float64)[0]


@numba.njit(cache=True)
def _half(x):  # pragma: no cover - numba
    sign = -1.0 if x >> 15 else 1.0
    exp = (x >> 10) & 0x1F
    frac = x & 0x3FF
    if exp == 0:
        return sign * frac * 2.0**-24
    if exp == 31:
        return sign * np.inf if frac == 0 else np.nan
    return sign * (1.0 + frac / 1024.0) * 2.0 ** (exp - 15)
