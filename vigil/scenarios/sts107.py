"""The STS-107 (Columbia) entry of 1 February 2003 as a replay scenario.

A reconstruction, not flight data: no raw telemetry of that entry is public. The channels the public
timeline names (left main gear brake-line, strut- and uplock-actuator and wheel-well temperatures,
tyre pressures and wheel temperatures, the four left-wing hydraulic return-line temperatures,
bondline and wing skin temperatures, aileron trim, rolling moment, sideslip) and their right-side
and unaffected counterparts are generated at 1 Hz from 300 s before entry interface (EI) to loss of
signal (LOS, EI+923 s) by :mod:`vigil.scenarios.entry`. Several nominal entries (other seeds, with
flight-to-flight variation) teach the detectors; the failed entry adds the timeline's real-time
events at their times. Events seen only on the onboard recorder (OEX/MADS) are not in the downlink
and are left out of the stream.

The event facts (times, kinds, confidence, sources) ship in ``data/sts107.json``, derived by
``scripts/build_sts107_data.py`` from the shared reconstruction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from vigil.errors import ConfigError
from vigil.model import TelemetryBlock
from vigil.scenarios.entry import Flight, OffScaleLow, Ramp, Sensor, Step, heating_shape, make_flight, render

if TYPE_CHECKING:
    from vigil.config import MonitorConfig

#: Entry interface, 2003-02-01 13:44:09 UTC (08:44:09 EST), as a Unix time.
EI_EPOCH = datetime(2003, 2, 1, 13, 44, 9, tzinfo=UTC).timestamp()
EST = timedelta(hours=-5)
START_S = -300  # first sample, seconds from EI
LOS_S = 923  # last valid telemetry frame
MMACS_CALL_S = 615  # MMACS reports the four lost hydraulic temperatures
#: Bank manoeuvres of the nominal entry plan: first bank right at EI+323, first reversal at EI+741.
MANOEUVRES = ((323.0, 1.0), (741.0, -1.0))


def _data() -> dict:
    return json.loads(resources.files("vigil.scenarios").joinpath("data/sts107.json").read_text())


# --- channels --------------------------------------------------------------------------------------
# Ranges, resolutions and limits are plausible assumptions (the sources give none): temperatures
# resolve 1 F with 0.3 F noise; limits are what a flight controller would set from the sensors'
# ranges and the hardware, not fitted to the failure. Heating rates are set so that the nominal
# wheel-well temperatures rise about 1.7 F/min around EI+764 and the bondline about 15 F in the five
# minutes from EI+591, as the sources give for nominal entries.
_WHEEL_WELL = dict(units="F", model="thermal", base=(50.0, 80.0), tau_s=400.0, noise=0.3, quantum=1.0,
                   range=(-100.0, 400.0), warning=(0.0, 200.0), critical=(-40.0, 250.0))  # fmt: skip
_TIRE_P = dict(units="psia", model="thermal", base=(325.0, 345.0), rate=0.8, tau_s=600.0, noise=0.4, quantum=2.0,
               range=(0.0, 500.0), warning=(300.0, 390.0), critical=(270.0, 420.0))  # fmt: skip
_HYD_RTN = dict(units="F", model="regulated", base=(45.0, 90.0), target=(110.0, 140.0), rate=3.0, tau_s=900.0,
                noise=0.3, quantum=1.0, range=(-100.0, 400.0), warning=(20.0, 220.0), critical=(0.0, 250.0))  # fmt: skip
_WING_T = dict(units="F", model="thermal", base=(0.0, 60.0), rate=8.0, tau_s=200.0, noise=0.5, quantum=1.0,
               range=(-200.0, 600.0), warning=(-60.0, 350.0), critical=(-100.0, 400.0))  # fmt: skip
_DOWNLOCK = dict(units="", model="steady", base=(0.0, 0.0), quantum=1.0, range=(0.0, 1.0), warning=(-0.5, 0.5))


def _gear(side: str) -> list[Sensor]:
    g = f"{side}MG"
    sub = "left-main-gear" if side == "L" else "right-main-gear"
    word = "left" if side == "L" else "right"
    out = [
        Sensor(f"{g}_BRAKE_LINE_T_{x}", sub, description=f"{word} main gear brake-line temperature {x}",
               rate=2.5, **_WHEEL_WELL)
        for x in "ABC"
    ]  # fmt: skip
    out += [
        Sensor(f"{g}_STRUT_ACT_T", sub, description=f"{word} main gear strut actuator temperature (hyd sys 3)",
               rate=2.5, **_WHEEL_WELL),
        Sensor(f"{g}_UPLOCK_ACT_T", sub, description=f"{word} main gear uplock actuator temperature",
               rate=2.5, **_WHEEL_WELL),
        Sensor(f"{g}_WHEEL_WELL_T", sub, description=f"{word} wheel-well temperature", rate=2.5, **_WHEEL_WELL),
    ]  # fmt: skip
    out += [
        Sensor(f"{g}_TIRE_P_{pos}_{k}", sub, description=f"{word} {'inboard' if pos == 'IB' else 'outboard'} "
               f"tyre pressure {k}", **_TIRE_P)
        for pos in ("IB", "OB") for k in (1, 2)
    ]  # fmt: skip
    out += [
        Sensor(f"{g}_WHEEL_T_{pos}", sub, description=f"{word} {'inboard' if pos == 'IB' else 'outboard'} "
               "wheel temperature", rate=1.5, **{**_WHEEL_WELL, "base": (40.0, 70.0)})
        for pos in ("IB", "OB")
    ]  # fmt: skip
    out += [
        Sensor(f"{g}_DOWNLOCK_{k}", sub, description=f"{word} main gear down-and-locked indication {k}", **_DOWNLOCK)
        for k in (1, 2)
    ]
    return out


def _hydraulics(side: str) -> list[Sensor]:
    word = "left" if side == "L" else "right"
    # Two return lines on hydraulic system 1, one each on systems 2 and 3 (as on Columbia's left wing).
    lines = (("IB", 1), ("OB", 1), ("IB", 2), ("OB", 3))
    return [
        Sensor(f"{side}H_{pos}_ELEVON_HYD{sys}_RTN_T", f"{word}-wing-hydraulics",
               description=f"{word} {'inboard' if pos == 'IB' else 'outboard'} elevon actuator, hydraulic "
               f"system {sys}, return-line temperature", **_HYD_RTN)
        for pos, sys in lines
    ]  # fmt: skip


def _structure(side: str) -> list[Sensor]:
    word = "left" if side == "L" else "right"
    sub = f"{word}-wing-structure"
    out = [Sensor(f"{side}W_LOWER_SKIN_T", sub, description=f"{word} wing lower skin temperature", **_WING_T)]
    out += [
        Sensor(f"{side}W_STRUCT_T_{k}", sub, description=f"{word} wing structure temperature {k} "
               "(which sensors were lost at EI+831 is not in the sources)", **{**_WING_T, "rate": 5.0})
        for k in (1, 2, 3)
    ]  # fmt: skip
    out.append(
        Sensor(f"{side}_MIDFUS_BONDLINE_T", f"{word}-fuselage-structure",
               description=f"{word} mid-fuselage sidewall bondline temperature",
               **{**_WING_T, "rate": 4.0, "tau_s": 250.0, "warning": (-60.0, 300.0), "critical": (-100.0, 350.0)})
    )  # fmt: skip
    return out


def _flight_control() -> list[Sensor]:
    sub = "flight-control"
    return [
        Sensor("AIL_TRIM", sub, "deg", "aileron trim (positive rolls right)", "steady", base=(-0.15, 0.15),
               rate=0.08, noise=0.02, quantum=0.01, range=(-5.0, 5.0), warning=(-1.5, 1.5), critical=(-3.0, 3.0)),
        Sensor("ROLL_MOMENT", sub, "dCl x1e-4", "derived aerodynamic rolling moment coefficient", "steady",
               base=(-0.5, 0.5), rate=1.0, noise=0.3, quantum=0.05),
        Sensor("BETA", sub, "deg", "derived sideslip angle", "steady", base=(-0.05, 0.05), rate=0.15,
               noise=0.04, quantum=0.01),
    ] + [
        Sensor(f"HYD{k}_P", "hydraulics", "psia", f"hydraulic system {k} pressure", "steady",
               base=(2950.0, 3050.0), rate=-40.0, noise=12.0, quantum=4.0, range=(0.0, 4000.0),
               warning=(2700.0, 3300.0), critical=(2400.0, 3500.0))
        for k in (1, 2, 3)
    ]  # fmt: skip


SENSORS: tuple[Sensor, ...] = tuple(
    _gear("L") + _gear("R") + _hydraulics("L") + _hydraulics("R") + _structure("L") + _structure("R")
    + _flight_control()
)  # fmt: skip
HYDRAULIC_RETURN_LINES = tuple(s.name for s in SENSORS if s.subsystem == "left-wing-hydraulics")
#: Each left-side analogue sensor is checked against the same sensor on the right side (it heats the
#: same in a nominal entry). One direction only, so a departure raises one alarm, on the left channel;
#: the discrete gear indications are left out (a change of a 0/1 reading has no nominal scale).
_NAMES = {s.name for s in SENSORS}
COUNTERPARTS: dict[str, str] = {
    s.name: "R" + s.name[1:]
    for s in SENSORS
    if s.name.startswith("L") and "R" + s.name[1:] in _NAMES and "DOWNLOCK" not in s.name
}


# --- the failed entry: what each real-time event does to which channels ----------------------------
@dataclass(frozen=True)
class Injection:
    """Anomalies for the timeline event at ``event_s`` (s from EI) on ``channels``.

    ``make(t0)`` gives one anomaly per channel; ``offsets_s`` spread the onsets where the sources
    say the channels went within some seconds of each other but give no per-sensor times.
    """

    event_s: int
    kind: str
    channels: tuple[str, ...]
    effect: str  # "ramp", "step+ramp", "off_scale_low", "set"
    params: dict = field(default_factory=dict)
    offsets_s: tuple[float, ...] = ()
    note: str = ""

    def anomalies(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for k, ch in enumerate(self.channels):
            t0 = self.event_s + (self.offsets_s[k] if self.offsets_s else 0.0)
            p = self.params
            if self.effect == "ramp":
                out[ch] = [Ramp(t0, p["rate"], p.get("ramp_s", 0.0), p.get("duration_s", np.inf))]
            elif self.effect == "step+ramp":
                out[ch] = [Step(t0, p["step"]), Ramp(t0, p["rate"])]
            elif self.effect == "off_scale_low":
                out[ch] = [OffScaleLow(t0, p.get("fall_s", 2.0))]
            elif self.effect == "set":
                out[ch] = [Step(t0, p["value"])]
            else:
                raise ValueError(f"unknown effect {self.effect!r}")
        return out


_TIRES = tuple(f"LMG_TIRE_P_{p}_{k}" for p in ("IB", "OB") for k in (1, 2))
#: Real-time events and how they show; rates in units per minute are the sources' where given
#: (20-40 F in five minutes in the wheel well, +60 F vs +15 F in five minutes on the bondline,
#: 1.7 -> 12.9 F/min on the strut actuator), else stated assumptions.
INJECTIONS: tuple[Injection, ...] = (
    Injection(457, "trend_change", ("BETA",), "ramp", {"rate": -0.15, "ramp_s": 20.0, "duration_s": 50.0},
              note="small, found only after the flight: about -0.1 deg, inside the nominal scatter"),
    Injection(488, "rising", ("LMG_BRAKE_LINE_T_A", "LMG_BRAKE_LINE_T_B", "LMG_BRAKE_LINE_T_C"), "ramp",
              {"rate": 3.5, "ramp_s": 30.0}, offsets_s=(0.0, 3.0, 6.0),
              note="20-30 F in five minutes including the ~1.7 F/min nominal rise"),
    Injection(532, "trend_change", ("ROLL_MOMENT",), "ramp", {"rate": -1.5, "ramp_s": 20.0},
              note="magnitude not in the sources"),
    Injection(561, "off_scale_low", HYDRAULIC_RETURN_LINES, "off_scale_low", {"fall_s": 2.0},
              offsets_s=(0.0, 1.0, 3.0, 4.0), note="four sensors within about 4-5 s"),
    Injection(581, "rising", ("LMG_UPLOCK_ACT_T",), "ramp", {"rate": 4.0, "ramp_s": 30.0},
              note="the strut actuator's rise is placed at its precise EI+764 event"),
    Injection(591, "rising", ("L_MIDFUS_BONDLINE_T",), "ramp", {"rate": 9.0, "ramp_s": 30.0},
              note="+60 F in five minutes where the right side rose about +15 F"),
    Injection(611, "trend_change", ("AIL_TRIM",), "ramp", {"rate": 0.05, "ramp_s": 30.0},
              note="slow trim change (magnitude assumed)"),
    Injection(611, "trend_change", ("ROLL_MOMENT",), "ramp", {"rate": 3.0, "ramp_s": 30.0},
              note="the rolling moment's trend reverses: -1.5/min becomes +1.5/min"),
    Injection(681, "rising", ("LMG_WHEEL_WELL_T",), "ramp", {"rate": 15.0, "ramp_s": 10.0},
              note="'sharp' rise; rate assumed"),
    Injection(764, "rising", ("LMG_STRUT_ACT_T",), "ramp", {"rate": 11.2, "ramp_s": 5.0},
              note="rate jumps from about 1.7 to 12.9 F/min"),
    Injection(790, "rising", ("LMG_TIRE_P_OB_1",), "step+ramp", {"step": 2.0, "rate": 1.0},
              note="one-count step up, then a slow rise"),
    Injection(795, "rising", ("LMG_TIRE_P_OB_2",), "step+ramp", {"step": 2.0, "rate": 1.0},
              note="one-count step up, then a slow rise"),
    Injection(799, "off_scale_low", ("LW_LOWER_SKIN_T",), "off_scale_low"),
    Injection(831, "trend_change", ("AIL_TRIM",), "ramp", {"rate": 0.5, "ramp_s": 20.0},
              note="growing right roll trim; magnitude assumed"),
    Injection(831, "trend_change", ("LW_STRUCT_T_1", "LW_STRUCT_T_2", "LW_STRUCT_T_3"), "off_scale_low",
              offsets_s=(0.0, 5.0, 10.0), note="three more left-side temperatures lost"),
    Injection(891, "off_scale_low", (*_TIRES, "LMG_WHEEL_T_IB", "LMG_WHEEL_T_OB"), "off_scale_low",
              offsets_s=(0.0, 2.0, 4.0, 6.0, 8.0, 10.0), note="all lost before MMACS's EI+906 call"),
    Injection(897, "discrete", ("LMG_DOWNLOCK_1",), "set", {"value": 1.0},
              note="one of the gear position sensors reads down-and-locked"),
)  # fmt: skip


# --- scenario --------------------------------------------------------------------------------------
@dataclass
class Scenario:
    """Nominal entries to learn from and to check against, the failed entry, and its events."""

    config: MonitorConfig | None  # None when built with config=False
    nominal_train: list[TelemetryBlock]
    nominal_holdout: list[TelemetryBlock]
    failed: TelemetryBlock
    ei_epoch: float
    events: list[dict]  # every timeline event in the window, with how it enters the stream
    nominal_ei_epochs: list[float] = field(default_factory=list)
    #: The failed entry's flight with the same noise and dropouts but no anomalies: an alarm it also
    #: raises is not caused by the injected events.
    failed_twin: TelemetryBlock | None = None

    def training_block(self) -> TelemetryBlock:
        """The nominal training entries joined in time, as one history block for ``fit``."""
        return _concat(self.nominal_train, "sts107:nominal-train")


def channel_config() -> dict[str, Any]:
    """The scenario's channel configuration as a plain dict (the TOML layout of :mod:`vigil.config`)."""
    channels = {}
    for s in SENSORS:
        limits = {k: list(v) for k, v in (("warning", s.warning), ("critical", s.critical)) if v is not None}
        channels[s.name] = {
            "subsystem": s.subsystem,
            "units": s.units,
            "description": s.description,
            "rate_hz": 1.0,
            "stale_after_s": 10.0,
            "min_violations": 2,
            "min_conformance": 5,
            **({"limits": limits} if limits else {}),
            **({"counterpart": COUNTERPARTS[s.name]} if s.name in COUNTERPARTS else {}),
        }
    return {"channels": channels, "incident_window_s": 30.0}


def build_config() -> MonitorConfig:
    from vigil.config import MonitorConfig

    return MonitorConfig.from_dict(channel_config(), source="sts107")


def build_scenario(seed: int = 0, n_train: int = 21, n_holdout: int = 6, config: bool = True) -> Scenario:
    """Generate the scenario: ``n_train`` + ``n_holdout`` nominal entries and the failed one.

    The default 27 nominal entries stand for Columbia's 27 earlier flights. Nominal entries draw
    their own flight variation from ``seed``; the failed entry keeps the
    reference heating and manoeuvre timing and adds :data:`INJECTIONS` at the timeline's times.
    ``config=False`` skips building the :class:`MonitorConfig` (generation only).
    """
    for key, value, least in (("n_train", n_train, 1), ("n_holdout", n_holdout, 0)):
        if value < least:
            raise ConfigError(f"must be >= {least}, got {value}", key=key, source="sts107")
    data = _data()
    t = np.arange(START_S, LOS_S + 1, dtype=np.float64)
    shape = heating_shape(t, data["trajectory"])
    ss = np.random.default_rng(seed).bit_generator.seed_seq.spawn(n_train + n_holdout + 1)
    seeds = [int(s.generate_state(1)[0]) for s in ss]
    # Nominal entries are dated before STS-107 (one per 90 days) so times never collide.
    nominal_epochs = [EI_EPOCH - 90 * 86400.0 * (n_train + n_holdout - k) for k in range(n_train + n_holdout)]
    nominal = [
        _entry(make_flight(t, shape, list(MANOEUVRES), seeds[k], nominal_timing=False), epoch, {}, [],
               f"sts107:nominal-{k}")
        for k, epoch in enumerate(nominal_epochs)
    ]  # fmt: skip
    events = _events(data["events"])
    anomalies: dict[str, list] = {}
    for inj in INJECTIONS:
        for ch, items in inj.anomalies().items():
            anomalies.setdefault(ch, []).extend(items)
    failed_flight = make_flight(t, shape, list(MANOEUVRES), seeds[-1], nominal_timing=True)
    gaps = _dropouts(data["events"])
    failed = _entry(failed_flight, EI_EPOCH, anomalies, gaps, "sts107:failed")
    twin = _entry(failed_flight, EI_EPOCH, {}, gaps, "sts107:failed-without-anomalies")
    return Scenario(
        config=build_config() if config else None,
        nominal_train=nominal[:n_train],
        nominal_holdout=nominal[n_train:],
        failed=failed,
        ei_epoch=EI_EPOCH,
        events=events,
        nominal_ei_epochs=nominal_epochs,
        failed_twin=twin,
    )


def _entry(
    flight: Flight, epoch: float, anomalies: dict[str, list], gaps: list[tuple[float, float]], source: str
) -> TelemetryBlock:
    rng = np.random.default_rng(flight.rng_seed)
    values = np.stack([render(s, flight, rng, anomalies.get(s.name, [])) for s in SENSORS], axis=1)
    if not gaps:  # nominal entries: a few one- or two-second link dropouts at random
        starts = rng.uniform(0, LOS_S - 5, rng.integers(2, 6))
        gaps = [(s, s + rng.integers(1, 3)) for s in starts]
    for a, b in gaps:
        values[(flight.t >= a) & (flight.t < b)] = np.nan
    return TelemetryBlock.from_arrays(flight.t + epoch, values, [s.name for s in SENSORS], source=source)


def _dropouts(events: list[dict]) -> list[tuple[float, float]]:
    """Five one- or two-second link dropouts from the timeline's dropout event (its time is approximate)."""
    ev = next(e for e in events if e["kind"] == "data_dropout")
    rng = np.random.default_rng(381)
    starts = np.sort(ev["t_from_ei_s"] + rng.uniform(0, ev["uncertainty_s"], 5))
    return [(float(s), float(s + rng.integers(1, 3))) for s in starts]


def _events(timeline: list[dict]) -> list[dict]:
    """Timeline events with how each enters the replay: injected (with channels), reference, or left out."""
    by_time: dict[int, list[Injection]] = {}
    for inj in INJECTIONS:
        by_time.setdefault(inj.event_s, []).append(inj)
    out = []
    for e in timeline:
        t = e["t_from_ei_s"]
        item = {k: e[k] for k in ("t_from_ei_s", "t_est", "kind", "label", "confidence", "uncertainty_s", "sources")}
        if not e["realtime"]:
            item["stream"] = "left out: onboard recorder or post-LOS only, not in the real-time downlink"
        elif t in by_time:
            item["stream"] = "injected"
            item["channels"] = [c for inj in by_time[t] for c in inj.channels]
            item["notes"] = [inj.note for inj in by_time[t] if inj.note]
        elif e["kind"] == "data_dropout":
            item["stream"] = "injected: five short all-channel gaps after this time"
        elif e["kind"] == "los":
            item["stream"] = "end of the stream"
        else:
            item["stream"] = "reference only (no telemetry channel in the scenario)"
        out.append(item)
    kinds = {(e["t_from_ei_s"], e["kind"]) for e in timeline if e["realtime"]}
    stray = sorted((i.event_s, i.kind) for i in INJECTIONS if (i.event_s, i.kind) not in kinds)
    if stray:
        raise ValueError(f"injections that match no real-time event (time, kind) of the timeline: {stray}")
    return out


def _concat(blocks: list[TelemetryBlock], source: str) -> TelemetryBlock:
    return TelemetryBlock.from_arrays(
        np.concatenate([b.time for b in blocks]),
        np.concatenate([b.values for b in blocks]),
        blocks[0].channels,
        source=source,
    )


def est_clock(t_from_ei_s: float) -> str:
    """EST wall-clock time of a moment given in seconds from EI.

    >>> est_clock(615), est_clock(923)
    ('08:54:24', '08:59:32')
    """
    moment = datetime.fromtimestamp(EI_EPOCH + t_from_ei_s, tz=UTC) + EST
    return moment.strftime("%H:%M:%S")


def run_replay(
    seed: int = 0,
    scenario: Scenario | None = None,
    tick_rows: int = 1,
    forecast_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build (or take) the scenario and replay it; see :func:`vigil.scenarios.replay.run` for the result."""
    from vigil.scenarios.replay import run

    return run(scenario if scenario is not None else build_scenario(seed), seed, tick_rows, forecast_options)
