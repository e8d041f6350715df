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


@dataclass
class BulkPlan:
    """Fields to pull out of every packet of a fixed layout (offsets in bits from the packet start)."""

    names: tuple[str, ...]
    offset: np.ndarray
    size: np.ndarray
    kind: np.ndarray
    little: np.ndarray
    #: per field: ``None``, ``"bool"`` (raw != 0) or a polynomial calibrator applied to the column.
    convert: tuple
    #: bytes a packet of the layout has (the described prefix of a longer one); with ``variable``,
    #: the fixed prefix holding every planned field (the packet may be longer).
    length: int
    #: the layout ends with fields of variable size (not monitored) after the planned ones.
    variable: bool = False

    def decode(self, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``[n, fields]`` calibrated values of the packets at ``offsets`` (``lengths`` bytes) in ``buf``."""
        raw = np.empty((offsets.shape[0], len(self.names)))
        _extract(
            buf, offsets.astype(np.int64), lengths.astype(np.int64), self.offset, self.size, self.kind, self.little, raw
        )
        for j, conv in enumerate(self.convert):
            if conv is None:
                continue
            if isinstance(conv, str):  # "bool"
                raw[:, j] = raw[:, j] != 0
            else:
                with np.errstate(invalid="ignore", over="ignore"):
                    raw[:, j] = np.asarray(conv.calibrate(raw[:, j]), dtype=np.float64)
        return raw


def plan_fields(entries: list, wanted: set[str]) -> tuple[BulkPlan | None, str]:
    """A plan for the ``wanted`` parameters of a packet whose entries (header included) are ``entries``.

    One field of variable size (a science data block) may sit among them: the fields after it are
    then placed from the end of the packet (a checksum trailer), and the plan says ``variable``.
    Returns ``(plan, "")``, or ``(None, reason)`` naming the field that keeps the layout off the
    bulk path.
    """
    placed: list[tuple] = []  # (name, bit offset, size, kind, little, conversion, after the variable field)
    bits = 0
    tail = ""  # the variable-size field, once met
    for p in entries:
        size, kind, conv, why = _field(p.parameter_type, p.name in wanted)
        if why:
            if tail or p.name in wanted or "variable size" not in why:
                return None, f"{p.name}: {why}" + (f" (after {tail.split(':')[0]})" if tail else "")
            tail, head_bits, bits = f"{p.name}: {why}", bits, 0
            continue
        little = getattr(p.parameter_type.encoding, "byte_order", "") == "leastSignificantByteFirst"
        if p.name in wanted and p.name not in {x[0] for x in placed}:
            if little and (size % 8 or bits % 8):
                return None, f"{p.name}: little-endian field of {size} bits at bit {bits}"
            placed.append((p.name, bits, size, kind, little, conv, bool(tail)))
        bits += size
    if tail:
        if bits % 8:
            return None, f"fields after {tail.split(':')[0]} are {bits} bits, not whole bytes"
        trailer, prefix = bits, head_bits
    else:
        if bits % 8:
            return None, f"packet is {bits} bits, not whole bytes"
        trailer, prefix = 0, bits
    plan = BulkPlan(
        tuple(x[0] for x in placed),
        # A field after the variable one: its offset counted back from the packet's end, negative.
        np.array([x[1] - trailer if x[6] else x[1] for x in placed], np.int64),
        np.array([x[2] for x in placed], np.int64),
        np.array([x[3] for x in placed], np.int64),
        np.array([x[4] for x in placed], np.bool_),
        tuple(x[5] for x in placed),
        (prefix + 7) // 8 + trailer // 8,
        variable=bool(tail),
    )
    return plan, ""


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
def _extract(buf, starts, lengths, offset, size, kind, little, out):  # pragma: no cover - numba
    """Big-endian bit fields (or byte-aligned little-endian ones) of every packet into ``out``.

    A negative offset counts back from the end of the packet (fields after a variable-size one).
    """
    n = starts.shape[0]
    for f in range(offset.shape[0]):
        nbits = size[f]
        for i in range(n):
            bit = offset[f] if offset[f] >= 0 else lengths[i] * 8 + offset[f]
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
