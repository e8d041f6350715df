"""`vigil bench records` runs real monitor processes and checks that every record was scored."""

from __future__ import annotations

import json

from vigil.bench.records import make_records, run_benchmark, summary


def test_generated_records_and_config(tmp_path):
    csv, config, n = make_records(tmp_path, channels=3, seconds=4)
    lines = csv.read_text().splitlines()
    assert lines[0] == "time,channel,value" and len(lines) == 1 + n == 13
    assert lines[1].split(",")[1] == "CH00000" and "[channels.CH00002.limits]" in config.read_text()


def test_small_run_scores_every_record(tmp_path):
    out = tmp_path / "r.json"
    result = run_benchmark(out, channels=5, seconds=60, paced_channels=5, paced_seconds=40, speeds=(100.0,))
    assert json.loads(out.read_text()) == result
    m, (p,) = result["max"], result["paced"]
    assert (m["scored"], m["exit_status"]) == (300, 0) and (p["scored"], p["exit_status"]) == (200, 0)
    assert p["ideal_s"] == 0.39 and p["stream_s"] >= 0.39  # a paced replay is never early
    assert "--speed 100: 200 records" in summary(result)
