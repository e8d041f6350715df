"""XTCE alarm import, the XtceAlarmCheck detector, and the DEMOSAT anomalies end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vigil.detect.base import SEVERITIES, Scores
from vigil.detect.xtce_alarm import XtceAlarmCheck, xtce_monitor_config
from vigil.errors import ConfigError
from vigil.ingest.ccsds import PacketStream, load_xtce
from vigil.ingest.ccsds.demo.generator import ANOMALIES, DemoSpacecraft, xtce_path
from vigil.ingest.ccsds.xtce_alarms import Condition, read_xtce_alarms
from vigil.model import TelemetryBlock

WARNING, CRITICAL = SEVERITIES.index("warning") + 1, SEVERITIES.index("critical") + 1


@pytest.fixture(scope="module")
def mission():
    return load_xtce(xtce_path())


@pytest.fixture(scope="module")
def alarms(mission):
    return read_xtce_alarms(mission)


def test_ranges_and_min_violations_as_written_in_the_xtce(alarms):
    batt = alarms.alarms["BATT_V"]
    assert batt.ranges == {"warning": (26.0, 34.0), "critical": (24.0, 36.0)}
    assert batt.min_violations == 2
    bus = alarms.alarms["BUS_T"].ranges
    assert list(bus) == list(SEVERITIES)
    assert bus["watch"] == (0.0, 40.0) and bus["severe"] == (-20.0, 60.0)
    # minExclusive/maxExclusive 6000: the nearest float64 inside is the inclusive bound.
    lo, hi = alarms.alarms["WHEEL_RPM_1"].ranges["warning"]
    assert lo == math.nextafter(-6000.0, 0.0) and hi == math.nextafter(6000.0, 0.0)


def test_context_enumeration_and_rate_imports(alarms):
    panel = alarms.alarms["PANEL_T"]
    assert panel.ranges["warning"] == (-30.0, 50.0)
    (ctx,) = panel.contexts
    assert ctx.conditions == (Condition("HTR_STATE", "==", 1.0),)  # label ON -> raw 1
    assert ctx.ranges == {"warning": (-10.0, 50.0), "critical": (-20.0, 60.0)}
    mode = alarms.alarms["PWR_MODE"]
    assert mode.enum_levels == {0: WARNING, 3: CRITICAL}  # SAFE warning, FAULT critical
    assert alarms.rate_hz["PANEL_T"] == 0.5 and alarms.stale_after_s("PANEL_T") == 2.0
    assert alarms.rate_hz["BATT_V"] == 5.0 and alarms.stale_after_s("BATT_V") == 1.0
    assert "BATT_I: DefaultAlarm/ChangePerSecondAlarmRanges" in alarms.report()


XTCE_ODD = """<?xml version="1.0"?>
<xtce:SpaceSystem xmlns:xtce="http://www.omg.org/spec/XTCE/20180204" name="ODD">
 <xtce:TelemetryMetaData>
  <xtce:ParameterTypeSet>
   <xtce:IntegerParameterType name="U11"><xtce:IntegerDataEncoding sizeInBits="11"/></xtce:IntegerParameterType>
   <xtce:IntegerParameterType name="U5"><xtce:IntegerDataEncoding sizeInBits="5"/></xtce:IntegerParameterType>
   <xtce:IntegerParameterType name="U32"><xtce:IntegerDataEncoding sizeInBits="32"/></xtce:IntegerParameterType>
   <xtce:AbsoluteTimeParameterType name="T"><xtce:Encoding><xtce:IntegerDataEncoding sizeInBits="32"/></xtce:Encoding>
   </xtce:AbsoluteTimeParameterType>
   <xtce:FloatParameterType name="A_T"><xtce:IntegerDataEncoding sizeInBits="16"/>
    <xtce:DefaultAlarm>
     <xtce:StaticAlarmRanges><xtce:WarningRange minInclusive="1" maxInclusive="2" rangeForm="inside"/></xtce:StaticAlarmRanges>
     <xtce:AlarmMultiRanges/>
    </xtce:DefaultAlarm>
    <xtce:ContextAlarmList><xtce:ContextAlarm minViolations="3">
     <xtce:StaticAlarmRanges><xtce:WarningRange minInclusive="0" maxInclusive="9"/></xtce:StaticAlarmRanges>
     <xtce:ContextMatch><xtce:BooleanExpression/></xtce:ContextMatch>
    </xtce:ContextAlarm></xtce:ContextAlarmList>
   </xtce:FloatParameterType>
   <xtce:FloatParameterType name="B_T"><xtce:IntegerDataEncoding sizeInBits="16"/>
    <xtce:DefaultAlarm><xtce:StaticAlarmRanges><xtce:WarningRange minInclusive="1" maxInclusive="2"/>
    </xtce:StaticAlarmRanges></xtce:DefaultAlarm>
   </xtce:FloatParameterType>
  </xtce:ParameterTypeSet>
  <xtce:ParameterSet>
   <xtce:Parameter name="HDR0" parameterTypeRef="U5"/><xtce:Parameter name="APID" parameterTypeRef="U11"/>
   <xtce:Parameter name="HDR1" parameterTypeRef="U32"/><xtce:Parameter name="TIME" parameterTypeRef="T"/>
   <xtce:Parameter name="A" parameterTypeRef="A_T"/><xtce:Parameter name="B" parameterTypeRef="B_T"/>
  </xtce:ParameterSet>
  <xtce:ContainerSet>
   <xtce:SequenceContainer name="CCSDSPacket" abstract="true"><xtce:EntryList>
    <xtce:ParameterRefEntry parameterRef="HDR0"/><xtce:ParameterRefEntry parameterRef="APID"/>
    <xtce:ParameterRefEntry parameterRef="HDR1"/><xtce:ParameterRefEntry parameterRef="TIME"/>
   </xtce:EntryList></xtce:SequenceContainer>
   <xtce:SequenceContainer name="P">
    <xtce:DefaultRateInStream basis="perContainerUpdate" minimumValue="1"/>
    <xtce:EntryList><xtce:ParameterRefEntry parameterRef="A"/><xtce:ParameterRefEntry parameterRef="B"/></xtce:EntryList>
    <xtce:BaseContainer containerRef="CCSDSPacket"><xtce:RestrictionCriteria>
     <xtce:Comparison parameterRef="APID" value="7" useCalibratedValue="false"/>
    </xtce:RestrictionCriteria></xtce:BaseContainer>
   </xtce:SequenceContainer>
  </xtce:ContainerSet>
 </xtce:TelemetryMetaData>
</xtce:SpaceSystem>
"""


def test_what_cannot_be_mapped_is_reported_by_name(tmp_path):
    path = tmp_path / "odd.xml"
    path.write_text(XTCE_ODD)
    mission = load_xtce(path)
    assert mission.layouts["P"].length == 6 + 4 + 4  # header, time, A and B (16 bits each)
    odd = read_xtce_alarms(mission)
    text = [str(u) for u in odd.unmapped]
    assert 'A: DefaultAlarm/WarningRange: rangeForm="inside" (alarm inside a range)' in text
    assert "A: DefaultAlarm/AlarmMultiRanges: not checked by Vigil" in text
    assert any(t.startswith("A: ContextAlarm[0]: context ['BooleanExpression']") for t in text)
    assert "A: ContextAlarm[0]@minViolations: per-context debounce: the DefaultAlarm's is used" in text
    assert any("basis 'perContainerUpdate'" in t for t in text)
    assert "A" not in odd.alarms and odd.alarms["B"].ranges == {"warning": (1.0, 2.0)}
    assert odd.rate_hz == {}


def test_bad_alarm_values_name_file_and_element(tmp_path, mission):
    path = tmp_path / "bad.xml"
    path.write_text(
        XTCE_ODD.replace('minInclusive="1" maxInclusive="2"/>\n    </xtce:Static', 'minInclusive="x"/>\n </xtce:Static')
    )
    with pytest.raises(ConfigError, match=r"bad.xml: ParameterType B_T/WarningRange@minInclusive: 'x' is not a number"):
        read_xtce_alarms(load_xtce(path))


def _block(rows: list[dict], channels) -> TelemetryBlock:
    values = [[r.get(c, np.nan) for c in channels] for r in rows]
    return TelemetryBlock.from_arrays(np.arange(len(rows), dtype=float), values, channels)


def test_alarm_check_levels_by_hand(mission, alarms):
    ch = mission.channels
    rows = [
        {"HTR_STATE": 0, "PANEL_T": -15.0, "PWR_MODE": 1, "BATT_V": 30.0},  # default ranges: nominal
        {"HTR_STATE": 1, "PANEL_T": -15.0, "PWR_MODE": 0, "BATT_V": 25.0},  # heater on: warning; SAFE
        {"PANEL_T": -25.0, "PWR_MODE": 3, "BATT_V": 25.0},  # heater still on (earlier row): critical
        {"HTR_STATE": 0, "PANEL_T": -35.0, "BATT_V": 23.0},  # heater off: default warning; 2nd violation
        {"PANEL_T": -45.0, "BATT_V": 30.0},  # default critical
    ]
    scores = XtceAlarmCheck(alarms).fit(_block(rows, ch)).score(_block(rows, ch))
    lv = {c: scores.level[:, ch.index(c)].tolist() for c in ("PANEL_T", "PWR_MODE", "BATT_V")}
    assert lv["PANEL_T"] == [0, WARNING, CRITICAL, WARNING, CRITICAL]
    assert lv["PWR_MODE"] == [0, WARNING, CRITICAL, 0, 0]
    # minViolations 2: the first sample out of range is not reported, the second (critical) is.
    assert lv["BATT_V"] == [0, 0, WARNING, CRITICAL, 0]
    j = ch.index("PANEL_T")
    assert scores.low[1, j] == -10.0 and scores.low[0, j] == -30.0  # band in force follows the context


def test_alarm_check_chunks_equal_one_call(mission, alarms):
    block = PacketStream(mission).feed(DemoSpacecraft(seed=2).packets(2100.0), final=True)
    whole = XtceAlarmCheck(alarms).fit(block).score(block)
    det = XtceAlarmCheck(alarms).fit(block)
    parts = Scores.concat(
        [det.score(block.slice(a, min(a + 777, block.n_samples))) for a in range(0, block.n_samples, 777)]
    )
    np.testing.assert_array_equal(parts.level, whole.level)
    np.testing.assert_array_equal(parts.score, whole.score)


def test_demo_anomalies_found_where_injected_and_nowhere_else(mission, alarms):
    sc = DemoSpacecraft(seed=0)
    block = PacketStream(mission).feed(sc.packets(2400.0), final=True)
    scores = XtceAlarmCheck(alarms).fit(block).score(block)
    rel = block.time - sc.start_time
    for j, channel in enumerate(block.channels):
        injected = [a for a in ANOMALIES if a.channel == channel]
        inside = np.zeros(block.n_samples, dtype=bool)
        for a in injected:
            window = (rel >= a.start_s) & (rel < a.end_s)
            assert scores.level[window, j].max() == SEVERITIES.index(a.severity) + 1, a.what
            inside |= window
        assert scores.level[~inside, j].max() == 0, f"{channel} flagged outside its injected windows"


def test_monitor_config_from_xtce(alarms):
    config = xtce_monitor_config(alarms)
    batt = config.channels["BATT_V"]
    assert batt.limits.warning == (26.0, 34.0) and batt.limits.critical == (24.0, 36.0)
    assert batt.min_violations == 2 and batt.rate_hz == 5.0 and batt.units == "V"
    assert config.channels["PWR_MODE"].limits is None  # states, not ranges: XtceAlarmCheck checks them


def test_toml_round_trip(tmp_path, alarms):
    from vigil.config import load_config

    path = tmp_path / "demosat.toml"
    path.write_text(alarms.to_toml())
    config = load_config(path)
    assert config.channels["BUS_T"].limits.severe == (-20.0, 60.0)
    assert config.channels["PANEL_T"].stale_after_s == 2.0
    assert config.channels["WHEEL_RPM_2"].limits.warning == alarms.alarms["WHEEL_RPM_2"].ranges["warning"]


BOGUSSAT = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real-packets" / "xtce-alarms" / "BogusSAT-1.xml"
)
needs_bogussat = pytest.mark.skipif(not BOGUSSAT.is_file(), reason=f"shared XTCE example not found at {BOGUSSAT}")


@pytest.fixture(scope="module")
def bogussat():
    return read_xtce_alarms(None, BOGUSSAT)


@needs_bogussat
def test_bogussat_alarms_read_without_a_packet_layout(bogussat):
    volts = bogussat.alarms["Battery_Voltage"]
    # Boolean context: Battery_Charge_Mode's oneStringValue CHARGE is 1, zeroStringValue DISCHARGE 0.
    assert [c.conditions for c in volts.contexts] == [
        (Condition("Battery_Charge_Mode", "==", 1.0),),
        (Condition("Battery_Charge_Mode", "==", 0.0),),
    ]
    antenna = bogussat.alarms["Payload_1_Antenna_State"]
    assert antenna.enum_levels == {5: CRITICAL}
    (ctx,) = antenna.contexts  # enumeration alarms inside a context
    assert ctx.enum_levels == {4: WARNING, 0: CRITICAL, 5: CRITICAL}
    assert bogussat.rate_max_hz["SunSensorLevel"] == 10.0 and bogussat.rate_hz["SunSensorLevel"] == 0.1
    assert not [u for u in bogussat.unmapped if "Battery" in u.parameter or "Antenna" in u.parameter]


def _check(alarms, channels, time, rows):
    block = TelemetryBlock.from_arrays(time, rows, channels)
    return XtceAlarmCheck(alarms).fit(block).score(block).level


@needs_bogussat
def test_boolean_context_chooses_the_ranges(bogussat):
    # 12.5 V: outside the charging warning range [12.6, 14.0], inside the discharging one [12.35, 12.6].
    level = _check(bogussat, ["Battery_Charge_Mode", "Battery_Voltage"], [0.0, 1.0], [[1.0, 12.5], [0.0, 12.5]])
    assert level[:, 1].tolist() == [WARNING, 0]


@needs_bogussat
def test_enumeration_alarm_in_a_context(bogussat):
    state = next(c.conditions[0] for c in bogussat.alarms["Payload_1_Antenna_State"].contexts)
    on = state.value
    off = 1.0 - on if on in (0.0, 1.0) else on + 1
    # OFF (0) is normal by default, critical while the payload is on; FAILED (5) critical in both.
    rows = [[off, 0.0], [on, 0.0], [off, 5.0], [on, 4.0]]
    level = _check(bogussat, [state.parameter, "Payload_1_Antenna_State"], [0.0, 1.0, 2.0, 3.0], rows)
    assert level[:, 1].tolist() == [0, CRITICAL, CRITICAL, WARNING]


@needs_bogussat
def test_maximum_rate_in_stream(bogussat):
    # maximumValue 10 per second: the 11th sample within one second is a warning, the next second is fresh.
    t = [i * 0.05 for i in range(12)] + [1.0]
    level = _check(bogussat, ["SunSensorLevel"], t, [[1.0]] * len(t))
    assert level[:, 0].tolist() == [0] * 10 + [WARNING, WARNING, 0]
