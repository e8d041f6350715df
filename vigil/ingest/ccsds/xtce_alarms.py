"""The alarms an XTCE mission database already defines, read so that Vigil reuses them.

Mapped (per parameter, from its parameter type):

* ``DefaultAlarm/StaticAlarmRanges``: ``WatchRange`` .. ``SevereRange`` become nested ranges per
  Yamcs level; exclusive bounds become the nearest inclusive float64 bound.
* ``DefaultAlarm@minViolations`` / ``@minConformance``: debounce counts.
* ``ContextAlarmList/ContextAlarm``: ranges and enumeration states used instead of the default
  ones while the context matches (``Comparison`` or ``ComparisonList`` of ``==, !=, <, <=, >, >=``;
  enumeration labels and boolean state strings (``oneStringValue``/``zeroStringValue``) converted
  to their raw numbers, which are the channel values).
* ``EnumerationAlarmList/EnumerationAlarm`` (+ ``defaultAlarmLevel``): a level per state.
* ``SequenceContainer/DefaultRateInStream@minimumValue`` (basis ``perSecond``): expected rate and
  staleness check (stale when no packet for ``max(1 / minimumValue, 1)`` seconds);
  ``@maximumValue``: more samples than that within one second raise a warning.

:func:`read_xtce_alarms` reads them for a decoded mission's channels, or, given only a file,
for every parameter the file declares (no packet layout needed: databases whose parameter types
space_packet_parser cannot read still give their alarms).

Everything else that defines an alarm (``ChangePerSecondAlarmRanges``, ``AlarmMultiRanges``,
``CustomAlarm``, ``rangeForm="inside"``, ``BooleanExpression`` contexts, alarms on string or
binary parameters ...) is listed in :attr:`XtceAlarms.unmapped` by
parameter and element name, never silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from lxml import etree

from vigil.errors import ConfigError
from vigil.ingest.ccsds.mdb import Mission

LEVELS = ("watch", "warning", "distress", "critical", "severe")
_RANGE_TAGS = {f"{name.capitalize()}Range": name for name in LEVELS}
_XTCE_LEVELS = {"normal": 0, **{name: i + 1 for i, name in enumerate(LEVELS)}}
OPERATORS = ("==", "!=", "<", "<=", ">", ">=")
_OP_ALIASES = {"eq": "==", "neq": "!=", "lt": "<", "leq": "<=", "gt": ">", "geq": ">="}
_MAPPED_ALARM_CHILDREN = {"StaticAlarmRanges", "EnumerationAlarmList", "AlarmConditions"}

Range = tuple[float | None, float | None]


@dataclass(frozen=True)
class Condition:
    """``parameter <operator> value``, value in channel units (raw number for enumerations)."""

    parameter: str
    operator: str
    value: float


@dataclass(frozen=True)
class ContextRanges:
    """Ranges and enumeration states in force while every condition holds."""

    conditions: tuple[Condition, ...]
    ranges: dict[str, Range]
    enum_levels: dict[int, int] = field(default_factory=dict)
    #: level of states not listed; -1: the context has no enumeration alarm.
    enum_default: int = -1

    @property
    def is_enum(self) -> bool:
        return bool(self.enum_levels) or self.enum_default >= 0


@dataclass
class ParameterAlarms:
    """The alarm definition of one parameter."""

    parameter: str
    ranges: dict[str, Range] = field(default_factory=dict)
    contexts: list[ContextRanges] = field(default_factory=list)
    #: raw enumeration value -> Yamcs level (1..5) for states listed in the alarm.
    enum_levels: dict[int, int] = field(default_factory=dict)
    #: level of enumeration states not listed (XTCE ``defaultAlarmLevel``), 0 for normal.
    enum_default: int = 0
    min_violations: int = 1
    min_conformance: int = 1

    @property
    def is_enum(self) -> bool:
        return bool(self.enum_levels) or self.enum_default > 0


@dataclass(frozen=True)
class Unmapped:
    """Something the database defines that Vigil does not check."""

    parameter: str
    element: str
    reason: str

    def __str__(self) -> str:
        return f"{self.parameter}: {self.element}: {self.reason}"


@dataclass
class XtceAlarms:
    """All alarms of a mission database, by parameter, plus what could not be mapped."""

    source: str
    alarms: dict[str, ParameterAlarms]
    #: parameter -> minimum rate in Hz from its container's DefaultRateInStream.
    rate_hz: dict[str, float]
    unmapped: list[Unmapped]
    #: parameter -> maximum rate in Hz (``DefaultRateInStream@maximumValue``).
    rate_max_hz: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    subsystems: dict[str, str] = field(default_factory=dict)
    #: parameter -> its enumeration labels by raw value (explanations name the state).
    states: dict[str, dict[int, str]] = field(default_factory=dict)

    def stale_after_s(self, parameter: str) -> float | None:
        """Seconds without a sample after which the parameter is stale.

        One period at the minimum rate, but never under the rate's one-second basis: XTCE counts
        packets per second, so a gap shorter than a second is not yet a rate violation.
        """
        rate = self.rate_hz.get(parameter)
        return None if not rate else max(1.0 / rate, 1.0)

    def to_toml(self) -> str:
        """The channel configuration ``vigil monitor --config`` reads: ranges, debounce, rates.

        Written with a TOML library, so any text in descriptions or names stays valid TOML.
        Context and enumeration alarms have no place there; ``vigil packets monitor`` checks them.
        """
        channels = {}
        for name in self.units:
            a = self.alarms.get(name)
            ch: dict = {"subsystem": self.subsystems.get(name) or "mission"}
            for key, table in (("units", self.units), ("description", self.descriptions)):
                if table.get(name):
                    ch[key] = table[name]
            if self.states.get(name):  # state names, so explanations read FAULT rather than 3
                ch["states"] = {str(raw): label for raw, label in sorted(self.states[name].items())}
            if name in self.rate_hz:
                ch["rate_hz"] = self.rate_hz[name]
                ch["stale_after_s"] = self.stale_after_s(name)
            if a is not None:
                ch["min_violations"] = a.min_violations
                ch["min_conformance"] = a.min_conformance
                if a.ranges:
                    ch["limits"] = {
                        level: [_bound_value(lo, -math.inf), _bound_value(hi, math.inf)]
                        for level in LEVELS
                        if level in a.ranges
                        for lo, hi in (a.ranges[level],)
                    }
            channels[name] = ch
        return f"# Generated from {self.source} by vigil packets config.\n\n" + tomli_w.dumps({"channels": channels})

    def report(self) -> str:
        """What was imported and what was not, one line each."""
        n_ranges = sum(1 for a in self.alarms.values() if a.ranges)
        n_ctx = sum(len(a.contexts) for a in self.alarms.values())
        n_enum = sum(1 for a in self.alarms.values() if a.is_enum)
        n_ctx_enum = sum(1 for a in self.alarms.values() for c in a.contexts if c.is_enum)
        lines = [
            f"{self.source}: {n_ranges} parameters with limit ranges, {n_ctx} context alarms "
            f"({n_ctx_enum} with enumeration states), {n_enum} enumeration alarms, "
            f"{len(self.rate_hz)} parameters with a minimum rate, {len(self.rate_max_hz)} with a maximum rate"
        ]
        lines += [f"  not mapped: {u}" for u in self.unmapped]
        return "\n".join(lines)


@dataclass
class _View:
    """The channels alarms are read for: XTCE name, enumeration, packet type of each."""

    channels: list[str]
    xname: dict[str, str]
    enum: dict[str, dict[int, str]]
    container: dict[str, str]
    #: packet type (container) -> its channels, for DefaultRateInStream.
    by_container: dict[str, list[str]]
    skipped: dict[str, str]

    def resolve(self, ref: str, near: str) -> str | None:
        """The channel an XTCE parameter reference names (a path's last part), nearest to ``near``."""
        ref = ref.rsplit("/", 1)[-1]
        found = [c for c in self.channels if self.xname[c] == ref]
        if len(found) > 1:
            found = [c for c in found if self.container.get(c) == self.container.get(near)]
        return found[0] if len(found) == 1 else None


def read_xtce_alarms(mission: Mission | None, path: str | Path | None = None) -> XtceAlarms:
    """Import the alarms of an XTCE file: for the mission's channels, or (``mission=None``) for
    every parameter the file declares, without needing a packet layout.

    Raises:
        ConfigError: naming the file and the element, for values that cannot be read.
    """
    path = Path(path) if path is not None else (mission.xtce_path if mission is not None else None)
    if path is None:
        raise ConfigError("the mission has no XTCE file to read alarms from", source=mission.source)
    src = str(path)
    try:
        # The database is configuration, but still: no external entities, no network.
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError) as err:
        raise ConfigError(f"cannot read XTCE: {err}", source=src) from None
    types = {el.get("name"): el for el in root.iterfind(".//{*}ParameterTypeSet/*")}
    params = {el.get("name"): el for el in root.iterfind(".//{*}ParameterSet/{*}Parameter")}
    view = _view(mission, root, types, params)
    out = XtceAlarms(src, {}, {}, [])
    for name in view.channels:
        el = params.get(view.xname[name])
        ptype = types.get(_last(el.get("parameterTypeRef", ""))) if el is not None else None
        out.units[name] = _units(ptype) if mission is None else mission.parameters[name].units
        out.descriptions[name] = (
            (el.get("shortDescription", "") if el is not None else "")
            if mission is None
            else mission.parameters[name].description
        )
        out.subsystems[name] = view.container.get(name, "")
        if mission is not None and mission.parameters[name].enumeration:
            out.states[name] = dict(mission.parameters[name].enumeration)
        if ptype is None:
            continue
        alarm = _parameter_alarms(name, ptype, view, out.unmapped, src)
        if alarm is not None:
            out.alarms[name] = alarm
    for name, why in view.skipped.items():
        owner = next((c for c in view.by_container if name.startswith(c + ".")), "")
        el = params.get(name) if name in params else params.get(name[len(owner) + 1 :])
        ptype = types.get(_last(el.get("parameterTypeRef", ""))) if el is not None else None
        if ptype is not None and (
            ptype.find("{*}DefaultAlarm") is not None or ptype.find("{*}ContextAlarmList") is not None
        ):
            out.unmapped.append(Unmapped(name, "DefaultAlarm", f"parameter not monitored ({why})"))
    _rates(root, view, out)
    return out


def _view(mission: Mission | None, root, types: dict, params: dict) -> _View:
    xml_enum = {}
    for name, el in params.items():
        ptype = types.get(_last(el.get("parameterTypeRef", "")))
        if ptype is not None:
            labels = _labels(ptype)
            if labels is not None:
                xml_enum[name] = labels
    if mission is not None:
        chans = list(mission.channels)
        xname = {c: mission.parameters[c].parameter or c for c in chans}
        enum = {c: xml_enum.get(xname[c]) or mission.parameters[c].enumeration or {} for c in chans}
        container = {c: mission.parameters[c].container for c in chans}
        by_container = {lay.name: list(lay.channels) for lay in mission.layouts.values()}
        return _View(chans, xname, enum, container, by_container, dict(mission.skipped))
    chans = list(params)
    by_container = {}
    for cont in root.iterfind(".//{*}ContainerSet/{*}SequenceContainer"):
        refs = [_last(e.get("parameterRef", "")) for e in cont.iterfind("{*}EntryList/{*}ParameterRefEntry")]
        by_container[cont.get("name")] = [r for r in refs if r in params]
    container = {c: cont for cont, members in by_container.items() for c in members}
    return _View(chans, {c: c for c in chans}, {c: xml_enum.get(c, {}) for c in chans}, container, by_container, {})


def _labels(ptype) -> dict[int, str] | None:
    """Raw value -> label of an enumerated or boolean parameter type (``None`` for others)."""
    kind = etree.QName(ptype).localname
    if kind == "BooleanParameterType":
        return {0: ptype.get("zeroStringValue", "False"), 1: ptype.get("oneStringValue", "True")}
    if kind != "EnumeratedParameterType":
        return None
    out = {}
    for item in ptype.iterfind("{*}EnumerationList/{*}Enumeration"):
        try:
            out[int(item.get("value"))] = item.get("label")
        except (TypeError, ValueError):
            continue
    return out


def _units(ptype) -> str:
    if ptype is None:
        return ""
    return " ".join(u.text or "" for u in ptype.iterfind("{*}UnitSet/{*}Unit")).strip()


def _last(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _parameter_alarms(name: str, ptype, view: _View, unmapped: list[Unmapped], src: str) -> ParameterAlarms | None:
    kind = etree.QName(ptype).localname
    default = ptype.find("{*}DefaultAlarm")
    contexts = ptype.findall("{*}ContextAlarmList/{*}ContextAlarm")
    if default is None and not contexts:
        return None
    if kind not in ("FloatParameterType", "IntegerParameterType", "EnumeratedParameterType", "BooleanParameterType"):
        unmapped.append(Unmapped(name, "DefaultAlarm", f"alarms on {kind} are not checked"))
        return None
    where = f"ParameterType {ptype.get('name')}"
    alarm = ParameterAlarms(name)
    if default is not None:
        alarm.min_violations = _positive_int(default, "minViolations", where, src)
        alarm.min_conformance = _positive_int(default, "minConformance", where, src)
        for child in default:
            if not isinstance(child.tag, str):
                continue
            tag = etree.QName(child).localname
            if tag == "StaticAlarmRanges":
                alarm.ranges = _ranges(child, name, "DefaultAlarm", unmapped, where, src)
            elif tag == "EnumerationAlarmList":
                alarm.enum_default, alarm.enum_levels = _enum_alarms(default, child, name, view, unmapped, where, src)
            elif tag not in _MAPPED_ALARM_CHILDREN:
                unmapped.append(Unmapped(name, f"DefaultAlarm/{tag}", "not checked by Vigil"))
    for k, ctx in enumerate(contexts):
        mapped = _context(ctx, name, k, view, unmapped, where, src)
        if mapped is not None:
            alarm.contexts.append(mapped)
    if not (alarm.ranges or alarm.contexts or alarm.is_enum):
        return None
    return alarm


def _ranges(el, name: str, element: str, unmapped: list[Unmapped], where: str, src: str) -> dict[str, Range]:
    out: dict[str, Range] = {}
    for rng in el:
        if not isinstance(rng.tag, str):
            continue
        tag = etree.QName(rng).localname
        level = _RANGE_TAGS.get(tag)
        if level is None:
            unmapped.append(Unmapped(name, f"{element}/{tag}", "unknown range element"))
            continue
        if rng.get("rangeForm", "outside") != "outside":
            unmapped.append(Unmapped(name, f"{element}/{tag}", 'rangeForm="inside" (alarm inside a range)'))
            continue
        lo = _bound(rng, "minInclusive", "minExclusive", +1, f"{where}/{tag}", src)
        hi = _bound(rng, "maxInclusive", "maxExclusive", -1, f"{where}/{tag}", src)
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"low {lo} is above high {hi}", key=f"{where}/{tag}", source=src)
        out[level] = (lo, hi)
    return out


def _bound(el, inclusive: str, exclusive: str, direction: int, key: str, src: str) -> float | None:
    text = el.get(inclusive)
    if text is not None:
        return _float(text, f"{key}@{inclusive}", src)
    text = el.get(exclusive)
    if text is not None:
        # Strictly above min (below max): the next representable float is the inclusive bound.
        return math.nextafter(_float(text, f"{key}@{exclusive}", src), direction * math.inf)
    return None


def _enum_alarms(holder, el, name, view: _View, unmapped, where, src) -> tuple[int, dict[int, int]]:
    """(level of unlisted states, raw value -> level) of an ``EnumerationAlarmList``."""
    by_label = {label: raw for raw, label in view.enum.get(name, {}).items()}
    default = _level(holder.get("defaultAlarmLevel", "normal"), f"{where}@defaultAlarmLevel", src)
    levels = {}
    for item in el.iterfind("{*}EnumerationAlarm"):
        label = item.get("enumerationLabel")
        level = _level(item.get("alarmLevel", "normal"), f"{where}/EnumerationAlarm@alarmLevel", src)
        if label not in by_label:
            unmapped.append(Unmapped(name, f"EnumerationAlarm {label}", "label not in the enumeration list"))
            continue
        levels[by_label[label]] = level
    return default, levels


def _context(ctx, name, k, view: _View, unmapped, where, src) -> ContextRanges | None:
    element = f"ContextAlarm[{k}]"
    for attr in ("minViolations", "minConformance"):
        if ctx.get(attr) not in (None, "1"):
            unmapped.append(Unmapped(name, f"{element}@{attr}", "per-context debounce: the DefaultAlarm's is used"))
    match = ctx.find("{*}ContextMatch")
    if match is None:
        unmapped.append(Unmapped(name, element, "no ContextMatch"))
        return None
    comparisons = match.findall("{*}Comparison") + match.findall("{*}ComparisonList/{*}Comparison")
    others = [etree.QName(c).localname for c in match if isinstance(c.tag, str)]
    if not comparisons or set(others) - {"Comparison", "ComparisonList"}:
        unmapped.append(Unmapped(name, element, f"context {others} is not a Comparison or ComparisonList"))
        return None
    conditions = []
    for comp in comparisons:
        cond, why = _condition(comp, name, view)
        if cond is None:
            unmapped.append(Unmapped(name, element, why))
            return None
        conditions.append(cond)
    static = ctx.find("{*}StaticAlarmRanges")
    states = ctx.find("{*}EnumerationAlarmList")
    extra = [etree.QName(c).localname for c in ctx if isinstance(c.tag, str)]
    for tag in set(extra) - {"StaticAlarmRanges", "ContextMatch", "EnumerationAlarmList"}:
        unmapped.append(Unmapped(name, f"{element}/{tag}", "not checked by Vigil"))
    if static is None and states is None:
        return None
    ranges = {} if static is None else _ranges(static, name, element, unmapped, where, src)
    if states is None:
        return ContextRanges(tuple(conditions), ranges)
    default, levels = _enum_alarms(ctx, states, name, view, unmapped, f"{where}/{element}", src)
    return ContextRanges(tuple(conditions), ranges, levels, default)


def _condition(comp, near: str, view: _View) -> tuple[Condition | None, str]:
    ref = comp.get("parameterRef", "")
    op = comp.get("comparisonOperator", "==")
    op = _OP_ALIASES.get(op, op)
    if op not in OPERATORS:
        return None, f"comparison operator {op!r}"
    channel = view.resolve(ref, near)
    if channel is None:
        return None, f"context parameter {ref!r} is not a decoded channel"
    enum = view.enum.get(channel)
    raw = comp.get("useCalibratedValue", "true").lower() == "false"
    text = comp.get("value", "")
    if enum:
        by_label = {label: v for v, label in enum.items()}
        if not raw and text in by_label:
            return Condition(channel, op, float(by_label[text])), ""
        if not raw:
            return None, f"{ref} has no state {text!r} (states: {', '.join(by_label)})"
    elif raw:
        return None, f"comparison of {ref}'s uncalibrated value (channels hold calibrated values)"
    try:
        return Condition(channel, op, float(text)), ""
    except ValueError:
        return None, f"value {text!r} of {ref} is not a number"


def _rates(root, view: _View, out: XtceAlarms) -> None:
    for cont in root.iterfind(".//{*}ContainerSet/{*}SequenceContainer"):
        members = view.by_container.get(cont.get("name"))
        rate = cont.find("{*}DefaultRateInStream")
        if members is None or rate is None:
            continue
        element = f"SequenceContainer {cont.get('name')}/DefaultRateInStream"
        if rate.get("basis", "perSecond") != "perSecond":
            out.unmapped.append(Unmapped("*", element, f"basis {rate.get('basis')!r}: only perSecond is checked"))
            continue
        for attr, table in (("minimumValue", out.rate_hz), ("maximumValue", out.rate_max_hz)):
            text = rate.get(attr)
            if text is None:
                continue
            hz = _float(text, f"{element}@{attr}", out.source)
            if hz <= 0:
                raise ConfigError("must be positive", key=f"{element}@{attr}", source=out.source)
            for p in members:
                table[p] = hz


def _float(text: str, key: str, src: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number", key=key, source=src) from None
    if not math.isfinite(value):
        raise ConfigError(f"{text!r} is not finite", key=key, source=src)
    return value


def _positive_int(el, attr: str, where: str, src: str) -> int:
    text = el.get(attr, "1")
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not an integer", key=f"{where}/DefaultAlarm@{attr}", source=src) from None
    if value < 1:
        raise ConfigError("must be >= 1", key=f"{where}/DefaultAlarm@{attr}", source=src)
    return value


def _level(text: str, key: str, src: str) -> int:
    if text not in _XTCE_LEVELS:
        raise ConfigError(f"unknown alarm level {text!r} (expected one of {list(_XTCE_LEVELS)})", key=key, source=src)
    return _XTCE_LEVELS[text]


def _bound_value(value: float | None, open_side: float) -> float:
    return open_side if value is None else float(value)
