"""The fleet check on a generated constellation where one satellite's heater channel degrades
inside its limits: the limit check never alarms, the sibling comparison finds it, and nothing else."""

from __future__ import annotations

import pytest

from tests import fleet_support as fs
from vigil.fleet.check import FleetCheck
from vigil.fleet.constellation import Constellation
from vigil.fleet.engine import SpacecraftEngine
from vigil.fleet.protocol import encode_tm, tm_subject

DEGRADED = ("SAT-05", "THERM.CH_001")


@pytest.mark.parametrize("seed", [7, 8])
def test_degrading_heater_found_among_siblings_and_nothing_else(seed):
    c = Constellation(16, 40, 1800, seed=seed, degrade=DEGRADED)
    findings = FleetCheck().run(c.time, {sc: c.values(sc) for sc in c.names}, c.channels)
    assert [(f.spacecraft, f.channel) for f in findings] == [DEGRADED]
    assert findings[0].value > findings[0].median and "siblings" in findings[0].explain()


def test_healthy_constellation_has_no_findings():
    c = Constellation(16, 40, 1800, seed=7)  # the same excursions and dropouts, no degradation
    assert FleetCheck().run(c.time, {sc: c.values(sc) for sc in c.names}, c.channels) == []


def test_the_degradation_stays_inside_its_limits():
    """What makes the fleet check necessary: the single-spacecraft limit check raises nothing on it."""
    c = Constellation(16, 40, 1800, seed=7, degrade=DEGRADED)
    config = c.config()
    engine = SpacecraftEngine(DEGRADED[0], config, fs.limits_detector(config), {})
    frames = [
        (i + 1, tm_subject(DEGRADED[0]), encode_tm(t, ch, v)) for i, (t, ch, v) in enumerate(c.frames(DEGRADED[0]))
    ]
    engine.apply(frames)
    engine.idle()
    alarmed = {o["alarm"]["channel"] for o in engine.store.outbox if o["kind"] == "alarm"}
    assert alarmed and DEGRADED[1] not in alarmed


def test_check_command_on_a_generated_folder(tmp_path):
    from typer.testing import CliRunner

    from vigil.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["fleet", "generate", "--out", str(tmp_path), "--spacecraft", "8", "--channels", "10",
                              "--duration", "1800", "--seed", "3", "--degrade", "SAT-02:EPS.CH_005"])  # fmt: skip
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["fleet", "check", "--data", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "SAT-02 EPS.CH_005: changed by" in out.output and "1 channel(s) departing" in out.output
