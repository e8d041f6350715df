"""The stream-state contract: a checkpoint of ``stream_state()`` restored into a *fresh copy* of the
fitted model continues the stream exactly as the uninterrupted run (what a restart relies on)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from vigil.config import MonitorConfig
from vigil.detect import build_detector
from vigil.detect.base import Scores
from vigil.errors import DataError
from vigil.model import TelemetryBlock


def _data() -> tuple[TelemetryBlock, TelemetryBlock]:
    rng = np.random.default_rng(7)
    t = np.arange(6000.0)
    base = np.sin(2 * np.pi * t / 97.0)
    x = np.c_[base + rng.normal(0, 0.05, t.size), -base + rng.normal(0, 0.05, t.size), 20 + rng.normal(0, 0.1, t.size)]
    x[4200:4260, 0] += 0.8  # a departure from the counterpart and the forecast
    x[4700:4900, 2] = x[4699, 2]  # frozen
    x[5100, 2] = 40.0  # past the limit
    x[5300:5310, 1] = np.nan  # missing samples
    block = TelemetryBlock.from_arrays(t, x, ["L", "R", "T"])
    return block.slice(0, 3000), block.slice(3000, 6000)


def _config() -> MonitorConfig:
    return MonitorConfig.from_dict(
        {
            "channels": {
                "L": {"subsystem": "wing", "counterpart": "R"},
                "R": {"subsystem": "wing"},
                "T": {
                    "subsystem": "thermal",
                    "limits": {"warning": [15, 25], "critical": [10, 30]},
                    "min_violations": 2,
                },
            }
        }
    )


def _assert_same(a: Scores, b: Scores) -> None:
    np.testing.assert_array_equal(a.level, b.level)
    np.testing.assert_array_equal(a.by, b.by)
    for f in ("score", "expected", "low", "high"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), equal_nan=True)


@pytest.mark.parametrize("cuts", [[1], [700], [1234, 1235, 2999]])
def test_restored_state_continues_the_stream_exactly(cuts):
    train, test = _data()
    fitted = build_detector(_config()).fit(train)
    forecast = next(d for d in fitted.detectors if d.name == "forecast")
    assert forecast.shape_.block_[:2].all()  # the shape check runs on the cycling channels, so its state is carried too
    model = pickle.dumps(fitted)  # what a restart loads: the fitted model, stream at its start
    whole = pickle.loads(model).score(test)
    assert whole.flagged.any()  # the stream has something to continue through

    parts, det, edges = [], pickle.loads(model), [0, *cuts, test.n_samples]
    for a, b in zip(edges[:-1], edges[1:]):
        parts.append(det.score(test.slice(a, b)))
        state = pickle.loads(pickle.dumps(det.stream_state()))  # as written to and read from a store
        det = pickle.loads(model)  # a new process: the saved model, then the checkpoint
        det.set_stream_state(state)
    _assert_same(Scores.concat(parts), whole)


def test_state_for_another_model_is_refused():
    train, _ = _data()
    det = build_detector(_config()).fit(train)
    state = det.stream_state()
    other = build_detector(_config()).fit(train.select(["L", "R", "T"]))
    other.set_stream_state(state)  # same shapes: accepted
    small = build_detector(None).fit(train.select(["L"]))
    with pytest.raises(DataError):
        small.set_stream_state(state["1"])
