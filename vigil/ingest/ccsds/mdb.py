"""The mission database: packet types, their layouts and channels, from XTCE or ccsdspy CSV tables.

:func:`load_xtce` reads an XTCE (CCSDS 660.0) file with space_packet_parser. A *packet type* is
every concrete container inheriting from the root container, with the restriction criteria of its
whole inheritance chain (any criteria space_packet_parser evaluates: APID equalities, several
APIDs, sub-type fields under an APID container, Boolean expressions). For each packet type:

* the APIDs that can select it (criteria evaluated on each of the 2048 APIDs); an APID that
  selects exactly one type is decoded in bulk when the layout is fixed (its other criteria, such as
  the packet type bit, checked on columns),
  otherwise space_packet_parser picks the type packet by packet;
* its channels: numeric parameters after the header, named ``PARAM``, or ``TYPE.PARAM`` when
  the parameter is in several packet types (the same name everywhere: decode, config, monitor);
* its time fields (:class:`~vigil.ingest.ccsds.timespec.TimeSpec`), or none (reception order).

Fixed-size binary and string fields are stepped over (not monitored), so they do not push a layout
off the bulk path. What cannot be used is reported by name (:attr:`Mission.unsupported`) and the
rest loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import ccsdspy
import numpy as np
import space_packet_parser as spp
from space_packet_parser import common
from space_packet_parser.xtce import encodings, parameter_types

from vigil.errors import ConfigError
from vigil.ingest.ccsds.framing import N_APIDS, UNKNOWN, VARIABLE
from vigil.ingest.ccsds.plan import INT, UINT, BulkPlan, plan_fields
from vigil.ingest.ccsds.prune import read_definition
from vigil.ingest.ccsds.select import Selector, apid_equality, selector
from vigil.ingest.ccsds.texts import TextField, text_fields
from vigil.ingest.ccsds.timespec import TimeSpec

PRIMARY_HEADER_BITS = 48
_TIME_LIKE = re.compile(r"TIME|TICK|COARSE|FINE|MET\b|SEC|MSEC|USEC|DOY|DAY|CLOCK|CLK|UTC|GPS", re.I)


@dataclass(frozen=True)
class ParameterInfo:
    """What the mission database says about one channel (a parameter of one packet type)."""

    name: str
    container: str
    units: str = ""
    description: str = ""
    #: raw value -> label for enumerated parameters; their channel value is the raw number.
    enumeration: dict[int, str] | None = None
    #: the parameter's XTCE name (``name`` is qualified ``TYPE.PARAM`` when ambiguous).
    parameter: str = ""
    #: XTCE parameter type kind, e.g. ``BooleanParameterType``.
    kind: str = ""


@dataclass
class PacketLayout:
    """One packet type: where it comes from, what it carries, how it is decoded."""

    name: str
    apids: tuple[int, ...]
    #: XTCE names of its monitored parameters, in packet order; ``channels`` are their channel names.
    parameters: tuple[str, ...]
    channels: tuple[str, ...]
    time_field: str | None = None
    fine_field: str | None = None
    fine_scale: float = 0.0
    #: bulk decoding plan (time, fine time and channel fields), or ``None``: space_packet_parser.
    plan: BulkPlan | None = None
    #: why the layout is not decoded in bulk (empty when it is).
    slow_reason: str = ""
    #: restriction criteria of the whole inheritance chain (to tell sub-types apart).
    criteria: tuple = ()
    #: the criteria beyond the APID evaluated on columns (``None``: not plain, or not needed).
    selector: Selector | None = None
    #: its binary and string parameters (not monitored; written by ``vigil packets decode``).
    texts: tuple[TextField, ...] = ()

    @property
    def length(self) -> int | None:
        """Bytes of a packet of this type when fixed, else ``None``."""
        return None if self.plan is None or self.plan.variable else self.plan.length

    @property
    def apid(self) -> int:
        return self.apids[0]


@dataclass
class Mission:
    """Packet types by name, channels and parameter metadata of one mission database."""

    source: str
    layouts: dict[str, PacketLayout]
    parameters: dict[str, ParameterInfo]
    time: TimeSpec = field(default_factory=TimeSpec)
    definition: spp.XtcePacketDefinition | None = None
    xtce_path: Path | None = None
    #: parameters decoded but not monitored (binary, string), ``TYPE.PARAM`` -> reason.
    skipped: dict[str, str] = field(default_factory=dict)
    #: packet types (or elements) that cannot be used, with the reason; the rest loads.
    unsupported: dict[str, str] = field(default_factory=dict)
    #: APID -> packet types it can select, for APIDs the header alone does not settle.
    shared_apids: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel of every packet type, in APID then packet order: the block's channels."""
        order = sorted(self.layouts.values(), key=lambda lay: (lay.apid, lay.name))
        return tuple(c for lay in order for c in lay.channels)

    @property
    def untimed(self) -> tuple[str, ...]:
        """Packet types without a time field: timed by reception order."""
        return tuple(n for n, lay in self.layouts.items() if lay.time_field is None)

    def layout_for(self, apid: int) -> PacketLayout | None:
        """The one packet type an APID selects by its header alone (``None``: unknown or shared)."""
        return self._by_apid.get(int(apid))

    def expected_lengths(self) -> np.ndarray:
        """The framer's table: total length per APID, VARIABLE or UNKNOWN."""
        table = np.full(N_APIDS, UNKNOWN, dtype=np.int64)
        for apid in self.shared_apids:
            table[apid] = VARIABLE
        for apid, lay in self._by_apid.items():
            table[apid] = lay.length or VARIABLE
        return table

    @cached_property
    def _by_apid(self) -> dict[int, PacketLayout]:
        """APID -> the one packet type its header selects (shared APIDs left out)."""
        return {a: lay for lay in self.layouts.values() for a in lay.apids if a not in self.shared_apids}


def load_xtce(
    path: str | Path,
    *,
    time: TimeSpec | None = None,
    time_parameter: str | None = None,
    root_container: str = "CCSDSPacket",
) -> Mission:
    """Read an XTCE mission database.

    Args:
        path: the XTCE XML file.
        time: time fields and scales; default: the database's one ``AbsoluteTimeParameterType``.
        time_parameter: shorthand for ``TimeSpec(names=(time_parameter,))``.
        root_container: the container every packet starts from.

    Raises:
        ConfigError: naming the file and the element when the database cannot be used, or when
            no time can be found (listing the time-like candidates per packet type).
    """
    path = Path(path)
    src = str(path)
    if time is None:
        time = TimeSpec(names=(time_parameter,)) if time_parameter else TimeSpec()
    definition, left_out = read_definition(path, root_container)
    if root_container not in definition.containers:
        raise ConfigError(f"no container {root_container!r}", key="ContainerSet", source=src)
    root = definition.containers[root_container]
    header = _flatten(definition, root)
    apid_param = _apid_parameter(header, src)
    types, unsupported = _packet_types(definition, root, header, apid_param)
    unsupported = {**left_out, **unsupported}
    if not types:
        why = "; ".join(f"{k}: {v}" for k, v in unsupported.items())
        raise ConfigError(
            f"no usable packet container under {root_container!r} ({why})", key="ContainerSet", source=src
        )
    entries = {name: _flatten(definition, definition.containers[name]) for name in types}
    header_names = {p.name for p in header}
    times = _resolve_time(time, entries, header_names, src)
    data: dict[str, list] = {}
    skipped: dict[str, str] = {}
    texts: dict[str, list[tuple[str, str]]] = {}
    for name, ents in entries.items():
        used = {times[name][0], times[name][1]}
        data[name], texts[name] = [], []
        for p in ents[len(header) :] if _starts_with(ents, header) else ents:
            if p.name in header_names or p.name in used or p.name in {q.name for q in data[name]}:
                continue
            why = _not_numeric(p.parameter_type)
            if why:
                key = p.name if p.name.startswith(name + ".") else f"{name}.{p.name}"
                skipped[key] = why
                texts[name].append((p.name, key))
            else:
                data[name].append(p)
    count: dict[str, int] = {}
    for params in data.values():
        for p in params:
            count[p.name] = count.get(p.name, 0) + 1
    layouts: dict[str, PacketLayout] = {}
    infos: dict[str, ParameterInfo] = {}
    for name, (apids, criteria, _) in types.items():
        chans = tuple(p.name if count[p.name] == 1 else f"{name}.{p.name}" for p in data[name])
        coarse, fine = times[name]
        lay = PacketLayout(name, apids, tuple(p.name for p in data[name]), chans, coarse, fine, criteria=criteria)
        if fine is not None:
            lay.fine_scale = time.fine_scale or 2.0 ** -_bits(definition.parameters[fine].parameter_type)
        wanted = {x for x in (coarse, fine) if x} | set(lay.parameters)
        lay.plan, lay.slow_reason = plan_fields(entries[name], wanted)
        lay.selector = selector(entries[name], criteria, apid_param, definition)
        lay.texts = text_fields(entries[name], texts[name], lay.plan)
        layouts[name] = lay
        for p, ch in zip(data[name], chans):
            infos[ch] = _info(p, ch, name)
    shared = _shared_apids(types, layouts)
    return Mission(src, layouts, infos, time, definition, path, skipped, unsupported, shared)


def load_csv_definitions(
    definitions: dict[int, str | Path],
    *,
    time_parameter: str | None = None,
    time_scale: float = 1.0,
    time: TimeSpec | None = None,
) -> Mission:
    """A mission from ccsdspy packet definition CSV files (columns name, data_type, bit_length).

    Args:
        definitions: APID -> CSV file describing that APID's fixed-length packet (no primary header).
        time_parameter: field holding packet time; multiplied by ``time_scale`` to get seconds.
        time: instead of the two above, a full time specification.
    """
    time = time or TimeSpec(names=(time_parameter,) if time_parameter else (), scale=time_scale)
    layouts: dict[str, PacketLayout] = {}
    params: dict[str, ParameterInfo] = {}
    for apid, csv_path in definitions.items():
        src = str(csv_path)
        try:
            fixed = ccsdspy.FixedLength.from_file(csv_path)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
            raise ConfigError(f"cannot read packet definition: {err}", source=src) from None
        name = Path(csv_path).stem
        fields = [f for f in fixed._fields]
        coarse = next((n for n in time.names if n in {f._name for f in fields}), None)
        if coarse is None:
            raise ConfigError(f"no field of {list(time.names)} to take packet time from", key="name", source=src)
        data = [f._name for f in fields if f._name != coarse and f._data_type in ("uint", "int", "float")]
        for p in data:
            if p in params:
                raise ConfigError(f"field {p!r} is defined for two APIDs", key="name", source=src)
            params[p] = ParameterInfo(p, name, parameter=p)
        plan = _csv_plan(fields, {coarse, *data}, src)
        layouts[name] = PacketLayout(name, (int(apid),), tuple(data), tuple(data), coarse, plan=plan)
    if not layouts:
        raise ConfigError("no packet definitions given")
    return Mission(", ".join(str(p) for p in definitions.values()), layouts, params, time)


def _csv_plan(fields: list, wanted: set[str], src: str) -> BulkPlan:
    names, offs, sizes, kinds = [], [], [], []
    bits = PRIMARY_HEADER_BITS
    for f in fields:
        size = int(f._bit_length)
        if f._name in wanted:
            names.append(f._name)
            offs.append(bits)
            sizes.append(size)
            kinds.append({"uint": UINT, "int": INT}.get(f._data_type, 2))
        bits += size
    if bits % 8:
        raise ConfigError(f"fields add up to {bits} bits, not whole bytes", key="bit_length", source=src)
    n = len(names)
    return BulkPlan(
        tuple(names),
        np.array(offs, np.int64),
        np.array(sizes, np.int64),
        np.array(kinds, np.int64),
        np.zeros(n, np.bool_),
        (None,) * n,
        bits // 8,
    )


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


def _starts_with(entries: list, header: list) -> bool:
    return [p.name for p in entries[: len(header)]] == [p.name for p in header]


def _apid_parameter(header: list, src: str) -> str:
    """The root container's 11-bit field at bit 5: the APID of the CCSDS primary header."""
    bits = 0
    for p in header:
        size = getattr(p.parameter_type.encoding, "size_in_bits", None)
        if bits == 5 and size == 11:
            return p.name
        bits += size or 0
    raise ConfigError("the root container has no 11-bit APID field at bit 5", key="ContainerSet", source=src)


def _packet_types(definition, root, header: list, apid_param: str) -> tuple[dict, dict[str, str]]:
    """Concrete containers under the root: name -> (APIDs, chain criteria); and what is unusable."""
    types: dict[str, tuple[tuple[int, ...], tuple]] = {}
    unsupported: dict[str, str] = {}
    probes = _apid_probes(header, apid_param)
    todo = list(root.inheritors)
    while todo:
        name = todo.pop(0)
        cont = definition.containers[name]
        todo += cont.inheritors
        if cont.abstract:
            continue
        chain = []
        c = cont
        while c is not root:
            chain += c.restriction_criteria
            c = definition.containers[c.base_container_name]
        # Probing 2048 APIDs only for criteria beyond "APID == n" (the common case, decided at once).
        eq = [rc for rc in chain if apid_equality(rc, apid_param) is not None]
        first = {apid_equality(rc, apid_param) for rc in eq}
        candidates = first if len(first) == 1 else range(N_APIDS)
        rest = [rc for rc in chain if not any(rc is e for e in eq)] if len(first) == 1 else chain
        apids = tuple(a for a in candidates if 0 <= a < N_APIDS and all(_maybe(rc, probes[a]) for rc in rest))
        if not apids:
            unsupported[name] = "no APID satisfies its restriction criteria"
        elif len(apids) == N_APIDS:
            unsupported[name] = "its restriction criteria do not select an APID"
        else:
            # Criteria on more than the APID (a sub-type field, the packet type bit) must be checked per packet.
            types[name] = (apids, tuple(chain), not all(_on_apid_only(rc, apid_param, apids[0]) for rc in rest))
    return types, unsupported


def _apid_probes(header: list, apid_param: str) -> list[dict]:
    """One partial packet per APID: version 0, telemetry, that APID; other fields unknown."""
    fixed = {}
    bits = 0
    for p in header:
        size = getattr(p.parameter_type.encoding, "size_in_bits", 0)
        if (bits, size) in ((0, 3), (3, 1)):  # version, packet type (0: telemetry)
            fixed[p.name] = common.IntParameter(0, 0)
        bits += size
    return [{**fixed, apid_param: common.IntParameter(a, a)} for a in range(N_APIDS)]


def _maybe(criterion, probe: dict) -> bool:
    """Whether the criterion may hold for the probe (unknown fields: it may)."""
    try:
        return bool(criterion.evaluate(probe))
    except Exception:  # noqa: BLE001 - any criterion on fields beyond the header is decided per packet
        return True


def _on_apid_only(criterion, apid_param: str, apid: int) -> bool:
    """Whether the criterion can be evaluated knowing only the APID."""
    try:
        criterion.evaluate({apid_param: common.IntParameter(apid, apid)})
    except Exception:  # noqa: BLE001 - it needs another field
        return False
    return True


def _shared_apids(types: dict, layouts: dict[str, PacketLayout]) -> dict[int, tuple[str, ...]]:
    """APIDs that several types can take, or whose one type has criteria beyond the APID that
    cannot be checked on columns: their packets are told apart packet by packet."""
    by_apid: dict[int, list[str]] = {}
    loose: set[int] = set()
    for name, (apids, _, more) in types.items():
        for a in apids:
            by_apid.setdefault(a, []).append(name)
            if more and layouts[name].selector is None:
                loose.add(a)
    return {a: tuple(names) for a, names in by_apid.items() if len(names) > 1 or a in loose}


def _resolve_time(time: TimeSpec, entries: dict[str, list], header: set[str], src: str) -> dict:
    """Packet type -> (coarse field, fine field), each ``None`` where the type has none."""
    names = time.names or _absolute_time(entries)
    if not names:
        raise ConfigError(_no_time_message(entries), key="time", source=src)
    for label, wanted in (("--time", names), ("--time-fine", time.fine)):
        for n in wanted:
            if not any(_match(n, t, ents) for t, ents in entries.items()):
                raise ConfigError(
                    f"{label} {n!r} is in no packet type; {_no_time_message(entries, short=True)}",
                    key="time",
                    source=src,
                )
    return {
        t: (
            next((_match(n, t, ents) for n in names if _match(n, t, ents)), None),
            next((_match(n, t, ents) for n in time.fine if _match(n, t, ents)), None),
        )
        for t, ents in entries.items()
    }


def _match(name: str, type_name: str, ents: list) -> str | None:
    """The parameter ``name`` (``PARAM`` or ``TYPE.PARAM``) names in packet type ``type_name``."""
    here = {p.name for p in ents}
    if name in here:
        return name
    prefix, _, param = name.rpartition(".")
    if prefix == type_name and param in here:
        return param
    # Databases that already qualify names (``HIT_HSKP.SC_TICK``): the unqualified name matches.
    tails = [p for p in here if p.endswith("." + name)]
    return tails[0] if len(tails) == 1 else None


def _absolute_time(entries: dict[str, list]) -> tuple[str, ...]:
    found = {
        p.name
        for ents in entries.values()
        for p in ents
        if isinstance(p.parameter_type, parameter_types.AbsoluteTimeParameterType)
    }
    return tuple(found) if len(found) == 1 else ()


def _no_time_message(entries: dict[str, list], short: bool = False) -> str:
    cands = []
    for t, ents in sorted(entries.items()):
        names = [
            p.name
            for p in _after_primary_header(ents)
            if isinstance(p.parameter_type, parameter_types.AbsoluteTimeParameterType) or _TIME_LIKE.search(p.name)
        ]
        cands.append(f"{t}: {', '.join(dict.fromkeys(names)) or '(none)'}")
    head = (
        ""
        if short
        else (
            "the database names no single AbsoluteTimeParameterType; give the packet time with --time NAME "
            "(repeatable; CONTAINER.PARAM for one packet type; time= in a source spec); "
        )
    )
    return head + "time-like candidates per packet type: " + "; ".join(cands)


def _after_primary_header(ents: list) -> list:
    bits, out = 0, []
    for p in ents:
        if bits >= PRIMARY_HEADER_BITS:
            out.append(p)
        bits += _bits(p.parameter_type)
    return out


def _bits(ptype) -> int:
    return int(getattr(ptype.encoding, "size_in_bits", 0) or 0)


def _not_numeric(ptype) -> str:
    """Why a parameter type gives no number to monitor ("" when it does)."""
    if isinstance(ptype, (parameter_types.StringParameterType, parameter_types.BinaryParameterType)):
        return f"{type(ptype).__name__}: not a number, not monitored"
    if isinstance(ptype.encoding, (encodings.StringDataEncoding, encodings.BinaryDataEncoding)):
        return f"{type(ptype.encoding).__name__}: not a number"
    return ""


def _info(param, channel: str, container: str) -> ParameterInfo:
    ptype = param.parameter_type
    unit = ptype.unit if isinstance(ptype.unit, str) else " ".join(ptype.unit or ())
    enum = None
    if isinstance(ptype, parameter_types.EnumeratedParameterType):
        enum = {int(k): v for k, v in ptype.enumeration.items() if isinstance(k, (int, np.integer))}
    elif isinstance(ptype, parameter_types.BooleanParameterType):
        enum = {0: "False", 1: "True"}
    desc = param.short_description or param.long_description or ""
    return ParameterInfo(channel, container, unit or "", desc, enum, param.name, type(ptype).__name__)
