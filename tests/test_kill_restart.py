"""Real `vigil monitor` processes killed mid-stream and restarted on the same store.

1. SIGKILLed after an operator acknowledged an alarm through its API: the acknowledgement
   survives and the restarted monitor raises no alarm twice.
2. 25 SIGKILLs (and 5 SIGTERMs) at random points of a stream that uses everything a restart
   must carry over (``--fit``, ``min_violations``/``min_conformance`` > 1, staleness; see
   tests/restart_scenario.py): the alarms, audit trail, incidents and final position equal the
   uninterrupted run's exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from restart_scenario import outcome
from restart_scenario import write_inputs as write_scenario

TOKEN = "kill-restart-test-token-0123456789"
N_ROWS = 400
CHANNELS = tuple(f"P{k}" for k in range(1, 9))
# One excursion above the warning limit (10) per channel, 45 rows apart: 8 alarms.
EXCURSIONS = [(ch, 25 + 45 * k) for k, ch in enumerate(CHANNELS)]

CONFIG = "\n".join(
    f'[channels.{ch}]\nsubsystem = "prop"\nrate_hz = 1.0\n[channels.{ch}.limits]\nwarning = [-10.0, 10.0]\n'
    for ch in CHANNELS
)


def write_inputs(tmp: Path) -> tuple[Path, Path]:
    cfg = tmp / "cfg.toml"
    cfg.write_text(CONFIG)
    lines = ["time,channel,value"]
    for t in range(N_ROWS):
        for ch in CHANNELS:
            hot = any(ch == c and start <= t < start + 5 for c, start in EXCURSIONS)
            lines.append(f"{t},{ch},{15.0 if hot else 1.0}")
    data = tmp / "data.csv"
    data.write_text("\n".join(lines) + "\n")
    return cfg, data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def monitor_cmd(cfg: Path, data: Path, store: Path, speed: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vigil.cli", "monitor", "--config", str(cfg), "--source", f"file:{data}",
            "--speed", speed, "--store", str(store), *extra]  # fmt: skip


def api(port: int, path: str, body: dict | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="GET" if body is None else "POST")
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def stored_alarms(store: Path) -> list[dict]:
    from vigil.store.sqlite import SqliteStore

    with SqliteStore(store) as s:
        return sorted((a.to_dict() for a in s.load_alarms()), key=lambda a: a["id"])


def wait_for_alarms(proc: subprocess.Popen, port: int, n: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            found = api(port, "/api/alarms")
        except OSError:  # server not up yet
            found = []
        if len(found) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} alarms after {timeout} s")


@pytest.mark.timeout(180)
def test_sigkill_mid_stream_loses_no_ack_and_duplicates_no_alarm(tmp_path):
    cfg, data = write_inputs(tmp_path)
    env = {**os.environ, "VIGIL_API_TOKEN": TOKEN}

    # The reference: the same stream, uninterrupted.
    ref_store = tmp_path / "ref.sqlite"
    subprocess.run(monitor_cmd(cfg, data, ref_store, "max"), check=True, env=env, capture_output=True, timeout=120)
    reference = stored_alarms(ref_store)
    assert [(a["channel"], a["first_time"]) for a in reference] == [(c, float(t)) for c, t in EXCURSIONS]

    # The victim: paced at 40x (400 rows in 10 s), acknowledged through the API, then killed.
    store, port = tmp_path / "live.sqlite", free_port()
    proc = subprocess.Popen(
        monitor_cmd(cfg, data, store, "40", "--serve", str(port)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        first = wait_for_alarms(proc, port, 2)[0]
        acked = api(port, f"/api/alarms/{first['id']}:acknowledge", {"user": "flight", "comment": "seen"})
        assert acked["acknowledged_by"] == "flight"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    from vigil.store.sqlite import SqliteStore

    with SqliteStore(store) as s:
        checkpoint = s.load_checkpoint("monitor")["time"]
    assert 0 < checkpoint < N_ROWS - 1, "killed too late to test a mid-stream kill"
    before = stored_alarms(store)
    assert any(a["id"] == first["id"] and a["acknowledged_by"] == "flight" for a in before)

    # Restart on the same store, as fast as possible, to the end of the stream.
    out = subprocess.run(monitor_cmd(cfg, data, store, "max"), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"resuming after t={checkpoint}" in out.stdout
    after = stored_alarms(store)
    acked_after = [a for a in after if a["id"] == first["id"]]
    assert acked_after[0]["acknowledged_by"] == "flight" and acked_after[0]["acknowledged_comment"] == "seen"
    # Exactly the reference's alarms: same channels, times and severities, none twice.
    assert [(a["channel"], a["first_time"], a["severity"]) for a in after] == [
        (a["channel"], a["first_time"], a["severity"]) for a in reference
    ]


def checkpoint_items(store: Path) -> int:
    """Input items the store's checkpoint covers (0 before the first one); read-only, never blocks."""
    import sqlite3

    if not Path(f"{store}-wal").exists():  # not yet created in WAL mode: do not race its creation
        return 0
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT position FROM checkpoints WHERE key = 'monitor'").fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        conn.close()
    return 0 if row is None else int(json.loads(row[0])["items"])


@pytest.mark.timeout(420)
def test_random_kills_give_exactly_the_uninterrupted_run(tmp_path):
    cfg, nominal, stream = write_scenario(tmp_path, n_rows=1200)
    n_items = len(stream.read_text().splitlines()) - 1

    def cmd(store: Path, speed: str) -> list[str]:
        return monitor_cmd(cfg, stream, store, speed, "--fit", str(nominal), "--report-every", "3600")

    ref_store = tmp_path / "ref.sqlite"
    subprocess.run(cmd(ref_store, "max"), check=True, capture_output=True, timeout=120)
    reference = outcome(ref_store)
    assert reference["position"]["items"] == n_items and len(reference["alarms"]) >= 5

    rng = random.Random(2026)
    store = tmp_path / "victim.sqlite"
    signals = [signal.SIGKILL] * 25 + [signal.SIGTERM] * 5
    rng.shuffle(signals)
    progress = []
    for sig in signals:
        before = checkpoint_items(store)
        target = before + rng.randint(5, 60)  # kill after a random stretch of progress
        log = tmp_path / f"victim-{len(progress)}.log"
        proc = subprocess.Popen(cmd(store, "20"), stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while checkpoint_items(store) < target and proc.poll() is None:
                assert time.monotonic() < deadline, "the monitor made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.02))  # sometimes inside the next transaction
            proc.send_signal(sig)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode in (-sig, 0), log.read_text()
        progress.append(checkpoint_items(store))
    assert progress[-1] < n_items, "the stream ended before the last kill: slow the victims down"
    assert len(set(progress)) >= 20  # the kills landed at many different points
    out = subprocess.run(cmd(store, "max"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "model loaded from" in out.stdout  # fitted once, by the first victim
    assert outcome(store) == reference
