"""Notifications of alarms to email, chat or SMS services through Apprise, never blocking the monitor.

The ``[notify]`` section of the configuration (see :class:`NotifySettings`)::

    [notify]
    urls_env = "VIGIL_NOTIFY_URLS"   # Apprise URLs from the environment (space or comma separated)
    urls_file = "/etc/vigil/notify"  # ... and/or from a file, one per line (keep it private)
    min_severity = "warning"         # raised, escalated or reactivated alarms from this severity up
    group_window_s = 60              # alarms of one incident within this window: one message
    max_per_minute = 6               # rate limit; what waits is merged into the next message
    retries = 3                      # attempts after a failed send, 2 s, 4 s, 8 s apart

URLs may also be listed as ``urls = [...]``, for destinations without secrets. A URL is never
logged or shown; failures name the destination by its scheme and number (``json #1``).
"""

from vigil.notify.notifier import Notifier, NotifySettings, load_settings

__all__ = ["Notifier", "NotifySettings", "load_settings"]
