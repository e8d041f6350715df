"""``vigil alarms comment|mark-nominal|unmark-nominal``: against a store (notes) and a running server."""

from __future__ import annotations

import pytest
from server_support import served
from test_nominal import FIRST, T0, TOKEN, block, live_stream, make_console
from typer.testing import CliRunner

from vigil.cli import app

run = CliRunner().invoke


@pytest.fixture
def server(tmp_path):
    api, monitor, manager = make_console(tmp_path / "s.sqlite")
    monitor.feed_block(block(live_stream(), 0, 2000))
    with served(api) as url:
        yield url, monitor, manager
    manager.store.close()


def test_mark_and_unmark_nominal_and_comment_against_a_running_server(server, monkeypatch):
    url, monitor, manager = server
    monkeypatch.setenv("VIGIL_API_TOKEN", TOKEN)
    (alarm,) = [a for a in manager.alarms(state="all") if T0 + FIRST <= a.first_time < T0 + FIRST + 60]
    refused = run(app, ["alarms", "mark-nominal", str(alarm.id), "--server", url, "--comment", " "])
    assert refused.exit_code == 2 and "--comment" in refused.output
    out = run(app, ["alarms", "mark-nominal", str(alarm.id), "--server", url, "--comment", "heater", "--user", "ana"])
    assert out.exit_code == 0 and "matches the nominal pattern marked by ana" in out.output, out.output
    assert list(monitor.detector.patterns) == [1]
    out = run(app, ["alarms", "comment", str(alarm.id), "pass 1234 heater cycle", "--server", url])
    assert out.exit_code == 0, out.output
    assert manager.audit(alarm_id=alarm.id)[-1].comment == "pass 1234 heater cycle"
    out = run(app, ["alarms", "unmark-nominal", str(alarm.id), "--server", url])
    assert out.exit_code == 0 and "pattern 1 of HTR_T withdrawn" in out.output
    assert monitor.detector.patterns == {}
    again = run(app, ["alarms", "unmark-nominal", str(alarm.id), "--server", url])
    assert again.exit_code == 2 and "409" in again.output


def test_comment_on_a_store(tmp_path):
    api, monitor, manager = make_console(tmp_path / "s.sqlite")
    monitor.feed_block(block(live_stream(), 0, 2000))
    manager.store.close()
    out = run(app, ["alarms", "comment", "1", "looked at it", "--store", str(tmp_path / "s.sqlite"), "--user", "bo"])
    assert out.exit_code == 0, out.output
    audit = run(app, ["alarms", "--store", str(tmp_path / "s.sqlite"), "--audit", "1"]).output
    assert "by bo: commented" in audit and "looked at it" in audit
