"""POT thresholds, severity mapping and hysteresis, against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.detect.threshold import apply_hysteresis, extreme_bound, pot_threshold, severity_of
from vigil.errors import ConfigError


def _state(c: int = 1) -> list[np.ndarray]:
    return [np.zeros(c, np.int64), np.zeros(c, np.int64), np.zeros(c, np.bool_)]


def test_pot_threshold_of_exponential_errors_is_the_exponential_quantile():
    # Exp(1) has P(X > x) = exp(-x): the value exceeded with probability 1e-4 is ln(1e4) = 9.21;
    # its excesses over any level are again Exp(1), a GPD of shape 0 and scale 1.
    errors = np.random.default_rng(0).exponential(size=(200_000, 1))
    thr = pot_threshold(errors, init_quantile=0.98, risk=1e-4)
    assert thr[0] == pytest.approx(np.log(1e4), abs=0.3)


def test_pot_threshold_scales_with_the_errors_and_ignores_nan():
    errors = np.random.default_rng(1).exponential(size=(50_000, 1))
    both = np.hstack([errors, 3.0 * errors])
    both[::7, 1] = np.nan
    thr = pot_threshold(both, risk=1e-4)
    assert thr[1] == pytest.approx(3.0 * thr[0], rel=0.1)


def test_pot_threshold_heavy_tail_lies_beyond_the_light_one():
    rng = np.random.default_rng(2)
    light = rng.exponential(size=20_000)
    heavy = rng.pareto(3.0, size=20_000)  # GPD shape 1/3
    thr = pot_threshold(np.c_[light, heavy], risk=1e-5)
    # Pareto(3) (Lomax) exceeded with probability 1e-5 at 10**(5/3) - 1 = 45.4; exponential at 11.5.
    assert 25.0 < thr[1] < 80.0
    assert thr[0] == pytest.approx(np.log(1e5), abs=0.6)


def test_pot_threshold_falls_back_to_the_maximum_without_a_tail():
    constant = np.zeros((1000, 1))
    few = np.r_[np.zeros(995), [1.0, 2.0, 3.0, 4.0, 5.0]][:, None]
    empty = np.full((1000, 1), np.nan)
    thr = pot_threshold(np.hstack([constant, few, empty]))
    assert thr[0] == 0.0 and thr[1] == 5.0 and np.isnan(thr[2])


@pytest.mark.parametrize(("kwargs", "key"), [({"init_quantile": 1.0}, "init_quantile"), ({"risk": 0.5}, "risk")])
def test_pot_threshold_rejects_bad_parameters(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        pot_threshold(np.ones((10, 1)), **kwargs)


def test_extreme_bound_is_the_normal_prediction_bound():
    # Maxima 1, 2, 3: mean 2, sd 1; t(0.05, 2 dof) = 2.920; 2 + 2.920 * 1 * sqrt(1 + 1/3) = 5.372.
    # Column 2 (4, 4, 4, NaN): no spread, the bound is the maximum; column 3 has 2 segments: NaN.
    maxima = np.array([[1.0, 4.0, 0.0], [2.0, 4.0, 1.0], [3.0, 4.0, np.nan], [np.nan, np.nan, np.nan]])
    bound = extreme_bound(maxima, risk=0.05)
    assert bound[0] == pytest.approx(5.372, abs=1e-3)
    assert bound[1] == 4.0 and np.isnan(bound[2])


def test_extreme_bound_widens_as_the_risk_falls_and_segments_are_fewer():
    rng = np.random.default_rng(4)
    few, many = rng.normal(size=(5, 1)), rng.normal(size=(500, 1))
    # With 500 normal maxima the bound at 1e-3 is near the normal quantile 3.09; with 5, t(4) = 7.17.
    assert extreme_bound(many, 1e-3)[0] == pytest.approx(3.09, abs=0.25)
    assert extreme_bound(few, 1e-5)[0] > extreme_bound(few, 1e-3)[0] > extreme_bound(many, 1e-3)[0]


@pytest.mark.parametrize("risk", [0.0, 0.5, float("nan")])
def test_extreme_bound_rejects_bad_risk(risk):
    with pytest.raises(ConfigError, match="range_risk"):
        extreme_bound(np.ones((5, 1)), risk)


def test_severity_steps():
    assert severity_of(np.array([0.99, 1.0, 1.99, 2.0, 3.99, 4.0, 100.0])).tolist() == [0, 2, 2, 3, 3, 4, 4]


def test_hysteresis_raises_after_min_violations_and_clears_after_conformance():
    score = np.array([0.0, 1.5, 0.5, 1.2, 1.1, 3.0, 0.2, 0.3, 5.0, 0.1, 0.1, 0.1, 0.1])[:, None]
    level = apply_hysteresis(score, 2, 3, *_state())[:, 0]
    # One violation alone does nothing; the second in a row raises; a gap of 2 < 3 keeps the alarm
    # (at watch); three conforming samples clear it.
    assert level.tolist() == [0, 0, 0, 0, 2, 3, 1, 1, 4, 1, 1, 0, 0]


def test_hysteresis_missing_scores_neither_count_nor_break():
    score = np.array([1.5, np.nan, 1.5, np.nan, 0.1, 0.1])[:, None]
    level = apply_hysteresis(score, 2, 2, *_state())[:, 0]
    assert level.tolist() == [0, 0, 2, 0, 1, 0]


def test_hysteresis_chunks_equal_one_call():
    rng = np.random.default_rng(3)
    score = rng.exponential(0.6, size=(500, 4))
    score[rng.random(score.shape) < 0.05] = np.nan
    whole = apply_hysteresis(score, 3, 5, *_state(4))
    state = _state(4)
    parts = [apply_hysteresis(score[a:b], 3, 5, *state) for a, b in [(0, 7), (7, 8), (8, 250), (250, 500)]]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    assert (whole > 0).any()


@pytest.mark.parametrize(("args", "key"), [((0, 1), "min_violations"), ((1, 0), "clear_after")])
def test_hysteresis_rejects_bad_counts(args, key):
    with pytest.raises(ConfigError, match=key):
        apply_hysteresis(np.ones((2, 1)), *args, *_state())


def test_a_score_hovering_under_the_threshold_does_not_clear_inside_the_deadband():
    s = np.array([[1.5], [0.8], [0.8], [0.8], [0.3], [0.3]])

    def levels(clear_below: float) -> list[int]:
        state = [np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.bool_)]
        return apply_hysteresis(s, 1, 2, *state, clear_below=clear_below)[:, 0].tolist()

    assert levels(1.0) == [2, 1, 0, 0, 0, 0]  # two samples under 1: cleared
    assert levels(0.5) == [2, 1, 1, 1, 1, 0]  # only samples under 0.5 count towards clearing
