"""``vigil serve --nats URL``: the whole fleet in one console (spacecraft -> subsystem -> channel).

The console reads; it never changes alarm state itself. It follows the alarm stream (an ordered
consumer from its start: every change every owner published) and the owners' status entries;
an operator verb is published as a command on ``vigil.sc.<SC>.cmd`` (de-duplicated by the
request's ``Idempotency-Key``) and answered ``202 Accepted`` once the stream has stored it. The
spacecraft's owner applies it in stream order, once, and publishes the outcome, which
``GET /api/fleet/{sc}/results/{request}`` returns. The console keeps working while workers fail
over: commands wait in the stream for the next owner.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Body, Depends, FastAPI, Header, HTTPException
from fastapi.responses import HTMLResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from vigil.fleet import protocol as p
from vigil.fleet.bus import Layout, Mirror, Retry, Unavailable, connect

_REQUEST = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
BODY = Body(default_factory=dict)
#: Largest verb body accepted (bytes).
MAX_BODY = 16_384
#: Most command results remembered for ``/results`` (the alarm stream keeps them all).
MAX_RESULTS = 100_000


class FleetView:
    """What the console knows, kept current from NATS."""

    def __init__(self, urls: list[str], log=print) -> None:
        self.urls, self.log = urls, log
        self.alarms: dict[str, dict[int, dict]] = {}
        self.results: dict[str, dict] = {}
        self.changes = 0
        self.ready = asyncio.Event()
        self.retry = Retry(log)  # transient NATS failures, counted (.retries) and logged

    async def start(self) -> None:
        self.nc = await connect(self.urls, "vigil-console", self.log)
        self.js = self.nc.jetstream(timeout=10)
        self.layout = await Layout.ensure(self.js, retry=self.retry)
        self.fleet = Mirror(self.layout.fleet, self.log).start()
        from nats.js.api import DeliverPolicy

        self.sub = await self.retry("following the alarm stream", self.js.subscribe, "vigil.alarms.*",
                                    stream=p.ALARM_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL,
                                    cb=self._on_change)  # fmt: skip
        self.ready.set()

    async def stop(self) -> None:
        self.fleet.stop()
        await self.nc.drain()

    async def _on_change(self, msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            self.log(f"unreadable alarm message on {msg.subject}")
            return
        sc = body.get("sc", "?")
        for item in body.get("items", []):
            self.changes += 1
            if item.get("kind") == "alarm":
                self.alarms.setdefault(sc, {})[item["alarm"]["id"]] = item["alarm"]
            elif item.get("kind") == "result" and item.get("request"):
                if len(self.results) >= MAX_RESULTS:
                    self.results.pop(next(iter(self.results)))
                self.results[f"{sc}/{item['request']}"] = item

    # -- views ------------------------------------------------------------------------------------
    def spacecraft(self) -> list[str]:
        names = {k.split(".", 1)[1] for k in self.fleet.values if k.startswith(("known.", "status."))}
        return sorted(names | set(self.alarms))

    def overview(self) -> list[dict[str, Any]]:
        out = []
        for sc in self.spacecraft():
            st = self.fleet.values.get(f"status.{sc}", {})
            open_ = [a for a in self.alarms.get(sc, {}).values() if not a.get("ended")]
            out.append({
                "spacecraft": sc, "owner": st.get("owner"), "applied_seq": st.get("applied_seq"),
                "status_age_s": None if "time" not in st else round(time.time() - st["time"], 1),
                "open_alarms": len(open_), "worst": max((a["level"] for a in open_), default=0),
                "bad_messages": st.get("bad_messages", 0), "unparsable": st.get("unparsable", 0),
            })  # fmt: skip
        return out

    def tree(self, sc: str) -> dict[str, Any]:
        """Subsystem -> channel -> latest (time, value, level) and open alarms."""
        if sc not in self.spacecraft():
            raise KeyError(sc)
        st = self.fleet.values.get(f"status.{sc}", {})
        open_ = [a for a in self.alarms.get(sc, {}).values() if not a.get("ended")]
        by_channel: dict[str, list] = {}
        for a in open_:
            by_channel.setdefault(a["channel"], []).append(a)
        subsystems: dict[str, dict] = {}
        for channel, (t, v, level) in sorted(st.get("latest", {}).items()):
            sub = channel.split(".", 1)[0] if "." in channel else ""
            subsystems.setdefault(sub, {})[channel] = {
                "time": t,
                "value": v,
                "level": level,
                "alarms": [a["id"] for a in by_channel.get(channel, [])],
            }
        for a in open_:  # alarmed channels appear even before the first status arrives
            sub = a.get("subsystem") or ""
            subsystems.setdefault(sub, {}).setdefault(a["channel"], {"alarms": [a["id"]]})
        return {"spacecraft": sc, "owner": st.get("owner"), "subsystems": subsystems,
                "alarms": sorted(open_, key=lambda a: -a["level"]), "counters": st.get("totals", {}),
                "problems": st.get("problems", {}), "recent_errors": st.get("recent_errors", [])}  # fmt: skip

    async def command(self, sc: str, verb: str, alarm_id: int, body: dict, request: str) -> dict:
        """Store the verb as a command (ID from the request: a retry, ours or the client's, is stored
        once; after a lost answer ``duplicate`` may be our own first try). 503 if NATS keeps failing."""
        data = p.encode({"verb": verb, "alarm": alarm_id, "request": request, "stamp": time.time(), **body})
        try:
            ack = await self.retry(f"{sc}: command {request}", self.js.publish, p.cmd_subject(sc), data,
                                   headers={"Nats-Msg-Id": f"cmd/{sc}/{request}"}, deadline_s=20.0)  # fmt: skip
        except Unavailable as err:
            raise HTTPException(503, f"{err}; post again with the same Idempotency-Key") from None
        return {"request": request, "seq": ack.seq, "duplicate": bool(ack.duplicate), "status": "queued"}


def create_fleet_app(urls: list[str], token: str, allowed_hosts: list[str] | None = None, log=print) -> FastAPI:
    """The fleet console's API and page; reads need nothing, verbs need the token."""
    from vigil.serve.auth import token_guard, token_middleware

    view = FleetView(urls, log)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await view.start()
        yield
        await view.stop()

    app = FastAPI(title="Vigil fleet console", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.middleware("http")(token_middleware(token))

    @app.middleware("http")
    async def bounded_and_same_origin(request, call_next):
        """A verb's body is small; a page from another origin may not post verbs (its Origin says so)."""
        from fastapi.responses import JSONResponse

        if request.method == "POST":
            if int(request.headers.get("content-length") or 0) > MAX_BODY:
                return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, status_code=413)
            origin = request.headers.get("origin")
            host = request.headers.get("host", "")
            if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
                return JSONResponse({"detail": f"origin {origin!r} may not change alarms here"}, status_code=403)
        return await call_next(request)

    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.state.view = view
    guard = token_guard(token)

    @app.get("/api/fleet")
    async def fleet() -> list[dict[str, Any]]:
        return view.overview()

    @app.get("/api/fleet/{sc}")
    async def spacecraft(sc: str) -> dict[str, Any]:
        try:
            return _safe(view.tree(sc))
        except KeyError:
            raise HTTPException(404, f"no spacecraft {sc!r} in the fleet") from None

    @app.get("/api/fleet/{sc}/results/{request}")
    async def result(sc: str, request: str) -> dict[str, Any]:
        found = view.results.get(f"{sc}/{request}")
        if found is None:
            raise HTTPException(404, "not applied yet (or unknown request)")
        return found

    @app.post("/api/fleet/{sc}/alarms/{alarm_id}/{verb}", status_code=202)
    async def verb(
        sc: str,
        alarm_id: int,
        verb: Literal["acknowledge", "shelve", "unshelve", "clear"],
        body: dict[str, Any] = BODY,
        idempotency_key: str | None = Header(default=None),
        _auth: None = Depends(guard),  # noqa: B008 - FastAPI's dependency pattern
    ) -> dict[str, Any]:
        if sc not in view.spacecraft():
            raise HTTPException(404, f"no spacecraft {sc!r} in the fleet")
        request = idempotency_key or uuid.uuid4().hex
        if not _REQUEST.match(request):
            raise HTTPException(422, "Idempotency-Key: 1-64 letters, digits, '_', '.', ':' or '-'")
        extra = {k: body[k] for k in ("comment", "user", "duration_s") if k in body}
        if "duration_s" in extra and not (
            isinstance(extra["duration_s"], int | float)
            and math.isfinite(extra["duration_s"])
            and extra["duration_s"] > 0
        ):
            raise HTTPException(422, "duration_s must be a positive finite number of seconds")  # fmt: skip
        if not all(isinstance(extra.get(k, ""), str) and len(extra.get(k, "")) <= 1000 for k in ("comment", "user")):
            raise HTTPException(422, "comment and user must be strings of at most 1000 characters")
        return await view.command(sc, verb, alarm_id, extra, request)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    return app


def _safe(obj: Any) -> Any:
    from vigil.serve.jsonable import jsonable

    return jsonable(obj)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Vigil fleet</title>
<style>body{font:14px system-ui,sans-serif;margin:1em}table{border-collapse:collapse}td,th{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:left}.l1{background:#fff3b0}.l2,.l3{background:#ffd59e}.l4,.l5{background:#f6a5a5}
details{margin-left:1em}</style></head><body><h1>Fleet</h1><table id="fleet"></table><div id="sc"></div>
<script>
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
async function load() {
  const rows = await (await fetch("/api/fleet")).json();
  document.getElementById("fleet").innerHTML = "<tr><th>spacecraft</th><th>owner</th><th>open alarms</th>" +
    "<th>applied</th><th>bad input</th></tr>" + rows.map(r => `<tr class="l${r.worst}"><td><a href="#${esc(r.spacecraft)}">` +
    `${esc(r.spacecraft)}</a></td><td>${esc(r.owner)}</td><td>${r.open_alarms}</td><td>${esc(r.applied_seq)}</td>` +
    `<td>${r.bad_messages + r.unparsable}</td></tr>`).join("");
  const sc = decodeURIComponent(location.hash.slice(1));
  if (!sc) return;
  const t = await (await fetch("/api/fleet/" + encodeURIComponent(sc))).json();
  document.getElementById("sc").innerHTML = `<h2>${esc(sc)} (owner ${esc(t.owner)})</h2>` +
    Object.entries(t.subsystems || {}).map(([sub, chans]) => `<details open><summary>${esc(sub)}</summary><table>` +
      Object.entries(chans).map(([c, v]) => `<tr class="l${v.level || 0}"><td>${esc(c)}</td><td>${esc(v.value)}</td>` +
        `<td>${(v.alarms || []).map(a => "#" + a).join(" ")}</td></tr>`).join("") + "</table></details>").join("");
}
load(); setInterval(load, 2000); window.onhashchange = load;
</script></body></html>"""
