"""CounterpartCheck: hand-made left/right pairs with known departures, streaming, missing data, config."""

import numpy as np
import pytest

from vigil.config import MonitorConfig
from vigil.detect import build_detector
from vigil.detect.counterpart import CounterpartCheck
from vigil.errors import ConfigError, DataError
from vigil.model import TelemetryBlock

CH = ["L", "R", "X"]


def _entries(n_entries: int, n: int = 600, seed: int = 0, gap: float = 10_000.0) -> TelemetryBlock:
    """Nominal entries separated by time gaps: L and R share a heating trend, X is unrelated."""
    rng = np.random.default_rng(seed)
    times, rows = [], []
    for k in range(n_entries):
        t = np.arange(n, dtype=float)
        trend = rng.uniform(0.05, 0.15) * t + 50 * np.sin(t / 150)
        left = trend + rng.uniform(-5, 5) + rng.normal(0, 0.3, n)
        right = trend + rng.normal(0, 0.3, n)
        times.append(t + k * gap)
        rows.append(np.c_[left, right, rng.normal(0, 1, n)])
    return TelemetryBlock.from_arrays(np.concatenate(times), np.concatenate(rows), CH)


def _fitted(**kw) -> CounterpartCheck:
    return CounterpartCheck({"L": "R"}, window=30, smooth=5, **kw).fit(_entries(21))


def _one_entry(seed: int) -> tuple[np.ndarray, np.ndarray]:
    b = _entries(1, seed=seed)
    return b.time + 1e6, b.values.copy()


def test_change_is_the_residual_change_over_the_window():
    # L - R = 0, 0, 0, 3, 3: with window 2 and no smoothing the change is r[i] - r[i-2].
    left = [0.0, 1.0, 2.0, 6.0, 7.0]
    right = [0.0, 1.0, 2.0, 3.0, 4.0]
    hist = TelemetryBlock.from_arrays(np.arange(5.0), np.c_[left, right], ["L", "R"])
    det = CounterpartCheck({"L": "R"}, window=2, smooth=1).fit(hist)
    det.reset()
    change = det._change(hist)[:, 0]
    assert np.isnan(change[:2]).all()
    assert change[2:].tolist() == [0.0, 3.0, 3.0]


def test_threshold_is_the_extreme_bound_of_the_segments_maxima():
    # Three entries whose L - R steps by 1, 2 and 3 once: their largest changes are 1, 2, 3, and
    # the one-sided normal prediction bound at risk 0.01 is 2 + t(0.99, 2) * 1 * sqrt(4/3) = 2 + 6.965 * 1.1547.
    blocks = []
    for k, step in enumerate((1.0, 2.0, 3.0)):
        r = np.where(np.arange(50) >= 25, step, 0.0)
        blocks.append((np.arange(50.0) + 1000 * k, np.c_[r, np.zeros(50)]))
    hist = TelemetryBlock.from_arrays(np.concatenate([t for t, _ in blocks]), np.concatenate([v for _, v in blocks]),
                                      ["L", "R"])  # fmt: skip
    det = CounterpartCheck({"L": "R"}, window=5, smooth=1, risk=0.01).fit(hist)
    assert det.threshold_[0] == pytest.approx(10.042, abs=2e-3)


def test_a_channel_departing_from_its_counterpart_is_flagged_near_the_departure():
    det = _fitted()
    t, x = _one_entry(seed=99)
    x[300:, 0] += 1.0 * (np.arange(300, 600) - 300)  # L rises 1 unit per sample faster than R from 300
    s = det.score(TelemetryBlock.from_arrays(t, x, CH))
    flagged = np.flatnonzero(s.level[:, 0] > 0)
    assert not s.level[:300].any()
    assert 300 < flagged[0] <= 330  # within one window of the departure
    assert not s.level[:, 1:].any()  # R and X have no counterpart: never flagged
    assert np.isnan(s.score[:, 1:]).all()
    assert s.level[:, 0].max() >= 4  # far outside the band: critical


def test_both_moving_together_is_quiet():
    det = _fitted()
    t, x = _one_entry(seed=98)
    common = np.where(np.arange(600) >= 200, 40.0 + 2.0 * (np.arange(600) - 200), 0.0)  # step and ramp on both
    x[:, :2] += common[:, None]
    s = det.score(TelemetryBlock.from_arrays(t, x, CH))
    assert not s.level.any()
    assert np.nanmax(s.score[:, 0]) < 1


def test_detections_explain_expected_value_and_band():
    det = _fitted()
    t, x = _one_entry(seed=97)
    x[300:, 0] += 50.0
    s = det.score(TelemetryBlock.from_arrays(t, x, CH))
    i = 320  # the step is inside the window: the expectation is the value before the step
    assert s.level[i, 0] > 0
    assert s.expected[i, 0] == pytest.approx(x[i, 0] - 50.0, abs=2.0)
    assert s.high[i, 0] - s.expected[i, 0] == pytest.approx(det.threshold_[0])
    assert s.expected[i, 0] - s.low[i, 0] == pytest.approx(det.threshold_[0])
    assert s.score[i, 0] == pytest.approx(abs(x[i, 0] - s.expected[i, 0]) / det.threshold_[0])


def test_chunked_scoring_equals_one_call_with_missing_samples():
    det = _fitted()
    t, x = _one_entry(seed=96)
    x[300:, 0] += 0.5 * (np.arange(300, 600) - 300)
    rng = np.random.default_rng(1)
    x[rng.random(x.shape) < 0.05] = np.nan
    block = TelemetryBlock.from_arrays(t, x, CH)
    whole = det.score(block)
    det.reset()
    edges = [0, 1, 7, 100, 101, 350, 600]
    parts = [det.score(block.slice(a, b)) for a, b in zip(edges[:-1], edges[1:])]
    for field in ("level", "score", "expected", "low", "high"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))


def test_missing_samples_score_nan_and_leave_the_state_unchanged():
    det = _fitted()
    t, x = _one_entry(seed=95)
    x[300:, 0] += 1.0 * (np.arange(300, 600) - 300)
    plain = det.score(TelemetryBlock.from_arrays(t, x, CH))
    det.reset()
    # The same samples with rows where L or R is missing put in between (times shifted to fit).
    holes = np.array([10, 200, 305, 306, 450])
    t2 = np.arange(600 + holes.size, dtype=float) + 1e6
    x2 = np.insert(x, holes, np.nan, axis=0)
    x2[holes + np.arange(holes.size), 2] = 0.0  # X still reports
    x2[holes[2] + 2, 1] = 5.0  # ... and in one hole only L is missing
    s = det.score(TelemetryBlock.from_arrays(t2, x2, CH))
    missing = holes + np.arange(holes.size)
    assert np.isnan(s.score[missing, 0]).all() and not s.level[missing, 0].any()
    keep = np.setdiff1d(np.arange(t2.size), missing)
    np.testing.assert_array_equal(s.score[keep, 0], plain.score[:, 0])
    np.testing.assert_array_equal(s.level[keep, 0], plain.level[:, 0])


def test_a_pair_without_nominal_change_is_refused_naming_the_channel():
    hist = _entries(5)
    flat = hist.values.copy()
    flat[:, 0] = flat[:, 1] + 3.0  # L always exactly R + 3: no scale for a change
    with pytest.raises(DataError, match=r"channel L: no nominal change .* counterpart 'R'"):
        CounterpartCheck({"L": "R"}).fit(TelemetryBlock.from_arrays(hist.time, flat, CH))


def test_a_time_gap_restarts_the_window_as_in_fit():
    det = _fitted()
    t, x = _one_entry(seed=93)
    x[300:, 0] += 50.0  # L jumps while the link is down for an hour: a new pass, not a change
    t[300:] += 3600.0
    s = det.score(TelemetryBlock.from_arrays(t, x, CH))
    assert np.isnan(s.score[300:334, 0]).all()  # window + smooth - 1 rows to refill
    assert not s.level.any()
    det.reset()
    halves = [det.score(TelemetryBlock.from_arrays(t[a:b], x[a:b], CH)) for a, b in ((0, 300), (300, 600))]
    np.testing.assert_array_equal(np.concatenate([h.score for h in halves]), s.score)


def test_single_history_segment_falls_back_to_pot():
    det = CounterpartCheck({"L": "R"}, window=30, smooth=5).fit(_entries(1, n=3000))
    assert np.isfinite(det.threshold_[0]) and det.threshold_[0] > 0


def test_min_violations_delays_the_raise():
    t, x = _one_entry(seed=94)
    x[300:, 0] += 100.0
    block = TelemetryBlock.from_arrays(t, x, CH)
    first = [int(np.argmax(_fitted(min_violations=m).score(block).level[:, 0] > 0)) for m in (1, 4)]
    assert first[1] - first[0] == 3


@pytest.mark.parametrize(
    "kwargs, key",
    [({"window": 0}, "window"), ({"smooth": 1.5}, "smooth"), ({"risk": 0.9}, "risk"),
     ({"gap_factor": 1}, "gap_factor"), ({"min_violations": 0}, "min_violations")],
)  # fmt: skip
def test_bad_hyper_parameters_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        CounterpartCheck({"L": "R"}, **kwargs)


def test_a_counterpart_missing_from_the_data_names_the_key():
    with pytest.raises(ConfigError, match=r"channels\.L\.counterpart"):
        CounterpartCheck({"L": "Q"}).fit(_entries(3))
    with pytest.raises(ConfigError, match=r"channels\.L\.counterpart"):
        CounterpartCheck({"L": "L"})


def _config(**channels) -> dict:
    return {"channels": {name: {"subsystem": "thermal", **opts} for name, opts in channels.items()}}


@pytest.mark.parametrize(
    "counterpart, message",
    [("Q", "'Q' is not a configured channel"), ("L", "own counterpart"), ("", "at least 1 character")],
)
def test_config_errors_name_the_key(counterpart, message):
    with pytest.raises(ConfigError, match=rf"cfg\.toml: channels\.L\.counterpart: .*{message}"):
        MonitorConfig.from_dict(_config(L={"counterpart": counterpart}, R={}), source="cfg.toml")


def test_build_detector_adds_the_counterpart_check_only_when_configured():
    with_pair = MonitorConfig.from_dict(_config(L={"counterpart": "R"}, R={}, X={}))
    det = build_detector(with_pair)
    assert [d.name for d in det.detectors] == ["forecast", "counterpart"]
    assert det.detectors[1].counterparts == {"L": "R"}
    assert build_detector(MonitorConfig.from_dict(_config(L={}, R={}))).name == "forecast"
    tuned = MonitorConfig.from_dict(
        {**_config(L={"counterpart": "R"}, R={}), "detector": {"counterpart": {"window": 9}}}
    )
    assert build_detector(tuned).detectors[1].window == 9


@pytest.mark.parametrize(
    "options, key", [({"window": -1}, "detector.counterpart.window"), ({"bogus": 1}, "detector.counterpart")]
)
def test_bad_counterpart_options_name_the_key(options, key):
    cfg = MonitorConfig.from_dict({**_config(L={"counterpart": "R"}, R={}), "detector": {"counterpart": options}})
    with pytest.raises(ConfigError, match=rf"{key}\b"):
        build_detector(cfg)
