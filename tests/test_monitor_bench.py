"""The stream benchmark runs end to end on a small configuration and reports what it promises."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vigil.cli import app


def test_bench_stream_small(tmp_path):
    out = tmp_path / "stream.json"
    args = ["bench", "stream", "--channels", "50", "--rows", "200", "--block-rows", "50", "--ticks", "20"]
    result = CliRunner().invoke(app, [*args, "--repeats", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert r["channels"] == 50 and r["repeats"] == 2 and r["ticks"] == 40
    assert r["samples_scored_per_pass"] == 200 * 50 and len(r["samples_per_s_passes"]) == 2
    assert r["samples_per_s"] > 0 and 0 < r["tick_latency_p50_ms"] <= r["tick_latency_p99_ms"]
    assert r["detector"] == "ensemble" and r["alarms"] > 0  # the injected excursions raise alarms
    assert r["state_bytes_per_channel"] >= r["detector_bytes_per_channel"] > 0
    assert r["tick_latency_p99_ms_sqlite"] > 0 and r["records_fed_per_s"] > 0 and r["record_lines_parsed_per_s"] > 0
    assert set(r["ms_per_million_samples"]) == {"detector", "manager", "monitor"}
    assert "50 channels:" in result.output
