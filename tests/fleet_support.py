"""Shared by the fleet tests: a NATS cluster, workers as processes, the reference comparison."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def need_nats() -> None:
    """Skip (with the reason) when the NATS server or client is missing; CI installs both."""
    pytest.importorskip("nats", reason="nats-py is not installed: pip install 'vigil-telemetry[fleet]'")
    from vigil.fleet.cluster import nats_server_binary

    if nats_server_binary() is None:
        pytest.skip("nats-server is not installed: run scripts/install-test-deps.sh (apt-get install nats-server)")


def limits_detector(config):
    from vigil.detect.limits import LimitCheck
    from vigil.model import TelemetryBlock

    channels = list(config.channels)
    return LimitCheck(config.limits()).fit(
        TelemetryBlock.from_arrays([0.0], np.full((1, len(channels)), np.nan), channels)
    )


def identity_of(config) -> dict:
    from vigil.store.model_file import config_sha256

    return {"configuration": config_sha256(config), "model": "limits only"}


def run(coro):
    return asyncio.run(coro)


async def js_of(urls):
    from vigil.fleet.bus import connect

    nc = await connect(urls, "test", lambda m: None)  # reconnects: a busy or restarted server is no failure
    return nc, nc.jetstream(timeout=10)


async def publish_constellation(urls, constellation, replicas: int = 3) -> None:
    from vigil.fleet.bus import Layout
    from vigil.fleet.publish import Publisher

    nc, js = await js_of(urls)
    try:
        layout = await Layout.ensure(js, replicas)
        for sc in constellation.names:
            await layout.register(sc)
            pub = Publisher(js, sc)
            for t, ch, v in constellation.frames(sc):
                await pub.send(t, ch, v)
            counts = await pub.flush()
            # Each message stored once: at first, or sent again after a lost acknowledgement.
            assert counts["stored"] + counts["duplicate_after_resend"] == constellation.duration_s, counts
            assert counts["duplicate"] == 0, counts
    finally:
        await nc.close()


def start_worker(urls, config_path: Path, folder: Path, name: str, lease_s=2.0, batch=20, crash=None,
                 replicas=3, extra=()) -> subprocess.Popen:  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("VIGIL_FLEET_CRASH", None)
    if crash:
        env["VIGIL_FLEET_CRASH"] = crash
    cmd = [sys.executable, "-m", "vigil.cli", "fleet", "worker", "--nats", ",".join(urls), "--config",
           str(config_path), "--name", name, "--lease-s", str(lease_s), "--batch", str(batch), "--replicas",
           str(replicas), "--commit-log", str(folder / "commits.jsonl"), *extra]  # fmt: skip
    log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 - the process writes it
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=ROOT)
    finally:
        log.close()


async def reference_summaries(urls, names, config, detector, identity) -> dict:
    from vigil.fleet import protocol as p
    from vigil.fleet import reference as R

    nc, js = await js_of(urls)
    try:
        out = {}
        for sc in names:
            msgs = [(s, subj, d) for s, subj, d, _h in await R.read_subject(js, p.IN_STREAM, p.in_filter(sc))]
            out[sc] = R.summary(R.reference(msgs, sc, config, detector, identity))
        return out
    finally:
        await nc.close()


async def published_summaries(urls, names) -> dict:
    from vigil.fleet import reference as R

    nc, js = await js_of(urls)
    try:
        return {sc: R.summary(await R.published_items(js, sc)) for sc in names}
    finally:
        await nc.close()


def wait_for(condition, timeout_s: float, what: str, every_s: float = 1.0):
    """Poll ``condition()`` until it returns something true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as err:  # noqa: BLE001 - e.g. a NATS timeout while the cluster elects a leader
            last = err
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"{what}: not reached in {timeout_s} s (last: {last!r})")


def commits(folder: Path) -> list[dict]:
    path = folder / "commits.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_single_owner(rows: list[dict]) -> int:
    """Per spacecraft, checkpoints form one chain: ordered by revision, each commit starts after
    the previous one ended (no two owners ever applied the same messages), and a gap (a commit
    whose log line its killed writer never wrote) only ever comes with a change of owner.
    Returns how many changes of owner the chains show."""
    by_sc: dict[str, list[dict]] = {}
    for r in rows:
        by_sc.setdefault(r["sc"], []).append(r)
    handovers = 0
    for sc, rs in by_sc.items():
        rs.sort(key=lambda r: r["rev"])
        for a, b in zip(rs, rs[1:]):
            assert b["first"] >= a["last"] + 1, f"{sc}: {b['owner']} applied messages {a['owner']} had applied: {a} {b}"
            if b["first"] > a["last"] + 1:
                assert b["owner"] != a["owner"], f"{sc}: {a['owner']} skipped messages: {a} {b}"
            handovers += a["owner"] != b["owner"]
    return handovers
