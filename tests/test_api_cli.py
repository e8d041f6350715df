"""``vigil demo`` and ``vigil serve`` as a user runs them: a subprocess, the printed URL and token."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, list[str]]:
    """Start ``vigil ARGS``; return the process and its output lines up to the token line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "API token" in line:
            return proc, lines
    proc.kill()
    pytest.fail("no token line printed:\n" + "\n".join(lines))


def _wait_healthy(url: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"{url}/api/health", timeout=2).raise_for_status().json()
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail(f"{url} never answered")


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (Linux /proc)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.add(addr)
    return found


def test_demo_prints_url_and_generated_token_and_serves_the_replay(tmp_path):
    port = _free_port()
    env = {"VIGIL_API_TOKEN": ""}  # force a generated token
    proc, lines = _start(["demo", "--port", str(port), "--speed", "200", "--store", str(tmp_path / "a.sqlite")], env)
    try:
        url = f"http://localhost:{port}"
        assert any(url + "/" in line for line in lines), lines
        token = re.search(r"generated for this run\): (\S+)$", lines[-1]).group(1)
        health = _wait_healthy(url)
        assert health["feeders"][0]["feeder"] == "replay" and health["channels"] == 56
        if Path("/proc/net/tcp").exists():
            assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        deadline = time.monotonic() + 30
        while not (alarms := httpx.get(f"{url}/api/alarms").json()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert alarms, "no alarm raised during the replay"
        verb = f"{url}/api/alarms/{alarms[-1]['id']}:acknowledge"
        assert httpx.post(verb, json={}).status_code == 401
        done = httpx.post(verb, json={"comment": "cli test"}, headers={"Authorization": f"Bearer {token}"})
        assert done.status_code == 200 and done.json()["acknowledged_comment"] == "cli test"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_monitors_a_record_file_with_the_token_from_a_file(tmp_path):
    (tmp_path / "channels.toml").write_text(
        '[channels.T-1]\nsubsystem = "thermal"\nrate_hz = 1.0\nmin_conformance = 1\n[channels.T-1.limits]\nwarning = [0.0, 10.0]\n'
    )
    # T-1 is out of its warning range at t=40..49: one alarm. One unreadable line is counted.
    rows = [f"{1000 + t},T-1,{12.0 if 40 <= t < 50 else 5.0}" for t in range(100)]
    (tmp_path / "records.csv").write_text("\n".join(rows[:60] + ["not a record"] + rows[60:]) + "\n")
    (tmp_path / "token").write_text("token-from-a-file-0123456789\n")
    port = _free_port()
    args = ["serve", "--config", str(tmp_path / "channels.toml"), "--source", f"file:{tmp_path / 'records.csv'}"]
    args += ["--speed", "max", "--store", str(tmp_path / "v.sqlite"), "--port", str(port)]
    proc, lines = _start([*args, "--token-file", str(tmp_path / "token")])
    try:
        assert lines[-1].endswith(f"API token from file {tmp_path / 'token'}")  # the token itself is not shown
        url = f"http://localhost:{port}"
        deadline = time.monotonic() + 30
        while not (health := _wait_healthy(url))["feeders"][0]["done"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health["data_time"] == 1099.0
        alarms = httpx.get(f"{url}/api/alarms", params={"state": "all"}).json()
        assert [(a["channel"], a["first_time"], a["rtn_time"]) for a in alarms] == [("T-1", 1040.0, 1050.0)]
        assert httpx.get(f"{url}/api/counters").json()["unparsable"] == 1  # a line naming no channel
        headers = {"Authorization": "Bearer token-from-a-file-0123456789"}
        ack = httpx.post(f"{url}/api/alarms/{alarms[0]['id']}:acknowledge", json={}, headers=headers)
        assert ack.status_code == 200 and ack.json()["state"] == "cleared"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
