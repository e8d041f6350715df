"""How a monitor run ended, for people and for scripts: the data problems it reported, and the exit code.

``vigil monitor``, ``vigil serve`` and ``vigil packets monitor`` exit with

* ``0``: the run finished and every record was scored as given;
* ``1``: a fatal error (configuration, nominal history, source): nothing or not all was monitored;
* ``2``: the command line itself was wrong (an unknown option; typer's usage error);
* ``3``: the run finished, and reported data problems: records it could not score as given
  (malformed, unparsable, unknown channel, quarantined time, duplicate, out of order, unscored),
  detector or alarm-manager errors, an empty source, or a nominal history (``--fit``) that was
  changed while reading (non-finite values, duplicate or unsorted rows, rows without a time).

Staleness is not a data problem here: it is an alarm, and reported as one. Neither are missing
samples (a NaN/empty value, or a channel absent from a packet's row): the data says so itself;
they are counted (``missing``) and printed, not changed.

>>> summary = {"totals": {"received": 3, "malformed": 1}, "unknown": {}, "unparsable": 0,
...            "errors": 0, "rows": 2, "replayed": 0}
>>> problems(summary)
['1 malformed records']
>>> exit_code(problems(summary))
3
"""

from __future__ import annotations

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_DATA = 0, 1, 2, 3

#: Per-channel counters that mean a record was not scored as it was given.
PROBLEM_COUNTERS = ("malformed", "quarantined", "duplicate", "out_of_order", "unscored")


def problems(summary: dict, fit_report=None, skipped: int = 0, resumed_at: float | None = None) -> list[str]:
    """One line per kind of data problem in a run's counters (``Monitor.counters()``), its
    nominal history's :class:`~vigil.ingest.tabular.LoadReport`, and records a file replay passed
    over (``skipped``, at or before the checkpoint ``resumed_at``)."""
    totals = summary.get("totals", {})
    out = [f"{totals[k]} {k.replace('_', '-')} records" for k in PROBLEM_COUNTERS if totals.get(k)]
    unknown = sum(summary.get("unknown", {}).values())
    if unknown:
        out.append(f"{unknown} records of channels not in the configuration")
    if summary.get("unparsable"):
        out.append(f"{summary['unparsable']} unreadable lines naming no channel")
    if summary.get("errors"):
        out.append(f"{summary['errors']} detector or alarm-manager errors")
    if fit_report is not None and not fit_report.clean:
        out.append(f"the nominal history {fit_report.source} was changed while reading (see [fit] lines)")
    received = totals.get("received", 0) + unknown + summary.get("unparsable", 0)
    if received == 0 and not skipped and not summary.get("replayed"):
        out.append("the source gave no records")
    elif not summary.get("rows") and (skipped or summary.get("replayed")):
        n = skipped + summary.get("replayed", 0)
        out.append(
            f"nothing scored: all {n} records were at or before the checkpoint t={resumed_at} "
            "(resumed from the store; --no-resume scores them again, e.g. after a configuration change)"
        )
    return out


def exit_code(found: list[str]) -> int:
    """``3`` when data problems were reported, else ``0``."""
    return EXIT_DATA if found else EXIT_OK
