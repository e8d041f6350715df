"""Values of binary and string parameters (not monitored) for the decode output.

A binary value is written as lowercase hex, a string as its text. A byte-aligned binary field at
a fixed place, or the one variable-size block of a bulk layout (its size from the field the XTCE
names, e.g. HIT's ``8 * PKT_LEN - 24`` bits, over a reassembled packet's whole data set), is
sliced out of the byte buffer; strings and anything else go through space_packet_parser, which
knows every string encoding and termination.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from vigil.ingest.ccsds.plan import BulkPlan, field_size, offset_of

#: ``TextField.size`` of the layout's variable-size block (its size is read per packet).
TAIL = -1
#: ``TextField.offset`` of a field space_packet_parser decodes (per packet).
PER_PACKET = -1


@dataclass(frozen=True)
class TextField:
    """A binary or string parameter of a packet type and where it sits (bits from the packet start)."""

    parameter: str
    channel: str
    offset: int = PER_PACKET
    size: int = 0


def text_fields(entries: list, names: list[tuple[str, str]], plan: BulkPlan | None) -> tuple[TextField, ...]:
    """Where each ``(parameter, channel)`` of ``names`` sits in a packet whose entries are ``entries``."""
    by_name = {p.name: p for p in entries}
    out = []
    for param, channel in names:
        p = by_name[param]
        at = offset_of(entries, param)
        size = field_size(p.parameter_type)
        binary = type(p.parameter_type).__name__ == "BinaryParameterType"
        if plan is None or at is None or at % 8 or not binary:
            out.append(TextField(param, channel))
        elif size is not None and size % 8 == 0:
            out.append(TextField(param, channel, at, size))
        elif size is None and plan.tail is not None and plan.tail.ref >= 0 and plan.tail.prefix_bits == at:
            out.append(TextField(param, channel, at, TAIL))
        else:
            out.append(TextField(param, channel))
    return tuple(out)


def extract(
    fields: tuple[TextField, ...], plan: BulkPlan | None, definition, buf: np.ndarray, offsets, lengths
) -> list[list[str | None]]:
    """Per field, the text of each packet at ``offsets`` (``None`` where it could not be read)."""
    out: list[list[str | None]] = []
    tail_bits = None
    for f in fields:
        if f.offset == PER_PACKET:
            out.append(_per_packet(f.parameter, definition, buf, offsets, lengths))
            continue
        if f.size == TAIL:
            tail_bits = plan.tail_bits(buf, offsets, lengths) if tail_bits is None else tail_bits
            sizes = tail_bits
        else:
            sizes = np.full(offsets.shape[0], f.size, np.int64)
        start = offsets + f.offset // 8
        stop = start + sizes // 8
        fits = (sizes >= 0) & (sizes % 8 == 0) & (stop <= offsets + lengths)
        out.append([buf[a:b].tobytes().hex() if ok else None for a, b, ok in zip(start, stop, fits)])
    return out


def _per_packet(param: str, definition, buf, offsets, lengths) -> list[str | None]:
    values: list[str | None] = []
    for o, n in zip(offsets.tolist(), lengths.tolist()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v = definition.parse_bytes(buf[o : o + n].tobytes())[param]
        except Exception:  # noqa: BLE001 - untrusted bytes: the value is left out (the packet decoded before)
            values.append(None)
            continue
        values.append(v.hex() if isinstance(v, bytes) else str(v))
    return values
