"""The alarms of an XTCE mission database as a detector: limit ranges with contexts, and states.

:class:`XtceAlarmCheck` checks, per channel and per sample, what
:func:`vigil.ingest.ccsds.xtce_alarms.read_xtce_alarms` imported:

* nested ranges per Yamcs level, like :class:`~vigil.detect.limits.LimitCheck`;
* context alarms: the first context whose conditions hold replaces the default ranges. A
  condition reads the latest value of its context channel (same row or earlier: context
  parameters often come in other packets than the checked one);
* enumeration alarms: the level of the channel's current state (by default, or in a context);
* ``minViolations`` per channel: a level is reported after that many consecutive violating
  samples (missing samples neither count nor break the run).

``score`` is the distance outside the band in force in units of its half-width (1 for a state in
alarm), so it reads like the limit check's. :func:`xtce_monitor_config` turns the same import into
the monitor's :class:`~vigil.config.MonitorConfig` (limits, min violations, rate, staleness).
"""

from __future__ import annotations

import numba
import numpy as np

from vigil.detect.base import SEVERITIES, Detector, Scores
from vigil.detect.limits import ChannelLimits
from vigil.ingest.ccsds.xtce_alarms import OPERATORS, XtceAlarms
from vigil.model import TelemetryBlock


class XtceAlarmCheck(Detector):
    """Check a mission database's own alarms; channels without alarms never flag.

    Args:
        alarms: the imported alarms (hyper-parameters: nothing is learned from data).
    """

    name = "xtce"
    stream_attrs = ("run_", "last_", "rate_t0_", "rate_n_")

    def __init__(self, alarms: XtceAlarms) -> None:
        self.alarms = alarms

    def fit(self, history: TelemetryBlock) -> XtceAlarmCheck:
        """Lay the alarm definitions out as arrays over the block's channels."""
        channels = history.channels
        index = {c: j for j, c in enumerate(channels)}
        defs = [self.alarms.alarms.get(c) for c in channels]
        n_rules = 1 + max((len(a.contexts) for a in defs if a), default=0)
        n_keys = max(
            (len(x.enum_levels) for a in defs if a for x in (a, *a.contexts)),
            default=0,
        )
        c, s = len(channels), len(SEVERITIES)
        self.low_ = np.full((c, n_rules, s), np.nan)
        self.high_ = np.full((c, n_rules, s), np.nan)
        self.has_rule_ = np.zeros((c, n_rules), dtype=np.bool_)
        self.enum_keys_ = np.full((c, n_rules, max(n_keys, 1)), np.nan)
        self.enum_levels_ = np.zeros((c, n_rules, max(n_keys, 1)), dtype=np.int8)
        self.enum_default_ = np.full((c, n_rules), -1, dtype=np.int8)
        self.min_violations_ = np.ones(c, dtype=np.int64)
        # DefaultRateInStream@maximumValue: more samples than this within one second is a warning.
        self.rate_max_ = np.array([self.alarms.rate_max_hz.get(ch, 0.0) for ch in channels], dtype=np.float64)
        conds = []  # (channel, rule, context column, operator, value)
        for j, a in enumerate(defs):
            if a is None:
                continue
            self.min_violations_[j] = a.min_violations
            self._rule(j, 0, a.ranges, a)
            for r, ctx in enumerate(a.contexts, start=1):
                missing = [cd.parameter for cd in ctx.conditions if cd.parameter not in index]
                if missing:
                    continue  # context channel absent from this block: the context can never match
                self._rule(j, r, ctx.ranges, ctx)
                conds += [(j, r, index[cd.parameter], OPERATORS.index(cd.operator), cd.value) for cd in ctx.conditions]
        table = np.array(conds, dtype=np.float64).reshape(-1, 5)
        # Conditions come grouped by channel: channel j's are cond_ptr_[j]:cond_ptr_[j + 1].
        self.cond_ptr_ = np.searchsorted(table[:, 0], np.arange(c + 1), side="left").astype(np.int64)
        self.cond_rule_ = table[:, 1].astype(np.int64)
        self.cond_column_ = table[:, 2].astype(np.int64)
        self.cond_op_ = table[:, 3].astype(np.int64)
        self.cond_value_ = table[:, 4].copy()
        self.channels_ = channels
        self.reset()
        return self

    def _rule(self, j: int, r: int, ranges: dict, states) -> None:
        """Rule ``r`` of channel ``j``: its ranges and its enumeration states (either may be empty)."""
        if ranges:
            self.low_[j, r], self.high_[j, r] = ChannelLimits(**ranges).as_arrays()
        if states.is_enum:
            self.enum_default_[j, r] = states.enum_default
            for k, (raw, level) in enumerate(sorted(states.enum_levels.items())):
                self.enum_keys_[j, r, k], self.enum_levels_[j, r, k] = raw, level
        self.has_rule_[j, r] = bool(ranges) or states.is_enum

    def reset(self) -> None:
        self.run_ = np.zeros(len(self.channels_), dtype=np.int64)
        self.last_ = np.full(len(self.channels_), np.nan)
        self.rate_t0_ = np.full(len(self.channels_), -np.inf)
        self.rate_n_ = np.zeros(len(self.channels_), dtype=np.int64)

    def score(self, block: TelemetryBlock) -> Scores:
        self._check_channels(block)
        out = Scores.empty(block.n_samples, block.n_channels, self.name)
        _alarm_kernel(
            block.time,
            block.values,
            self.low_,
            self.high_,
            self.has_rule_,
            self.cond_ptr_,
            self.cond_rule_,
            self.cond_column_,
            self.cond_op_,
            self.cond_value_,
            self.enum_keys_,
            self.enum_levels_,
            self.enum_default_,
            self.min_violations_,
            self.rate_max_,
            self.run_,
            self.last_,
            self.rate_t0_,
            self.rate_n_,
            out.level,
            out.score,
            out.low,
            out.high,
        )
        return out


def xtce_monitor_config(alarms: XtceAlarms, source: str | None = None):
    """A :class:`~vigil.config.MonitorConfig` with the mission's channels, limits, rates and staleness.

    Context and enumeration alarms are not expressible there: score with :class:`XtceAlarmCheck`.
    """
    from vigil.config import ChannelConfig, MonitorConfig

    channels = {}
    for name in alarms.units:
        a = alarms.alarms.get(name)
        channels[name] = ChannelConfig(
            subsystem=alarms.subsystems.get(name) or "mission",
            units=alarms.units.get(name, ""),
            description=alarms.descriptions.get(name, ""),
            limits=ChannelLimits(**a.ranges) if a is not None and a.ranges else None,
            rate_hz=alarms.rate_hz.get(name),
            stale_after_s=alarms.stale_after_s(name),
            min_violations=a.min_violations if a is not None else 1,
            min_conformance=a.min_conformance if a is not None else 1,
            states=alarms.states.get(name, {}),
        )
    return MonitorConfig(channels=channels, source=source or alarms.source)


@numba.njit(cache=True)
def _holds(x, op, v):  # pragma: no cover - numba
    if np.isnan(x):
        return False
    if op == 0:
        return x == v
    if op == 1:
        return x != v
    if op == 2:
        return x < v
    if op == 3:
        return x <= v
    if op == 4:
        return x > v
    return x >= v


@numba.njit(cache=True)
def _alarm_kernel(
    time,
    values,
    low,
    high,
    has_rule,
    cond_ptr,
    cond_rule,
    cond_column,
    cond_op,
    cond_value,
    enum_keys,
    enum_levels,
    enum_default,
    min_violations,
    rate_max,
    run,
    last,
    rate_t0,
    rate_n,
    level_out,
    score_out,
    low_out,
    high_out,
):  # pragma: no cover - numba
    n, c = values.shape
    n_rules = low.shape[1]
    n_sev = low.shape[2]
    ok = np.ones(n_rules, dtype=np.bool_)
    for i in range(n):
        for j in range(c):
            if np.isfinite(values[i, j]):
                last[j] = values[i, j]
        for j in range(c):
            x = values[i, j]
            if not np.isfinite(x):
                continue
            # The rule in force: the first context whose conditions all hold, else the default.
            for r in range(n_rules):
                ok[r] = has_rule[j, r]
            for k in range(cond_ptr[j], cond_ptr[j + 1]):
                if not _holds(last[cond_column[k]], cond_op[k], cond_value[k]):
                    ok[cond_rule[k]] = False
            rule = -1
            for r in range(1, n_rules):
                if ok[r]:
                    rule = r
                    break
            if rule < 0 and has_rule[j, 0]:
                rule = 0
            lv = 0
            if rule >= 0:
                lo_in = np.nan
                hi_in = np.nan
                for s in range(n_sev):
                    lo = low[j, rule, s]
                    hi = high[j, rule, s]
                    if (not np.isnan(lo) and x < lo) or (not np.isnan(hi) and x > hi):
                        lv = s + 1
                    if np.isnan(lo_in) and not np.isnan(lo):
                        lo_in = lo
                    if np.isnan(hi_in) and not np.isnan(hi):
                        hi_in = hi
                low_out[i, j] = lo_in
                high_out[i, j] = hi_in
                if not (np.isnan(lo_in) or np.isnan(hi_in)) and hi_in > lo_in:
                    score_out[i, j] = abs(x - (lo_in + hi_in) / 2.0) / ((hi_in - lo_in) / 2.0)
            if rule >= 0 and enum_default[j, rule] >= 0:
                state = enum_default[j, rule]
                for k in range(enum_keys.shape[2]):
                    if enum_keys[j, rule, k] == x:
                        state = enum_levels[j, rule, k]
                        break
                if state > lv:
                    lv = state
                score_out[i, j] = 1.0 if state > 0 else 0.0
            if rate_max[j] > 0:
                if time[i] - rate_t0[j] >= 1.0:
                    rate_t0[j] = time[i]
                    rate_n[j] = 0
                rate_n[j] += 1
                if rate_n[j] > rate_max[j] and lv < 2:
                    lv = 2  # warning: faster than the maximum rate in stream
            if lv > 0:
                run[j] += 1
                if run[j] >= min_violations[j]:
                    level_out[i, j] = lv
            else:
                run[j] = 0
