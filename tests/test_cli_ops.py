"""The operator's command line: --version, config init, alarm verbs (store and server), export."""

from __future__ import annotations

import csv
import io
import json
import threading

import numpy as np
import pytest
from server_support import served
from typer.testing import CliRunner

from vigil.alarms import AlarmManager
from vigil.cli import app
from vigil.config import MonitorConfig, load_config
from vigil.detect.limits import LimitCheck
from vigil.model import TelemetryBlock
from vigil.store.sqlite import SqliteStore

run = CliRunner().invoke
TOKEN = "cli-test-token-0123456789"


def test_version():
    out = run(app, ["--version"])
    assert out.exit_code == 0 and out.output.startswith("vigil ")


def test_config_init_writes_a_configuration_that_checks(tmp_path):
    t = np.arange(0.0, 600.0)
    rng = np.random.default_rng(0)
    names = ["BATT_T", "BATT_V", "RW1_SPEED", "RW2_SPEED", "SOLO"]
    values = np.c_[20 + rng.normal(0, 1, t.size), 28 + rng.normal(0, 0.1, t.size), rng.normal(0, 5, (t.size, 2)),
                   np.ones(t.size)]  # fmt: skip
    values[::2, 2] = np.nan  # RW1_SPEED every 2 s
    data = tmp_path / "history.csv"
    rows = ["time," + ",".join(names)] + [",".join([f"{t[i]}", *(f"{v}" for v in values[i])]) for i in range(t.size)]
    data.write_text("\n".join(rows).replace("nan", ""), encoding="utf-8")
    out_path = tmp_path / "channels.toml"
    out = run(app, ["config", "init", str(data), "--out", str(out_path)])
    assert out.exit_code == 0, out.output
    assert "5 channels" in out.output
    cfg = load_config(out_path)
    assert {n: c.subsystem for n, c in cfg.channels.items()} == {
        "BATT_T": "batt", "BATT_V": "batt", "RW1_SPEED": "other", "RW2_SPEED": "other", "SOLO": "other"
    }  # fmt: skip  # RW1 and RW2 are different prefixes; no guessing beyond the obvious
    assert cfg.channels["BATT_T"].rate_hz == 1.0 and cfg.channels["RW1_SPEED"].rate_hz == 0.5
    assert cfg.limits() == {}  # suggestions only, in comments
    text = out_path.read_text()
    lo, hi = values[:, 0].min(), values[:, 0].max()
    assert f"# warning = [{float(f'{lo - 0.1 * (hi - lo):.6g}')!r}, " in text
    assert "# no limits suggested" in text  # SOLO never changed
    uncommented = text.replace("# [channels.BATT_T.limits]", "[channels.BATT_T.limits]")
    uncommented = uncommented.replace("# warning", "warning", 1).replace("# critical", "critical", 1)
    out_path.write_text(uncommented)
    checked = run(app, ["config", "check", str(out_path)])
    assert checked.exit_code == 0 and "1 with limits" in checked.output
    again = run(app, ["config", "init", str(data), "--out", str(out_path)])
    assert again.exit_code == 2 and "exists" in again.output


def _store_with_alarm(path):
    cfg = MonitorConfig.from_dict({"channels": {"P": {"subsystem": "prop", "limits": {"warning": [-1, 1]}}}})
    block = TelemetryBlock.from_arrays([0.0, 1.0], [[5.0], [5.0]], ["P"])
    det = LimitCheck(cfg.limits()).fit(block)
    store = SqliteStore(path)
    manager = AlarmManager(cfg, store=store, clock=lambda: 100.0)
    manager.update(block, det.score(block))
    return cfg, store, manager


def test_alarm_verbs_on_a_store_and_export(tmp_path):
    path = tmp_path / "v.sqlite"
    _store_with_alarm(path)[1].close()
    out = run(app, ["alarms", "ack", "1", "--store", str(path), "--user", "ann", "--comment", "seen"])
    assert out.exit_code == 0 and out.output.startswith("#1 acknowledged"), out.output
    out = run(app, ["alarms", "shelve", "1", "--store", str(path), "--duration", "600"])
    assert out.output.startswith("#1 shelved")
    assert run(app, ["alarms", "unshelve", "1", "--store", str(path)]).output.startswith("#1 acknowledged")
    refused = run(app, ["alarms", "clear", "1", "--store", str(path)])  # still out of limits
    assert refused.exit_code == 2 and "cannot clear alarm 1" in refused.output
    assert run(app, ["alarms", "ack", "9", "--store", str(path)]).exit_code == 2
    exported = run(app, ["alarms", "export", "--format", "csv", "--store", str(path)]).output
    (row,) = list(csv.DictReader(io.StringIO(exported)))
    assert (row["id"], row["channel"], row["acknowledged_by"], row["acknowledged_comment"]) == ("1", "P", "ann", "seen")
    target = tmp_path / "alarms.json"
    run(app, ["alarms", "export", "--format", "json", "--store", str(path), "--out", str(target)])
    (alarm,) = json.loads(target.read_text())
    assert alarm["state"] == "acknowledged" and alarm["severity"] == "warning"
    assert run(app, ["alarms", "export", "--format", "xml", "--store", str(path)]).exit_code == 2
    audit = run(app, ["alarms", "--store", str(path), "--audit", "5"]).output
    assert "by ann: acknowledged" in audit


@pytest.fixture
def server(tmp_path):
    from vigil.monitor import Monitor
    from vigil.serve.app import create_app

    cfg, store, manager = _store_with_alarm(tmp_path / "s.sqlite")
    det = LimitCheck(cfg.limits()).fit(TelemetryBlock.from_arrays([0.0], [[0.0]], ["P"]))
    api = create_app(Monitor(cfg, det, manager), manager, store, TOKEN)
    with served(api) as url:
        yield url, manager
    store.close()


def test_alarm_verbs_against_a_running_server_use_the_api_token(server, tmp_path, monkeypatch):
    url, manager = server
    monkeypatch.delenv("VIGIL_API_TOKEN", raising=False)
    no_token = run(app, ["alarms", "ack", "1", "--server", url])
    assert no_token.exit_code == 2 and "no API token" in no_token.output
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token-at-all")
    assert "401" in run(app, ["alarms", "ack", "1", "--server", url, "--token-file", str(wrong)]).output
    monkeypatch.setenv("VIGIL_API_TOKEN", TOKEN)
    out = run(app, ["alarms", "ack", "1", "--server", url, "--user", "bob", "--comment", "on it"])
    assert out.exit_code == 0 and out.output.startswith("#1 acknowledged"), out.output
    assert manager.get(1).acknowledged_by == "bob"  # the running server's manager did it
    assert run(app, ["alarms", "ack", "7", "--server", url]).output.startswith("error: 404")


def test_fit_from_the_archive_saves_a_model(tmp_path):
    import pickle

    from vigil.archive import ArchiveWriter

    t = 1_700_006_400.0 + np.arange(3000.0)
    x = np.c_[20 + np.sin(t / 60), 5 + np.cos(t / 90)] + np.random.default_rng(0).normal(0, 0.01, (t.size, 2))
    with ArchiveWriter(tmp_path / "arch", ("A", "B")) as writer:
        writer.append(t, x)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[channels.A]\nsubsystem = "s"\n[channels.B]\nsubsystem = "s"\n')
    out = tmp_path / "m.model"
    args = ["fit", "--config", str(cfg), "--archive", str(tmp_path / "arch"), "--out", str(out)]
    done = run(app, [*args, "--start", "2023-11-15T00:00:00Z", "--end", str(t[1999])])
    assert done.exit_code == 0 and "2 channels fitted on 2000 archived rows" in done.output, done.output
    header, _, body = out.read_bytes().partition(b"\n")
    saved = pickle.loads(body)
    assert header == b"VIGIL-MODEL 1" and saved["info"]["history"]["rows"] == 2000
    assert pickle.loads(saved["detector"]).channels_ == ("A", "B")
    empty = run(app, [*args, "--start", "0", "--end", "10"])
    assert empty.exit_code == 2 and "no archived samples" in empty.output
    assert run(app, [*args, "--start", "yesterday", "--end", "10"]).exit_code == 2


def test_monitor_keeps_an_archive_notifies_and_the_archive_refits(tmp_path):
    """End to end as the README says: vigil monitor (archive by default, [notify]), then vigil fit."""
    import subprocess
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[channels.P]\nsubsystem = "prop"\nrate_hz = 1.0\n[channels.P.limits]\nwarning = [-1, 1]\n'
        '[notify]\nurls_env = "TEST_HOOK"\ngroup_window_s = 0\n'
    )
    data = tmp_path / "p.csv"
    data.write_text(
        "".join(f"{1_764_460_800 + t},P,{5.0 if 100 <= t < 105 else 0.1 * np.sin(t / 9)}\n" for t in range(600))
    )
    store = tmp_path / "v.sqlite"
    env = {**__import__("os").environ, "TEST_HOOK": f"json://127.0.0.1:{hook.server_address[1]}/h"}
    args = ["--config", str(cfg), "--source", f"file:{data}", "--speed", "max", "--store", str(store)]
    out = subprocess.run([sys.executable, "-m", "vigil.cli", "monitor", *args], capture_output=True, text=True,
                         timeout=180, env=env)  # fmt: skip
    hook.shutdown()
    assert out.returncode == 0, out.stderr
    assert [m["title"] for m in received] == ["Vigil: WARNING P"]
    fitted = run(app, ["fit", "--config", str(cfg), "--archive", f"{store}.archive", "--start", "0",
                       "--end", "2e9", "--out", str(tmp_path / "m")])  # fmt: skip
    assert fitted.exit_code == 0 and "1 channels fitted on 600 archived rows" in fitted.output, fitted.output
