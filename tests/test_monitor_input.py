"""`vigil monitor` says what it changed or could not read, and its exit status tells a script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = """
[channels.T1]
subsystem = "thermal"
[channels.T1.limits]
warning = [-10.0, 30.0]
[channels.V1]
subsystem = "power"
[channels.V1.limits]
warning = [20.0, 32.0]
"""


def monitor(tmp: Path, source: str, *extra: str) -> subprocess.CompletedProcess:
    (tmp / "cfg.toml").write_text(CONFIG)
    cmd = [sys.executable, "-m", "vigil.cli", "monitor", "--config", "cfg.toml", "--source", source,
           "--speed", "max", "--store", "s.sqlite", *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=180)


def test_clean_run_exits_0(tmp_path):
    (tmp_path / "r.csv").write_text("".join(f"{t},T1,20\n{t},V1,28\n" for t in range(5)))
    out = monitor(tmp_path, "file:r.csv")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[problem]" not in out.stdout


def test_empty_source_is_reported_and_exits_3(tmp_path):
    (tmp_path / "r.csv").write_text("")
    out = monitor(tmp_path, "file:r.csv")
    assert out.returncode == 3
    assert "[problem] the source gave no records" in out.stdout


def test_rerun_after_the_checkpoint_says_why_nothing_was_scored(tmp_path):
    (tmp_path / "r.csv").write_text("".join(f"{t},T1,20\n{t},V1,28\n" for t in range(5)))
    assert monitor(tmp_path, "file:r.csv").returncode == 0
    again = monitor(tmp_path, "file:r.csv")
    assert again.returncode == 3
    assert "[note] passed over 10 input items the checkpoint (t=4.0) already covers" in again.stdout
    assert "nothing scored: all 10 records were at or before the checkpoint t=4.0" in again.stdout
    assert "--no-resume scores them again" in again.stdout


def test_fit_history_changes_are_counted_and_printed(tmp_path):
    rows = [f"{t},{20 + (t % 3) * 0.1},{28 + (t % 5) * 0.1}" for t in range(300)]
    rows[10] = "10,nan,28"  # a NaN
    rows[20] = "5,20,28"  # out of order, and a repeat of t=5
    (tmp_path / "fit.csv").write_text("timestamp,T1,V1\n" + "\n".join(rows) + "\n")
    (tmp_path / "r.csv").write_text("".join(f"{t},T1,20\n{t},V1,28\n" for t in range(300, 305)))
    out = monitor(tmp_path, "file:r.csv", "--fit", "fit.csv")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "[fit] fit.csv: 300 rows, time from column 'timestamp'" in out.stdout
    assert "[fit]   1 non-finite values (read as missing) (T1: 1)" in out.stdout
    assert "[fit]   2 duplicate records (the first kept, the rest dropped) (T1: 1, V1: 1)" in out.stdout
    assert "[fit]   1 rows out of time order (sorted into order)" in out.stdout
    assert "[problem] the nominal history fit.csv was changed while reading" in out.stdout
    strict = monitor(tmp_path, "file:r.csv", "--fit", "fit.csv", "--strict", "--store", "other.sqlite")
    assert strict.returncode == 1 and strict.stderr.startswith("error: fit.csv: channel T1: row 12: missing value")


def test_a_timestamp_first_column_is_time_not_channels(tmp_path):
    (tmp_path / "r.csv").write_text("timestamp,T1,V1\n2026-11-24T00:00:00,20,28\n2026-11-24T00:00:01,35,28\n")
    out = monitor(tmp_path, "file:r.csv")
    assert "unknown=0" in out.stdout and "scored=4" in out.stdout
    assert "T1 (thermal): warning by limits" in out.stdout and out.returncode == 0
