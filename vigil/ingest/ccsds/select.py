"""Telling packet types of one APID apart in bulk (sub-types: a service or mode field after the header).

When several packet types share an APID, or one type is selected by more than the APID, each type's
restriction criteria beyond the APID are tried on whole columns: a :class:`Selector` decodes the
fields they compare (at that type's offsets) and evaluates the comparisons. A packet that exactly
one type selects is decoded in bulk with that type's plan; any other packet goes to
space_packet_parser, which decides (or rejects) it packet by packet. Only plain ``Comparison``
criteria on fixed-offset numeric or enumerated fields are tried this way; any other criterion
leaves the APID to space_packet_parser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from space_packet_parser.xtce import parameter_types

from vigil.ingest.ccsds.plan import BulkPlan, plan_fields

_OPS = {
    "==": np.equal,
    "eq": np.equal,
    "!=": np.not_equal,
    "neq": np.not_equal,
    "<": np.less,
    "lt": np.less,
    "<=": np.less_equal,
    "leq": np.less_equal,
    ">": np.greater,
    "gt": np.greater,
    ">=": np.greater_equal,
    "geq": np.greater_equal,
}


@dataclass(frozen=True)
class Selector:
    """The comparisons that select one packet type, on columns decoded by ``plan``."""

    plan: BulkPlan
    #: (column in the plan, numpy comparison, value)
    tests: tuple

    def match(self, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Which packets (at ``offsets``, ``lengths`` bytes) this type's criteria select."""
        cols, status = self.plan.decode(buf, offsets, lengths)  # a packet too short is no match
        hit = status != 1
        for j, op, value in self.tests:
            hit &= op(cols[:, j], value)
        return hit


def apid_equality(criterion, apid_param: str) -> int | None:
    """n for a plain ``APID == n`` comparison, else ``None``."""
    if getattr(criterion, "referenced_parameter", None) != apid_param:
        return None
    if getattr(criterion, "operator", None) not in ("==", "eq"):
        return None
    try:
        return int(criterion.required_value)
    except (TypeError, ValueError):
        return None


def selector(entries: list, criteria: tuple, apid_param: str, definition) -> Selector | None:
    """A :class:`Selector` for the criteria beyond the APID, or ``None`` when one is not plain."""
    wanted: dict[str, tuple[bool, list]] = {}  # field -> (compare the raw value, [(op, value)])
    for rc in criteria:
        if apid_equality(rc, apid_param) is not None:
            continue
        test = _test(rc, definition)
        if test is None:
            return None
        name, raw, op, value = test
        if wanted.setdefault(name, (raw, []))[0] != raw:
            return None  # one field compared both raw and calibrated: left to space_packet_parser
        wanted[name][1].append((op, value))
    if not wanted:
        return None
    plan, _why = plan_fields(entries, set(wanted))
    if plan is None:
        return None
    convert = tuple(None if wanted[n][0] else c for n, c in zip(plan.names, plan.convert))
    plan = BulkPlan(
        plan.names, plan.offset, plan.size, plan.kind, plan.little, convert, plan.length, plan.tail, plan.after
    )
    tests = tuple((plan.names.index(n), op, v) for n, (_, pairs) in wanted.items() for op, v in pairs)
    return Selector(plan, tests)


def _test(rc, definition) -> tuple | None:
    """(field, raw?, numpy comparison, value) of a plain Comparison, else ``None``."""
    if type(rc).__name__ != "Comparison" or rc.operator not in _OPS:
        return None
    param = definition.parameters.get(rc.referenced_parameter)
    if param is None:
        return None
    ptype = param.parameter_type
    if isinstance(ptype, parameter_types.BooleanParameterType):
        return None
    if isinstance(ptype, parameter_types.EnumeratedParameterType):
        if not rc.use_calibrated_value:
            return _number(rc, param.name, raw=True)
        raws = [k for k, label in ptype.enumeration.items() if label == rc.required_value]
        if len(raws) != 1 or rc.operator not in ("==", "eq", "!=", "neq"):
            return None  # labels compare as strings: only equality maps to the raw number
        return param.name, True, _OPS[rc.operator], float(raws[0])
    return _number(rc, param.name, raw=not rc.use_calibrated_value)


def _number(rc, name: str, raw: bool) -> tuple | None:
    try:
        return name, raw, _OPS[rc.operator], float(rc.required_value)
    except (TypeError, ValueError):
        return None
