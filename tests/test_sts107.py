"""The STS-107 scenario and its replay: shape, events at their times, alarms, incidents, JSON."""

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vigil.cli import app
from vigil.scenarios import sts107
from vigil.scenarios.sts107 import EI_EPOCH, HYDRAULIC_RETURN_LINES, INJECTIONS, SENSORS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "scenarios" / "sts107"


@pytest.fixture(scope="module")
def scenario():
    return sts107.build_scenario(seed=0)


@pytest.fixture(scope="module")
def result(scenario):
    return sts107.run_replay(scenario=scenario)


def _from_ei(block, epoch=EI_EPOCH):
    return block.time - epoch


def test_scenario_shape_rate_and_window(scenario):
    f = scenario.failed
    assert 30 <= f.n_channels == len(SENSORS) <= 80
    assert len(scenario.nominal_train) == 21 and len(scenario.nominal_holdout) == 6
    t = _from_ei(f)
    assert t[0] == -300.0 and t[-1] == 923.0  # the stream ends with the last frame before LOS
    assert np.all(np.diff(t) == 1.0)  # 1 Hz
    for block, epoch in zip(scenario.nominal_train + scenario.nominal_holdout, scenario.nominal_ei_epochs):
        assert block.channels == f.channels
        assert np.array_equal(_from_ei(block, epoch), t)
        assert epoch < EI_EPOCH


def test_bad_entry_counts_name_the_key():
    from vigil.errors import ConfigError

    with pytest.raises(ConfigError, match="n_train: must be >= 1"):
        sts107.build_scenario(n_train=0)
    with pytest.raises(ConfigError, match="n_holdout"):
        sts107.build_scenario(n_holdout=-1)


def test_channels_have_subsystems_and_left_right_counterparts(scenario):
    cfg = scenario.config.channels
    assert {cfg[c].subsystem for c in HYDRAULIC_RETURN_LINES} == {"left-wing-hydraulics"}
    assert len(HYDRAULIC_RETURN_LINES) == 4
    for name in cfg:
        if name.startswith(("LMG_", "LH_", "LW_", "L_")):
            twin = "R" + name[1:]
            assert twin in cfg, f"no right-side counterpart for {name}"


def test_failed_entry_equals_its_twin_before_each_event_and_differs_after(scenario):
    """The injected events start at the timeline's times (the twin has the same noise, no anomalies)."""
    t = _from_ei(scenario.failed)
    ok = np.isfinite(scenario.failed.values[:, 0])
    for inj in INJECTIONS:
        for k, ch in enumerate(inj.channels):
            onset = inj.event_s + (inj.offsets_s[k] if inj.offsets_s else 0.0)
            diff = scenario.failed.column(ch) - scenario.failed_twin.column(ch)
            first = min(i.event_s for i in INJECTIONS if ch in i.channels)
            assert np.all(diff[ok & (t < first)] == 0.0), ch
            assert np.any(diff[ok & (t >= onset) & (t <= onset + 120)] != 0.0), (ch, onset)


def test_hydraulic_return_lines_go_off_scale_low_within_five_seconds_of_ei_561(scenario):
    t = _from_ei(scenario.failed)
    for ch in HYDRAULIC_RETURN_LINES:
        x = scenario.failed.column(ch)
        pinned = np.flatnonzero(x == -100.0)  # bottom of the sensor range
        assert 561 + 2 <= t[pinned[0]] <= 561 + 4 + 2
        after = x[pinned[0] :]
        assert np.all(after[np.isfinite(after)] == -100.0)
        before = x[t < 561]
        assert np.all(before[np.isfinite(before)] > 20.0)


def test_brake_line_rise_is_a_few_degrees_per_minute_not_a_step(scenario):
    """3.5 F/min reached over 30 s: 3.5 / 60 * (15 + 270) = 16.6 F extra after 300 s, 0.9 F after 20 s."""
    t = _from_ei(scenario.failed)
    diff = scenario.failed.column("LMG_BRAKE_LINE_T_A") - scenario.failed_twin.column("LMG_BRAKE_LINE_T_A")
    at = {s: diff[np.flatnonzero(t == 488 + s)[0]] for s in (20, 300)}
    assert abs(at[20] - 0.9) <= 1.0  # within one 1 F count of quantisation
    assert abs(at[300] - 16.6) <= 1.0


def _rise(block, channel, t0, t1, epoch=EI_EPOCH):
    """Change between the 5-s means around t0 and t1 (robust to a dropout at either time)."""
    t = block.time - epoch
    x = block.column(channel)
    return np.nanmean(x[abs(t - t1) <= 2]) - np.nanmean(x[abs(t - t0) <= 2])


def _rate_per_min(block, channel, t0, t1, epoch=EI_EPOCH):
    t = block.time - epoch
    x = block.column(channel)
    keep = (t >= t0) & (t <= t1) & np.isfinite(x)
    return np.polyfit(t[keep], x[keep], 1)[0] * 60.0


def test_failed_entry_matches_the_sources_numbers(scenario):
    """Sources: brake-line rise 20-30 F in five minutes; strut actuator 12.9 F/min after EI+764;
    left bondline +60 F in five minutes from EI+591 where the right rose about +15 F."""
    f = scenario.failed
    assert 20 <= _rise(f, "LMG_BRAKE_LINE_T_A", 488, 788) <= 30
    assert _rate_per_min(f, "LMG_STRUT_ACT_T", 780, 923) == pytest.approx(12.9, abs=1.0)
    assert _rise(f, "L_MIDFUS_BONDLINE_T", 591, 891) == pytest.approx(60, abs=10)
    assert _rise(f, "R_MIDFUS_BONDLINE_T", 591, 891) == pytest.approx(15, abs=6)


def test_nominal_entries_match_the_sources_nominal_rates(scenario):
    """Sources: strut actuator about 1.7 F/min before STS-107's jump; right bondline +15 F in five minutes."""
    pairs = list(zip(scenario.nominal_train, scenario.nominal_ei_epochs))
    strut = [_rate_per_min(b, "LMG_STRUT_ACT_T", 700, 830, ep) for b, ep in pairs]
    bond = [_rise(b, "R_MIDFUS_BONDLINE_T", 591, 891, ep) for b, ep in pairs]
    assert np.mean(strut) == pytest.approx(1.7, abs=0.3)
    assert np.mean(bond) == pytest.approx(15, abs=4)


def test_onboard_only_events_are_left_out_of_the_stream(scenario):
    by_time = {e["t_from_ei_s"]: e for e in scenario.events}
    for t in (270, 290, 420, 425):  # OEX/MADS recorder events
        assert by_time[t]["stream"].startswith("left out")
    for inj in INJECTIONS:
        assert by_time[inj.event_s]["stream"] == "injected"
    assert by_time[923]["stream"] == "end of the stream"


def test_nominal_entries_vary_and_hold_no_off_scale_readings(scenario):
    lows = np.array([s.range[0] for s in SENSORS])
    starts = []
    for block in scenario.nominal_train + scenario.nominal_holdout:
        v = block.values
        ok = np.isfinite(v)
        assert not np.any((v == lows) & ok & np.isfinite(lows) & (lows < 0))
        starts.append(block.column("LMG_BRAKE_LINE_T_A")[0])
    assert np.ptp(starts) > 10.0  # flight-to-flight variation of the soak temperature


def test_limits_never_trip_on_nominal_entries(scenario):
    """The flight-controller limits are set from the sensors and hardware, wide of nominal behaviour."""
    from vigil.detect.limits import LimitCheck

    det = LimitCheck(scenario.config.limits()).fit(scenario.failed)
    for block in scenario.nominal_train + scenario.nominal_holdout:
        det.reset()
        assert det.score(block).level.max() == 0, block.source


def test_replay_json_has_the_agreed_keys(result):
    for key in ("first_alarm_s_from_ei", "first_incident_s_from_ei", "nominal_false_alarms", "incidents", "alarms"):
        assert key in result
    json.dumps(result)  # JSON-ready
    assert result["reference"]["mmacs_call_est"] == "08:54:24"
    assert result["reference"]["los_est"] == "08:59:32"


def test_first_alarm_comes_before_mmacs_call(result):
    assert result["first_alarm_s_from_ei"] < 615
    assert result["first_injected_alarm_s_from_ei"] < 615
    first = result["alarms"][0]
    # EI was at 08:44:09 EST (the MMACS call at EI+615 is 08:54:24): worked out apart from est_clock.
    ei = datetime(2003, 2, 1, 8, 44, 9)
    assert first["first_est"] == (ei + timedelta(seconds=int(first["first_s_from_ei"]))).strftime("%H:%M:%S")


def test_four_hydraulic_return_lines_form_one_incident(result):
    holding = [i for i in result["incidents"] if set(HYDRAULIC_RETURN_LINES) & set(i["channels"])]
    assert len(holding) == 1
    assert set(HYDRAULIC_RETURN_LINES) <= set(holding[0]["channels"])
    assert holding[0]["subsystem"] == "left-wing-hydraulics"
    assert 561 <= holding[0]["first_s_from_ei"] <= 570


def test_alarms_are_attributed_only_to_events_that_precede_them(result):
    for o in result["annunciations"]:
        if o["caused_by_injection"]:
            assert o["s_from_ei"] >= o["injected_event_s_from_ei"] >= 457
    for a in result["alarms"]:
        if a["caused_by_injection"]:
            assert a["caused_at_s_from_ei"] >= a["injected_event_s_from_ei"]


def test_off_scale_low_events_alarm_within_seconds_on_all_their_channels(result):
    by_event = {e["t_from_ei_s"]: e for e in result["detection_by_event"]}
    for t in (561, 799, 891):
        e = by_event[t]
        assert set(e["alarmed"]) >= set(e["channels"]) - {"AIL_TRIM"}, t
        assert e["latency_s"] <= 5, t  # 2 s fall + 2-sample debounce


def test_replay_in_one_minute_ticks_gives_the_same_alarms_as_one_second_ticks(scenario, result):
    chunked = sts107.run_replay(scenario=scenario, tick_rows=61)

    def key(r):
        return [(a["channel"], a["first_s_from_ei"], a["severity"], a["detector"]) for a in r["alarms"]]

    assert key(chunked) == key(result)
    assert chunked["nominal_false_alarms"] == result["nominal_false_alarms"]


def test_held_out_nominal_entries_raise_no_alarm(result):
    """Seed 0's six held-out entries; other seeds can raise one (see BENCHMARKS.md, STS-107)."""
    assert result["nominal_false_alarms"] == 0, [e["channels"] for e in result["nominal_entries"]]


def test_cli_prints_the_moments_and_writes_json(tmp_path, monkeypatch, result):
    monkeypatch.setattr(sts107, "run_replay", lambda seed=0: result)
    out = tmp_path / "r.json"
    run = CliRunner().invoke(app, ["replay", "sts-107", "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "MMACS first call" in run.output and "08:54:24 EST" in run.output
    assert "not flight data" in run.output
    assert json.loads(out.read_text())["first_alarm_s_from_ei"] == result["first_alarm_s_from_ei"]


def test_cli_names_an_unwritable_out_file(tmp_path, monkeypatch, result):
    monkeypatch.setattr(sts107, "run_replay", lambda seed=0: result)
    run = CliRunner().invoke(app, ["replay", "sts-107", "--out", str(tmp_path / "missing" / "r.json")])
    assert run.exit_code == 2
    text = " ".join(run.output.replace("│", " ").split())  # the error box may wrap the message
    assert "cannot write" in text and "No such file or directory" in text


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared reconstruction is not beside the repository")
def test_shipped_event_table_is_derived_from_the_shared_files():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "build_sts107_data.py"
    spec = importlib.util.spec_from_file_location("build_sts107_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.build(SHARED) == sts107._data()


def test_counterpart_check_sees_the_brake_line_rise_before_the_hydraulic_lines(result):
    """Left sensors checked against their right twins: the brake-line rise (EI+488) alarms first,
    before the hydraulic lines go off-scale low (EI+561); seed 0 gives EI+547 (BENCHMARKS.md)."""
    first = result["alarms"][0]
    assert first["channel"].startswith("LMG_BRAKE_LINE_T_") and first["detector"] == "counterpart"
    assert first["caused_by_injection"] and first["injected_event_s_from_ei"] == 488
    assert 488 < result["first_alarm_s_from_ei"] < 561
    assert result["first_injected_alarm_s_from_ei"] == result["first_alarm_s_from_ei"]
    alarmed = {e["t_from_ei_s"] for e in result["detection_by_event"] if e["alarmed"]}
    assert {488, 581, 591, 681, 764} <= alarmed  # the slow rises the default detectors missed
    assert len(alarmed) >= 11
    assert result["failed_entry_false_alarms"] == 0
