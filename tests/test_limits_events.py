"""Limit checks, the Scores container and detections, with hand-worked expectations."""

import numpy as np
import pytest

from vigil.detect.base import Scores
from vigil.detect.events import detections, runs
from vigil.detect.limits import ChannelLimits, LimitCheck
from vigil.errors import ConfigError, DataError
from vigil.model import TelemetryBlock


def block(rows, channels=("A", "B")):
    return TelemetryBlock.from_arrays(np.arange(len(rows), dtype=float), rows, channels)


LIMITS = {
    "A": ChannelLimits(watch=(1, 9), warning=(0, 10), critical=(-5, 15)),
    "B": ChannelLimits(critical=(None, 100)),  # high limit only
}


def test_nested_ranges_give_the_highest_violated_severity():
    det = LimitCheck(LIMITS).fit(block([[5, 0]]))
    s = det.score(block([[5, 0], [9.5, 0], [10.5, 0], [16, 101], [-6, -1e9]]))
    assert s.level[:, 0].tolist() == [0, 1, 2, 4, 4]
    assert s.level[:, 1].tolist() == [0, 0, 0, 4, 0]
    # score = |x - mid| / half-width of the innermost band (watch: [1, 9], mid 5, half 4)
    assert s.score[2, 0] == pytest.approx(5.5 / 4)
    assert s.low[0, 0] == 1 and s.high[0, 0] == 9
    assert np.isnan(s.low[0, 1]) and s.high[0, 1] == 100


def test_min_violations_debounce_and_missing_samples_do_not_break_a_run():
    det = LimitCheck(LIMITS, min_violations=3).fit(block([[5, 0]]))
    rows = [[11, 0], [11, 0], [np.nan, 0], [11, 0], [5, 0], [11, 0]]
    s = det.score(block(rows))
    assert s.level[:, 0].tolist() == [0, 0, 0, 2, 0, 0]


def test_chunked_scoring_equals_one_call():
    rng = np.random.default_rng(3)
    rows = rng.normal(8, 4, size=(400, 2))
    rows[rng.random(rows.shape) < 0.05] = np.nan
    det = LimitCheck(LIMITS, min_violations=2).fit(block([[5, 0]]))
    whole = det.score(block(rows))
    det.reset()
    b = block(rows)
    parts = [det.score(b.slice(a, z)) for a, z in [(0, 1), (1, 57), (57, 58), (58, 300), (300, 400)]]
    joined = Scores.concat(parts)
    np.testing.assert_array_equal(joined.level, whole.level)
    np.testing.assert_array_equal(joined.score, whole.score)


def test_bad_limits_and_channels():
    with pytest.raises(ConfigError, match=r"A\.warning: low 3.0 is above high 1.0"):
        LimitCheck({"A": ChannelLimits(warning=(3, 1))}).fit(block([[0, 0]]))
    with pytest.raises(ConfigError, match="min_violations"):
        LimitCheck({}, min_violations=0)
    det = LimitCheck(LIMITS).fit(block([[0, 0]]))
    with pytest.raises(DataError, match="do not match the fitted channels"):
        det.score(block([[0, 0]], channels=("B", "A")))


def test_runs_and_detections_explain_themselves():
    assert runs(np.array([1, 1, 0, 1], dtype=bool)).tolist() == [[0, 1], [3, 3]]
    det = LimitCheck(LIMITS).fit(block([[5, 0]]))
    b = block([[5, 0], [11, 0], [16, 0], [5, 0], [5, 200]])
    found = detections(b, det.score(b))
    assert [(d.channel, d.start_index, d.end_index, d.severity) for d in found] == [
        ("A", 1, 2, "critical"),
        ("B", 4, 4, "critical"),
    ]
    first = found[0]
    assert first.peak_time == 2.0 and first.value == 16.0 and first.detector == "limits"
    assert "A: critical by limits" in first.explain() and "value 16" in first.explain()


def test_combine_takes_the_highest_level_and_keeps_its_detector():
    a = Scores.empty(3, 1, "limits")
    b = Scores.empty(3, 1, "forecast")
    a.level[:, 0] = [0, 4, 2]
    b.level[:, 0] = [1, 2, 2]
    b.expected[:, 0] = [7, 8, 9]
    c = Scores.combine([a, b])
    assert c.level[:, 0].tolist() == [1, 4, 2]
    assert [c.detector[i] for i in c.by[:, 0]] == ["forecast", "limits", "limits"]
    assert c.expected[0, 0] == 7
