"""The entry channel models: anomaly shapes, sensor effects, heating profile (hand-worked values)."""

import numpy as np
import pytest

from vigil.scenarios.entry import (
    Flight,
    OffScaleLow,
    Ramp,
    Sensor,
    Step,
    heating_shape,
    lagged,
    render,
)

T = np.arange(0.0, 11.0)


def test_ramp_without_onset_ramp_is_linear_from_t0():
    x = Ramp(t0=4.0, rate=6.0).apply(T, np.zeros_like(T))  # 6 per minute = 0.1 per second
    assert x[:5].tolist() == [0.0] * 5
    assert x[10] == pytest.approx(0.6)


def test_ramp_reaches_full_rate_after_ramp_s_and_holds_after_duration():
    # rate 60/min = 1/s, reaching full rate over 4 s: 4**2 / (2 * 4) = 2 after 4 s, then +1 per second.
    x = Ramp(t0=0.0, rate=60.0, ramp_s=4.0).apply(T, np.zeros_like(T))
    assert x[4] == pytest.approx(2.0)
    assert x[6] == pytest.approx(4.0)
    held = Ramp(t0=0.0, rate=60.0, duration_s=3.0).apply(T, np.zeros_like(T))
    assert held[3] == pytest.approx(3.0) and held[10] == pytest.approx(3.0)


def test_step_adds_from_t0_on():
    assert Step(t0=2.0, amount=5.0).apply(T[:4], np.ones(4)).tolist() == [1.0, 1.0, 6.0, 6.0]


def _flight(n: int = 11) -> Flight:
    t = np.arange(float(n))
    return Flight(t=t, heating=np.zeros(n), manoeuvres=(), soak=0.0, rate_scale=1.0, rng_seed=0)


def test_off_scale_low_pins_the_reading_at_the_bottom_of_the_range():
    sensor = Sensor("T", "s", "F", "", "thermal", base=(50.0, 50.0), quantum=1.0, range=(-100.0, 400.0))
    x = render(sensor, _flight(), np.random.default_rng(0), [OffScaleLow(t0=5.0, fall_s=2.0)])
    assert np.all(x[:5] == 50.0)  # no heating, no noise: the start value
    assert x[6] == -25.0  # half-way down: 50 + 0.5 * (-100 - 50)
    assert np.all(x[7:] == -100.0)


def test_readings_are_clipped_to_range_and_quantised():
    sensor = Sensor("P", "s", "psia", "", "thermal", base=(3.3, 3.3), noise=0.0, quantum=2.0, range=(0.0, 10.0))
    x = render(sensor, _flight(), np.random.default_rng(0), [Step(t0=3.0, amount=20.0)])
    assert x[0] == 4.0  # 3.3 rounds to the nearest 2-count
    assert np.all(x[3:] == 10.0)  # above the range: top of the range


def test_heating_shape_is_zero_before_entry_interface_and_peaks_at_one():
    t = np.arange(-100.0, 900.0)
    traj = [
        {"t_from_ei_s": 0, "alt_ft": 400000, "mach": 25.0},
        {"t_from_ei_s": 600, "alt_ft": 230000, "mach": 22.0},
        {"t_from_ei_s": 900, "alt_ft": 210000, "mach": 19.0},
    ]
    q = heating_shape(t, traj)
    assert np.all(q[t < 0] == 0.0)
    assert q.max() == pytest.approx(1.0)
    assert q[t == 0][0] < 0.05  # thin air at 400,000 ft
    assert 500 < t[np.argmax(q)] < 900


def test_lag_step_response_reaches_63_percent_after_one_time_constant():
    x = np.r_[np.zeros(1), np.ones(2000)]
    y = lagged(x, tau_s=100.0)
    assert y[0] == 0.0
    assert y[101] == pytest.approx(1 - np.exp(-1), abs=0.01)
