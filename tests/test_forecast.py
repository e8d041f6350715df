"""ForecastDetector on synthetic channels with injected anomalies of known position and kind."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.detect.base import Scores
from vigil.detect.events import detections
from vigil.detect.forecast import ForecastDetector
from vigil.detect.threshold import UNSCALED_SCORE
from vigil.errors import ConfigError, DataError
from vigil.model import TelemetryBlock

N_TRAIN, N_TEST, START, END = 3000, 3000, 1500, 1799
KINDS = ("spike", "level_shift", "drift", "frozen", "noise", "nominal")


def _nominal(n: int, offset: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(offset, offset + n)
    return np.sin(2 * np.pi * t / 100.0) + rng.normal(0.0, 0.05, n)


def _dataset(seed: int = 0) -> tuple[TelemetryBlock, TelemetryBlock]:
    """One channel per kind; the anomaly occupies test rows START..END (a spike only START)."""
    rng = np.random.default_rng(seed)
    train = np.stack([_nominal(N_TRAIN, 0, rng) for _ in KINDS], axis=1)
    test = np.stack([_nominal(N_TEST, N_TRAIN, rng) for _ in KINDS], axis=1)
    seg = slice(START, END + 1)
    test[START, 0] += 1.5
    test[seg, 1] += 0.5
    test[seg, 2] += np.linspace(0.0, 1.0, END + 1 - START)
    test[seg, 3] = test[START, 3]
    test[seg, 4] += rng.normal(0.0, 0.5, END + 1 - START)
    t_train = np.arange(N_TRAIN, dtype=float)
    return (
        TelemetryBlock.from_arrays(t_train, train, KINDS),
        TelemetryBlock.from_arrays(t_train + N_TRAIN, test, KINDS),
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[ForecastDetector, TelemetryBlock]:
    train, test = _dataset()
    return ForecastDetector().fit(train), test


@pytest.mark.parametrize("j", range(5), ids=KINDS[:5])
def test_injected_anomaly_is_detected_near_its_position(fitted, j):
    det, test = fitted
    det.reset()
    flagged = np.flatnonzero(det.score(test).level[:, j] > 0)
    assert flagged.size, f"{KINDS[j]} not detected"
    # Raised inside the anomaly, nothing before it, cleared within clear_after (+ smoothing, + the
    # shape check's window, which still holds part of the anomaly) after it.
    window = det.shape_.block_[j] * det.shape_.points
    assert START <= flagged[0] <= END
    assert flagged[-1] <= END + det.clear_after + 3 * det.span + window


def test_nominal_channel_raises_nothing(fitted):
    det, test = fitted
    det.reset()
    scores = det.score(test)
    assert not scores.flagged[:, KINDS.index("nominal")].any()
    # Nor does any channel before its anomaly starts.
    assert not scores.flagged[:START].any()


def test_detection_says_how_far_from_expected(fitted):
    det, test = fitted
    det.reset()
    s = det.score(test)
    j = KINDS.index("level_shift")
    peak = START + int(np.nanargmax(s.score[START : END + 1, j]))
    # The prediction stays near the nominal sine while the value is shifted by +0.5.
    assert s.level[peak, j] >= 2
    assert test.values[peak, j] > s.high[peak, j]
    if s.detector[s.by[peak, j]] == "forecast.error":  # the band: expected +- threshold
        assert s.low[peak, j] < s.expected[peak, j] < s.high[peak, j]
    else:  # a range check crossed: the band is the range (or levels) seen in history around the sine's 0
        assert s.low[peak, j] < 0 < s.high[peak, j] < test.values[peak, j]


def _assert_same(a: Scores, b: Scores) -> None:
    for name in ("level", "score", "expected", "low", "high", "by"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chunked_scoring_equals_one_call(seed):
    train, test = _dataset(seed)
    rng = np.random.default_rng(seed)
    values = test.values.copy()
    values[rng.random(values.shape) < 0.02] = np.nan  # missing samples must not break streaming
    test = TelemetryBlock.from_arrays(test.time, values, test.channels)
    det = ForecastDetector().fit(train)
    whole = det.score(test)
    det.reset()
    cuts = np.sort(rng.choice(np.arange(1, N_TEST), size=12, replace=False))
    bounds = [0, *cuts.tolist(), N_TEST]
    parts = [det.score(test.slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    _assert_same(whole, Scores.concat(parts))
    assert whole.flagged.any()


def test_missing_samples_score_nan_and_leave_state_unchanged():
    train, test = _dataset()
    det = ForecastDetector().fit(train)
    values = test.values.copy()
    holes = np.arange(100, N_TEST, 37)
    values[holes, :] = np.nan
    values[holes[:5], 0] = np.inf  # infinities count as missing too
    with_gaps = det.score(TelemetryBlock.from_arrays(test.time, values, test.channels))
    assert (with_gaps.level[holes] == 0).all()
    assert np.isnan(with_gaps.score[holes]).all()
    # Dropping the missing rows gives the same scores on the remaining rows.
    keep = np.setdiff1d(np.arange(N_TEST), holes)
    det.reset()
    without = det.score(TelemetryBlock.from_arrays(test.time[keep], test.values[keep], test.channels))
    np.testing.assert_array_equal(with_gaps.level[keep], without.level)
    np.testing.assert_array_equal(with_gaps.score[keep], without.score)


def test_learns_autoregression_coefficients():
    # x_t = 0.8 x_{t-1} + e_t: the lag-1 coefficient is 0.8 and the others are 0.
    rng = np.random.default_rng(5)
    x = np.zeros(20000)
    noise = rng.normal(size=x.size)
    for i in range(1, x.size):
        x[i] = 0.8 * x[i - 1] + noise[i]
    det = ForecastDetector(n_lags=3, ridge=0.0, use_commands=False)
    det.fit(TelemetryBlock.from_arrays(np.arange(x.size), x[:, None], ["ar1"]))
    np.testing.assert_allclose(det.coef_lags_[0], [0.8, 0.0, 0.0], atol=0.05)


def test_commands_explain_commanded_steps():
    # The value steps by 1.0 when the commanded mode changes: expected only if commands are used.
    rng = np.random.default_rng(6)
    n = 4000
    mode = (np.arange(n) // 250) % 2 == 1
    values = np.where(mode, 1.0, 0.0) + rng.normal(0.0, 0.01, n)
    cmds = mode.astype(float)[:, None, None]
    t = np.arange(n, dtype=float)
    train = TelemetryBlock.from_arrays(t[:2000], values[:2000, None], ["v"], cmds[:2000])
    test = TelemetryBlock.from_arrays(t[2000:], values[2000:, None], ["v"], cmds[2000:])
    with_cmds = ForecastDetector().fit(train)
    without = ForecastDetector(use_commands=False).fit(train)
    assert with_cmds.n_commands_ == 1 and without.n_commands_ == 0
    steps = np.arange(250, 2000, 250)  # test rows where the mode changes
    err_with = np.abs(test.values[steps, 0] - with_cmds.score(test).expected[steps, 0])
    err_without = np.abs(test.values[steps, 0] - without.score(test).expected[steps, 0])
    assert err_with.max() < 0.1
    assert err_without.min() > 0.5


def test_novel_value_is_flagged_with_its_distance():
    rng = np.random.default_rng(7)
    train = TelemetryBlock.from_arrays(np.arange(1000.0), rng.uniform(0.0, 1.0, (1000, 1)), ["u"])
    # An absolute floor of 0.1 keeps the level check's margin (a fraction of its narrow range) out of the way.
    det = ForecastDetector(novelty_margin=0.1, span=5, min_threshold=0.1, shape=False).fit(train)
    test = TelemetryBlock.from_arrays(
        np.arange(1000.0, 1030.0), np.r_[rng.uniform(0, 1, 20), [1.5] * 10][:, None], ["u"]
    )
    s = det.score(test)
    # 1.5 lies (1.5 - seen maximum) / 0.1 margins above the history: about 5.
    assert s.level[20:, 0].min() >= 2
    assert s.detector[s.by[25, 0]] == "forecast.novelty"
    assert s.score[25, 0] == pytest.approx((1.5 - train.values.max()) / 0.1, rel=1e-6)


def test_channels_must_match_the_fit():
    train, test = _dataset()
    det = ForecastDetector().fit(train)
    with pytest.raises(DataError, match="do not match"):
        det.score(test.select(list(KINDS[:2])))


def test_commands_must_match_the_fit():
    n = 200
    t = np.arange(n, dtype=float)
    x = np.sin(t / 10.0)[:, None]
    train = TelemetryBlock.from_arrays(t, x, ["a"], np.zeros((n, 1, 2)))
    det = ForecastDetector().fit(train)
    with pytest.raises(DataError, match="2 command inputs"):
        det.score(TelemetryBlock.from_arrays(t, x, ["a"]))


def test_too_short_history_names_the_channel():
    t = np.arange(5.0)
    block = TelemetryBlock.from_arrays(t, np.c_[np.arange(5.0), [1.0, np.nan, np.nan, np.nan, np.nan]], ["ok", "gappy"])
    with pytest.raises(DataError, match="channel gappy"):
        ForecastDetector(n_lags=2).fit(block)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"n_lags": 0}, "n_lags"),
        ({"span": -1}, "span"),
        ({"ridge": -1.0}, "ridge"),
        ({"novelty_margin": 0.0}, "novelty_margin"),
        ({"level_margin": float("nan")}, "level_margin"),
        ({"learn_after": 0}, "learn_after"),
        ({"min_threshold": -0.1}, "min_threshold"),
        ({"clear_after": 0}, "clear_after"),
        ({"range_risk": 0.5}, "range_risk"),
        ({"min_segments": 2}, "min_segments"),
        ({"command_span": 0}, "command_span"),
    ],
)
def test_bad_hyper_parameters_name_the_key(kwargs, key):
    train, _ = _dataset()
    with pytest.raises(ConfigError, match=key):
        ForecastDetector(**kwargs).fit(train)


def test_score_before_fit_is_an_error():
    train, _ = _dataset()
    with pytest.raises(RuntimeError, match="not fitted"):
        ForecastDetector().score(train)


def _pulses(n: int, rng: np.random.Generator, held: tuple[int, ...] = ()) -> np.ndarray:
    """-1 with 5-sample pulses to +1 every 100 samples; at each start in ``held`` a pulse lasts 100."""
    x = np.full(n, -1.0)
    for start in range(50, n, 100):
        x[start : start + 5] = 1.0
    for start in held:
        x[start : start + 100] = 1.0
    return x + rng.normal(0.0, 0.01, n)


def test_level_held_longer_than_ever_is_flagged_once_learned_it_is_not():
    rng = np.random.default_rng(8)
    train = TelemetryBlock.from_arrays(np.arange(3000.0), _pulses(3000, rng)[:, None], ["p"])
    values = _pulses(4000, rng, held=(750, 3050))
    test = TelemetryBlock.from_arrays(np.arange(4000.0), values[:, None], ["p"])
    # Every value lies inside the history's range: only the level (EWMA of the value) is new.
    assert train.values.min() - 0.05 < values.min() and values.max() < train.values.max() + 0.05

    def flagged(**kwargs) -> np.ndarray:
        # The error and shape checks (which see the plateau too) are put out of the way.
        det = ForecastDetector(threshold_factor=1e6, shape=False, **kwargs).fit(train)
        return det.score(test).flagged[:, 0]

    first = flagged()
    assert first[750:850].any() and not first[:750].any()
    # 2300 samples later the same plateau is no longer new (learn_after=1000) ...
    assert not first[3000:].any()
    # ... unless the detector keeps only the history's range ...
    assert flagged(learn_after=None)[3050:3150].any()
    # ... and without the level check nothing sees it.
    assert not flagged(level_span=None).any()


def test_each_detection_says_when_how_far_and_which_check(fitted):
    det, test = fitted
    det.reset()
    scores = det.score(test)
    found = {d.channel: d for d in detections(test, scores)}
    assert set(found) == set(KINDS[:5])
    frozen = found["frozen"]
    # The sine stops at test row START: the shape check sees a cycle unlike any in history before
    # the stuck check decides (2 x span = 60 repeats).
    assert frozen.detector == "forecast.shape" and START < frozen.start_index <= START + 60
    assert frozen.severity in ("warning", "distress", "critical")
    drift = found["drift"]
    assert drift.detector in ("forecast.novelty", "forecast.level") and drift.value > drift.high
    assert "drift: " in drift.explain() and "forecast." in drift.explain()


# --- how far nominal data may move beyond the history ---------------------------------------------
def _passes(levels: np.ndarray, n: int = 300, gap: float = 1000.0) -> TelemetryBlock:
    """One pass of ``n`` samples per level (a sine of amplitude 1 about it), passes ``gap`` s apart."""
    t = np.arange(n, dtype=float)
    values = np.concatenate([lv + np.sin(2 * np.pi * t / 50.0) for lv in levels])
    time = np.concatenate([k * (n + gap) + t for k in range(len(levels))])
    return TelemetryBlock.from_arrays(time, values[:, None], ["pass"])


def test_a_new_pass_at_a_level_history_could_give_raises_nothing():
    # 20 passes at levels -1..1: a new pass's maximum may reach mean + t(1e-5, 19) * sd * sqrt(1 + 1/20)
    # of the passes' maxima (level + 1): 0 + 1 + 5.627 * 0.6227 * 1.0247 = 4.59, 2.59 above the highest.
    det = ForecastDetector().fit(_passes(np.linspace(-1.0, 1.0, 20)))
    assert det.margin_[0, 1] == pytest.approx(2.59, abs=0.02)
    assert det.margin_[0, 0] == pytest.approx(2.59, abs=0.02)
    new = _passes(np.array([2.0]))  # peaks at 3.0: a whole unit above anything seen
    assert not det.score(new).flagged.any()
    # The bare range (plus 5 % of it) would have called it novel.
    assert ForecastDetector(range_risk=None).fit(_passes(np.linspace(-1.0, 1.0, 20))).score(new).flagged.any()


def test_a_pass_far_outside_the_learned_tolerance_still_alarms():
    det = ForecastDetector().fit(_passes(np.linspace(-1.0, 1.0, 20)))
    s = det.score(_passes(np.array([5.0])))  # peaks at 6.0: (6.0 - 2.0) / 2.59 = 1.54 margins out
    found = detections(_passes(np.array([5.0])), s)
    assert found and found[0].detector in ("forecast.novelty", "forecast.level")
    assert np.nanmax(s.score) == pytest.approx(1.54, abs=0.03)


def _commanded(n: int, on: list[tuple[int, int]], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sine (period 200) + the response (first-order lag, rate 0.05) to a command adding 0.5 while on."""
    u = np.zeros(n)
    for a, b in on:
        u[a:b] = 1.0
    response = np.zeros(n)
    for i in range(1, n):  # generation, not a hot path
        response[i] = response[i - 1] + 0.05 * (0.5 * u[i] - response[i - 1])
    return np.sin(2 * np.pi * np.arange(n) / 200.0) + response + rng.normal(0.0, 0.01, n), u


def test_a_held_command_seen_in_history_explains_a_value_beyond_its_range():
    rng = np.random.default_rng(9)
    # In history the command is held only around the sine's troughs (150 + 200 k): the range tops at 1.0.
    x, u = _commanded(3000, [(120 + 200 * k, 200 + 200 * k) for k in range(0, 15, 3)], rng)
    train = TelemetryBlock.from_arrays(np.arange(3000.0), x[:, None], ["v"], u[:, None, None])
    # The shape check is off: a command held across a peak does change the cycle's shape.
    det = ForecastDetector(shape=False).fit(train)
    assert det.command_gain_[0, 0] == pytest.approx(0.5, abs=0.15)  # the steady-state offset
    # Now it is held across a peak (50 + 200 k): the value reaches about 1.45, 0.4 above the range.
    y, v = _commanded(1000, [(0, 400)], rng)
    test = TelemetryBlock.from_arrays(np.arange(3000.0, 4000.0), y[:, None], ["v"], v[:, None, None])
    assert y.max() > det.hi_[0] + det.margin_[0, 1]
    assert not det.score(test).flagged.any()
    # Without the command's offset the same values are novel; far beyond it they still are.
    assert ForecastDetector(command_span=None, shape=False).fit(train).score(test).flagged.any()
    far = y.copy()
    far[300:320] += 3.0
    det.reset()
    s = det.score(TelemetryBlock.from_arrays(test.time, far[:, None], ["v"], v[:, None, None]))
    assert s.flagged[300:320].all()


def test_command_gain_is_known_only_for_inputs_history_held():
    rng = np.random.default_rng(10)
    x, u = _commanded(3000, [(100 + 400 * k, 300 + 400 * k) for k in range(7)], rng)
    impulses = np.zeros(3000)
    impulses[::97] = 1.0
    cmds = np.stack([u, np.zeros(3000), impulses], axis=1)[:, None, :]
    det = ForecastDetector().fit(TelemetryBlock.from_arrays(np.arange(3000.0), x[:, None], ["v"], cmds))
    held, never, impulse = det.command_gain_[0]
    assert held == pytest.approx(0.5, abs=0.15)
    assert np.isnan(never)  # unknown: a value beyond the range either way is allowed while it is held
    assert impulse == 0.0  # never held: says nothing about a held mode


def test_learn_values_follows_a_slow_drift_but_not_what_it_alarmed_on():
    rng = np.random.default_rng(11)
    train = TelemetryBlock.from_arrays(np.arange(2000.0), rng.normal(0.0, 0.01, (2000, 1)), ["w"])
    # A drift of 0.05 per 1,000 samples: half the margin (min_threshold 0.1) per learn_after.
    drift = rng.normal(0.0, 0.01, 4000) + np.linspace(0.0, 0.2, 4000)
    step = rng.normal(0.0, 0.01, 4000)
    step[500:700] += 2.0  # a level history never showed, alarmed ...
    step[3000:3200] += 2.0  # ... so not learned: alarmed again 2,300 samples later
    test = TelemetryBlock.from_arrays(np.arange(2000.0, 6000.0), np.c_[drift, step], ["drift", "step"])
    train = TelemetryBlock.from_arrays(train.time, np.c_[train.values, train.values], ["drift", "step"])

    def flagged(**kwargs) -> np.ndarray:
        # Only the value check: the error (also relative to the stream) and level checks see them too.
        kwargs.update(min_threshold=0.1, shape=False)  # margins of 0.1 in channel units, as the drift is sized
        det = ForecastDetector(threshold_factor=1e6, relative=None, level_span=None, **kwargs).fit(train)
        return det.score(test).flagged

    learning, fixed = flagged(learn_values=True), flagged()
    assert fixed[:, 0].any() and not learning[:, 0].any()
    assert learning[500:700, 1].all() and learning[3000:3200, 1].all()


def test_chunked_scoring_with_commands_equals_one_call():
    rng = np.random.default_rng(12)
    x, u = _commanded(4000, [(100 + 500 * k, 350 + 500 * k) for k in range(8)], rng)
    x[rng.random(4000) < 0.02] = np.nan
    block = TelemetryBlock.from_arrays(np.arange(4000.0), x[:, None], ["v"], u[:, None, None])
    det = ForecastDetector().fit(block.slice(0, 2000))
    test = block.slice(2000, 4000)
    whole = det.score(test)
    det.reset()
    _assert_same(whole, Scores.concat([det.score(test.slice(a, a + 137)) for a in range(0, 2000, 137)]))


def test_the_threshold_moves_smoothly_so_scores_stay_on_one_scale():
    """A stream calmer than its history: the threshold falls towards its calm errors, smoothly (no
    step after a warm-up), so early and late scores are on one scale."""
    rng = np.random.default_rng(3)
    t = np.arange(6000)
    x = np.sin(2 * np.pi * t / 100.0) + rng.normal(0.0, 1.0, t.size) * np.where(t < 3000, 0.1, 0.02)
    block = TelemetryBlock.from_arrays(t.astype(float), x[:, None], ["calm"])
    det = ForecastDetector(shape=False).fit(block.slice(0, 3000))
    s = det.score(block.slice(3000, 6000))
    width = (s.high - s.expected)[:, 0]
    width = width[np.isfinite(width)]
    assert (width[1:] / width[:-1]).min() > 0.99  # never by more than 1 % from one sample to the next
    assert width[-1] < 0.5 * width[0]  # and it did fall


@pytest.mark.parametrize("constant", [0.0, 3.0, -1e6])
def test_a_history_that_never_moved_gives_a_finite_distress_score_to_any_move(constant):
    # No scale can be learned from a constant: any other value is abnormal, how far is unknown.
    train = TelemetryBlock.from_arrays(np.arange(500.0), np.full((500, 1), constant), ["flag"])
    det = ForecastDetector().fit(train)
    x = np.full(200, constant)
    x[100:110] = constant + 1e-3  # a tiny move
    x[150:160] = constant + 1e9  # a huge one
    s = det.score(TelemetryBlock.from_arrays(np.arange(500.0, 700.0), x[:, None], ["flag"]))
    assert np.isfinite(s.score[10:, 0]).all()  # (the first n_lags samples warm up: NaN)
    assert not s.level[:100, 0].any()
    back = np.r_[110:150, 160:200]  # back on the constant: nothing off it (watch while the alarm clears)
    assert s.score[back, 0].max() < 0.1 and s.level[back, 0].max() <= 1
    for a in (100, 150):
        assert s.score[a, 0] == pytest.approx(UNSCALED_SCORE)
        assert s.level[a, 0] == 3  # distress
        assert s.detector[s.by[a, 0]] == "forecast.novelty"
    assert not np.isinf(s.low).any() and not np.isinf(s.high).any()  # no band of infinite width to show


def _cycles(amplitudes: np.ndarray, period: int = 50) -> np.ndarray:
    t = np.arange(period)
    return np.concatenate([a * np.sin(2 * np.pi * (t + 0.5) / period) for a in amplitudes])


def test_a_periodic_channel_margin_follows_the_spread_of_its_cycles_peaks():
    # 120 cycles whose peaks vary (sd 0.2): a new cycle's peak may reach about mean + 4.5 sd, well past
    # the highest seen (about mean + 2.6 sd), further than 5 % of the range alone allows.
    rng = np.random.default_rng(3)
    train = _cycles(1.0 + 0.2 * rng.standard_normal(120))
    history = TelemetryBlock.from_arrays(np.arange(train.size, dtype=float), train[:, None], ["c"])
    det, plain = ForecastDetector().fit(history), ForecastDetector(range_risk=None).fit(history)
    assert det.shape_.period_[0] == 50
    test = _cycles(np.r_[np.ones(20), train.max() + 0.25, np.ones(20), 3.0])
    block = TelemetryBlock.from_arrays(np.arange(test.size, dtype=float) + train.size, test[:, None], ["c"])
    s = det.score(block)
    assert np.nanmax(s.score[1000:1050, 0]) < 1.0  # within the spread of the cycles' peaks
    assert np.nanmax(plain.score(block).score[1000:1050, 0]) >= 1.0  # the bare range calls it novel
    assert s.level[2050:2100, 0].any()  # a peak at 3.0 is novel
