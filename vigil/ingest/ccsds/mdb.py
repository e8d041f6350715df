"""The mission database: packet layouts per APID, from an XTCE file or ccsdspy CSV definitions.

:func:`load_xtce` reads an XTCE (CCSDS 660.0) file with space_packet_parser and works out, for
every concrete packet container selected by an APID restriction:

* the parameters it carries, in order, with units, descriptions and enumeration labels;
* whether its layout is fixed (every field a fixed-size integer or IEEE float, calibrations
  polynomial): then a ccsdspy ``FixedLength`` definition decodes its packets in bulk into arrays
  and the space_packet_parser calibrators are applied to whole arrays;
* otherwise, why not: those packets are decoded one by one by space_packet_parser.

:func:`load_csv_definitions` builds the same :class:`Mission` from ccsdspy packet definition CSV
files (one per APID), for missions that keep a packet definition table instead of XTCE.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import ccsdspy
import numpy as np
import space_packet_parser as spp
from space_packet_parser.xtce import calibrators, encodings, parameter_types

from vigil.errors import ConfigError
from vigil.ingest.ccsds.framing import N_APIDS, UNKNOWN, VARIABLE

PRIMARY_HEADER_BITS = 48


@dataclass(frozen=True)
class ParameterInfo:
    """What the mission database says about one telemetry parameter (one Vigil channel)."""

    name: str
    container: str
    units: str = ""
    description: str = ""
    #: raw value -> label for enumerated parameters; their channel value is the raw number.
    enumeration: dict[int, str] | None = None


@dataclass
class PacketLayout:
    """How packets of one APID are laid out and decoded."""

    name: str
    apid: int
    #: data parameters (Vigil channels) in packet order; header and time fields excluded.
    parameters: tuple[str, ...]
    #: total packet length in bytes, or ``None`` when it varies.
    length: int | None
    #: ccsdspy definition for bulk decoding, or ``None`` (decoded by space_packet_parser).
    fixed: ccsdspy.FixedLength | None = None
    #: per field decoded by ``fixed``: the calibrator to apply to its raw array (``None``: none).
    calibrators: dict[str, object] = field(default_factory=dict)
    #: why the layout is not decoded in bulk (empty when it is).
    slow_reason: str = ""


@dataclass
class Mission:
    """Packet layouts by APID and parameter metadata of one mission database."""

    source: str
    time_parameter: str
    layouts: dict[int, PacketLayout]
    parameters: dict[str, ParameterInfo]
    definition: spp.XtcePacketDefinition | None = None
    #: XTCE file the alarms are read from (``None`` for CSV definitions).
    xtce_path: Path | None = None
    #: parameters decoded but not monitored (not numbers), with the reason.
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def channels(self) -> tuple[str, ...]:
        """Every data parameter of every layout, in APID then packet order: the block's channels."""
        return tuple(p for apid in sorted(self.layouts) for p in self.layouts[apid].parameters)

    def expected_lengths(self) -> np.ndarray:
        """The framer's table: total length per APID, VARIABLE or UNKNOWN."""
        table = np.full(N_APIDS, UNKNOWN, dtype=np.int64)
        for apid, layout in self.layouts.items():
            table[apid] = layout.length if layout.length else VARIABLE
        return table


def load_xtce(
    path: str | Path,
    *,
    time_parameter: str | None = None,
    apid_parameter: str | None = None,
    root_container: str = "CCSDSPacket",
) -> Mission:
    """Read an XTCE mission database.

    Args:
        path: the XTCE XML file.
        time_parameter: parameter holding packet time in seconds (default: the one
            ``AbsoluteTimeParameterType`` parameter of the database).
        apid_parameter: header parameter the containers' restriction criteria test for the APID
            (default: the 11-bit parameter the concrete containers are restricted on).
        root_container: the abstract container every packet starts from.

    Raises:
        ConfigError: naming the file and the element, when the database cannot be used.
    """
    path = Path(path)
    src = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            definition = spp.XtcePacketDefinition.from_xtce(path, root_container_name=root_container)
    except (OSError, SyntaxError, ValueError, KeyError, NotImplementedError, TypeError, AttributeError) as err:
        # lxml's XMLSyntaxError is a SyntaxError; the others come from space_packet_parser.
        raise ConfigError(f"cannot read XTCE: {err}", source=src) from None
    if root_container not in definition.containers:
        raise ConfigError(f"no container {root_container!r}", key="ContainerSet", source=src)
    time_name = time_parameter or _find_time_parameter(definition, src)
    if time_name not in definition.parameters:
        raise ConfigError(f"no parameter {time_name!r} to take packet time from", key="ParameterSet", source=src)
    root = definition.containers[root_container]
    header = {e.name for e in _flatten(definition, root)}
    layouts: dict[int, PacketLayout] = {}
    params: dict[str, ParameterInfo] = {}
    skipped: dict[str, str] = {}
    for name, container in definition.containers.items():
        if container.abstract or container is root:
            continue
        apid = _container_apid(definition, name, apid_parameter, src)
        if apid in layouts:
            raise ConfigError(f"APID {apid} selects both {layouts[apid].name!r} and {name!r}", key=name, source=src)
        entries = _flatten(definition, container)
        data = []
        for e in entries:
            if e.name in header or e.name == time_name:
                continue
            why = _not_numeric(e.parameter_type)
            if why:
                skipped[e.name] = why
            else:
                data.append(e)
        for p in data:
            if p.name in params:
                raise ConfigError(
                    f"parameter {p.name!r} is in {params[p.name].container!r} and {name!r}; a channel "
                    "must come from one packet",
                    key=name,
                    source=src,
                )
            params[p.name] = _info(p, name)
        layout = PacketLayout(name=name, apid=apid, parameters=tuple(p.name for p in data), length=None)
        _plan_fixed(layout, entries, time_name)
        layouts[apid] = layout
    if not layouts:
        raise ConfigError("no concrete packet container restricted by APID", key="ContainerSet", source=src)
    return Mission(src, time_name, layouts, params, definition=definition, xtce_path=path, skipped=skipped)


def load_csv_definitions(
    definitions: dict[int, str | Path],
    *,
    time_parameter: str,
    time_scale: float = 1.0,
) -> Mission:
    """A mission from ccsdspy packet definition CSV files (columns name, data_type, bit_length).

    Args:
        definitions: APID -> CSV file describing that APID's fixed-length packet (no primary header).
        time_parameter: field holding packet time; multiplied by ``time_scale`` to get seconds.
    """
    layouts: dict[int, PacketLayout] = {}
    params: dict[str, ParameterInfo] = {}
    for apid, csv_path in definitions.items():
        src = str(csv_path)
        try:
            fixed = ccsdspy.FixedLength.from_file(csv_path)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
            raise ConfigError(f"cannot read packet definition: {err}", source=src) from None
        fields = list(fixed._fields)
        names = [f._name for f in fields]
        if time_parameter not in names:
            raise ConfigError(f"no field {time_parameter!r} to take packet time from", key="name", source=src)
        bits = PRIMARY_HEADER_BITS + sum(int(f._bit_length) for f in fields)
        if bits % 8:
            raise ConfigError(f"fields add up to {bits} bits, not whole bytes", key="bit_length", source=src)
        data = [f._name for f in fields if f._name != time_parameter and f._data_type in ("uint", "int", "float")]
        name = Path(csv_path).stem
        for p in data:
            if p in params:
                raise ConfigError(f"field {p!r} is defined for two APIDs", key="name", source=src)
            params[p] = ParameterInfo(p, name)
        cal = {time_parameter: calibrators.PolynomialCalibrator([calibrators.PolynomialCoefficient(time_scale, 1)])}
        layouts[int(apid)] = PacketLayout(name, int(apid), tuple(data), bits // 8, fixed, cal)
    if not layouts:
        raise ConfigError("no packet definitions given")
    return Mission(", ".join(str(p) for p in definitions.values()), time_parameter, layouts, params)


def _find_time_parameter(definition: spp.XtcePacketDefinition, src: str) -> str:
    found = [
        name
        for name, p in definition.parameters.items()
        if isinstance(p.parameter_type, parameter_types.AbsoluteTimeParameterType)
    ]
    if len(found) != 1:
        raise ConfigError(
            f"found {len(found)} AbsoluteTimeParameterType parameters {found}; name the time parameter",
            key="ParameterSet",
            source=src,
        )
    return found[0]


def _flatten(definition: spp.XtcePacketDefinition, container) -> list:
    """Parameters of a container in packet order, base containers first."""
    chain = [container]
    while chain[-1].base_container_name:
        chain.append(definition.containers[chain[-1].base_container_name])
    out = []
    for c in reversed(chain):
        for entry in c.entry_list:
            out.extend(_flatten(definition, entry) if hasattr(entry, "entry_list") else [entry])
    return out


def _container_apid(definition, name: str, apid_parameter: str | None, src: str) -> int:
    """The APID a container's restriction criteria select (an equality on the APID parameter)."""
    for crit in definition.containers[name].restriction_criteria:
        ref = getattr(crit, "referenced_parameter", None)
        if ref is None or getattr(crit, "operator", None) not in ("==", "eq"):
            continue
        if apid_parameter is not None and ref != apid_parameter:
            continue
        enc = definition.parameters[ref].parameter_type.encoding
        if apid_parameter is None and getattr(enc, "size_in_bits", None) != 11:
            continue
        try:
            apid = int(crit.required_value)
        except ValueError:
            continue
        if 0 <= apid < N_APIDS:
            return apid
    raise ConfigError("no restriction criterion selects an APID", key=f"SequenceContainer {name}", source=src)


def _not_numeric(ptype) -> str:
    """Why a parameter type gives no number to monitor ("" when it does)."""
    if isinstance(ptype, (parameter_types.StringParameterType, parameter_types.BinaryParameterType)):
        return f"{type(ptype).__name__}: not a number"
    if isinstance(ptype, parameter_types.EnumeratedParameterType) and not isinstance(
        ptype.encoding, encodings.IntegerDataEncoding
    ):
        return "enumeration not integer-encoded"
    return ""


def _info(param, container: str) -> ParameterInfo:
    ptype = param.parameter_type
    unit = ptype.unit if isinstance(ptype.unit, str) else " ".join(ptype.unit or ())
    enum = None
    if isinstance(ptype, parameter_types.EnumeratedParameterType):
        enum = {int(k): v for k, v in ptype.enumeration.items() if isinstance(k, (int, np.integer))}
    desc = param.short_description or param.long_description or ""
    return ParameterInfo(param.name, container, unit or "", desc, enum)


def _plan_fixed(layout: PacketLayout, entries: list, time_name: str) -> None:
    """Give ``layout`` a ccsdspy definition when every field has a fixed size, else the reason why not."""
    fields = []
    cals: dict[str, object] = {}
    bits = 0
    for p in entries:
        enc = p.parameter_type.encoding
        kind, why = _ccsdspy_type(p.parameter_type, enc)
        if why:
            layout.slow_reason = f"{p.name}: {why}"
            return
        if bits < PRIMARY_HEADER_BITS < bits + enc.size_in_bits:
            layout.slow_reason = f"{p.name}: straddles the end of the primary header"
            return
        if bits >= PRIMARY_HEADER_BITS:
            order = "little" if enc.byte_order == "leastSignificantByteFirst" else "big"
            if order == "little" and enc.size_in_bits % 8:
                layout.slow_reason = f"{p.name}: little-endian field of {enc.size_in_bits} bits"
                return
            fields.append(
                ccsdspy.PacketField(name=p.name, data_type=kind, bit_length=enc.size_in_bits, byte_order=order)
            )
            if p.name in layout.parameters or p.name == time_name:
                cals[p.name] = enc.default_calibrator
        bits += enc.size_in_bits
    if bits % 8 or bits <= PRIMARY_HEADER_BITS:
        layout.slow_reason = f"packet is {bits} bits, not whole bytes after the header"
        return
    layout.length = bits // 8
    layout.fixed = ccsdspy.FixedLength(fields, apid=layout.apid, name=layout.name)
    layout.calibrators = cals


def _ccsdspy_type(ptype, enc) -> tuple[str, str]:
    """ccsdspy data type for a parameter type, or the reason it cannot be decoded in bulk."""
    if isinstance(ptype, (parameter_types.StringParameterType, parameter_types.BinaryParameterType)):
        return "", f"{type(ptype).__name__} is not numeric"
    if isinstance(ptype, parameter_types.BooleanParameterType):
        return "", "boolean parameters are decoded per packet"
    if getattr(enc, "context_calibrators", None):
        return "", "context calibrators are applied per packet"
    cal = getattr(enc, "default_calibrator", None)
    if cal is not None and not isinstance(cal, calibrators.PolynomialCalibrator):
        return "", f"{type(cal).__name__} is applied per packet"
    if isinstance(enc, encodings.IntegerDataEncoding):
        return ("uint" if enc.encoding == "unsigned" else "int"), ""
    if isinstance(enc, encodings.FloatDataEncoding) and enc.encoding in ("IEEE754", "IEEE754_1985"):
        return "float", ""
    return "", f"{type(enc).__name__} {getattr(enc, 'encoding', '')} has no bulk decoder"
