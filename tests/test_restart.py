"""A stop and restart is the uninterrupted run: same alarms, audit trail, incidents and position.

The stream (tests/restart_scenario.py) has a learned detector (``--fit``), ``min_violations`` and
``min_conformance`` > 1, a staleness episode and a channel without history. Each restart builds a
new session the way ``vigil monitor`` does (configuration, saved model, store, resume) and stops
after one batch, as SIGTERM does.
"""

from __future__ import annotations

import pytest
from restart_scenario import outcome, run_monitor, write_inputs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restart")
    cfg, nominal, stream = write_inputs(tmp)
    run_monitor(cfg, nominal, stream, tmp / "ref.sqlite", batch=10_000, batches=None)
    ref = outcome(tmp / "ref.sqlite")
    # The scenario exercises what a restart must carry: learned-detector, limit (after 3 in a row),
    # staleness and limits-only alarms, returns to normal after 2 nominal samples.
    kinds = {(a["channel"], a["detector"].split(".")[0]) for a in ref["alarms"]}
    assert {("V", "staleness"), ("U", "limits"), ("S1", "forecast")} <= kinds
    assert any(e["action"] == "rtn" for e in ref["audit"])
    return tmp, cfg, nominal, stream, ref


def test_a_restart_after_every_row_is_the_uninterrupted_run(reference):
    tmp, cfg, nominal, stream, ref = reference
    store = tmp / "every-row.sqlite"
    (tmp / "every-row.sqlite.model").write_bytes((tmp / "ref.sqlite.model").read_bytes())  # no refit each time
    restarts = 0
    while not run_monitor(cfg, nominal, stream, store, batch=5, batches=1):  # 5 records: about one row
        restarts += 1
    assert restarts >= 590
    assert outcome(store) == ref


def test_restarts_at_random_batch_sizes_are_the_uninterrupted_run(reference):
    import random

    tmp, cfg, nominal, stream, ref = reference
    store = tmp / "random.sqlite"
    rng = random.Random(3)
    while not run_monitor(cfg, nominal, stream, store, batch=rng.randint(1, 97), batches=rng.randint(1, 4)):
        pass
    assert outcome(store) == ref
