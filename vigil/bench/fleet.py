"""``vigil bench fleet``: the fleet on this machine: throughput with 1, 2 and 4 workers, failover time.

Each run starts a fresh NATS cluster on 127.0.0.1, publishes a generated constellation and starts
worker processes (``vigil fleet worker``). Figures:

* **channel-samples/s**: samples of the constellation divided by the time from the first to the
  last checkpoint any worker wrote (worker start-up excluded); scaling efficiency = rate with k
  workers / (k x rate with 1);
* **failover**: one worker is SIGKILLed mid-run; the time from the kill to the first checkpoint a
  new owner writes for one of its spacecraft (lease expiry + restore + replay of one batch).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vigil.fleet.cluster import LocalCluster
from vigil.fleet.constellation import Constellation


def _worker(urls, cfg: Path, folder: Path, name: str, lease_s: float, batch: int, replicas: int) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "vigil.cli", "fleet", "worker", "--nats", ",".join(urls), "--config", str(cfg),
           "--name", name, "--lease-s", str(lease_s), "--batch", str(batch), "--replicas", str(replicas),
           "--commit-log", str(folder / "commits.jsonl")]  # fmt: skip
    log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 - handed to the process
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    finally:
        log.close()


def _commits(folder: Path) -> list[dict]:
    path = folder / "commits.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


async def _publish(urls, c: Constellation, replicas: int) -> float:
    from vigil.fleet.bus import Layout, connect
    from vigil.fleet.publish import Publisher

    nc = await connect(urls, "bench", lambda m: None, retry=False)
    js = nc.jetstream(timeout=30)
    layout = await Layout.ensure(js, replicas)
    started = time.monotonic()
    for sc in c.names:
        await layout.register(sc)
        pub = Publisher(js, sc)
        for t, ch, v in c.frames(sc):
            await pub.send(t, ch, v)
        await pub.flush()
    elapsed = time.monotonic() - started
    await nc.close()
    return elapsed


def _wait(condition, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.5)
    raise TimeoutError(f"not reached in {timeout_s} s")


def throughput(c: Constellation, workers: int, servers: int, lease_s: float, batch: int, kill: bool = False) -> dict:
    """One run: publish, process with ``workers`` workers; optionally SIGKILL one mid-run."""
    replicas = 3 if servers >= 3 else 1
    with tempfile.TemporaryDirectory(prefix="vigil-bench-fleet-") as tmp:
        folder = Path(tmp)
        (folder / "config.toml").write_text(c.config_toml())
        cluster = LocalCluster(servers, folder=folder / "nats").start()
        procs = []
        try:
            cluster.wait_ready()
            publish_s = asyncio.run(_publish(cluster.urls, c, replicas))
            procs = [_worker(cluster.urls, folder / "config.toml", folder, f"w{i}", lease_s, batch, replicas)
                     for i in range(workers)]  # fmt: skip
            total = len(c.names) * c.duration_s
            last: dict[str, int] = {}
            out: dict = {"workers": workers, "publish_s": round(publish_s, 2)}
            if kill:
                _wait(lambda: len(_commits(folder)) > 0.3 * total / batch, 300)
                victim = procs[0]
                mine = {r["sc"] for r in _commits(folder) if r["owner"] == "w0"}
                killed_at = time.monotonic()
                victim.send_signal(signal.SIGKILL)
                taken = _wait(lambda: [r for r in _commits(folder) if r["sc"] in mine and r["owner"] != "w0"
                                       and r["mono"] > killed_at], 300)  # fmt: skip
                out["failover_s"] = round(min(r["mono"] for r in taken) - killed_at, 2)

            def done():  # spacecraft k's messages were published k-th: its last is (k + 1) x duration
                rows = _commits(folder)
                for r in rows:
                    last[r["sc"]] = max(last.get(r["sc"], 0), r["last"])
                ends = [(k + 1) * c.duration_s for k in range(len(c.names))]
                return all(last.get(sc, 0) >= end for sc, end in zip(c.names, ends)) and rows

            rows = _wait(done, 900)
            span = max(r["mono"] for r in rows) - min(r["mono"] for r in rows)
            samples = int(sum(np.isfinite(c.values(sc)).sum() for sc in c.names))
            out.update(samples=samples, seconds=round(span, 2), samples_per_s=round(samples / span))
            return out
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
            cluster.stop()


def run_benchmark(out: Path, spacecraft: int = 16, channels: int = 200, duration_s: int = 300,
                  workers: tuple[int, ...] = (1, 2, 4), servers: int = 3) -> dict:  # fmt: skip
    """The figures above, written to ``out`` (JSON) and returned."""
    c = Constellation(spacecraft, channels, duration_s, seed=1)
    runs = [throughput(c, k, servers, lease_s=5.0, batch=100) for k in workers]
    base = runs[0]["samples_per_s"]
    for r in runs:
        r["efficiency"] = round(r["samples_per_s"] / (r["workers"] * base), 2)
    failover = throughput(c, 2, servers, lease_s=5.0, batch=20, kill=True)
    result = {
        "machine": f"{os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d"),
        "constellation": f"{spacecraft} spacecraft x {channels} channels x {duration_s} s at 1 Hz",
        "servers": servers, "runs": runs, "failover": failover,
    }  # fmt: skip
    out.write_text(json.dumps(result, indent=1))
    return result
