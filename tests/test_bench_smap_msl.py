"""The SMAP/MSL harness on a tiny layout with known answers, and a smoke run on real channels."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from vigil.bench.smap_msl import run_benchmark
from vigil.detect.base import Detector, Scores

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "smap_msl.tar.gz"


class AboveOne(Detector):
    """Flags values above 1.0: predictable on hand-made data."""

    name = "above-one"

    def fit(self, history):
        self.channels_ = history.channels
        return self

    def reset(self):
        pass

    def score(self, block):
        s = Scores.empty(block.n_samples, block.n_channels, self.name)
        s.level[:] = (block.values > 1.0).astype(np.int8) * 2
        return s


def make_layout(root: Path) -> None:
    (root / "train").mkdir()
    (root / "test").mkdir()
    test = {"A-1": [(10, 12), (50, 52)], "M-1": [(30, 35)], "T-10": [(70, 71)]}
    for chan, bumps in test.items():
        width = 55 if chan != "A-1" else 25
        arr = np.zeros((100, width))
        for a, b in bumps:
            arr[a : b + 1, 0] = 2.0
        np.save(root / "test" / f"{chan}.npy", arr)
        np.save(root / "train" / f"{chan}.npy", np.zeros((40, width)))
    (root / "labeled_anomalies.csv").write_text(
        "chan_id,spacecraft,anomaly_sequences,class,num_values\n"
        'A-1,SMAP,"[[11, 20], [80, 90]]","[point, point]",100\n'
        'M-1,MSL,"[[0, 5]]",[point],100\n'
    )


def test_harness_counts_by_hand(tmp_path):
    make_layout(tmp_path)
    out, per = tmp_path / "r.json", tmp_path / "pc.csv"
    result = run_benchmark(tmp_path, out=out, per_channel=per, make_detector=AboveOne, progress=False)
    r = json.loads(out.read_text())
    # prediction [10,12] hits [11,20] (delay 0); [50,52] is a FP; [80,90] missed.
    assert (r["SMAP"]["tp"], r["SMAP"]["fp"], r["SMAP"]["fn"]) == (1, 1, 1)
    # M-1: prediction [30,35] misses [0,5].
    assert (r["MSL"]["tp"], r["MSL"]["fp"], r["MSL"]["fn"]) == (0, 1, 1)
    assert (r["total"]["tp"], r["total"]["fp"], r["total"]["fn"]) == (1, 2, 2)
    # Strict protocol also scores T-10, whose one prediction is a false positive.
    assert (r["strict"]["tp"], r["strict"]["fp"], r["strict"]["fn"]) == (1, 3, 2)
    assert r["total"]["median_delay"] == 0.0
    assert r["channels"] == 3 and r["seconds"] >= 0 and r["peak_rss_mb"] > 0
    rows = per.read_text().splitlines()
    assert len(rows) == 4 and rows[1].startswith("A-1,SMAP,40,100,2,2,1,1,1")
    assert "TP" in result.summary()


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/smap_msl.tar.gz not beside the checkout")
def test_cli_smoke_on_two_real_channels(tmp_path):
    with tarfile.open(SHARED) as tar:
        wanted = [m for m in tar.getmembers() if m.name.endswith(("A-1.npy", "M-1.npy", "labeled_anomalies.csv"))]
        tar.extractall(tmp_path, members=wanted, filter="data")
    data = tmp_path / "smap_msl"
    out = tmp_path / "r.json"
    cmd = [
        sys.executable,
        "-m",
        "vigil.cli",
        "bench",
        "smap-msl",
        "--data",
        str(data),
        "--out",
        str(out),
        "--channels",
        "A-1,M-1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["channels"] == 2
    for key in ("SMAP", "MSL", "total"):
        assert {"tp", "fp", "fn", "precision", "recall", "f05", "esa_f05", "median_delay"} <= set(r[key])
    assert r["total"]["tp"] + r["total"]["fn"] == 2  # one labelled sequence each
