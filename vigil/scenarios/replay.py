"""Replay a scenario through the live monitoring path and report alarms, incidents and timings.

The detector (``vigil.detect.build_detector`` on the scenario's configuration: limit checks plus the
learned forecast detector, default hyper-parameters) is fitted once on the nominal training
entries. The same fitted monitor then replays every held-out nominal entry (each alarm there is a
false alarm) and the failed entry, one 1 Hz tick at a time through :class:`vigil.monitor.Monitor`
with a fresh :class:`vigil.alarms.AlarmManager` per entry.
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field
from typing import Any

from vigil.alarms import AlarmManager
from vigil.detect import build_detector
from vigil.detect.base import Detector
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor
from vigil.scenarios.sts107 import LOS_S, MMACS_CALL_S, Scenario, est_clock

#: Alarm events that call for an operator's attention.
ANNUNCIATING = ("raised", "reactivated", "escalated")


@dataclass
class EntryRun:
    """Alarms and incidents of one entry, times in seconds from its entry interface."""

    name: str
    alarms: list[dict]
    incidents: list[dict]
    #: Each raise, reactivation and escalation, in order (an alarm that returned to normal and was
    #: never acknowledged is reactivated, not raised again, so first times alone miss new onsets).
    annunciations: list[dict] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


def replay_entry(
    name: str, block: TelemetryBlock, ei_epoch: float, config, detector: Detector, tick_rows: int = 1
) -> EntryRun:
    """Feed ``block`` through a fresh monitor and alarm manager ``tick_rows`` rows at a time."""
    detector.reset()
    manager = AlarmManager(config)
    heard: list[dict] = []
    manager.subscribe(lambda event: heard.append(event) if event["kind"] in ANNUNCIATING else None)
    monitor = Monitor(config, detector, manager)
    for start in range(0, block.n_samples, tick_rows):
        chunk = block.slice(start, min(start + tick_rows, block.n_samples))
        monitor.feed_block(chunk)
        monitor.check_staleness(float(chunk.time[-1]))
    alarms = sorted(manager.alarms(state="all"), key=lambda a: (a.first_time, a.channel))
    return EntryRun(
        name=name,
        alarms=[_alarm_dict(a, ei_epoch) for a in alarms],
        incidents=[_incident_dict(i, ei_epoch) for i in sorted(manager.incidents(), key=lambda i: i.first_time)],
        annunciations=[
            {
                "kind": e["kind"],
                "alarm_id": e["alarm_id"],
                "channel": e["payload"]["channel"],
                "severity": e["payload"]["severity"],
                "s_from_ei": round(e["time"] - ei_epoch, 3),
            }
            for e in heard
        ],
        counters=monitor.counters()["totals"],
    )


def _alarm_dict(alarm, ei_epoch: float) -> dict[str, Any]:
    t = alarm.first_time - ei_epoch
    return {
        "id": alarm.id,
        "channel": alarm.channel,
        "subsystem": alarm.subsystem,
        "severity": alarm.severity,
        "detector": alarm.detector,
        "first_s_from_ei": round(t, 3),
        "first_est": est_clock(t),
        "units": alarm.units,
        "trigger_value": _num(alarm.trigger_value),
        "expected": _num(alarm.expected),
        "low": _num(alarm.low),
        "high": _num(alarm.high),
        "peak_value": _num(alarm.peak_value),
        "peak_score": _num(alarm.peak_score),
        "state": alarm.state,
        "incident_id": alarm.incident_id,
        "explanation": alarm.explanation,
    }


def _incident_dict(incident, ei_epoch: float) -> dict[str, Any]:
    t = incident.first_time - ei_epoch
    return {
        "id": incident.id,
        "subsystem": incident.subsystem,
        "severity": incident.severity,
        "first_s_from_ei": round(t, 3),
        "first_est": est_clock(t),
        "last_s_from_ei": round(incident.last_time - ei_epoch, 3),
        "channels": [c.channel for c in incident.channels],
        "rank_scores": [round(c.rank_score, 3) for c in incident.channels],
        "alarm_ids": list(incident.alarm_ids),
        "grouping": incident.grouping,
        "explanation": incident.explanation,
    }


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def run(
    scenario: Scenario, seed: int, tick_rows: int = 1, forecast_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fit on the nominal training entries, replay the held-out nominal entries and the failed one.

    ``forecast_options`` override the forecast detector's defaults (for ablations; the replay's
    reported numbers use none).
    """
    started = _time.perf_counter()
    detector = build_detector(scenario.config, **(forecast_options or {})).fit(scenario.training_block())
    fitted = _time.perf_counter()
    n_train = len(scenario.nominal_train)
    nominal = [
        replay_entry(f"nominal-{n_train + k}", block, scenario.nominal_ei_epochs[n_train + k], scenario.config,
                     detector, tick_rows)
        for k, block in enumerate(scenario.nominal_holdout)
    ]  # fmt: skip
    failed = replay_entry("sts-107", scenario.failed, scenario.ei_epoch, scenario.config, detector, tick_rows)
    twin = replay_entry("sts-107-without-anomalies", scenario.failed_twin, scenario.ei_epoch, scenario.config,
                        detector, tick_rows)  # fmt: skip
    done = _time.perf_counter()

    first_event = min(e["t_from_ei_s"] for e in scenario.events if e["stream"] == "injected")
    onsets = _attribute(failed, twin, scenario.events)
    first_alarm = failed.alarms[0] if failed.alarms else None
    caused = [o for o in onsets if o["caused_by_injection"]]
    first_caused = caused[0] if caused else None
    first_incident = failed.incidents[0] if failed.incidents else None
    return {
        "scenario": "sts-107",
        "about": "A reconstruction from public sources with synthetic telemetry; not flight data.",
        "seed": seed,
        "detector": _describe(detector),
        "forecast_options": forecast_options or {},
        "channels": scenario.failed.n_channels,
        "rate_hz": 1.0,
        "window_s_from_ei": [float(scenario.failed.time[0] - scenario.ei_epoch), float(LOS_S)],
        "nominal_train_entries": n_train,
        "nominal_holdout_entries": len(nominal),
        "reference": {
            "mmacs_call_s_from_ei": MMACS_CALL_S,
            "mmacs_call_est": est_clock(MMACS_CALL_S),
            "los_s_from_ei": LOS_S,
            "los_est": est_clock(LOS_S),
            "first_realtime_event_s_from_ei": first_event,
        },
        "first_alarm_s_from_ei": None if first_alarm is None else first_alarm["first_s_from_ei"],
        "first_alarm_est": None if first_alarm is None else first_alarm["first_est"],
        "first_alarm_channel": None if first_alarm is None else first_alarm["channel"],
        "first_alarm_lead_over_mmacs_s": None if first_alarm is None else MMACS_CALL_S - first_alarm["first_s_from_ei"],
        "first_injected_alarm_s_from_ei": None if first_caused is None else first_caused["s_from_ei"],
        "first_injected_alarm_est": None if first_caused is None else est_clock(first_caused["s_from_ei"]),
        "first_injected_alarm_channel": None if first_caused is None else first_caused["channel"],
        "first_incident_s_from_ei": None if first_incident is None else first_incident["first_s_from_ei"],
        "first_incident_est": None if first_incident is None else first_incident["first_est"],
        "failed_entry_false_alarms": sum(not o["caused_by_injection"] for o in onsets),
        "twin_alarms": twin.alarms,
        "nominal_false_alarms": sum(len(r.alarms) for r in nominal),
        "nominal_false_annunciations": sum(len(r.annunciations) for r in nominal),
        "nominal_entries": [
            {
                "entry": r.name,
                "alarms": len(r.alarms),
                "channels": sorted({a["channel"] for a in r.alarms}),
                "detail": r.alarms,
            }
            for r in nominal
        ],  # fmt: skip
        "detection_by_event": _by_event(onsets, scenario.events),
        "annunciations": onsets,
        "incidents": failed.incidents,
        "alarms": failed.alarms,
        "counters": failed.counters,
        "events": scenario.events,
        "timing_s": {"fit": round(fitted - started, 3), "replay": round(done - fitted, 3)},
    }


def _attribute(failed: EntryRun, twin: EntryRun, events: list[dict]) -> list[dict]:
    """Mark each raise/reactivation of the failed entry ``caused_by_injection`` or not; returns them.

    One is caused by the injected data when an injected event on its channel precedes it (the
    latest such event is its cause) and the same entry replayed without anomalies annunciates
    nothing on that channel between that event and it. An alarm is caused when any of its
    raises/reactivations is.
    """
    onsets: dict[str, list[float]] = {}
    for e in events:
        for c in e.get("channels", []):
            onsets.setdefault(c, []).append(e["t_from_ei_s"])
    onsets_out = []
    for a in failed.annunciations:
        if a["kind"] == "escalated":
            continue
        t = a["s_from_ei"]
        before = [t0 for t0 in onsets.get(a["channel"], []) if t0 <= t]
        cause = max(before) if before else None
        quiet = cause is not None and not any(
            b["channel"] == a["channel"] and cause <= b["s_from_ei"] <= t for b in twin.annunciations
        )
        onsets_out.append({**a, "injected_event_s_from_ei": cause, "caused_by_injection": quiet})
    for alarm in failed.alarms:
        mine = [o for o in onsets_out if o["alarm_id"] == alarm["id"] and o["caused_by_injection"]]
        alarm["caused_by_injection"] = bool(mine)
        alarm["caused_at_s_from_ei"] = mine[0]["s_from_ei"] if mine else None
        alarm["injected_event_s_from_ei"] = mine[0]["injected_event_s_from_ei"] if mine else None
    return onsets_out


def _by_event(onsets: list[dict], events: list[dict]) -> list[dict]:
    """For each injected event: which of its channels alarmed because of it, first when, how late."""
    out = []
    for e in events:
        if e["stream"] != "injected":
            continue
        mine = [o for o in onsets if o["caused_by_injection"] and o["injected_event_s_from_ei"] == e["t_from_ei_s"]]
        first = min((o["s_from_ei"] for o in mine), default=None)
        out.append(
            {
                "t_from_ei_s": e["t_from_ei_s"],
                "label": e["label"],
                "channels": e["channels"],
                "alarmed": sorted({o["channel"] for o in mine}),
                "first_alarm_s_from_ei": first,
                "latency_s": None if first is None else first - e["t_from_ei_s"],
            }
        )
    return out


def _describe(detector) -> str:
    parts = getattr(detector, "detectors", [detector])
    return " + ".join(type(d).__name__ for d in parts) + " (default hyper-parameters)"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What ``vigil replay sts-107`` prints: the key moments side by side, then every alarm and incident."""
    ref = result["reference"]

    def moment(label: str, s: float | None, est: str | None, extra: str = "") -> str:
        when = "none" if s is None else f"EI{s:+7.1f} s  {est} EST"
        return f"  {label:<26}{when}  {extra}".rstrip()

    lead = result["first_alarm_lead_over_mmacs_s"]
    lines = [
        "STS-107 (Columbia) entry replay: a reconstruction from public sources, synthetic telemetry, not flight data.",
        f"{result['channels']} channels at 1 Hz, EI{result['window_s_from_ei'][0]:+.0f} s to loss of signal; "
        f"{result['detector']} fitted on {result['nominal_train_entries']} nominal entries.",
        moment("first alarm", result["first_alarm_s_from_ei"], result["first_alarm_est"],
               "" if lead is None else f"{result['first_alarm_channel']}, {lead:.0f} s before MMACS's call"),
        moment("first injected-data alarm", result["first_injected_alarm_s_from_ei"],
               result["first_injected_alarm_est"], result["first_injected_alarm_channel"] or ""),
        moment("first incident", result["first_incident_s_from_ei"], result["first_incident_est"]),
        moment("MMACS first call", ref["mmacs_call_s_from_ei"], ref["mmacs_call_est"]),
        moment("loss of signal", ref["los_s_from_ei"], ref["los_est"]),
        f"  held-out nominal entries: {result['nominal_holdout_entries']}, alarms on them: "
        f"{result['nominal_false_alarms']}; alarms on the failed entry not caused by its injected events: "
        f"{result['failed_entry_false_alarms']}",
        f"alarms ({len(result['alarms'])}):",
    ]  # fmt: skip
    for a in result["alarms"]:
        if not a["caused_by_injection"]:
            flag = "  [false alarm: not caused by an injected event]"
        elif a["caused_at_s_from_ei"] != a["first_s_from_ei"]:
            flag = f"  [false alarm, reactivated by the injected data at EI{a['caused_at_s_from_ei']:+.0f} s]"
        else:
            flag = ""
        lines.append(
            f"  EI{a['first_s_from_ei']:+6.0f} s {a['first_est']}  {a['severity']:<8} {a['detector']:<9} "
            f"{a['channel']:<26} {_fmt(a['trigger_value'])} {a['units']} (band {_fmt(a['low'])}..{_fmt(a['high'])})"
            f"{flag}"
        )
    lines.append("injected events and their first alarm:")
    for e in result["detection_by_event"]:
        seen = (
            "no alarm"
            if e["first_alarm_s_from_ei"] is None
            else f"EI{e['first_alarm_s_from_ei']:+.0f} s ({e['latency_s']:.0f} s later) on {', '.join(e['alarmed'])}"
        )
        lines.append(f"  EI{e['t_from_ei_s']:+5d} s {e['label']}: {seen}")
    lines.append(f"incidents ({len(result['incidents'])}):")
    for i in result["incidents"]:
        lines.append(
            f"  #{i['id']} EI{i['first_s_from_ei']:+6.0f} s {i['first_est']}  {i['subsystem']}: "
            f"{', '.join(i['channels'])}"
        )
    return lines
