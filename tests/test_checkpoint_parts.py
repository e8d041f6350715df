"""The checkpoint in parts: a store that keeps parts holds, after every checkpoint, exactly the state
the monitor had (bit for bit), while each checkpoint writes only what changed."""

from __future__ import annotations

import random

import numpy as np
import pytest
from restart_scenario import outcome, run_monitor, write_inputs

from vigil.monitor import checkpoint
from vigil.store.sqlite import SqliteStore
from vigil.store.stream_parts import StoredState


@pytest.fixture
def small_pieces(monkeypatch):
    """Every array apart, in pieces of 64 bytes, little rebasing: patches pile up and get rebased."""
    monkeypatch.setattr(checkpoint, "MIN_ARRAY_BYTES", 1)
    monkeypatch.setattr(checkpoint, "PIECE_BYTES", 64)
    monkeypatch.setattr(checkpoint, "REBASE_BUDGET", 64)


def _same(a, b) -> bool:
    """Equal trees, arrays equal bit for bit with the same dtype and shape."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b or (a != a and b != b)  # NaN


def _tree(rng: np.random.Generator) -> dict:
    return {
        "counts": {"received": np.zeros(50, dtype=np.int64), "stale": np.zeros(50, dtype=np.int64)},
        "window": rng.normal(size=(40, 7)),
        "flags": np.zeros(300, dtype=np.bool_),
        "level": np.zeros(30, dtype=np.int8),
        "pair": rng.normal(size=(9, 3)).astype(np.complex128),  # 16-byte items: compared byte by byte
        "recent": {1.0: np.ones(20, dtype=np.bool_)},
        "detector": {"0": {"run_": np.zeros(50, dtype=np.int64)}, "1": ({"x": np.arange(5.0)}, 3)},
        "names": [f"ch{j}" for j in range(40)],
        "time": 1.0,
        "keys": {"a/b": np.zeros(3), "a": {"b": np.ones(3)}, 1.0: np.full(3, 2.0), "1.0": np.full(3, 3.0)},
    }


def _step(tree: dict, rng: np.random.Generator, t: int) -> None:
    """Mutate the tree as a stream does: dense, sparse, NaN and -0.0, new and dropped entries, a shape change."""
    tree["counts"]["received"] += 1
    tree["window"][rng.integers(0, 40, 3), rng.integers(0, 7, 3)] = rng.normal(size=3)
    if t % 7 == 0:
        tree["window"][:] = rng.normal(size=tree["window"].shape)
    tree["flags"][rng.integers(0, 300)] ^= True
    tree["level"][t % 30] = (3 * t) % 5
    tree["pair"][t % 9, 1] = complex(t, -t)
    tree["detector"]["1"][0]["x"][t % 5] = [np.nan, -0.0, 0.0, np.inf, 1.5][t % 5]
    tree["recent"][float(t)] = rng.random(20) < 0.5
    if len(tree["recent"]) > 4:
        del tree["recent"][min(tree["recent"])]
    if t % 11 == 0:
        tree["detector"]["0"]["run_"] = np.zeros(50 + t % 3, dtype=np.int64)  # channels added
    if t % 13 == 0:
        tree["extra"] = np.full(t, 2.0)
    elif "extra" in tree and t % 5 == 0:
        del tree["extra"]
    tree["time"] = float(t)
    for k, v in enumerate((tree["keys"]["a/b"], tree["keys"]["a"]["b"], tree["keys"][1.0], tree["keys"]["1.0"])):
        v[t % 3] = t + k / 4  # keys whose paths would collide unescaped


def test_the_store_gives_back_the_state_bit_for_bit_after_every_checkpoint(tmp_path, small_pieces):
    rng = np.random.default_rng(5)
    tree = _tree(rng)
    patched = rebased = 0
    with SqliteStore(tmp_path / "s.sqlite") as store:
        writer = checkpoint.PartWriter(store, "m")
        for t in range(1, 120):
            _step(tree, rng, t)
            with store.transaction():
                delta = writer.delta(tree)
                store.save_checkpoint("m", {"time": t}, delta)
            assert delta.full == (t == 1)
            patched += len(delta.patch)
            rebased += sum(1 for name in delta.write if "@" in name and name.startswith("/window"))
            saved = store.load_stream_state("m")
            assert isinstance(saved, StoredState)
            assert _same(checkpoint.assemble(saved), tree), t
    assert patched > 100 and rebased > 10  # the test exercised patches and whole rewrites


def test_a_checkpoint_writes_only_the_elements_that_changed(tmp_path):
    state = {"big": np.zeros(200_000), "small": np.zeros(10), "names": ["a"] * 5}
    with SqliteStore(tmp_path / "s.sqlite") as store:
        writer = checkpoint.PartWriter(store, "m")
        with store.transaction():
            first = writer.delta(state)
        state["big"][123_456] = 1.0
        with store.transaction():
            second = writer.delta(state)
            store.save_checkpoint("m", {}, second)
    assert first.full and first.nbytes > 1_600_000
    assert not second.full and second.nbytes < 1_000  # one 12-byte patch and the pickled rest
    assert [(name, len(data)) for name, _, data in second.patch] == [(f"/big@{123_456 // 8192}", 12)]


def test_a_rolled_back_checkpoint_makes_the_next_one_write_everything(tmp_path, small_pieces):
    rng = np.random.default_rng(1)
    tree = _tree(rng)
    with SqliteStore(tmp_path / "s.sqlite") as store:
        writer = checkpoint.PartWriter(store, "m")
        with store.transaction():
            store.save_checkpoint("m", {}, writer.delta(tree))
        _step(tree, rng, 1)
        with pytest.raises(RuntimeError), store.transaction():
            store.save_checkpoint("m", {}, writer.delta(tree))
            raise RuntimeError("the alarm write failed")
        _step(tree, rng, 2)
        with store.transaction():
            delta = writer.delta(tree)
            store.save_checkpoint("m", {}, delta)
        assert delta.full
        assert _same(checkpoint.assemble(store.load_stream_state("m")), tree)


def test_restarts_from_pieces_with_patches_are_the_uninterrupted_run(tmp_path, small_pieces, monkeypatch):
    cfg, nominal, stream = write_inputs(tmp_path)

    def session_run(store, batch: int, batches: int | None) -> bool:
        def every_row(session) -> None:
            session.monitor.checkpoint_every_s = 0.0  # every row: many deltas per session

        return run_monitor(cfg, nominal, stream, store, batch, batches, setup=every_row)

    session_run(tmp_path / "ref.sqlite", 10_000, None)
    (tmp_path / "cut.sqlite.model").write_bytes((tmp_path / "ref.sqlite.model").read_bytes())
    restored_patches = []
    assemble = checkpoint.assemble
    monkeypatch.setattr(
        checkpoint, "assemble", lambda saved: restored_patches.append(len(saved.patches)) or assemble(saved)
    )
    rng = random.Random(7)
    while not session_run(tmp_path / "cut.sqlite", rng.randint(3, 40), rng.randint(5, 30)):
        pass
    assert len(restored_patches) >= 10 and max(restored_patches) > 0
    assert outcome(tmp_path / "cut.sqlite") == outcome(tmp_path / "ref.sqlite")
    with SqliteStore(tmp_path / "ref.sqlite") as ref, SqliteStore(tmp_path / "cut.sqlite") as cut:
        a, b = (assemble(s.load_stream_state("monitor")) for s in (ref, cut))
    assert _same(a["detector"], b["detector"]) and _same(a["manager"], b["manager"])


def _limit_monitor(store):
    from vigil.alarms import AlarmManager
    from vigil.config import MonitorConfig
    from vigil.detect.limits import LimitCheck
    from vigil.model import TelemetryBlock
    from vigil.monitor import Monitor

    config = MonitorConfig.from_dict(
        {"channels": {"T": {"subsystem": "s", "limits": {"warning": [0, 10]}, "min_violations": 3}}}
    )
    detector = LimitCheck(config.limits()).fit(TelemetryBlock.from_arrays([0.0], [[np.nan]], ["T"]))
    return Monitor(config, detector, AlarmManager(config, store=store), store=store, checkpoint_every_s=0.0)


def _feed(monitor, t: float, v: float) -> None:
    from vigil.model import TelemetryBlock

    monitor.feed_block(TelemetryBlock.from_arrays([t], [[v]], ["T"]))


def test_a_version_2_checkpoint_is_resumed_and_replaced_by_parts(tmp_path):
    with SqliteStore(tmp_path / "s.sqlite") as store:
        old = _limit_monitor(store)
        for t, v in enumerate([5.0, 50.0, 50.0]):  # two violations of three: the manager's run is state
            _feed(old, float(t), v)
        position = {**store.load_checkpoint("monitor"), "version": 2}
        store.save_checkpoint("monitor", position, checkpoint.capture(old))  # as version 2 wrote it
        assert isinstance(store.load_stream_state("monitor"), bytes)
        new = _limit_monitor(store)
        assert new.resume()["version"] == 2
        assert new.manager.stream_state()["viol_run"].tolist() == [2] and new.rows == 3
        _feed(new, 3.0, 50.0)  # the third violation raises
        assert [a.channel for a in store.load_alarms()] == ["T"]
        assert isinstance(store.load_stream_state("monitor"), StoredState)
        assert store.load_checkpoint("monitor")["version"] == 3


def test_a_version_1_checkpoint_is_refused_with_the_versions_this_vigil_reads(tmp_path):
    from vigil.monitor.engine import CheckpointMismatch

    with SqliteStore(tmp_path / "s.sqlite") as store:
        store.save_checkpoint("monitor", {"time": 1.0, "rows": 1, "items": 1})  # no version: 1
        with pytest.raises(CheckpointMismatch, match=r"is version 1; this Vigil reads \(2, 3\)"):
            _limit_monitor(store).resume()
