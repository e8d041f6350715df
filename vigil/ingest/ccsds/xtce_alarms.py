"""The alarms an XTCE mission database already defines, read so that Vigil reuses them.

Mapped (per parameter, from its parameter type):

* ``DefaultAlarm/StaticAlarmRanges``: ``WatchRange`` .. ``SevereRange`` become nested ranges per
  Yamcs level; exclusive bounds become the nearest inclusive float64 bound.
* ``DefaultAlarm@minViolations`` / ``@minConformance``: debounce counts.
* ``ContextAlarmList/ContextAlarm``: ranges used instead of the default ones while the context
  matches (``Comparison`` or ``ComparisonList`` of ``==, !=, <, <=, >, >=``; enumeration labels
  converted to their raw numbers, which are the channel values).
* ``EnumerationAlarmList/EnumerationAlarm`` (+ ``defaultAlarmLevel``): a level per state.
* ``SequenceContainer/DefaultRateInStream@minimumValue`` (basis ``perSecond``): expected rate and
  staleness check (stale when no packet for ``max(1 / minimumValue, 1)`` seconds).

Everything else that defines an alarm (``ChangePerSecondAlarmRanges``, ``AlarmMultiRanges``,
``CustomAlarm``, ``rangeForm="inside"``, ``BooleanExpression`` contexts, alarms on string or
binary parameters, ``maximumValue`` rates ...) is listed in :attr:`XtceAlarms.unmapped` by
parameter and element name, never silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

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
    """Ranges in force while every condition holds."""

    conditions: tuple[Condition, ...]
    ranges: dict[str, Range]


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

        Context and enumeration alarms have no place there; ``vigil packets monitor`` checks them.
        """
        lines = [f"# Generated from {self.source} by vigil packets config.", ""]
        for name in self.units:
            a = self.alarms.get(name)
            lines.append(f"[channels.{_toml_key(name)}]")
            lines.append(f"subsystem = {_toml_str(self.subsystems.get(name) or 'mission')}")
            for key, table in (("units", self.units), ("description", self.descriptions)):
                if table.get(name):
                    lines.append(f"{key} = {_toml_str(table[name])}")
            if name in self.rate_hz:
                lines.append(f"rate_hz = {self.rate_hz[name]!r}")
                lines.append(f"stale_after_s = {self.stale_after_s(name)!r}")
            if a is not None:
                lines.append(f"min_violations = {a.min_violations}")
                lines.append(f"min_conformance = {a.min_conformance}")
            if a is not None and a.ranges:
                lines.append(f"[channels.{_toml_key(name)}.limits]")
                for level in LEVELS:
                    if level in a.ranges:
                        lo, hi = a.ranges[level]
                        lines.append(f"{level} = [{_toml_float(lo, '-inf')}, {_toml_float(hi, 'inf')}]")
            lines.append("")
        return "\n".join(lines)

    def report(self) -> str:
        """What was imported and what was not, one line each."""
        n_ranges = sum(1 for a in self.alarms.values() if a.ranges)
        n_ctx = sum(len(a.contexts) for a in self.alarms.values())
        n_enum = sum(1 for a in self.alarms.values() if a.is_enum)
        lines = [
            f"{self.source}: {n_ranges} parameters with limit ranges, {n_ctx} context alarms, "
            f"{n_enum} enumeration alarms, {len(self.rate_hz)} parameters with a rate check"
        ]
        lines += [f"  not mapped: {u}" for u in self.unmapped]
        return "\n".join(lines)


def read_xtce_alarms(mission: Mission, path: str | Path | None = None) -> XtceAlarms:
    """Import the alarms of the mission's XTCE file for the mission's channels.

    Raises:
        ConfigError: naming the file and the element, for values that cannot be read.
    """
    path = Path(path) if path is not None else mission.xtce_path
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
    param_types = {
        el.get("name"): el.get("parameterTypeRef") for el in root.iterfind(".//{*}ParameterSet/{*}Parameter")
    }
    out = XtceAlarms(src, {}, {}, [])
    for name in mission.channels:
        info = mission.parameters[name]
        out.units[name] = info.units
        out.descriptions[name] = info.description
        out.subsystems[name] = info.container
        if info.enumeration:
            out.states[name] = dict(info.enumeration)
        ptype = types.get(param_types.get(name))
        if ptype is None:
            continue
        alarm = _parameter_alarms(name, ptype, mission, out.unmapped, src)
        if alarm is not None:
            out.alarms[name] = alarm
    for name, why in mission.skipped.items():
        ptype = types.get(param_types.get(name))
        if ptype is not None and (
            ptype.find("{*}DefaultAlarm") is not None or ptype.find("{*}ContextAlarmList") is not None
        ):
            out.unmapped.append(Unmapped(name, "DefaultAlarm", f"parameter not monitored ({why})"))
    _rates(root, mission, out)
    return out


def _parameter_alarms(name: str, ptype, mission: Mission, unmapped: list[Unmapped], src: str) -> ParameterAlarms | None:
    kind = etree.QName(ptype).localname
    default = ptype.find("{*}DefaultAlarm")
    contexts = ptype.findall("{*}ContextAlarmList/{*}ContextAlarm")
    if default is None and not contexts:
        return None
    if kind not in ("FloatParameterType", "IntegerParameterType", "EnumeratedParameterType"):
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
                _enum_alarms(default, child, name, mission, alarm, unmapped, where, src)
            elif tag not in _MAPPED_ALARM_CHILDREN:
                unmapped.append(Unmapped(name, f"DefaultAlarm/{tag}", "not checked by Vigil"))
    for k, ctx in enumerate(contexts):
        mapped = _context(ctx, name, k, mission, unmapped, where, src)
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


def _enum_alarms(default, el, name, mission: Mission, alarm: ParameterAlarms, unmapped, where, src) -> None:
    enum = mission.parameters[name].enumeration or {}
    by_label = {label: raw for raw, label in enum.items()}
    alarm.enum_default = _level(default.get("defaultAlarmLevel", "normal"), f"{where}@defaultAlarmLevel", src)
    for item in el.iterfind("{*}EnumerationAlarm"):
        label = item.get("enumerationLabel")
        level = _level(item.get("alarmLevel", "normal"), f"{where}/EnumerationAlarm@alarmLevel", src)
        if label not in by_label:
            unmapped.append(Unmapped(name, f"EnumerationAlarm {label}", "label not in the enumeration list"))
            continue
        alarm.enum_levels[by_label[label]] = level


def _context(ctx, name, k, mission: Mission, unmapped, where, src) -> ContextRanges | None:
    element = f"ContextAlarm[{k}]"
    for attr in ("minViolations", "minConformance"):
        if ctx.get(attr) is not None:
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
        cond, why = _condition(comp, mission)
        if cond is None:
            unmapped.append(Unmapped(name, element, why))
            return None
        conditions.append(cond)
    static = ctx.find("{*}StaticAlarmRanges")
    extra = [etree.QName(c).localname for c in ctx if isinstance(c.tag, str)]
    for tag in set(extra) - {"StaticAlarmRanges", "ContextMatch"}:
        unmapped.append(Unmapped(name, f"{element}/{tag}", "not checked by Vigil"))
    if static is None:
        return None
    return ContextRanges(tuple(conditions), _ranges(static, name, element, unmapped, where, src))


def _condition(comp, mission: Mission) -> tuple[Condition | None, str]:
    ref = comp.get("parameterRef")
    op = comp.get("comparisonOperator", "==")
    op = _OP_ALIASES.get(op, op)
    if op not in OPERATORS:
        return None, f"comparison operator {op!r}"
    if ref not in mission.parameters:
        return None, f"context parameter {ref!r} is not a decoded channel"
    enum = mission.parameters[ref].enumeration
    raw = comp.get("useCalibratedValue", "true").lower() == "false"
    text = comp.get("value", "")
    if enum:
        by_label = {label: v for v, label in enum.items()}
        if not raw and text in by_label:
            return Condition(ref, op, float(by_label[text])), ""
        if not raw:
            return None, f"{ref} has no state {text!r}"
    elif raw:
        return None, f"comparison of {ref}'s uncalibrated value (channels hold calibrated values)"
    try:
        return Condition(ref, op, float(text)), ""
    except ValueError:
        return None, f"value {text!r} of {ref} is not a number"


def _rates(root, mission: Mission, out: XtceAlarms) -> None:
    by_name = {lay.name: lay for lay in mission.layouts.values()}
    for cont in root.iterfind(".//{*}ContainerSet/{*}SequenceContainer"):
        layout = by_name.get(cont.get("name"))
        rate = cont.find("{*}DefaultRateInStream")
        if layout is None or rate is None:
            continue
        element = f"SequenceContainer {layout.name}/DefaultRateInStream"
        if rate.get("basis", "perSecond") != "perSecond":
            out.unmapped.append(Unmapped("*", element, f"basis {rate.get('basis')!r}: only perSecond is checked"))
            continue
        if rate.get("maximumValue") is not None:
            out.unmapped.append(Unmapped("*", element, "maximumValue: too-fast packets are not checked"))
        lo = rate.get("minimumValue")
        if lo is None:
            continue
        hz = _float(lo, f"{element}@minimumValue", out.source)
        if hz <= 0:
            raise ConfigError("must be positive", key=f"{element}@minimumValue", source=out.source)
        for p in layout.parameters:
            out.rate_hz[p] = hz


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


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else _toml_str(name)


def _toml_float(value: float | None, open_side: str) -> str:
    return open_side if value is None else repr(float(value))
