"""The notifier: an alarm-manager subscriber that queues, groups, rate-limits and sends from its own thread.

:meth:`Notifier.__call__` (the subscriber) only filters the event and puts it on a bounded queue
without waiting; a full queue drops the event and counts it (``dropped``). The worker thread groups
events by incident, sends a group once it is ``group_window_s`` old, at most ``max_per_minute``
messages a minute (a group that has to wait takes in later events), and retries failed sends.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigil.detect.base import SEVERITIES
from vigil.errors import ConfigError

log = logging.getLogger(__name__)
#: Alarm changes worth a message (acknowledge, shelve, clear and return to normal are not).
KINDS = frozenset({"raised", "escalated", "reactivated"})


class NotifySettings(BaseModel):
    """The ``[notify]`` section, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(default_factory=list)
    urls_env: str | None = None
    urls_file: str | None = None
    min_severity: str = "warning"
    group_window_s: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    max_per_minute: int = Field(default=6, ge=1)
    retries: int = Field(default=3, ge=0, le=10)
    retry_backoff_s: float = Field(default=2.0, ge=0, allow_inf_nan=False)
    queue_size: int = Field(default=1000, ge=1)
    title_prefix: str = "Vigil"


def load_settings(section: dict[str, Any], source: str | None = None) -> NotifySettings:
    """Validate ``[notify]``; an error names ``notify.<key>``."""
    try:
        settings = NotifySettings(**section)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(first["msg"], key=f"notify.{key}", source=source) from None
    if settings.min_severity not in SEVERITIES:
        raise ConfigError(f"must be one of {', '.join(SEVERITIES)}", key="notify.min_severity", source=source)
    return settings


def resolve_urls(settings: NotifySettings, env: dict[str, str] | None = None) -> list[str]:
    """The destinations: listed, from the environment variable, from the file (never logged).

    >>> resolve_urls(NotifySettings(urls=["json://a"], urls_env="X"), env={"X": "mailto://u:p@h, json://b"})
    ['json://a', 'mailto://u:p@h', 'json://b']
    """
    env = os.environ if env is None else env
    urls = list(settings.urls)
    if settings.urls_env:
        if not env.get(settings.urls_env):
            raise ConfigError(f"environment variable {settings.urls_env} is not set", key="notify.urls_env")
        urls += env[settings.urls_env].replace(",", " ").split()
    if settings.urls_file:
        try:
            text = Path(settings.urls_file).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read: {err.strerror}", key="notify.urls_file") from None
        urls += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not urls:
        raise ConfigError("no destination: give urls, urls_env or urls_file", key="notify")
    return urls


def redact(url: str, k: int) -> str:
    """How a destination is named in logs and counters: its scheme and position, nothing else.

    >>> redact("mailto://user:secret@example.com", 0)
    'mailto #1'
    """
    return f"{url.partition('://')[0] or 'url'} #{k + 1}"


def apprise_sender(urls: list[str]) -> Callable[[str, str, int], bool]:
    """A function sending (title, body) to destination ``k`` through Apprise; True when delivered."""
    import apprise

    logging.getLogger("apprise").setLevel(logging.CRITICAL)  # its messages may carry a URL's parts
    targets = []
    for k, url in enumerate(urls):
        one = apprise.Apprise()
        if not one.add(url):
            raise ConfigError(f"destination {redact(url, k)} is not a URL Apprise supports", key="notify")
        targets.append(one)

    def send(title: str, body: str, k: int) -> bool:
        return bool(targets[k].notify(title=title, body=body))

    return send


@dataclass
class _Group:
    """Events of one incident (or one alarm without an incident) waiting to be sent together."""

    first: float
    events: list[dict[str, Any]] = field(default_factory=list)


class Notifier:
    """Send alarm notifications; subscribe it with ``manager.subscribe(notifier)``.

    Args:
        settings: the validated ``[notify]`` section.
        send: ``send(title, body, k) -> bool`` for destination ``k`` (default: Apprise on the URLs).
        n_targets: how many destinations ``send`` serves (with the default, the URLs).
        clock: monotonic seconds (grouping and rate limit follow it; injectable for tests).
        start: start the worker thread (tests may call :meth:`pump` themselves instead).
    """

    def __init__(
        self,
        settings: NotifySettings,
        send: Callable[[str, str, int], bool] | None = None,
        n_targets: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        start: bool = True,
    ) -> None:
        self.settings = settings
        if send is None:
            urls = resolve_urls(settings)
            send, n_targets, self.names = apprise_sender(urls), len(urls), [redact(u, k) for k, u in enumerate(urls)]
        else:
            self.names = [f"target #{k + 1}" for k in range(n_targets or 1)]
        self._send, self.n_targets, self.clock = send, n_targets or 1, clock
        self._min_level = SEVERITIES.index(settings.min_severity) + 1
        self._queue: queue.Queue = queue.Queue(maxsize=settings.queue_size)
        self._groups: dict[str, _Group] = {}
        self._sent_at: deque[float] = deque()
        self._stop = threading.Event()
        self.sent = self.failed = self.dropped = self.events = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="vigil-notify", daemon=True) if start else None
        if self._thread is not None:
            self._thread.start()

    # -- the manager's side (must never block) ------------------------------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        payload = event.get("payload") or {}
        if event.get("type") != "alarm" or event.get("kind") not in KINDS or not event.get("notify", True):
            return
        if int(payload.get("level") or 0) < self._min_level:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    # -- the worker --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self.pump(wait_s=0.5)
        self.pump(flush=True)

    def pump(self, wait_s: float = 0.0, flush: bool = False) -> int:
        """Take queued events, send the groups that are due (all with ``flush``); returns messages sent."""
        self._take(wait_s)
        now = self.clock()
        sent = 0
        for key in sorted(self._groups, key=lambda k: self._groups[k].first):
            group = self._groups[key]
            if not flush and now - group.first < self.settings.group_window_s:
                continue
            if not self._may_send(now):
                break  # rate limited: the group waits and takes in what comes meanwhile
            del self._groups[key]
            self._deliver(group.events)
            sent += 1
        return sent

    def _take(self, wait_s: float) -> None:
        try:
            event = self._queue.get(timeout=wait_s) if wait_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            self.events += 1
            payload = event["payload"]
            incident = payload.get("incident_id")
            key = f"incident {incident}" if incident is not None else f"alarm {event['alarm_id']}"
            self._groups.setdefault(key, _Group(self.clock())).events.append(event)
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return

    def _may_send(self, now: float) -> bool:
        while self._sent_at and now - self._sent_at[0] >= 60.0:
            self._sent_at.popleft()
        if len(self._sent_at) >= self.settings.max_per_minute:
            return False
        self._sent_at.append(now)
        return True

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        title, body = message(events, self.settings.title_prefix)
        for k in range(self.n_targets):
            for attempt in range(self.settings.retries + 1):
                try:
                    ok = self._send(title, body, k)
                except Exception as err:  # a destination's failure never reaches the monitor
                    ok, self.last_error = False, f"{self.names[k]}: {type(err).__name__}"
                if ok:
                    self.sent += 1
                    break
                if attempt < self.settings.retries:
                    self._stop.wait(self.settings.retry_backoff_s * 2**attempt)
            else:
                self.failed += 1
                self.last_error = self.last_error or f"{self.names[k]}: not delivered"
                log.warning(
                    "notification to %s not delivered after %d attempts", self.names[k], self.settings.retries + 1
                )

    def close(self) -> None:
        """Send what is waiting (ignoring the group window) and stop the worker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        else:
            self.pump(flush=True)

    def status(self) -> dict[str, Any]:
        return {"destinations": self.names, "events": self.events, "sent": self.sent, "failed": self.failed,
                "dropped": self.dropped, "waiting": len(self._groups), "last_error": self.last_error}  # fmt: skip


def message(events: list[dict[str, Any]], prefix: str = "Vigil") -> tuple[str, str]:
    """Title and body for a group of alarm events (the latest event per alarm, worst first).

    >>> ev = lambda i, sev, lvl, ch: {"alarm_id": i, "kind": "raised", "payload": {"id": i, "channel": ch,
    ...     "severity": sev, "level": lvl, "incident_id": 3, "explanation": f"{ch} high"}}
    >>> message([ev(1, "warning", 2, "A"), ev(2, "critical", 4, "B")])
    ('Vigil: CRITICAL incident 3 (2 alarms)', 'CRITICAL #2 B high\\nWARNING #1 A high')
    """
    latest: dict[int, dict[str, Any]] = {}
    for event in events:
        latest[int(event["alarm_id"])] = event["payload"]
    alarms = sorted(latest.values(), key=lambda a: (-int(a.get("level") or 0), a.get("id") or 0))
    worst = alarms[0]
    lines = [
        f"{str(a.get('severity')).upper()} #{a.get('id')} {a.get('explanation') or a.get('channel')}" for a in alarms
    ]
    if len(alarms) == 1:
        title = f"{prefix}: {str(worst.get('severity')).upper()} {worst.get('channel')}"
    else:
        where = f"incident {worst['incident_id']}" if worst.get("incident_id") is not None else "alarms"
        title = f"{prefix}: {str(worst.get('severity')).upper()} {where} ({len(alarms)} alarms)"
    return title, "\n".join(lines)
