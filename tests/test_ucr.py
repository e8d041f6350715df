"""`vigil bench ucr`: the archive's file names, the top-1 rule, and files that cannot be used."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vigil.bench.ucr import parse_name, read_series, run_benchmark
from vigil.errors import DataError


def _write(path, values) -> None:
    path.write_text("\n".join(f"{v:.6e}" for v in values) + "\n")


def _cycles(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100.0 + 20.0 * np.sin(2 * np.pi * t / 50.0) + rng.normal(0.0, 0.5, n)


def test_names_are_parsed_and_bad_names_or_contents_are_data_errors(tmp_path):
    assert parse_name("001_UCR_Anomaly_a_b_1000_1500_1520.txt") == ("001", "a_b", 1000, 1500, 1520)
    with pytest.raises(DataError, match="file name"):
        parse_name("notes.txt")
    bad = tmp_path / "002_UCR_Anomaly_x_100_150_160.txt"
    bad.write_text("1.0 2.0 oops\n")
    with pytest.raises(DataError, match="numbers"):
        read_series(bad)
    short = tmp_path / "003_UCR_Anomaly_x_100_150_160.txt"
    _write(short, np.zeros(120))
    with pytest.raises(DataError, match="test part"):
        read_series(short)


def test_top1_within_100_points_counts_and_unreadable_files_are_reported(tmp_path):
    x = _cycles(4000, 0)
    x[3000:3020] += 60.0  # 1-based 3001..3020: a burst far above the range
    _write(tmp_path / "004_UCR_Anomaly_burst_2000_3001_3020.txt", x)
    # The same series with the label elsewhere: the top-1 position is then a miss.
    _write(tmp_path / "005_UCR_Anomaly_elsewhere_2000_2500_2510.txt", x)
    (tmp_path / "006_UCR_Anomaly_broken_2000_3001_3020.txt").write_bytes(b"\xff\xfe\x00garbage")
    out = tmp_path / "results.json"
    report = run_benchmark(tmp_path, out=out, per_series=tmp_path / "per.csv", progress=False)
    assert report["series"] == 2 and report["correct"] == 1 and report["top1_accuracy"] == 0.5
    assert report["alarm_at_anomaly"] == 1  # the burst raised an alarm; the wrong label has none near it
    assert list(report["errors"]) == ["006_UCR_Anomaly_broken_2000_3001_3020.txt"]
    assert json.loads(out.read_text())["correct"] == 1
    rows = (tmp_path / "per.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("file,")


def test_a_shape_score_is_located_at_the_middle_of_the_window_it_judged():
    from vigil.bench.ucr import judged_window
    from vigil.detect.forecast import ForecastDetector
    from vigil.model import TelemetryBlock

    t = np.arange(4000.0)
    x = np.sin(2 * np.pi * t / 50) + np.random.default_rng(0).normal(0, 0.01, t.size)
    det = ForecastDetector().fit(TelemetryBlock.from_arrays(t, x[:, None], ["x"]))
    window = judged_window(det, "forecast.shape")
    assert 50 <= window < 50 + det.shape_.points  # one period, rounded up to whole blocks
    assert judged_window(det, "forecast.error") == 1
