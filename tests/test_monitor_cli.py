"""`vigil monitor` as a real process on stdin, TCP and UDP sources."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CONFIG = """
[channels.T1]
subsystem = "thermal"
rate_hz = 1.0
min_conformance = 1
[channels.T1.limits]
warning = [-10.0, 30.0]
[channels.V1]
subsystem = "power"
stale_after_s = 2.0
[channels.V1.limits]
warning = [20.0, 32.0]
"""

# T1 too hot at t=2..3; V1 silent after t=1 (stale 2 s later); one junk line, one unknown channel.
RECORDS = "".join(f"{t},T1,{35 if t in (2, 3) else 20}\n" + (f"{t},V1,28\n" if t < 2 else "") for t in range(8))
RECORDS += "junk\n7,X,1\n"


def command(tmp: Path, source: str) -> list[str]:
    cfg = tmp / "cfg.toml"
    cfg.write_text(CONFIG)
    return [sys.executable, "-m", "vigil.cli", "monitor", "--config", str(cfg), "--source", source,
            "--store", str(tmp / "s.sqlite"), "--report-every", "0.5"]  # fmt: skip


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_output(text: str) -> None:
    assert "[alarm] t=2 raised #" in text and "T1 (thermal): warning by limits" in text
    assert "[alarm] t=4 rtn #" in text
    assert "V1 (power): warning: no sample since t=1" in text
    assert "unparsable=1 unknown=1" in text


def test_monitor_on_stdin(tmp_path):
    out = subprocess.run(command(tmp_path, "stdin"), input=RECORDS, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr  # finished, with reported data problems (a junk line, an unknown channel)
    check_output(out.stdout)
    assert "rows=8 scored=10 " in out.stdout
    assert "[channel] V1: stale=1\n" in out.stdout and "[unknown] X=1\n" in out.stdout
    assert "[error] stdin: line 11: expected 3 comma-separated fields, got 1\n" in out.stdout


class Running:
    """A monitor process whose output lines are collected by a thread."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.text = ""
        threading.Thread(target=lambda: [self.lines.put(x) for x in self.proc.stdout], daemon=True).start()

    def wait_for(self, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} in:\n{self.text}")
            with contextlib.suppress(queue.Empty):
                self.text += self.lines.get(timeout=0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        while not self.lines.empty():
            self.text += self.lines.get()


@pytest.mark.timeout(120)
def test_monitor_on_tcp(tmp_path):
    port = free_port(socket.SOCK_STREAM)
    mon = Running(command(tmp_path, f"tcp://127.0.0.1:{port}"))
    try:
        mon.wait_for("monitoring 2 channels from tcp://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(RECORDS.encode())
        mon.wait_for("no sample since t=1")
        mon.wait_for("unknown=1")
    finally:
        mon.stop()
    assert mon.proc.returncode == 3
    check_output(mon.text)


@pytest.mark.timeout(120)
def test_monitor_on_udp(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    mon = Running(command(tmp_path, f"udp://127.0.0.1:{port}"))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        mon.wait_for("monitoring 2 channels from udp://127.0.0.1:")
        sender.sendto(RECORDS.encode(), ("127.0.0.1", port))
        mon.wait_for("no sample since t=1")
        mon.wait_for("unknown=1")
    finally:
        sender.close()
        mon.stop()
    assert mon.proc.returncode == 3
    check_output(mon.text)


def test_bad_source_spec_is_a_clear_error(tmp_path):
    out = subprocess.run(command(tmp_path, "kafka://x:1"), capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 1  # fatal
    assert out.stderr.startswith("error: source: unknown source scheme 'kafka'; known: ['file', ")
    assert "Traceback" not in out.stderr


def test_paced_replay_raises_staleness_as_a_max_replay_does(tmp_path):
    """Staleness is decided on event time: a paced replay (which checks during the gap, on a clock
    capped at the next record's time) and a --speed max one (which finds it at the next row) store
    the same alarms, audit trail and incidents, however loaded the machine is."""
    from restart_scenario import outcome

    data = tmp_path / "gap.csv"
    data.write_text("0,T1,20\n0,V1,28\n1,T1,20\n1,V1,28\n20,T1,20\n20,V1,28\n")  # 19 s silent, 1.9 s at 10x
    stored, printed = {}, {}
    for speed in ("10", "max"):
        (tmp_path / speed).mkdir()
        out = subprocess.run([*command(tmp_path / speed, f"file:{data}"), "--speed", speed], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        stored[speed] = outcome(tmp_path / speed / "s.sqlite")
        printed[speed] = sorted(line for line in out.stdout.splitlines() if line.startswith(("[alarm]", "[incident]")))
    assert stored["10"] == stored["max"] and printed["10"] == printed["max"]
    # Stale at last sample + limit: V1 (2 s) at t=3, T1 (3 periods of 1 Hz) at t=4; both fresh at t=20.
    alarms = stored["max"]["alarms"]
    assert [(a["channel"], a["first_time"], a["rtn_time"]) for a in alarms] == [("V1", 3.0, 20.0), ("T1", 4.0, 20.0)]


# T1 at 1 Hz with one corrupt frame (both channels stamped 5,000 s ahead) at t=10, then T1 too hot
# at t=15..16: the corrupt time is quarantined, never adopted, and the later alarm is still raised.
POISONED = "".join(f"{t},T1,{35 if t in (15, 16) else 20}\n{t},V1,28\n" for t in range(10))
POISONED += "5010,T1,20\n5010,V1,28\n"
POISONED += "".join(f"{t},T1,{35 if t in (15, 16) else 20}\n{t},V1,28\n" for t in range(10, 25))


def check_poisoned(text: str) -> None:
    assert "[alarm] t=15 raised #" in text and "T1 (thermal): warning by limits" in text
    assert "[alarm] t=17 rtn #" in text
    assert "quarantined=2 " in text and "out_of_order=0 " in text
    assert "[channel] T1: quarantined=1" in text and "[channel] V1: quarantined=1" in text
    assert "time 5010.0 is 5001 s ahead of the stream clock" in text
    assert "[problem] 2 quarantined records" in text


def test_a_poisoned_time_in_a_file_is_quarantined_and_never_checkpointed(tmp_path):
    data = tmp_path / "poisoned.csv"
    data.write_text(POISONED)
    cmd = [*command(tmp_path, f"file:{data}"), "--speed", "max"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr  # finished, with a reported data problem
    check_poisoned(out.stdout)
    from vigil.store.sqlite import SqliteStore

    with SqliteStore(tmp_path / "s.sqlite") as store:
        assert store.load_checkpoint("monitor")["time"] == 24.0  # the bogus time was never adopted
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # resumed: nothing new, said so
    assert "resuming after t=24.0 (52 input items" in again.stdout
    assert "[problem] nothing scored: all 52 records were at or before the checkpoint" in again.stdout


@pytest.mark.timeout(120)
def test_a_poisoned_time_over_tcp_is_quarantined(tmp_path):
    port = free_port(socket.SOCK_STREAM)
    mon = Running(command(tmp_path, f"tcp://127.0.0.1:{port}"))
    try:
        mon.wait_for("monitoring 2 channels from tcp://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(POISONED.encode())
        mon.wait_for("[alarm] t=17 rtn #")
    finally:
        mon.stop()
    assert mon.proc.returncode == 3
    check_poisoned(mon.text)
