"""Synthetic telemetry with injected anomalies of known position and kind.

Each channel is a periodic signal (an orbit) plus a slow random walk, a response to occasional
commands and sensor noise. Anomalies are injected into the test part only: ``spike``,
``level_shift``, ``drift``, ``frozen`` (the sensor repeats its last value), ``noise`` (the noise
grows tenfold), and the shape anomalies inside the normal range (:func:`inject_shape`):
``distorted_cycle`` (one cycle pushed towards a square wave), ``missing_cycle`` (one cycle
flat at its mean), ``changed_period`` (cycles at 1.5 times the pace) and ``amplitude`` (cycles at
half the amplitude). Used by the tests, the demo and as a quick self-check of the detectors.

>>> data = make_dataset(n_channels=3, n_train=2000, n_test=3000, seed=1)
>>> data.train.values.shape, data.test.values.shape, data.test.commands.shape
((2000, 3), (3000, 3), (3000, 3, 2))
>>> sorted({a.kind for a in data.anomalies}) == sorted(KINDS[:3])
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vigil.model import TelemetryBlock

KINDS = ("spike", "level_shift", "drift", "frozen", "noise")
#: Anomalies that stay inside the channel's normal range: only a change of shape tells them.
SHAPE_KINDS = ("distorted_cycle", "missing_cycle", "changed_period", "amplitude")


@dataclass(frozen=True)
class Injected:
    channel: str
    kind: str
    start: int
    end: int  # inclusive


@dataclass
class SyntheticData:
    train: TelemetryBlock
    test: TelemetryBlock
    anomalies: list[Injected]

    def labels(self, channel: str) -> list[tuple[int, int]]:
        return [(a.start, a.end) for a in self.anomalies if a.channel == channel]


def nominal_signal(n: int, rng: np.random.Generator, period: float, commands: np.ndarray) -> np.ndarray:
    """One channel's nominal behaviour: orbit + slow walk + command response + noise."""
    t = np.arange(n)
    phase = rng.uniform(0, 2 * np.pi)
    orbit = np.sin(2 * np.pi * t / period + phase) + 0.3 * np.sin(4 * np.pi * t / period + 2 * phase)
    walk = np.cumsum(rng.normal(0, 0.002, n))
    # A commanded mode adds an offset that settles with a first-order lag.
    target = 0.5 * commands[:, 0] - 0.3 * commands[:, 1]
    response = np.empty(n)
    acc = 0.0
    for i in range(n):  # n is a few thousand: generation, not a hot path
        acc += 0.05 * (target[i] - acc)
        response[i] = acc
    return orbit + walk + response + rng.normal(0, 0.03, n)


def _commands(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two one-hot-ish command flags switching on for a while at random times."""
    cmd = np.zeros((n, 2))
    for k in range(2):
        for start in rng.choice(n, size=max(1, n // 1500), replace=False):
            cmd[start : start + rng.integers(50, 300), k] = 1.0
    return cmd


def inject(x: np.ndarray, kind: str, start: int, length: int, rng: np.random.Generator) -> int:
    """Inject one anomaly in place; returns the inclusive end index."""
    end = min(start + length, x.size) - 1
    seg = slice(start, end + 1)
    scale = float(np.std(x)) or 1.0
    if kind == "spike":
        end = start + 2
        x[start : end + 1] += 4.0 * scale * rng.choice([-1, 1])
    elif kind == "level_shift":
        x[seg] += 1.5 * scale * rng.choice([-1, 1])
    elif kind == "drift":
        x[seg] += np.linspace(0, 2.5 * scale, end - start + 1) * rng.choice([-1, 1])
    elif kind == "frozen":
        x[seg] = x[start]
    elif kind == "noise":
        x[seg] += rng.normal(0, 10 * 0.03 + 0.3 * scale, end - start + 1)
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}; expected one of {KINDS}")
    return end


def inject_shape(x: np.ndarray, cycle: np.ndarray, kind: str, start: int, period: int) -> int:
    """Replace one or two periods of ``x`` from ``start`` (``cycle``: the nominal periodic part of
    ``x``, so the noise stays) with a shape anomaly inside the normal range; returns the inclusive end.

    >>> t = np.arange(400)
    >>> cycle = np.sin(2 * np.pi * t / 50)
    >>> x = cycle.copy()
    >>> inject_shape(x, cycle, "missing_cycle", 100, 50), float(np.abs(x[100:150]).max()) < 1e-9
    (149, True)
    """
    n = period if kind in ("distorted_cycle", "missing_cycle") else 2 * period
    seg = slice(start, start + n)
    part = cycle[seg]
    mid = float(np.mean(cycle))
    if kind == "distorted_cycle":
        d = part - mid  # each half-cycle pushed towards a flat top at its own peak (a squarer cycle)
        top, bottom = max(float(d.max()), 0.0), max(float(-d.min()), 0.0)
        new = mid + np.where(d > 0, np.abs(d) ** 0.25 * top**0.75, -(np.abs(d) ** 0.25) * bottom**0.75)
    elif kind == "missing_cycle":
        new = np.full(n, mid)
    elif kind == "changed_period":
        new = np.interp(np.arange(n) * 1.5, np.arange(cycle.size - start), cycle[start:])
    elif kind == "amplitude":
        new = mid + 0.5 * (part - mid)
    else:
        raise ValueError(f"unknown shape anomaly kind {kind!r}; expected one of {SHAPE_KINDS}")
    x[seg] += new - part
    return start + n - 1


def make_dataset(
    n_channels: int = 5,
    n_train: int = 3000,
    n_test: int = 5000,
    seed: int = 0,
    kinds: tuple[str, ...] = KINDS,
    anomalous: bool = True,
) -> SyntheticData:
    """Channels ``S-0``, ``S-1``, ...; channel ``i`` gets one anomaly of kind ``kinds[i % len(kinds)]``
    in the second half of its test part (none when ``anomalous`` is False)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    names = tuple(f"S-{i}" for i in range(n_channels))
    values = np.empty((n, n_channels))
    commands = np.empty((n, n_channels, 2))
    for j in range(n_channels):
        commands[:, j] = _commands(n, rng)
        values[:, j] = nominal_signal(n, rng, period=rng.uniform(90, 200), commands=commands[:, j])
    anomalies = []
    if anomalous:
        for j, name in enumerate(names):
            kind = kinds[j % len(kinds)]
            start = n_train + int(rng.integers(n_test // 2, n_test - 400))
            end = inject(values[:, j], kind, start, int(rng.integers(150, 300)), rng)
            anomalies.append(Injected(name, kind, start - n_train, end - n_train))
    time = np.arange(n, dtype=np.float64)
    train = TelemetryBlock(time[:n_train], values[:n_train], names, commands[:n_train], "synthetic:train")
    test = TelemetryBlock(time[n_train:] - n_train, values[n_train:], names, commands[n_train:], "synthetic:test")
    return SyntheticData(train, test, anomalies)
