"""The fleet's vertical slice: publish -> one worker -> alarm stream, checkpoint, lease takeover.

Real ``nats-server`` processes (a 3-node JetStream cluster on 127.0.0.1, free ports, a temporary
folder); skipped with the reason when the server or nats-py is missing (CI installs both).
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from tests import fleet_support as fs
from vigil.fleet.constellation import Constellation
from vigil.fleet.engine import SpacecraftEngine
from vigil.fleet.protocol import encode_tm, tm_subject
from vigil.fleet.reference import summary


def _messages(c: Constellation, sc: str) -> list[tuple[int, str, bytes]]:
    return [(i + 1, tm_subject(sc), encode_tm(t, ch, v)) for i, (t, ch, v) in enumerate(c.frames(sc))]


def test_restored_engine_continues_exactly_at_any_cut():
    """Checkpoint and restore after random batches (and publish in between): the same changes,
    numbered the same, as one uninterrupted engine. min_violations/min_conformance > 1 and a
    staleness alarm are in the data."""
    c = Constellation(n_spacecraft=1, n_channels=40, duration_s=200, seed=5, excursions_per_spacecraft=6)
    config = c.config()
    det, ident = fs.limits_detector(config), fs.identity_of(config)
    msgs = _messages(c, "SAT-00")
    ref = SpacecraftEngine("SAT-00", config, det, ident)
    ref.apply(msgs)
    kinds = {o["kind"] for o in ref.store.outbox}
    assert {"alarm", "audit", "incident"} <= kinds
    assert any(o["kind"] == "audit" and o["entry"]["action"] == "rtn" for o in ref.store.outbox)
    rng = np.random.default_rng(0)
    engine, out, i = SpacecraftEngine("SAT-00", config, det, ident), [], 0
    while i < len(msgs):
        k = int(rng.integers(1, 15))
        engine.apply(msgs[max(0, i - 3) : i + k])  # a redelivered message or three: passed over
        i += k
        blob = engine.snapshot()
        if rng.random() < 0.5:  # crash before publishing: the restored outbox still holds them
            out += engine.store.outbox
            engine.store.published(engine.store.next_n - 1)
            blob = engine.snapshot()
        engine = SpacecraftEngine.restore(blob, config, det, ident)
    out += [o for o in engine.store.outbox if o["n"] > (out[-1]["n"] if out else 0)]
    assert [o["n"] for o in out] == list(range(1, len(ref.store.outbox) + 1))
    assert summary(out) == summary(ref.store.outbox)


def test_checkpoint_of_another_configuration_is_refused():
    c = Constellation(n_spacecraft=1, n_channels=5, duration_s=60, seed=1)
    config = c.config()
    det = fs.limits_detector(config)
    engine = SpacecraftEngine("SAT-00", config, det, {"configuration": "a", "model": "m"})
    with pytest.raises(ValueError, match="another configuration"):
        SpacecraftEngine.restore(engine.snapshot(), config, det, {"configuration": "b", "model": "m"})


def test_bad_message_is_counted_per_spacecraft_not_fatal():
    c = Constellation(n_spacecraft=1, n_channels=5, duration_s=60, seed=1)
    config = c.config()
    engine = SpacecraftEngine("SAT-00", config, fs.limits_detector(config), {})
    msgs = _messages(c, "SAT-00")
    bad = [(len(msgs) + 1, tm_subject("SAT-00"), b"\xff not json"),
           (len(msgs) + 2, tm_subject("SAT-00"), json.dumps({"t": "x", "c": [], "v": []}).encode())]  # fmt: skip
    engine.apply(msgs[:10] + bad[:1] + msgs[10:] + bad[1:])
    assert engine.bad_messages == 2
    assert engine.monitor.counters()["unparsable"] == 2
    assert engine.applied_seq == len(msgs) + 2


@pytest.fixture
def cluster(tmp_path_factory):  # a fresh cluster per test: the same data would be de-duplicated
    fs.need_nats()
    from vigil.fleet.cluster import LocalCluster

    c = LocalCluster(3, folder=tmp_path_factory.mktemp("nats")).start()
    c.wait_ready()
    yield c
    c.stop()


@pytest.mark.parametrize(
    "crash, extra",
    [("after_checkpoint:6", ()), ("mid_batch:9", ("--checkpoint-every-s", "1000"))],
    ids=["between-checkpoint-and-publish", "mid-batch-long-after-its-checkpoint"],
)
def test_worker_killed_is_taken_over_exactly(cluster, tmp_path, crash, extra):
    """Worker A is SIGKILLed (by its own fault injection) after writing a checkpoint and before
    publishing that batch's alarm changes (or, checkpointing rarely, in the middle of a batch long
    after its last checkpoint, having published since); B takes the spacecraft over when A's lease expires,
    restores the checkpoint, publishes what A did not, and goes on. The alarm stream then holds
    exactly the reference's changes, numbered 1..N, and the checkpoints form one chain."""
    c = Constellation(n_spacecraft=4, n_channels=50, duration_s=150, seed=11)
    config = c.config()
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(c.config_toml())
    from vigil.config import load_config

    config = load_config(cfg_path)
    det, ident = fs.limits_detector(config), fs.identity_of(config)
    fs.run(fs.publish_constellation(cluster.urls, c))
    a = fs.start_worker(cluster.urls, cfg_path, tmp_path, "A", crash=crash, extra=extra)
    fs.wait_for(lambda: a.poll() is not None, 120, f"worker A reaching its crash point {crash} and killing itself")
    assert a.returncode == -signal.SIGKILL
    b = fs.start_worker(cluster.urls, cfg_path, tmp_path, "B")
    try:
        ref = fs.run(fs.reference_summaries(cluster.urls, c.names, config, det, ident))
        assert all(len(r["audit"]) > 0 for r in ref.values())
        got = fs.wait_for(
            lambda: (g := fs.run(fs.published_summaries(cluster.urls, c.names))) == ref and g,
            150, "B publishing exactly the reference's changes",
        )  # fmt: skip
        assert got == ref
    finally:
        b.send_signal(signal.SIGTERM)
        b.wait(timeout=60)
    rows = fs.commits(tmp_path)
    assert "B" in {r["owner"] for r in rows}
    assert fs.check_single_owner(rows) >= (1 if not extra else 0)
    assert b.returncode == 0, (tmp_path / "B.log").read_text()[-2000:]


def test_worker_that_cannot_reach_nats_says_so_and_retries(tmp_path):
    fs.need_nats()
    from vigil.fleet.cluster import free_ports

    c = Constellation(n_spacecraft=1, n_channels=3, duration_s=60)
    (tmp_path / "config.toml").write_text(c.config_toml())
    port = free_ports(1)[0]
    w = fs.start_worker([f"nats://127.0.0.1:{port}"], tmp_path / "config.toml", tmp_path, "lonely")
    try:
        log = tmp_path / "lonely.log"
        fs.wait_for(lambda: log.read_text().count("cannot reach NATS") >= 2, 60, "two reports of the retry")
        assert w.poll() is None  # still trying
        assert f"127.0.0.1:{port}" in log.read_text() and "retrying in" in log.read_text()
    finally:
        w.kill()
        w.wait()
    time.sleep(0)


def _post(url: str, headers: dict, data: bytes) -> tuple[int, dict | None]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - 127.0.0.1
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, None


def test_console_verbs_need_the_token_same_origin_and_a_small_body(cluster, tmp_path):
    """``vigil serve --nats``: a verb is 202 once stored (a retry with the same key is stored once);
    401 without the token, 403 from another origin, 413 for a large body, 400 for a foreign Host."""
    import os
    import subprocess
    import sys
    import urllib.request

    from vigil.fleet.cluster import free_ports

    c = Constellation(n_spacecraft=2, n_channels=5, duration_s=60, seed=1)
    fs.run(fs.publish_constellation(cluster.urls, c))
    port, token = free_ports(1)[0], "console-test-token-0123456789"
    (tmp_path / "token").write_text(token)
    cmd = [sys.executable, "-m", "vigil.cli", "serve", "--nats", ",".join(cluster.urls), "--port", str(port),
           "--token-file", str(tmp_path / "token")]  # fmt: skip
    with open(tmp_path / "console.log", "wb") as log:
        console = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(fs.ROOT)})
    base = f"http://127.0.0.1:{port}"
    try:

        def fleet():
            with urllib.request.urlopen(base + "/api/fleet", timeout=5) as r:  # noqa: S310
                return [row["spacecraft"] for row in json.loads(r.read())]

        assert fs.wait_for(fleet, 60, "the console listing the fleet") == ["SAT-00", "SAT-01"]
        url = base + "/api/fleet/SAT-00/alarms/1/acknowledge"
        body = json.dumps({"comment": "seen"}).encode()
        auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": "req-1"}
        assert _post(url, {}, body)[0] == 401
        assert _post(url, {**auth, "Origin": "http://evil.example"}, body)[0] == 403
        assert _post(url, auth, json.dumps({"comment": "x" * 20_000}).encode())[0] == 413
        assert _post(url, {**auth, "Host": "evil.example"}, body)[0] == 400
        assert _post(base + "/api/fleet/NOPE/alarms/1/acknowledge", auth, body)[0] == 404
        first, again = _post(url, auth, body), _post(url, {**auth, "Origin": base}, body)
        assert first[0] == again[0] == 202
        assert first[1]["duplicate"] is False and again[1]["duplicate"] is True
        assert first[1]["seq"] == again[1]["seq"]
    finally:
        console.terminate()
        console.wait(timeout=30)
