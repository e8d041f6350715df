"""The vectorised manager against a plain per-sample reference of the lifecycle, on random streams
cut into random blocks (no operator verbs: raise, escalate, return to normal, reactivate)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.alarms import AlarmManager
from vigil.config import MonitorConfig
from vigil.detect.base import Scores
from vigil.model import TelemetryBlock


def reference(levels: np.ndarray, valid: np.ndarray, min_v: list[int], min_c: list[int]) -> list[tuple]:
    """(time index, channel, kind) of every transition, written from the rules, sample by sample."""
    out = []
    for j in range(levels.shape[1]):
        viol = conf = peak = 0
        violating = has_alarm = False
        for i in range(levels.shape[0]):
            if not valid[i, j]:
                continue  # missing: neither counts nor breaks a run
            lv = int(levels[i, j])
            if lv:
                viol, conf = viol + 1, 0
                if violating and lv > peak:
                    peak = lv
                    out.append((i, j, "escalated"))
                elif not violating and viol >= min_v[j]:
                    out.append((i, j, "reactivated" if has_alarm else "raised"))
                    peak = max(peak, lv) if has_alarm else lv
                    violating = has_alarm = True
            else:
                conf, viol = conf + 1, 0
                if violating and conf >= min_c[j]:
                    violating = False
                    out.append((i, j, "rtn"))
    return sorted(out)


@st.composite
def streams(draw):
    n = draw(st.integers(1, 50))
    c = draw(st.integers(1, 4))
    levels = np.array(draw(st.lists(st.sampled_from([0, 0, 0, 1, 2, 4, 5]), min_size=n * c, max_size=n * c)))
    missing = np.array(draw(st.lists(st.booleans(), min_size=n * c, max_size=n * c)))
    min_v = draw(st.lists(st.integers(1, 3), min_size=c, max_size=c))
    min_c = draw(st.lists(st.integers(1, 3), min_size=c, max_size=c))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=5))) - {n})
    sparse = draw(st.booleans())  # with few missing samples, or many
    keep = ~missing | (not sparse)
    return levels.reshape(n, c).astype(np.int8), keep.reshape(n, c), min_v, min_c, [0, *cuts, n]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_manager_matches_the_reference(stream):
    levels, valid, min_v, min_c, cuts = stream
    n, c = levels.shape
    names = [f"c{j}" for j in range(c)]
    cfg = MonitorConfig.from_dict(
        {
            "channels": {
                name: {"subsystem": "s", "min_violations": v, "min_conformance": k}
                for name, v, k in zip(names, min_v, min_c)
            }
        }
    )
    m = AlarmManager(cfg)
    values = np.where(valid, 1.0, np.nan)
    got = []
    for lo, hi in zip(cuts, cuts[1:]):
        s = Scores.empty(hi - lo, c, "limits")
        s.level[:] = np.where(valid[lo:hi], levels[lo:hi], 0)  # detectors give missing samples level 0
        events = m.update(TelemetryBlock.from_arrays(np.arange(lo, hi, dtype=float), values[lo:hi], names), s)
        got += [(int(e.time), names.index(e.payload["channel"]), e.kind) for e in events if e.kind != "incident"]
    assert got == reference(levels, valid, min_v, min_c)
