"""``vigil bench records``: the record path end to end, as an operator runs it.

Generates a long CSV of records (``time,channel,value``, 1 Hz channels, every channel with limits
and a few injected excursions) and times real ``python -m vigil.cli monitor`` processes on it:

* ``max``: ``--speed max`` on ``channels x seconds`` records; ``records_per_s`` is records over the
  whole process wall time (start-up, configuration, parsing, scoring, alarms, SQLite store, exit);
  ``stream_records_per_s`` counts from the ``monitoring ...`` line (start-up excluded).
* ``paced``: ``--speed SPEED`` on ``paced_channels x paced_seconds`` records; the replay keeps its
  pace when the time from the ``monitoring ...`` line to the end is the data's span divided by
  the speed: ``achieved_speed`` is span over that time, ``lag_s`` the time beyond the ideal
  (it includes the first scoring's one-time warm-up: imports, compiled kernels loaded from cache).
  ``steady_speed`` is the pace from the first scored rows to the end (rows scored per wall second,
  from the counter lines printed every 0.5 s; a row is one second of data).

Each run checks that every record was scored (``scored=`` on the last counter line). ``code``
runs the monitor from another checkout (``PYTHONPATH``), for before/after comparisons.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv


def make_records(folder: Path, channels: int, seconds: int, seed: int = 0) -> tuple[Path, Path, int]:
    """Write ``records.csv`` and ``channels.toml`` into ``folder``; returns their paths and the record count."""
    rng = np.random.default_rng(seed)
    names = np.array([f"CH{j:05d}" for j in range(channels)])
    values = np.round(rng.normal(20.0, 1.0, (seconds, channels)), 4)
    for j in range(0, channels, 100):  # an excursion past the warning limit on 1 channel in 100
        start = int(rng.integers(0, max(seconds - 20, 1)))
        values[start : start + 20, j] = 35.0
    table = pa.table(
        {
            "time": np.repeat(1.7e9 + np.arange(seconds, dtype=np.float64), channels),
            "channel": np.tile(names, seconds),
            "value": values.ravel(),
        }
    )
    csv = folder / "records.csv"
    with pa.OSFile(str(csv), "wb") as fh:
        fh.write(b"time,channel,value\n")
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    config = folder / "channels.toml"
    config.write_text(
        "".join(
            f'[channels.{n}]\nsubsystem = "s{j % 10}"\nrate_hz = 1.0\n[channels.{n}.limits]\n'
            "warning = [10.0, 30.0]\ncritical = [5.0, 40.0]\n"
            for j, n in enumerate(names)
        )
    )
    return csv, config, channels * seconds


def time_monitor(csv: Path, config: Path, speed: str, code: str | None = None) -> dict:
    """Run ``vigil monitor`` on ``csv``; wall times of the whole process and of its stream part."""
    env = dict(os.environ)
    # The monitor runs from ``code``, else from the checkout this module belongs to (also when
    # another copy is installed); the working directory is the data's, so neither shadows it.
    env["PYTHONPATH"] = code or str(Path(__file__).resolve().parents[2])
    store = csv.parent / f"store-{speed}-{time.monotonic_ns()}.sqlite"
    cmd = [sys.executable, "-m", "vigil.cli", "monitor", "--config", str(config), "--source", f"file:{csv}",
           "--speed", speed, "--store", str(store), "--report-every", "0.5"]  # fmt: skip
    started = time.monotonic()
    streaming = None
    last = ""
    progress: list[tuple[float, int]] = []  # (wall, rows scored): a row is one second of data
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=csv.parent
    ) as proc:
        for line in proc.stdout:
            if streaming is None and line.startswith("monitoring "):
                streaming = time.monotonic()
            if line.startswith("[counters]"):
                last = line
                progress.append((time.monotonic(), int(re.search(r"rows=(\d+)", line).group(1))))
    ended = time.monotonic()
    scored = re.search(r"scored=(\d+)", last)
    steady = [(w, r) for w, r in progress if r > 0]
    if len(steady) >= 2 and steady[-1][0] > steady[0][0]:  # from the first scored rows on: warm-up excluded
        rate = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
    else:
        rate = None
    return {
        "steady_rows_per_s": None if rate is None else round(rate, 1),
        "command": " ".join(["vigil", *cmd[3:]]),
        "exit_status": proc.returncode,
        "wall_s": round(ended - started, 3),
        "stream_s": round(ended - (streaming or started), 3),
        "scored": int(scored.group(1)) if scored else None,
    }


def run_benchmark(
    out: Path | None = None,
    channels: int = 100,
    seconds: int = 50_000,
    paced_channels: int = 1_000,
    paced_seconds: int = 10_000,
    speeds: tuple[float, ...] = (1000.0,),
    code: str | None = None,
    seed: int = 0,
) -> dict:
    """Time ``--speed max`` and paced replays; write the results as JSON to ``out``."""
    where = code or str(Path(__file__).resolve().parents[2])
    result: dict = {"python": sys.version.split()[0], "cores": os.cpu_count(), "code": where}
    with tempfile.TemporaryDirectory(prefix="vigil-bench-records-") as tmp:
        folder = Path(tmp)
        (folder / "max").mkdir()
        csv, config, n = make_records(folder / "max", channels, seconds, seed)
        run = time_monitor(csv, config, "max", code)
        run.update(records=n, channels=channels, seconds=seconds)
        run["records_per_s"] = round(n / run["wall_s"])
        run["stream_records_per_s"] = round(n / run["stream_s"])
        rows_per_s = run.pop("steady_rows_per_s")
        run["steady_records_per_s"] = None if rows_per_s is None else round(rows_per_s * channels)
        result["max"] = run
        (folder / "paced").mkdir()
        csv, config, n = make_records(folder / "paced", paced_channels, paced_seconds, seed)
        result["paced"] = []
        for speed in speeds:
            run = time_monitor(csv, config, f"{speed:g}", code)
            span = paced_seconds - 1
            run.update(records=n, channels=paced_channels, seconds=paced_seconds, speed=speed)
            run["ideal_s"] = round(span / speed, 3)
            run["achieved_speed"] = round(span / run["stream_s"], 1)
            run["lag_s"] = round(run["stream_s"] - span / speed, 3)
            run["steady_speed"] = run.pop("steady_rows_per_s")
            result["paced"].append(run)
    if out is not None:
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def summary(result: dict) -> str:
    """A few lines for the console."""
    m = result["max"]
    lines = [
        f"--speed max: {m['records']:,} records ({m['channels']} channels x {m['seconds']} s) in {m['wall_s']} s "
        f"end to end: {m['records_per_s']:,} records/s ({m['stream_records_per_s']:,}/s after start-up, "
        f"{m['steady_records_per_s']}/s once scoring); "
        f"scored {m['scored']}, exit {m['exit_status']}"
    ]
    for p in result["paced"]:
        lines.append(
            f"--speed {p['speed']:g}: {p['records']:,} records ({p['channels']} channels x {p['seconds']} s), "
            f"ideal {p['ideal_s']} s, took {p['stream_s']} s after start-up: {p['achieved_speed']:g}x "
            f"(lag {p['lag_s']} s), {p['steady_speed']}x once scoring; scored {p['scored']}, exit {p['exit_status']}"
        )
    return "\n".join(lines)
