"""A record quarantined for jumping ahead, when the stream ends before anything confirms it."""

import subprocess
import sys

from vigil.config import MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.ingest.records import Record
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor


class _Quiet:
    def update(self, block, scores):
        return []

    def report_stale(self, channel, time, last_seen):
        return None

    def report_fresh(self, channel, time):
        return None


def test_end_of_stream_counts_the_held_record_as_quarantined():
    cfg = MonitorConfig.from_dict({"channels": {"a": {"subsystem": "s", "limits": {"warning": [0, 10]}}}})
    det = LimitCheck(cfg.limits()).fit(TelemetryBlock.from_arrays([0.0], [[0.0]], ("a",)))
    m = Monitor(cfg, det, _Quiet())
    m.feed_records([Record(0.0, "a", 1.0), Record(1.0, "a", 2.0), Record(99_999.0, "a", 3.0)])
    m.flush()
    assert m.counters()["quarantine_held"] == 1  # flush() alone keeps holding it
    m.end_of_stream()
    c = m.counters()
    assert c["quarantine_held"] == 0 and c["pending"] == 0 and m.rows == 2
    assert c["channels"]["a"]["quarantined"] == 1 and c["channels"]["a"]["malformed"] == 0
    assert "did not follow it; quarantined" in c["recent_errors"][-1]


def test_vigil_monitor_reports_it(tmp_path):
    (tmp_path / "c.toml").write_text('[channels.a]\nsubsystem = "s"\n[channels.a.limits]\nwarning = [0, 10]\n')
    (tmp_path / "p.csv").write_text("0,a,1\n1,a,2\n99999,a,3\n")
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "monitor", "--config", "c.toml", "--source", "file:p.csv",
         "--speed", "max", "--store", "v.sqlite"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 3, out.stderr  # a reported data problem
    assert "quarantined=1" in out.stdout and "[problem] 1 quarantined records" in out.stdout
