"""The shape check and the default detector on generated cycles with each kind of injected anomaly,
the detector contract for the shape check, and scale-free decisions (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.bench.synthetic import KINDS, SHAPE_KINDS, inject, inject_shape
from vigil.detect import build_detector
from vigil.detect.base import Scores
from vigil.detect.shape import ShapeCheck, dominant_period
from vigil.errors import ConfigError, DataError
from vigil.model import TelemetryBlock

PERIOD, N_TRAIN, N_TEST, START = 60, 3000, 3000, 1800
ALL_KINDS = KINDS + SHAPE_KINDS


def _series(
    kind: str | None, seed: int = 0, scale: float = 1.0, offset: float = 0.0
) -> tuple[TelemetryBlock, TelemetryBlock, int]:
    """A cycle (fundamental + harmonic) plus noise; ``kind`` injected at test row START; returns the end row."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_TRAIN + N_TEST)
    cycle = np.sin(2 * np.pi * t / PERIOD) + 0.4 * np.sin(4 * np.pi * t / PERIOD + 1.0)
    x = cycle + rng.normal(0.0, 0.03, t.size)
    end = N_TRAIN + START
    if kind in SHAPE_KINDS:
        end = inject_shape(x, cycle, kind, N_TRAIN + START, PERIOD)
    elif kind is not None:
        end = inject(x, kind, N_TRAIN + START, 150, rng)
    x = x * scale + offset
    block = TelemetryBlock.from_arrays(t.astype(float), x[:, None], ["c"])
    return block.slice(0, N_TRAIN), block.slice(N_TRAIN, N_TRAIN + N_TEST), end - N_TRAIN


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_of_anomaly_raises_one_alarm_at_it_and_none_before(kind):
    train, test, end = _series(kind)
    scores = build_detector(None).fit(train).score(test)
    flagged = np.flatnonzero(scores.flagged[:, 0])
    assert flagged.size, f"{kind} not detected"
    assert START <= flagged[0] <= end + PERIOD  # at the anomaly (the window may need a period to see it)
    # One alarm for the episode: the flagged samples form one run.
    assert flagged[-1] - flagged[0] + 1 == flagged.size


def test_nominal_cycles_raise_nothing():
    train, test, _ = _series(None)
    assert not build_detector(None).fit(train).score(test).flagged.any()


@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_shape_anomalies_inside_the_range_are_the_shape_checks(kind):
    train, test, end = _series(kind)
    assert test.values.max() <= train.values.max() + 0.1 and test.values.min() >= train.values.min() - 0.1
    scores = ShapeCheck().fit(train).score(test)
    peak = int(np.nanargmax(scores.score[:, 0]))
    assert START <= peak <= end + PERIOD  # the most abnormal window holds the anomaly
    assert np.nanmax(scores.score[:START, 0]) < 1.0


def test_period_is_found_and_structureless_channels_get_no_check():
    train, _, _ = _series(None)
    rng = np.random.default_rng(1)
    noise = TelemetryBlock.from_arrays(train.time, rng.normal(size=(N_TRAIN, 1)), ["n"])
    assert dominant_period(train.values[:, 0], 750) == PERIOD
    check = ShapeCheck().fit(noise)
    assert check.block_[0] == 0 and np.isnan(check.score(noise).score).all()


def test_chunks_equal_one_call_and_missing_samples_leave_the_state_unchanged():
    train, test, _ = _series("distorted_cycle")
    values = test.values.copy()
    values[100:140, 0] = np.nan
    values[500, 0] = np.inf
    test = TelemetryBlock.from_arrays(test.time, values, ["c"])
    check = ShapeCheck().fit(train)
    whole = check.score(test)
    assert np.isnan(whole.score[100:140, 0]).all() and whole.level[100:140, 0].max() == 0
    check.reset()
    parts = Scores.concat([check.score(test.slice(a, b)) for a, b in [(0, 7), (7, 8), (8, 1999), (1999, N_TEST)]])
    np.testing.assert_array_equal(whole.level, parts.level)
    np.testing.assert_array_equal(whole.score, parts.score)
    # Dropping the missing rows gives the same scores on the rows that remain.
    keep = np.isfinite(values[:, 0])
    check.reset()
    dense = check.score(TelemetryBlock.from_arrays(test.time[keep], values[keep], ["c"]))
    np.testing.assert_array_equal(dense.score[:, 0], whole.score[keep, 0])


def test_errors_name_what_is_wrong():
    train, test, _ = _series(None)
    with pytest.raises(ConfigError, match="points"):
        ShapeCheck(points=0).fit(train)
    with pytest.raises(ConfigError, match="min_acf"):
        ShapeCheck(min_acf=1.5).fit(train)
    with pytest.raises(DataError, match="do not match"):
        ShapeCheck().fit(train).score(TelemetryBlock.from_arrays(test.time, test.values, ["other"]))


def test_state_per_channel_is_bounded_whatever_the_period():
    rng = np.random.default_rng(2)
    t = np.arange(20000.0)
    x = np.c_[np.sin(2 * np.pi * t / 40.0), np.sin(2 * np.pi * t / 1900.0)] + rng.normal(0, 0.02, (t.size, 2))
    det = build_detector(None).fit(TelemetryBlock.from_arrays(t, x, ["short", "long"]))
    assert abs(det.shape_.period_[0] - 40) <= 1 and abs(det.shape_.period_[1] - 1900) <= 1
    assert det.state_nbytes() / 2 <= 16 * 1024


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(ALL_KINDS),
    seed=st.integers(0, 1000),
    scale=st.sampled_from([1.0, 1000.0, 1e-3]),
    offset=st.sampled_from([0.0, 1e6, -250.0]),
)
def test_units_do_not_change_what_is_flagged(kind, seed, scale, offset):
    """Multiplying a channel by a constant or adding one changes no decision (scale-free defaults)."""
    base = build_detector(None)
    train, test, _ = _series(kind, seed)
    ref = base.fit(train).score(test)
    train2, test2, _ = _series(kind, seed, scale=scale, offset=offset)
    got = build_detector(None).fit(train2).score(test2)
    # Scores are equal up to rounding; a level may differ only where a score sits on a step boundary.
    np.testing.assert_allclose(got.score, ref.score, rtol=1e-5, atol=1e-6, equal_nan=True)
    near = np.zeros(ref.score.shape, dtype=bool)
    for step in (1.0, 2.0, 4.0):
        near |= np.abs(ref.score - step) < 1e-4
    assert (got.level == ref.level)[~near].all()
