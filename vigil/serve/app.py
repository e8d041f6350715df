"""The operator console's HTTP/WebSocket API over a live monitor, its alarm manager and store.

``create_app(monitor, manager, store, token)`` returns a FastAPI app. Reads are open; the
Yamcs-style alarm verbs (``POST /api/alarms/{id}:acknowledge`` and friends) need the API token.
Every call into the monitor and manager holds one lock, shared with whatever thread feeds the
monitor, so a reader never sees a half-applied block.
"""

from __future__ import annotations

import asyncio
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from vigil.alarms import AlarmError
from vigil.detect.base import SEVERITIES
from vigil.serve.auth import token_guard, token_middleware
from vigil.serve.feedback import add_feedback_routes
from vigil.serve.guard import MAX_BODY, FiniteJson, HostPolicy, RequestGuard
from vigil.serve.hub import Hub
from vigil.serve.jsonable import floats, jsonable

if TYPE_CHECKING:
    from vigil.alarms import Alarm, AlarmManager
    from vigil.config import ChannelConfig
    from vigil.detect.limits import ChannelLimits
    from vigil.monitor import Monitor

STATIC = Path(__file__).parent / "static"
try:
    __version__ = version("vigil-telemetry")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
Severity = Literal["watch", "warning", "distress", "critical", "severe"]
AlarmState = Literal["active", "acknowledged", "rtn_unacknowledged", "latched", "shelved", "cleared", "all"]
#: The page runs only its own scripts (no inline script, no third party), cannot be framed.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
}
NAME = Annotated[str, PathParam(min_length=1, max_length=200)]
#: Alarm ids are positive integers; routes use Starlette's ``int`` convertor so that
#: ``/api/alarms/7:acknowledge`` can only reach the verb route, never the read route.
ALARM_ID = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the alarm's id")]
USER = Field("operator", min_length=1, max_length=64, pattern=r"^[\w.@ -]+$")
COMMENT = Field("", max_length=2000)


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such channel or alarm"}}


class AcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = USER
    comment: str = COMMENT


class ShelveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = USER
    duration_s: float = Field(..., gt=0, le=7 * 86400, allow_inf_nan=False, description="how long to shelve")
    comment: str = COMMENT


class UserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = USER


class Console:
    """The objects behind the API, and the lock that serialises access to them."""

    def __init__(self, monitor: Monitor, manager: AlarmManager, store: Any, lock: Any = None) -> None:
        self.monitor = monitor
        self.manager = manager
        self.store = store
        self.lock = lock if lock is not None else threading.RLock()
        self.configs: dict[str, ChannelConfig] = dict(monitor.config.channels)
        self._info: dict[str, dict[str, Any]] = {}

    def channel_info(self, name: str) -> dict[str, Any]:
        """A channel's description for the page, JSON-ready (cached: the configuration is fixed)."""
        info = self._info.get(name)
        if info is None:
            cfg = self.configs.get(name)
            info = {"name": name, "subsystem": self.subsystem(name), "units": "", "description": "", "limits": {}}
            info.update(rate_hz=None, stale_after_s=None)
            if cfg is not None:
                info.update(units=cfg.units, description=cfg.description, limits=_limits_dict(cfg.limits))
                info.update(rate_hz=cfg.rate_hz, stale_after_s=cfg.stale_timeout_s)
            self._info[name] = info
        return info

    def subsystem(self, name: str) -> str:
        cfg = self.configs.get(name)
        return cfg.subsystem if cfg is not None else "other"

    def channel_names(self) -> list[str]:
        """Configured channels, then any other channel the monitor scores."""
        known = set(self.configs)
        return list(self.configs) + [c for c in self.monitor.channels if c not in known]

    def open_alarm_levels(self) -> dict[str, int]:
        """Per channel, the highest severity level (1..5) of its unfinished alarms."""
        worst: dict[str, int] = {}
        for alarm in self.manager.alarms():
            worst[alarm.channel] = max(worst.get(alarm.channel, 0), int(alarm.level))
        return worst

    def stale_channels(self) -> set[str]:
        """Channels the monitor marked stale (it judges against the stream clock)."""
        return {self.monitor.channels[j] for j in np.flatnonzero(self.monitor.stale_).tolist()}

    def find_alarm(self, alarm_id: int) -> Alarm:
        """The alarm with that id; 404 if the manager does not know it."""
        try:
            return self.manager.get(alarm_id)
        except LookupError:
            raise HTTPException(404, f"no alarm {alarm_id}") from None


def _limits_dict(limits: ChannelLimits | None) -> dict[str, list[float | None]]:
    if limits is None:
        return {}
    ranges = {sev: getattr(limits, sev) for sev in SEVERITIES}
    return {sev: floats([np.nan if v is None else v for v in rng]) for sev, rng in ranges.items() if rng is not None}


def _period(alarm: Alarm) -> dict[str, Any]:
    """An alarm's span for plotting: from its first sample to its return to normal (None: ongoing)."""
    ongoing = alarm.rtn_time is None and alarm.violating
    end = None if ongoing else (alarm.last_time if alarm.rtn_time is None else alarm.rtn_time)
    span = {"id": alarm.id, "severity": alarm.severity, "state": alarm.state, "start": alarm.first_time, "end": end}
    return jsonable(span)


def loopback_hosts(host: str) -> list[str] | None:
    """The ``Host`` names to accept for a server bound to ``host``: this machine's names when it is a
    loopback address, else ``None`` (no check: the operator chose to serve other machines).

    >>> loopback_hosts("127.0.0.1"), loopback_hosts("0.0.0.0")
    (['localhost', '127.0.0.1', '[::1]'], None)
    """
    return ["localhost", "127.0.0.1", "[::1]"] if host in ("127.0.0.1", "localhost", "::1") else None


def create_app(
    monitor: Monitor,
    manager: AlarmManager,
    store: Any,
    token: str,
    *,
    lock: Any = None,
    hub: Hub | None = None,
    title: str = "Vigil operator console",
    events: list[dict[str, Any]] | None = None,
    allowed_hosts: list[str] | None = None,
    extras: Any = None,
) -> FastAPI:
    """The API and web console. ``lock`` must be the lock held by the thread that feeds ``monitor``.

    ``events`` is an optional reference timeline (``time``, ``kind``, ``label``) drawn on the plots,
    for example the calls made in mission control during a replayed scenario. ``allowed_hosts``
    limits the ``Host`` header (see :func:`loopback_hosts`), so a web page cannot reach a console
    bound to this machine through DNS rebinding; :func:`vigil.serve.runner.bind` sets it from the
    address it binds when it was not given. Every request also passes :mod:`vigil.serve.guard`
    (Origin, body size, finite JSON numbers).
    ``extras`` (:func:`vigil.monitor.extras.attach`) brings the archive behind the history route and
    the time-until-limit forecasts.
    """
    from vigil.monitor.extras import Extras

    console = Console(monitor, manager, store, lock)
    console.extras = extras if extras is not None else Extras()
    hub = hub or Hub()
    console.hub = hub
    require_token = token_guard(token)
    # No Swagger UI: it loads scripts from a CDN into this origin, where the page keeps the token.
    app = FastAPI(title=title, version=__version__, docs_url=None, redoc_url=None)
    # Last added runs first: Host/Origin/size, then the token, then finite JSON numbers.
    app.add_middleware(FiniteJson)
    app.middleware("http")(token_middleware(token))
    app.state.host_policy = HostPolicy(allowed_hosts)
    app.add_middleware(RequestGuard, policy=app.state.host_policy, max_body=MAX_BODY)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.state.console = console
    app.state.hub = hub
    app.state.feeders = []  # background threads feeding the monitor; their status shows at /api/health
    monitor.subscribe(hub.publish)
    manager.subscribe(hub.publish)

    timeline = sorted(jsonable(events or []), key=lambda e: e.get("time") or 0)
    _add_read_routes(app, console, hub)
    _add_ops_routes(app, console)

    @app.get("/api/events", tags=["status"])
    def reference_events() -> list[dict[str, Any]]:
        """The reference timeline of a replayed scenario (empty for live telemetry)."""
        return timeline

    _add_alarm_verbs(app, console, require_token)
    add_feedback_routes(app, console, require_token)  # notes, nominal marks, run-time limits
    _add_live_feed(app, hub)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    return app


async def _invalid_request(_request: Request, err: Exception) -> JSONResponse:
    """422 naming each problem's place and reason, never echoing what was sent (it may be huge)."""
    errors = err.errors() if isinstance(err, RequestValidationError) else []
    detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")} for e in errors]
    return JSONResponse({"detail": detail[:20]}, status_code=422)


def _add_read_routes(app: FastAPI, console: Console, hub: Hub) -> None:
    @app.get("/api/health", tags=["status"])
    def health() -> dict[str, Any]:
        """Liveness, version, channel count and the data clock (latest sample time)."""
        with console.lock:
            latest = console.monitor.latest()
        times = [t for t, _v, _l in latest.values()]
        store = console.store
        feeders = [f.status() for f in app.state.feeders]
        # A listener that could not accept (out of file descriptors) may have lost clients: say so.
        deaf = any((f.get("source") or {}).get("accept_errors") for f in feeders)
        return jsonable(
            {
                "status": "degraded" if deaf else "ok",
                "version": __version__,
                "channels": len(console.channel_names()),
                "data_time": max(times) if times else None,
                "store": getattr(store, "path", None) if store is not None else None,
                "live_clients": hub.n_clients,
                "live_dropped": hub.dropped_total,
                "live_dropped_by_client": hub.client_drops()[:20],
                "live_refused": hub.refused,
                "feeders": feeders,
                **console.extras.status(),
            }
        )

    @app.get("/api/channels", tags=["channels"], response_class=JSONResponse)
    def channels(subsystem: Annotated[str | None, Query(max_length=200)] = None) -> JSONResponse:
        """Every channel's configuration: subsystem, units, description, limits, expected rate."""
        out = [console.channel_info(name) for name in console.channel_names()]
        if subsystem is not None:
            out = [c for c in out if c["subsystem"] == subsystem]
        return JSONResponse(out)

    @app.get("/api/latest", tags=["channels"])
    def latest() -> dict[str, Any]:
        """Latest value of every channel, column-wise (one entry per channel, same order as the names).

        ``level`` is the detector's level at the latest sample, ``alarm`` the highest severity of the
        channel's open alarms (0..5), ``age`` seconds behind the data clock, ``stale`` whether that age
        exceeds the channel's staleness limit.
        """
        with console.lock:
            snap = console.monitor.latest()
            alarm_levels = console.open_alarm_levels()
            flagged = console.stale_channels()
        names = console.channel_names()
        rows = [snap.get(n, (np.nan, np.nan, 0)) for n in names]
        t = np.array([r[0] for r in rows], dtype=np.float64)
        data_time = float(np.nanmax(t)) if np.isfinite(t).any() else np.nan
        age = data_time - t
        limit = np.array([console.channel_info(n)["stale_after_s"] or np.nan for n in names], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            stale = ((age > limit) & np.isfinite(limit)) | np.array([n in flagged for n in names], dtype=bool)
        return {
            "data_time": floats([data_time])[0],
            "channels": names,
            "time": floats(t),
            "value": floats([r[1] for r in rows]),
            "level": [int(r[2]) for r in rows],
            "alarm": [alarm_levels.get(n, 0) for n in names],
            "age": floats(age),
            "stale": stale.tolist(),
            "time_to_limit": _time_to_limit_column(console, names),
        }

    @app.get("/api/channels/{name}/history", tags=["channels"], responses=NOT_FOUND)
    def history(
        name: NAME,
        t0: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        t1: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        max_points: Annotated[int, Query(ge=10, le=20000)] = 2000,
        start: Annotated[float | None, Query(allow_inf_nan=False, description="same as t0")] = None,
        end: Annotated[float | None, Query(allow_inf_nan=False, description="same as t1")] = None,
    ) -> dict[str, Any]:
        """A channel's samples in ``[start, end]`` (``t0``/``t1``; empty when the end is before the start),
        decimated (min/max per bucket, so spikes survive) to about ``max_points``, with its expected value,
        nominal band, detector level, limits and alarm periods. Recent spans come from memory; older ones
        from the archive when the server keeps one (``source`` says which)."""
        t0, t1 = (t0 if t0 is not None else start), (t1 if t1 is not None else end)
        with console.lock:
            try:
                series = console.monitor.history(name, t0=t0, t1=t1, max_points=max_points)
            except KeyError:
                raise HTTPException(404, f"no channel {name!r} in the monitor") from None
            periods = [_period(a) for a in console.manager.alarms(state="all") if a.channel == name]
        source, t0 = "memory", _span_start(console, t0)
        if _needs_archive(console, series, t0):
            series = {k: v.tolist() for k, v in console.extras.reader.history(name, t0, t1, max_points).items()}
            source = "archive"
        out: dict[str, Any] = {k: floats(v) if k != "level" else [int(x) for x in v] for k, v in series.items()}
        out.update(name=name, limits=console.channel_info(name)["limits"], alarms=periods, source=source)
        return out

    @app.get("/api/subsystems", tags=["channels"])
    def subsystems() -> list[dict[str, Any]]:
        """Per subsystem: channel count, worst open-alarm severity and how many channels are stale."""
        snap = latest()
        groups: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(snap["channels"]):
            sub = console.subsystem(name)
            g = groups.setdefault(sub, {"subsystem": sub, "channels": 0, "worst": 0, "in_alarm": 0, "stale": 0})
            g["channels"] += 1
            g["worst"] = max(g["worst"], snap["alarm"][i], snap["level"][i])
            g["in_alarm"] += bool(snap["alarm"][i])
            g["stale"] += bool(snap["stale"][i])
        return sorted(groups.values(), key=lambda g: g["subsystem"])

    @app.get("/api/alarms", tags=["alarms"])
    def alarms(
        state: Annotated[
            AlarmState | None, Query(description="one state, or 'all' to include cleared; default: unfinished")
        ] = None,
        severity: Severity | None = None,
        channel: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[dict[str, Any]]:
        """Alarms, newest first, filtered by state, severity and channel."""
        with console.lock:
            found = console.manager.alarms(state=state, severity=severity)
        if channel is not None:
            found = [a for a in found if a.channel == channel]
        found = sorted(found, key=lambda a: (a.first_time, a.id), reverse=True)
        return jsonable(found)

    @app.get("/api/alarms/{alarm_id:int}", tags=["alarms"], responses=NOT_FOUND)
    def alarm(alarm_id: ALARM_ID) -> dict[str, Any]:
        """One alarm with its audit trail."""
        with console.lock:
            found = console.find_alarm(alarm_id)
            trail = console.manager.audit(alarm_id=alarm_id)
        return {"alarm": jsonable(found), "audit": jsonable(trail)}

    @app.get("/api/incidents", tags=["alarms"])
    def incidents() -> list[dict[str, Any]]:
        """Incidents (alarms grouped in time within a subsystem), newest first, channels ranked."""
        with console.lock:
            found = list(console.manager.incidents())
        found.sort(key=lambda i: (i.first_time, i.id), reverse=True)
        return jsonable(found)

    @app.get("/api/audit", tags=["alarms"], responses=NOT_FOUND)
    def audit(
        alarm_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 500,
    ) -> list[dict[str, Any]]:
        """The audit trail (raises, escalations, operator actions), the latest ``limit`` entries."""
        with console.lock:
            if alarm_id is None:
                trail = console.manager.audit()
            else:
                console.find_alarm(alarm_id)
                trail = console.manager.audit(alarm_id=alarm_id)
        return jsonable(list(trail)[-limit:])

    @app.get("/api/counters", tags=["status"])
    def counters() -> dict[str, Any]:
        """Per-channel counts of bad input (out-of-order, duplicate, missing, malformed, stale)."""
        with console.lock:
            return jsonable(console.monitor.counters())


def _span_start(console: Console, t0: float | None) -> float | None:
    """Where a span starts: ``t0``, or the live view's default (``history_s`` before the latest row)."""
    if t0 is not None:
        return t0
    latest = getattr(console.monitor, "_emitted", -np.inf)
    return float(latest - console.monitor.history_s) if np.isfinite(latest) else None


def _needs_archive(console: Console, series: dict[str, list], t0: float | None) -> bool:
    """Whether a span reaches back before what the live ring holds (and an archive can serve it)."""
    if console.extras.reader is None or t0 is None:
        return False
    return not series["time"] or series["time"][0] > t0 + 1e-9


def _time_to_limit_column(console: Console, names: list[str]) -> list[dict[str, Any] | None]:
    trend = console.extras.trend
    if trend is None:
        return [None] * len(names)
    with console.lock:
        return [jsonable(trend.time_to_limit(n)) for n in names]


def _add_ops_routes(app: FastAPI, console: Console) -> None:
    @app.get("/api/channels/{name}/latest", tags=["channels"], responses=NOT_FOUND)
    def channel_latest(name: NAME) -> dict[str, Any]:
        """A channel's latest state: time, value, detector level, open-alarm level, staleness, and
        ``time_to_limit`` (``limit``, ``severity``, ``seconds``, ``seconds_low``, ``seconds_high``; null
        when the channel is not heading for a limit) with its sentence for an operator."""
        from vigil.detect.trend import describe

        if name not in console.monitor._index:
            raise HTTPException(404, f"no channel {name!r} in the monitor")
        with console.lock:
            time_, value, level = console.monitor.latest().get(name, (np.nan, np.nan, 0))
            alarm = console.open_alarm_levels().get(name, 0)
            stale = name in console.stale_channels()
            trend = console.extras.trend
            ttl = trend.time_to_limit(name) if trend is not None else None
        units = console.channel_info(name)["units"]
        return jsonable({"name": name, "time": time_, "value": value, "level": level, "alarm": alarm,
                         "stale": stale, "time_to_limit": ttl, "time_to_limit_text": describe(name, ttl, units)})  # fmt: skip


def _add_alarm_verbs(app: FastAPI, console: Console, require_token: Any) -> None:
    def apply(alarm_id: int, verb: str, **kwargs: Any) -> dict[str, Any]:
        with console.lock:
            console.find_alarm(alarm_id)
            try:
                getattr(console.manager, verb)(alarm_id, **kwargs)
            except AlarmError as err:
                raise HTTPException(409, f"cannot {verb} alarm {alarm_id}: {err}") from None
            return jsonable(console.manager.get(alarm_id))

    secured = [Depends(require_token)]
    responses: dict[int | str, dict[str, Any]] = {
        400: {"model": Problem, "description": "the body is not JSON"},
        401: {"model": Problem, "description": "no or wrong API token"},
        404: {"model": Problem, "description": "no such alarm"},
        409: {"model": Problem, "description": "the alarm's state does not allow this verb"},
    }

    @app.post("/api/alarms/{alarm_id:int}:acknowledge", tags=["alarms"], dependencies=secured, responses=responses)
    def acknowledge(alarm_id: ALARM_ID, body: AcknowledgeBody) -> dict[str, Any]:
        """Acknowledge an alarm, with a comment."""
        return apply(alarm_id, "acknowledge", user=body.user, comment=body.comment)

    @app.post("/api/alarms/{alarm_id:int}:shelve", tags=["alarms"], dependencies=secured, responses=responses)
    def shelve(alarm_id: ALARM_ID, body: ShelveBody) -> dict[str, Any]:
        """Shelve an alarm for ``duration_s`` seconds: it stays recorded but stops demanding attention."""
        return apply(alarm_id, "shelve", user=body.user, duration_s=body.duration_s, comment=body.comment)

    @app.post("/api/alarms/{alarm_id:int}:unshelve", tags=["alarms"], dependencies=secured, responses=responses)
    def unshelve(alarm_id: ALARM_ID, body: UserBody | None = None) -> dict[str, Any]:
        """Put a shelved alarm back in the active list."""
        return apply(alarm_id, "unshelve", user=(body or UserBody()).user)

    @app.post("/api/alarms/{alarm_id:int}:clear", tags=["alarms"], dependencies=secured, responses=responses)
    def clear(alarm_id: ALARM_ID, body: UserBody | None = None) -> dict[str, Any]:
        """Clear an alarm whose channel has returned to normal (a latched alarm needs this)."""
        return apply(alarm_id, "clear", user=(body or UserBody()).user)


def _add_live_feed(app: FastAPI, hub: Hub) -> None:
    @app.websocket("/api/live")
    async def live(ws: WebSocket) -> None:
        """Live feed: ``{"type": "values", ...}`` ticks, alarm events, and ``resync`` after overflow."""
        client = hub.connect()
        if client is None:  # too many live clients: refuse the upgrade (counted in health)
            await ws.close(code=1013)
            return
        await ws.accept()
        receiver = asyncio.create_task(_drain(ws))
        try:
            await ws.send_json({"type": "hello", "version": __version__})
            while not receiver.done():
                getter = asyncio.ensure_future(client.next())
                done, _pending = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                await ws.send_text(getter.result())  # serialised once by the hub, for every client
                client.sent += 1
                note = client.take_resync()
                if note:
                    await ws.send_text(note)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            hub.disconnect(client)
            receiver.cancel()


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, so a disconnect is noticed."""
    try:
        while True:
            await ws.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        return
