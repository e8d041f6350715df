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

from vigil.ingest.ccsds.demo.generator import DemoSpacecraft, split

DURATION_S = 1300.0  # the bus overheat (600..900 s) and the power FAULT (1200..1220 s)
ROWS_PER_S = 21  # DEMOSAT: 10 + 1 + 10 packets/s, each its own time
# Each victim is stopped once its checkpoint has passed a chosen second of the capture: before,
# twice inside the overheat, after it, inside the FAULT. Paced (times real time) so that the stop
# lands mid-stream; slower near the end, where less stream is left to outrun the poller.
STOPS = [(300, signal.SIGTERM, 200), (650, signal.SIGTERM, 200), (820, signal.SIGTERM, 200)]
STOPS += [(1100, signal.SIGTERM, 100), (1210, signal.SIGKILL, 40)]


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
    for k, (stop_s, sig, speed) in enumerate(STOPS):
        log = tmp_path / f"victim-{k}.log"
        proc = subprocess.Popen(monitor_cmd(packets, store, str(speed)), stdout=log.open("w"), stderr=subprocess.STDOUT)
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


def _run_live(session, src, send: bytes, rows: int) -> None:
    """Pump ``src`` in a thread, send ``send`` over TCP (then hang up: the stream releases its
    held rows), wait until the monitor has scored ``rows`` rows, stop it (it saves)."""
    import socket
    import threading

    from vigil.ingest.ccsds.pump import run_blocks

    stop = threading.Event()
    pump = threading.Thread(target=run_blocks, args=(session, src), kwargs={"echo": lambda line: None, "stop": stop})
    pump.start()
    try:
        with socket.create_connection(src.address) as tx:
            tx.sendall(send)
        deadline = time.monotonic() + 120  # a hang guard only
        while session.monitor.rows < rows:
            assert time.monotonic() < deadline and pump.is_alive(), f"{session.monitor.rows} of {rows} rows"
            time.sleep(0.01)
    finally:
        stop.set()
        pump.join(timeout=60)
    session.store.close()


@pytest.mark.timeout(180)
def test_live_packet_source_restart_counts_what_the_checkpoint_covers_as_replayed(tmp_path):
    """A TCP packet monitor stopped inside the bus overheat, restarted, and sent the whole pass
    again from its start: the rows the checkpoint covers are counted as replayed, and the alarms
    and audit trail are those of one uninterrupted run."""
    import numpy as np

    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.pump import packet_session, resume, run_blocks
    from vigil.ingest.ccsds.source import open_packet_source
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

    duration = 1000.0  # the bus overheat: 600..900 s
    data = DemoSpacecraft(seed=0).packets(duration)
    packets = tmp_path / "pass.bin"
    packets.write_bytes(data)
    src = open_packet_source(f"file+ccsds://{packets}?xtce=demo")
    alarms = read_xtce_alarms(src.stream.mission)
    ref = packet_session(src, alarms, tmp_path / "ref.sqlite")
    run_blocks(ref, src, echo=lambda line: None)
    ref.store.close()
    reference = outcome(tmp_path / "ref.sqlite")
    assert [a["channel"] for a in reference["alarms"]] == ["BUS_T"]

    full = PacketStream(src.stream.mission).feed(data, final=True)
    cut = int(np.searchsorted(full.time, full.time[0] + 700.0))  # inside the overheat, alarm raised
    first_part = b"".join(raw for raw, _ in split(data)[:cut])

    store = tmp_path / "live.sqlite"
    live = open_packet_source("tcp+ccsds://127.0.0.1:0?xtce=demo")
    _run_live(packet_session(live, alarms, store), live, first_part, cut)

    again = open_packet_source("tcp+ccsds://127.0.0.1:0?xtce=demo")
    session = packet_session(again, alarms, store)
    start = resume(session, again)
    assert start is not None and start["time"] == full.time[cut - 1] and again.skip_rows == 0
    _run_live(session, again, data, full.n_samples)

    covered = full.time <= start["time"]
    assert session.monitor.replayed == int(np.isfinite(full.values[covered]).sum())
    assert session.monitor.counts_["out_of_order"].sum() == 0  # replays, not late data
    assert outcome(store)["alarms"] == reference["alarms"]
    assert outcome(store)["audit"] == reference["audit"]


def _vigil(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "vigil.cli", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


@pytest.mark.timeout(240)
def test_vigil_monitor_on_a_packet_file_resumes_by_position(tmp_path):
    """``vigil monitor --source file+ccsds://...`` (the records path, with a learned model) stopped by
    SIGTERM and by SIGKILL, then run to the end: the uninterrupted run exactly, its final position
    included, with nothing counted as replayed: the restart passes over the samples and problem
    records its checkpoint covers, by position, as for a file of records. The capture has junk
    between two packets early on, so a problem record is part of the position."""
    packets = tmp_path / "demosat.bin"
    raw = [p for p, _ in split(DemoSpacecraft(seed=0).packets(DURATION_S))]
    packets.write_bytes(b"".join(raw[:2000]) + b"\x07" * 13 + b"".join(raw[2000:]))
    _vigil(
        "packets", "demo", "--out", "nominal.bin", "--duration", "1200", "--no-anomalies", "--seed", "1", cwd=tmp_path
    )
    _vigil("packets", "decode", "nominal.bin", "--xtce", "demo", "--out", "nominal.parquet", cwd=tmp_path)
    _vigil("packets", "config", "--xtce", "demo", "--out", "demosat.toml", cwd=tmp_path)

    def cmd(store: str, speed: str) -> list[str]:
        return [sys.executable, "-m", "vigil.cli", "monitor", "--config", "demosat.toml", "--fit", "nominal.parquet",
                "--source", f"file+ccsds://{packets}?xtce=demo", "--speed", speed, "--store", store,
                "--report-every", "3600"]  # fmt: skip

    ref = subprocess.run(cmd("ref.sqlite", "max"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ref.returncode == 3, ref.stdout + ref.stderr  # 3: the run found bad input (the junk), and says so
    reference = outcome(tmp_path / "ref.sqlite")
    assert reference["position"]["input"]["bad"] >= 1 and reference["alarms"]

    store = tmp_path / "victim.sqlite"
    for stop_s, sig in ((400, signal.SIGTERM), (800, signal.SIGKILL)):
        proc = subprocess.Popen(
            cmd(store.name, "200"), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60  # a hang guard only: progress decides
            while checkpoint_items(store) < stop_s * ROWS_PER_S * 3 and proc.poll() is None:
                assert time.monotonic() < deadline, "the monitor made no progress"
                time.sleep(0.01)
            assert proc.poll() is None, "the stream ended before the stop"
            proc.send_signal(sig)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    covered = outcome(store)["position"]["items"]
    assert 0 < covered < reference["position"]["items"]

    out = subprocess.run(cmd(store.name, "max"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == ref.returncode, out.stdout + out.stderr
    assert f"passed over {covered} input items" in out.stdout
    assert " replayed=0 " in out.stdout
    assert outcome(store) == reference
