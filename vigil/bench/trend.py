"""How early and how accurately :class:`~vigil.detect.trend.TrendForecast` says when a limit is reached.

Generated 1 Hz channels, each a level plus noise (half of them with an orbit-like sine as well),
most with a linear drift from a random onset that reaches the critical limit a random 1 to 6 hours
later, some without drift (to count false watch alarms). Per drifting channel:

* ``relative_error_halfway``: ``|forecast - truth| / truth`` of the seconds left, taken when the
  drift is half-way from the level to the limit (truth: half the drift's duration);
* ``covered_halfway``: whether the truth lies in ``[seconds_low, seconds_high]`` then;
* ``watch_lead_s``: how long before the limit is reached the watch alarm (lower bound under the
  horizon) first came; ``first_forecast_after_onset_s``: when a forecast toward the limit was first given.

The truth is known by construction; nothing here is tuned on it.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from vigil.detect.limits import ChannelLimits
from vigil.detect.trend import TrendForecast
from vigil.model import TelemetryBlock

LIMIT = 40.0
BASE = 20.0


def make_drifts(channels: int, hours: float, seed: int) -> tuple[TelemetryBlock, dict]:
    """Channels with (and some without) a drift toward ``LIMIT``; returns the block and the truth."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    t = np.arange(n, dtype=np.float64)
    noise = rng.uniform(0.2, 1.0, channels)
    values = BASE + rng.normal(0.0, 1.0, (n, channels)) * noise
    orbital = np.arange(channels) % 2 == 1
    period = rng.uniform(5400.0, 6000.0, channels)
    values[:, orbital] += 1.0 * np.sin(2 * np.pi * t[:, None] / period[orbital])
    drifting = np.arange(channels) % 5 != 0  # one channel in five stays nominal
    onset = rng.uniform(1.0, 3.0, channels) * 3600
    duration = rng.uniform(1.0, 6.0, channels) * 3600  # onset to the limit
    ramp = np.clip((t[:, None] - onset) / duration, 0.0, None) * (LIMIT - BASE)
    values[:, drifting] += ramp[:, drifting]
    names = [f"CH{j:04d}" for j in range(channels)]
    truth = {"drifting": drifting, "onset": onset, "duration": duration, "orbital": orbital}
    return TelemetryBlock.from_arrays(t, values, names, source="trend-bench"), truth


def run_trend_bench(channels: int = 200, hours: float = 10.0, seed: int = 0, chunk: int = 60, **options) -> dict:
    """Score the generated drifts in ``chunk``-row blocks and compare the forecasts with the truth."""
    block, truth = make_drifts(channels, hours, seed)
    # One range: the forecast's next limit is then the one whose crossing time is known.
    limits = {name: ChannelLimits(critical=(0.0, LIMIT)) for name in block.channels}
    det = TrendForecast(limits, **options).fit(block.slice(0, 1))
    det.reset()
    ends, snaps, first_watch = [], [], np.full(channels, np.nan)
    for a in range(0, block.n_samples, chunk):
        part = block.slice(a, min(a + chunk, block.n_samples))
        level = det.score(part).level
        hit = (level > 0).any(axis=0) & np.isnan(first_watch)
        first_watch[hit] = part.time[np.argmax(level[:, hit] > 0, axis=0)]
        ends.append(part.time[-1])
        snaps.append(det.out_.copy())
    ends_arr, snap = np.asarray(ends), np.stack(snaps)  # [k, c, 5]
    drifting, onset, duration = truth["drifting"], truth["onset"], truth["duration"]
    cross = onset + duration
    rows = []
    for j in np.flatnonzero(drifting & (cross < block.time[-1])).tolist():
        k = int(np.argmin(np.abs(ends_arr - (onset[j] + duration[j] / 2))))
        left = cross[j] - ends_arr[k]
        seconds, low, high, limit = snap[k, j, :4]
        heading = np.isfinite(snap[:, j, 0]) & (snap[:, j, 3] == LIMIT) & (ends_arr > onset[j])
        rows.append({
            "channel": block.channels[j],
            "orbital": bool(truth["orbital"][j]),
            "duration_s": float(duration[j]),
            "relative_error_halfway": float(abs(seconds - left) / left) if np.isfinite(seconds) else None,
            "covered_halfway": bool(low <= left <= high) if np.isfinite(seconds) else False,
            "forecast_limit_halfway": None if np.isnan(limit) else float(limit),
            "watch_lead_s": float(cross[j] - first_watch[j]) if np.isfinite(first_watch[j]) else None,
            "first_forecast_after_onset_s": float(ends_arr[heading][0] - onset[j]) if heading.any() else None,
        })  # fmt: skip
    return _summary(rows, first_watch, drifting, det, channels, hours, seed)


def _summary(rows: list[dict], first_watch, drifting, det: TrendForecast, channels: int, hours: float, seed: int):
    def med(key: str, only=None) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None and (only is None or r["orbital"] == only)]
        return round(float(np.median(vals)), 3) if vals else None

    errs = [r["relative_error_halfway"] for r in rows]
    return {
        "benchmark": "trend",
        "channels": channels,
        "hours": hours,
        "seed": seed,
        "options": {"tau_s": det.tau_s, "horizon_s": det.horizon_s, "z": det.z},
        "drifts_scored": len(rows),
        "forecast_given_halfway": sum(e is not None for e in errs),
        "median_relative_error_halfway": med("relative_error_halfway"),
        "median_relative_error_halfway_flat": med("relative_error_halfway", False),
        "median_relative_error_halfway_orbital": med("relative_error_halfway", True),
        "interval_coverage_halfway": round(float(np.mean([r["covered_halfway"] for r in rows])), 3) if rows else None,
        "median_watch_lead_s": med("watch_lead_s"),
        "watch_lead_over_horizon": sum((r["watch_lead_s"] or 0) > det.horizon_s for r in rows),
        "median_first_forecast_after_onset_s": med("first_forecast_after_onset_s"),
        "nominal_channels": int((~drifting).sum()),
        "nominal_channels_with_watch": int(np.isfinite(first_watch[~drifting]).sum()),
        "per_channel": rows,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def summary(result: dict) -> str:
    return (
        f"{result['drifts_scored']} drifts: median relative error half-way to the limit "
        f"{result['median_relative_error_halfway']} (flat {result['median_relative_error_halfway_flat']}, "
        f"orbital {result['median_relative_error_halfway_orbital']}), interval coverage "
        f"{result['interval_coverage_halfway']}; watch alarm a median {result['median_watch_lead_s']} s before "
        f"the limit; {result['nominal_channels_with_watch']}/{result['nominal_channels']} nominal channels with a watch"
    )


def write_results(result: dict, out: str | Path) -> None:
    Path(out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
