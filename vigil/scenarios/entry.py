"""Synthetic orbiter-entry telemetry: channel models driven by an entry heating profile.

Each channel follows one of three simple models, all driven by the same per-flight
:class:`Flight` (its heating profile, manoeuvre times, soak temperatures):

* ``thermal``: a structure temperature (or a tyre pressure that follows its wheel's temperature)
  whose rate of change is proportional to the aerodynamic heating felt through a first-order
  thermal lag, plus a slow drift carried over from orbit;
* ``regulated``: hydraulic fluid warming from its on-orbit temperature towards a regulated level,
  with small bumps while the control surfaces work through bank manoeuvres;
* ``steady``: a level with a per-flight bias, bank-manoeuvre transients and correlated noise
  (trim, derived moments and angles, hydraulic pressures, discretes).

Sensors add white noise, clip at the ends of their range and quantise to their resolution, so an
off-scale-low reading is the bottom of the range, as it was for a burnt sensor wire. Anomalies are
added to the physical value (:class:`Ramp`, :class:`Step`) or replace the reading
(:class:`OffScaleLow`) by :func:`render`.

The heating profile is ``sqrt(rho) * v**3`` along altitude and Mach points of a real entry,
normalised to 1 at its peak; it is only a shape, not a heat flux.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

#: Scale height of the atmosphere (ft), for the density in the heating shape.
SCALE_HEIGHT_FT = 23_800.0


@dataclass(frozen=True)
class Sensor:
    """One channel: identity, alarm configuration and the parameters of its model.

    ``base`` is the per-flight range (uniform) of the starting value; ``rate`` is the rate of change
    (units per minute) at full lagged heating for ``thermal`` channels, the amplitude of the
    manoeuvre bumps for the others; ``tau_s`` the thermal lag (or, for ``regulated``, the time
    constant of warming towards ``target``).
    """

    name: str
    subsystem: str
    units: str
    description: str
    model: str
    base: tuple[float, float]
    rate: float = 0.0
    tau_s: float = 300.0
    target: tuple[float, float] = (0.0, 0.0)
    noise: float = 0.0
    quantum: float = 0.0
    range: tuple[float, float] = (-np.inf, np.inf)
    warning: tuple[float, float] | None = None
    critical: tuple[float, float] | None = None


@dataclass(frozen=True)
class Flight:
    """What varies from one entry to the next."""

    t: np.ndarray  # seconds from entry interface
    heating: np.ndarray  # normalised heating shape on ``t`` (stretched and scaled for this flight)
    manoeuvres: tuple[tuple[float, float], ...]  # (time from EI, sign) of the bank manoeuvres
    soak: float  # on-orbit soak offset shared by the structure temperatures (F)
    rate_scale: float  # flight-wide factor on heating rates
    rng_seed: int


def heating_shape(t: np.ndarray, trajectory: list[dict]) -> np.ndarray:
    """``sqrt(rho) v^3`` on ``t`` (s from EI) from altitude/Mach points, peak 1, zero before EI.

    Points without altitude or Mach are skipped for that quantity; values are held beyond the ends.
    """
    alt = [(p["t_from_ei_s"], p["alt_ft"]) for p in trajectory if p.get("alt_ft") is not None]
    mach = [(p["t_from_ei_s"], p["mach"]) for p in trajectory if p.get("mach") is not None]
    h = np.interp(t, *zip(*alt, strict=True))
    v = np.interp(t, *zip(*mach, strict=True))
    q = np.exp(-h / (2.0 * SCALE_HEIGHT_FT)) * v**3
    q = np.where(t >= 0, q, 0.0)
    return q / q.max()


def make_flight(
    t: np.ndarray, shape: np.ndarray, manoeuvres: list[tuple[float, float]], seed: int, nominal_timing: bool
) -> Flight:
    """One entry's variation: heating stretched by +-3 % and scaled by +-10 %, manoeuvres moved by
    up to 8 s, orbit soak and heating-rate factor drawn; ``nominal_timing`` keeps the reference
    timing (the failed entry flies the reconstructed trajectory as published)."""
    rng = np.random.default_rng(seed)
    if nominal_timing:
        stretch, amp, jitter = 1.0, 1.0, np.zeros(len(manoeuvres))
    else:
        stretch, amp, jitter = rng.uniform(0.97, 1.03), rng.uniform(0.9, 1.1), rng.uniform(-8, 8, len(manoeuvres))
    heating = amp * np.interp(t * stretch, t, shape)
    moved = tuple((m + dj, sign) for (m, sign), dj in zip(manoeuvres, jitter, strict=True))
    return Flight(t, heating, moved, rng.uniform(-15.0, 15.0), rng.uniform(0.8, 1.2), int(rng.integers(2**31)))


def lagged(x: np.ndarray, tau_s: float, dt: float = 1.0) -> np.ndarray:
    """First-order lag of ``x`` (time constant ``tau_s``), starting from ``x[0]``."""
    a = dt / (tau_s + dt)
    return lfilter([a], [1.0, a - 1.0], x, zi=[x[0] * (1.0 - a)])[0]


def manoeuvre_pulses(flight: Flight, width_s: float = 20.0) -> np.ndarray:
    """Signed smooth pulses at the flight's bank manoeuvres (peak 1)."""
    out = np.zeros_like(flight.t)
    for time, sign in flight.manoeuvres:
        out += sign * np.exp(-0.5 * ((flight.t - time) / width_s) ** 2)
    return out


def truth(sensor: Sensor, flight: Flight, rng: np.random.Generator) -> np.ndarray:
    """The physical value of ``sensor`` along ``flight`` (before sensor effects)."""
    t = flight.t
    start = rng.uniform(*sensor.base)
    if sensor.model == "thermal":
        soak = flight.soak if sensor.units == "F" else 0.0
        rate = sensor.rate * flight.rate_scale * rng.uniform(0.9, 1.1) * lagged(flight.heating, sensor.tau_s)
        drift = rng.normal(0.0, 0.1) * sensor.rate  # per minute, left over from orbit
        return start + soak + np.cumsum((rate + drift) / 60.0 * np.gradient(t))
    if sensor.model == "regulated":
        target = rng.uniform(*sensor.target)
        since = t - t[0]
        bumps = sensor.rate * np.abs(manoeuvre_pulses(flight))
        return target + (start - target) * np.exp(-since / sensor.tau_s) + bumps
    if sensor.model == "steady":
        # AR(1) noise with a 10 s correlation time, at the sensor's noise level.
        shocks = rng.normal(0.0, sensor.noise, t.shape)
        red = lfilter([np.sqrt(1 - 0.9**2)], [1.0, -0.9], shocks)
        return start + sensor.rate * manoeuvre_pulses(flight) + red
    raise ValueError(f"{sensor.name}: unknown model {sensor.model!r}")


@dataclass(frozen=True)
class Ramp:
    """Adds a change of ``rate`` units/min from ``t0``, reaching full rate over ``ramp_s`` and
    stopping after ``duration_s`` (held from then on)."""

    t0: float
    rate: float
    ramp_s: float = 0.0
    duration_s: float = np.inf

    def apply(self, t: np.ndarray, x: np.ndarray) -> np.ndarray:
        since = np.clip(t - self.t0, 0.0, self.duration_s)
        if self.ramp_s > 0:
            # Integral of a rate rising linearly to full over ramp_s.
            r = np.minimum(since, self.ramp_s)
            extra = r**2 / (2 * self.ramp_s) + np.maximum(since - self.ramp_s, 0.0)
        else:
            extra = since
        return x + self.rate / 60.0 * extra


@dataclass(frozen=True)
class Step:
    """Adds ``amount`` from ``t0`` on."""

    t0: float
    amount: float

    def apply(self, t: np.ndarray, x: np.ndarray) -> np.ndarray:
        return x + np.where(t >= self.t0, self.amount, 0.0)


@dataclass(frozen=True)
class OffScaleLow:
    """The reading falls to the bottom of the sensor's range over ``fall_s`` from ``t0`` and stays."""

    t0: float
    fall_s: float = 2.0


def render(
    sensor: Sensor,
    flight: Flight,
    rng: np.random.Generator,
    anomalies: list[Ramp | Step | OffScaleLow] = (),
) -> np.ndarray:
    """Sensor readings along ``flight``: truth, anomalies, noise, range clipping, quantisation."""
    t = flight.t
    x = truth(sensor, flight, rng)
    for a in anomalies:
        if not isinstance(a, OffScaleLow):
            x = a.apply(t, x)
    if sensor.model != "steady":  # steady channels carry their noise in the AR(1) term
        x = x + rng.normal(0.0, sensor.noise, t.shape)
    lo, hi = sensor.range
    for a in anomalies:
        if isinstance(a, OffScaleLow):
            frac = np.clip((t - a.t0) / max(a.fall_s, 1e-9), 0.0, 1.0)
            x = np.where(t >= a.t0, x + frac * (lo - x), x)
    x = np.clip(x, lo, hi)
    if sensor.quantum > 0:  # counts from the bottom of the range (or from zero for an open range)
        origin = lo if np.isfinite(lo) else 0.0
        x = origin + np.round((x - origin) / sensor.quantum) * sensor.quantum
    return x
