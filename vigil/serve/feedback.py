"""Operator feedback routes: notes on alarms, marking an alarm's episode nominal, run-time limits.

* ``POST /api/alarms/{id}:comment`` — a note on an alarm (audited, shown with the alarm).
* ``POST /api/alarms/{id}:mark-nominal`` — the alarm's episode becomes a nominal pattern of its
  channel (:mod:`vigil.detect.nominal`); a comment is required. ``:unmark-nominal`` withdraws it.
  ``GET /api/nominal`` lists the patterns, how many samples each judged nominal, and why.
* ``POST /api/channels/{name}/limits`` — new ranges for a channel, checked from the next sample on
  (:func:`vigil.monitor.operator.set_limits`), kept in the store and given back at restart;
  ``GET /api/limits/changes`` lists who changed what, when and why.

Every POST needs the API token (the app's middleware and each route's dependency) and is recorded:
the alarm verbs in the audit trail, limit changes in their own table.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from vigil.alarms import AlarmError
from vigil.alarms.model import STALE
from vigil.detect.nominal import HARD, NominalFilter, episode_pattern, explain_pattern
from vigil.errors import ConfigError
from vigil.serve.jsonable import jsonable

if TYPE_CHECKING:
    from vigil.serve.app import Console

USER = Field("operator", min_length=1, max_length=64, pattern=r"^[\w.@ -]+$")
ALARM_ID = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the alarm's id")]
NAME = Annotated[str, PathParam(min_length=1, max_length=200)]
#: Samples in a pattern's matching window (see :mod:`vigil.detect.nominal`).
WINDOW = 16


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = USER
    comment: str = Field(..., min_length=1, max_length=2000, description="the note (required)")


class UnmarkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = USER
    comment: str = Field("", max_length=2000)


Bound = Annotated[float | None, Field(allow_inf_nan=False)]


class LimitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = USER
    comment: str = Field(..., min_length=1, max_length=2000, description="why the limits change (required)")
    limits: dict[str, tuple[Bound, Bound]] = Field(
        ...,
        max_length=5,
        description="severity -> [low, high]; null for an open side; a severity left out has no range",
    )


def add_feedback_routes(app: FastAPI, console: Console, require_token: Any) -> None:
    """Add the routes above to ``app`` (see the module docstring)."""
    secured = [Depends(require_token)]
    problems: dict[int | str, dict[str, Any]] = {
        400: {"description": "the body is not JSON"},
        401: {"description": "no or wrong API token"},
        404: {"description": "no such alarm or channel"},
        409: {"description": "not possible for this alarm or monitor"},
        422: {"description": "bad input, or ranges that do not nest"},
    }

    @app.post("/api/alarms/{alarm_id:int}:comment", tags=["alarms"], dependencies=secured, responses=problems)
    def comment(alarm_id: ALARM_ID, body: NoteBody) -> dict[str, Any]:
        """Add a note to an alarm (finished or not); it shows in the alarm's audit trail."""
        with console.lock:
            console.find_alarm(alarm_id)
            try:
                return jsonable(console.manager.comment(alarm_id, user=body.user, comment=body.comment))
            except AlarmError as err:
                raise HTTPException(409, f"cannot comment on alarm {alarm_id}: {err}") from None

    @app.post("/api/alarms/{alarm_id:int}:mark-nominal", tags=["alarms"], dependencies=secured, responses=problems)
    def mark_nominal(alarm_id: ALARM_ID, body: NoteBody) -> dict[str, Any]:
        """The alarm's episode (its values and shape) becomes a nominal pattern of its channel: when it
        recurs it does not alarm; anything else still does. A comment saying why is required."""
        with console.lock:
            alarm = console.find_alarm(alarm_id)
            nominal = _nominal_filter(console)
            if alarm.detector == STALE or alarm.detector.split(".")[0] in HARD:
                raise HTTPException(409, f"alarm {alarm_id} is a {alarm.detector} alarm: change the limit instead")
            end = alarm.rtn_time if alarm.rtn_time is not None else alarm.last_time
            times, values = _samples(console, alarm.channel, alarm.first_time, end)
            try:
                pattern = episode_pattern(times, values, alarm.first_time, end, WINDOW)
                pattern["level"] = int(alarm.level)  # the marked alarm's peak severity
            except ValueError as err:
                raise HTTPException(409, f"alarm {alarm_id}: {err} (neither memory nor archive holds it)") from None
            try:
                record = console.manager.mark_nominal(alarm_id, user=body.user, comment=body.comment, pattern=pattern)
            except AlarmError as err:
                raise HTTPException(409, f"cannot mark alarm {alarm_id} nominal: {err}") from None
            recent = _samples(console, alarm.channel, None, None)[1][-WINDOW:]
            nominal.add(record, recent=recent)
            return _public(record, nominal)

    @app.post("/api/alarms/{alarm_id:int}:unmark-nominal", tags=["alarms"], dependencies=secured, responses=problems)
    def unmark_nominal(alarm_id: ALARM_ID, body: UnmarkBody | None = None) -> list[dict[str, Any]]:
        """Withdraw the nominal patterns marked from this alarm: its episode alarms again when it recurs."""
        body = body or UnmarkBody()
        with console.lock:
            console.find_alarm(alarm_id)
            nominal = _nominal_filter(console)
            try:
                removed = console.manager.unmark_nominal(alarm_id, user=body.user, comment=body.comment)
            except AlarmError as err:
                raise HTTPException(409, f"cannot unmark alarm {alarm_id}: {err}") from None
            for p in removed:
                nominal.remove(p["id"])
            return [_public(p, nominal) for p in removed]

    @app.get("/api/nominal", tags=["alarms"])
    def nominal_patterns(
        withdrawn: Annotated[bool, Query(description="also the withdrawn ones")] = False,
    ) -> list[dict[str, Any]]:
        """Operator-nominal patterns: channel, alarm, who marked it and why, samples it judged nominal."""
        with console.lock:
            found = console.store.nominal_patterns(active_only=not withdrawn) if _keeps(console) else []
            nominal = console.monitor.detector if isinstance(console.monitor.detector, NominalFilter) else None
            return [_public(p, nominal) for p in found]

    @app.post("/api/channels/{name}/limits", tags=["channels"], dependencies=secured, responses=problems)
    def set_channel_limits(name: NAME, body: LimitsBody) -> dict[str, Any]:
        """Change a channel's limits at run time: checked from the next sample, kept in the store (they
        survive a restart), recorded with who, when and why (``GET /api/limits/changes``)."""
        from vigil.monitor.operator import limits_from_json, limits_json

        with console.lock:
            if name not in console.monitor.config.channels:
                raise HTTPException(404, f"no configured channel {name!r}")
            if not hasattr(console.store, "add_limit_change"):
                raise HTTPException(409, "this console has no store to record limit changes in")
            try:
                limits = limits_from_json({k: list(v) for k, v in body.limits.items()})
            except ConfigError as err:
                raise HTTPException(422, f"limits of {name}: {err}") from None
            old = limits_json(console.monitor.config.channels[name].limits)
            new = limits_json(limits)
            data_time = float(getattr(console.monitor, "_emitted", math.nan))
            change_id = console.store.add_limit_change(name, time.time(), body.user, body.comment, old, new, data_time)
            _apply_limits(console, name, limits)
        console.hub.publish({"type": "limits", "channel": name, "id": change_id})
        return console.channel_info(name)

    @app.get("/api/limits/changes", tags=["channels"])
    def limit_changes(channel: Annotated[str | None, Query(max_length=200)] = None) -> list[dict[str, Any]]:
        """Run-time limit changes, oldest first: channel, who, when (wall and data clock), why, old, new."""
        changes = getattr(console.store, "limit_changes", None)
        return jsonable(changes(channel) if changes else [])


def _keeps(console: Console) -> bool:
    return hasattr(console.store, "nominal_patterns")


def _nominal_filter(console: Console) -> NominalFilter:
    detector = console.monitor.detector
    if not isinstance(detector, NominalFilter) or not _keeps(console):
        raise HTTPException(409, "this monitor was started without operator-nominal patterns (no NominalFilter)")
    return detector


def _public(pattern: dict[str, Any], nominal: NominalFilter | None) -> dict[str, Any]:
    """A pattern for the API: without its samples, with its explanation and match counts."""
    out = {k: v for k, v in pattern.items() if k != "values"}
    out["explanation"] = explain_pattern(pattern)
    out.update(nominal.status(pattern["id"]) if nominal is not None else {"matched_samples": 0, "last_match": None})
    return jsonable(out)


def _samples(console: Console, channel: str, t0: float | None, t1: float | None) -> tuple[np.ndarray, np.ndarray]:
    """A channel's raw samples around ``[t0, t1]`` (with the lead-in a pattern needs): memory, else archive."""
    monitor = console.monitor
    ring = monitor.history(channel, max_points=20000)
    times = np.asarray(ring["time"], dtype=np.float64)
    if t0 is None:
        return times, np.asarray(ring["value"], dtype=np.float64)
    step = float(np.median(np.diff(times))) if times.size > 2 else 1.0
    start = t0 - 2 * WINDOW * step
    if times.size and times[0] <= start:
        keep = (times >= start) & (times <= t1)
        return times[keep], np.asarray(ring["value"], dtype=np.float64)[keep]
    reader = console.extras.reader
    if reader is None:
        keep = times <= t1
        return times[keep], np.asarray(ring["value"], dtype=np.float64)[keep]
    got = reader.read(channel, start, t1)
    return np.asarray(got["time"], dtype=np.float64), np.asarray(got["value"], dtype=np.float64)


def _apply_limits(console: Console, name: str, limits: Any) -> None:
    """Put new limits wherever the running monitor reads them (see :func:`set_limits`)."""
    from vigil.monitor.operator import set_limits

    monitor = console.monitor
    set_limits(monitor.detector, monitor.config, name, limits)
    manager_config = getattr(console.manager, "config", None)
    if manager_config is not None and manager_config is not monitor.config and name in manager_config.channels:
        manager_config.channels[name] = monitor.config.channels[name]
    trend = console.extras.trend
    if trend is not None:  # a forecast fed beside the detector (not inside it) holds limits too
        set_limits(trend, monitor.config, name, limits)
    console.configs[name] = monitor.config.channels[name]
    console._info.pop(name, None)
