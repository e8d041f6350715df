"""A real ``vigil packets monitor`` over a DEMOSAT packet file, stopped and restarted on one store.

SIGTERMed at several points (two inside the injected bus overheat, one inside the power FAULT),
then SIGKILLed, each time once the store's checkpoint has passed a chosen row (checkpoint
progress decides, never a sleep), and finally run to the end: the alarms, audit trail (wall-clock
times aside), incidents and final position equal those of one uninterrupted run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from restart_scenario import outcome
from test_kill_restart import checkpoint_items

from vigil.ingest.ccsds.demo.generator import DemoSpacecraft

DURATION_S = 1300.0  # the bus overheat (600..900 s) and the power FAULT (1200..1220 s)
ROWS_PER_S = 21  # DEMOSAT: 10 + 1 + 10 packets/s, each its own time
# Checkpoint rows after which each victim is stopped: before, twice inside the overheat, after
# it, inside the FAULT.
STOPS = [(300, signal.SIGTERM), (650, signal.SIGTERM), (820, signal.SIGTERM), (1100, signal.SIGTERM)]
STOPS += [(1210, signal.SIGKILL)]


def monitor_cmd(packets: Path, store: Path, speed: str | None) -> list[str]:
    spec = f"file+ccsds://{packets}?xtce=demo" + (f"&speed={speed}" if speed else "")
    return [sys.executable, "-m", "vigil.cli", "packets", "monitor", "--source", spec, "--store", str(store),
            "--report-every", "3600"]  # fmt: skip


@pytest.mark.timeout(180)
def test_packets_monitor_stopped_and_killed_gives_the_uninterrupted_run(tmp_path):
    packets = tmp_path / "demosat.bin"
    packets.write_bytes(DemoSpacecraft(seed=0).packets(DURATION_S))
    n_rows = int(DURATION_S * ROWS_PER_S)

    ref_store = tmp_path / "ref.sqlite"
    subprocess.run(monitor_cmd(packets, ref_store, None), check=True, capture_output=True, timeout=120)
    reference = outcome(ref_store)
    assert reference["position"]["items"] == n_rows
    assert [(a["channel"], a["severity"]) for a in reference["alarms"]] == [
        ("BUS_T", "distress"),
        ("PWR_MODE", "critical"),
    ]

    store = tmp_path / "victim.sqlite"
    progress = []
    for k, (stop_s, sig) in enumerate(STOPS):
        log = tmp_path / f"victim-{k}.log"
        # Paced at 200x (1300 s of packets in 6.5 s) so each stop lands mid-stream.
        proc = subprocess.Popen(monitor_cmd(packets, store, "200"), stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while checkpoint_items(store) < stop_s * ROWS_PER_S and proc.poll() is None:
                assert time.monotonic() < deadline, "the monitor made no progress"
                time.sleep(0.01)
            assert proc.poll() is None, f"the stream ended before the stop at {stop_s} s:\n{log.read_text()}"
            proc.send_signal(sig)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text()
        assert proc.returncode == (-sig if sig == signal.SIGKILL else 0), text
        if k:
            assert "resuming after t=" in text, text
        progress.append(outcome(store)["position"]["items"])  # the process is gone: read it in full
    assert progress == sorted(set(progress)) and progress[-1] < n_rows, progress

    out = subprocess.run(monitor_cmd(packets, store, None), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"passed over {progress[-1]} input items" in out.stdout
    assert outcome(store) == reference
