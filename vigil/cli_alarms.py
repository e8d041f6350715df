"""``vigil alarms``: list, acknowledge, shelve, unshelve, clear, comment and export alarms, against a
running server (``--server``, the token from ``--token-file`` or ``VIGIL_API_TOKEN``, as the API takes
it) or a store file that no monitor has open (``--store``); mark an alarm's episode nominal (and
withdraw that) against a running server only, whose monitor holds the samples and judges the stream."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import typer

alarms_app = typer.Typer(help="Alarms: list, acknowledge, shelve, unshelve, clear, comment, mark nominal, export.")

SERVER = typer.Option(None, help="a running server, e.g. http://127.0.0.1:8000 (else the store is used)")
STORE = typer.Option(Path("vigil.sqlite"), help="alarm store (SQLite file) when no --server is given")
TOKEN_FILE = typer.Option(None, help="API token file (else $VIGIL_API_TOKEN)")
USER = typer.Option("operator", help="who does it (recorded in the audit trail)")
#: Columns of ``vigil alarms export --format csv``.
EXPORT_COLUMNS = ("id", "channel", "subsystem", "severity", "state", "detector", "first_time", "last_time",
                  "rtn_time", "trigger_value", "peak_value", "expected", "low", "high", "acknowledged_by", "acknowledged_at", "acknowledged_comment",
                  "shelved_by", "shelved_until", "cleared_by", "cleared_at", "incident_id", "explanation")  # fmt: skip


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _open_store(store: Path):
    from vigil.store.sqlite import SqliteStore

    if not store.is_file():
        _fail(f"{store}: no such store")
    return SqliteStore(store)


@alarms_app.callback(invoke_without_command=True)
def alarms_list(
    ctx: typer.Context,
    store: Path = STORE,
    state: str | None = typer.Option(None, help="only this state (active, acknowledged, ...; all: also cleared)"),
    incidents: bool = typer.Option(False, help="list incidents instead of alarms"),
    audit: int = typer.Option(0, help="also print the last N audit entries"),
) -> None:
    """List the alarms (or incidents) and the audit trail kept in a store."""
    if ctx.invoked_subcommand is not None:
        return
    from vigil.model import format_time, printable

    db = _open_store(store)
    try:
        if incidents:
            for inc in db.load_incidents():
                typer.echo(printable(f"incident {inc.id} [{'active' if inc.active else 'closed'}] {inc.explanation}"))
        else:
            for a in db.load_alarms(open_only=state != "all" and state != "cleared"):
                if state in (None, "all") or a.state == state:
                    typer.echo(printable(f"#{a.id} {a.state} {a.explanation}"))
        for e in db.audit(limit=audit) if audit > 0 else []:
            change = f"{e.action} {e.from_state} -> {e.to_state}"
            line = f"audit {format_time(e.time)} alarm {e.alarm_id} by {e.user}: {change} {e.comment}".rstrip()
            typer.echo(printable(line))
    finally:
        db.close()


def _verb(alarm_id: int, verb: str, body: dict[str, Any], server: str | None, store: Path, token_file: Path | None):
    """Apply a verb through the API or to the store; print the alarm's new state."""
    if server:
        alarm = _post(server, f"/api/alarms/{alarm_id}:{verb}", body, token_file)
    else:
        alarm = _apply_to_store(store, alarm_id, verb, body)
    from vigil.model import printable

    typer.echo(printable(f"#{alarm['id']} {alarm['state']} {alarm.get('explanation', '')}".rstrip()))


def _post(server: str, path: str, body: dict[str, Any], token_file: Path | None) -> dict[str, Any]:
    import httpx

    from vigil.errors import ConfigError
    from vigil.serve.auth import resolve_token

    try:
        token, where = resolve_token(token_file)
    except ConfigError as err:
        _fail(str(err))
    if where == "generated":
        _fail("no API token: give --token-file or set VIGIL_API_TOKEN (the server printed or was given it)")
    try:
        reply = httpx.post(server.rstrip("/") + path, json=body, headers={"Authorization": f"Bearer {token}"},
                           timeout=10.0)  # fmt: skip
    except httpx.HTTPError as err:
        _fail(f"cannot reach {server}: {err}")
    if reply.status_code != 200:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        _fail(f"{reply.status_code} from {server}: {detail}")
    return reply.json()


def _apply_to_store(store: Path, alarm_id: int, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    from vigil.alarms import AlarmError, AlarmManager
    from vigil.config import MonitorConfig
    from vigil.serve.jsonable import jsonable

    db = _open_store(store)
    try:
        manager = AlarmManager(MonitorConfig(), store=db)
        try:
            manager.get(alarm_id)
        except LookupError:
            _fail(f"no alarm {alarm_id} in {store}")
        try:
            getattr(manager, verb)(alarm_id, **body)
        except AlarmError as err:
            _fail(f"cannot {verb} alarm {alarm_id}: {err}")
        return jsonable(manager.get(alarm_id))
    finally:
        db.close()


@alarms_app.command("ack")
def ack(
    alarm_id: int = typer.Argument(..., min=1),
    comment: str = typer.Option("", help="why (kept in the audit trail)"),
    user: str = USER,
    server: str | None = SERVER,
    store: Path = STORE,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Acknowledge an alarm."""
    _verb(alarm_id, "acknowledge", {"user": user, "comment": comment}, server, store, token_file)


@alarms_app.command("shelve")
def shelve(
    alarm_id: int = typer.Argument(..., min=1),
    duration: float = typer.Option(3600.0, min=1, max=7 * 86400, help="seconds to shelve"),
    comment: str = typer.Option("", help="why"),
    user: str = USER,
    server: str | None = SERVER,
    store: Path = STORE,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Shelve an alarm for a while (it stays recorded, stops demanding attention)."""
    _verb(alarm_id, "shelve", {"user": user, "duration_s": duration, "comment": comment}, server, store, token_file)


@alarms_app.command("unshelve")
def unshelve(
    alarm_id: int = typer.Argument(..., min=1),
    user: str = USER,
    server: str | None = SERVER,
    store: Path = STORE,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Put a shelved alarm back."""
    _verb(alarm_id, "unshelve", {"user": user}, server, store, token_file)


@alarms_app.command("clear")
def clear(
    alarm_id: int = typer.Argument(..., min=1),
    user: str = USER,
    server: str | None = SERVER,
    store: Path = STORE,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Clear an alarm whose channel has returned to normal."""
    _verb(alarm_id, "clear", {"user": user}, server, store, token_file)


@alarms_app.command("comment")
def comment(
    alarm_id: int = typer.Argument(..., min=1),
    text: str = typer.Argument(..., help="the note"),
    user: str = USER,
    server: str | None = SERVER,
    store: Path = STORE,
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Add a note to an alarm (kept in its audit trail, shown in the console)."""
    if not text.strip():
        _fail("the note is empty")
    _verb(alarm_id, "comment", {"user": user, "comment": text}, server, store, token_file)


@alarms_app.command("mark-nominal")
def mark_nominal(
    alarm_id: int = typer.Argument(..., min=1),
    comment: str = typer.Option(..., help="why the episode is nominal (required, audited)"),
    user: str = USER,
    server: str = typer.Option(..., help="the running server whose monitor raised the alarm"),
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Mark an alarm's episode nominal: when it recurs on that channel it does not alarm (needs the
    running server: its monitor holds the episode's samples and judges the stream)."""
    if not comment.strip():
        _fail("--comment must say why the episode is nominal")
    mark = _post(server, f"/api/alarms/{alarm_id}:mark-nominal", {"user": user, "comment": comment}, token_file)
    from vigil.model import printable

    typer.echo(printable(f"pattern {mark['id']} of {mark['channel']} from alarm #{alarm_id}: {mark['explanation']}"))


@alarms_app.command("unmark-nominal")
def unmark_nominal(
    alarm_id: int = typer.Argument(..., min=1),
    comment: str = typer.Option("", help="why"),
    user: str = USER,
    server: str = typer.Option(..., help="the running server"),
    token_file: Path | None = TOKEN_FILE,
) -> None:
    """Withdraw the nominal pattern marked from an alarm: its episode alarms again when it recurs."""
    removed = _post(server, f"/api/alarms/{alarm_id}:unmark-nominal", {"user": user, "comment": comment}, token_file)
    for p in removed:
        typer.echo(f"pattern {p['id']} of {p['channel']} withdrawn")


@alarms_app.command("export")
def export(
    format: str = typer.Option("csv", "--format", help="csv or json"),
    out: Path | None = typer.Option(None, help="file to write (default: standard output)"),
    store: Path = STORE,
    state: str = typer.Option("all", help="all (also cleared), or unfinished"),
) -> None:
    """Export the alarms of a store, with who acknowledged, shelved or cleared them."""
    from vigil.serve.jsonable import jsonable

    if format not in ("csv", "json"):
        _fail(f"--format must be csv or json, not {format!r}")
    db = _open_store(store)
    try:
        alarms = sorted(db.load_alarms(open_only=state != "all"), key=lambda a: a.id)
    finally:
        db.close()
    rows = [jsonable(a) for a in alarms]
    text = json.dumps(rows, indent=1) + "\n" if format == "json" else _csv(rows)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(rows)} alarms to {out}", err=True)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
