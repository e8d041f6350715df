"""A generated constellation: identical satellites, seeded telemetry, known injected anomalies.

Every satellite has the same channels (``SUBSYSTEM.NAME_k``) following an orbit-periodic signal
with its own phase and noise. Injected, with their times returned as the truth:

* *excursions*: a channel leaves its limits for a few samples (limit alarms, escalations, returns
  to normal; some channels need 2 violations or 3 conforming samples);
* *dropouts*: a channel stops reporting for a while (staleness alarms);
* *degradation* (optional): one satellite's channel drifts away from its siblings while staying
  inside its limits: no limit check sees it; the fleet check (:mod:`vigil.fleet.check`) must.

>>> c = Constellation(n_spacecraft=2, n_channels=10, duration_s=60, seed=1)
>>> c.names, len(c.channels), c.values("SAT-01").shape
(['SAT-00', 'SAT-01'], 10, (60, 10))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vigil.config import MonitorConfig

SUBSYSTEMS = ("EPS", "THERM", "AOCS", "COMM", "PROP")
T0 = 1_800_000_000.0  # 2027-01-15: generation times of the generated passes
PERIOD_S = 600.0  # a short "orbit", so that a few minutes hold whole cycles


@dataclass
class Constellation:
    """``n_spacecraft`` identical satellites of ``n_channels`` channels at 1 Hz for ``duration_s``."""

    n_spacecraft: int = 64
    n_channels: int = 200
    duration_s: int = 240
    seed: int = 0
    excursions_per_spacecraft: int = 3
    dropouts_per_spacecraft: int = 1
    degrade: tuple[str, str] | None = None
    degrade_by: float = 3.0  # in units of the channel's noise, reached at the end (inside the limits)
    truth: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = [f"SAT-{i:02d}" for i in range(self.n_spacecraft)]
        self.channels = [f"{SUBSYSTEMS[j % len(SUBSYSTEMS)]}.CH_{j:03d}" for j in range(self.n_channels)]
        rng = np.random.default_rng(self.seed)
        self._base = rng.uniform(-50, 50, self.n_channels)
        self._amp = rng.uniform(1, 10, self.n_channels)
        self._noise = rng.uniform(0.05, 0.5, self.n_channels)
        self.time = T0 + np.arange(self.duration_s, dtype=np.float64)
        self._cache: dict[str, np.ndarray] = {}
        self.truth = []

    def config(self) -> MonitorConfig:
        """Limits at the signal's range plus a margin; every fifth channel needs 2 violations, every
        seventh 3 conforming samples to return to normal; all report at 1 Hz (stale after 3 s)."""
        chans = {}
        for j, name in enumerate(self.channels):
            lo = self._base[j] - self._amp[j] - 8 * self._noise[j]
            hi = self._base[j] + self._amp[j] + 8 * self._noise[j]
            span = hi - lo
            chans[name] = {
                "subsystem": name.split(".")[0],
                "rate_hz": 1.0,
                "min_violations": 2 if j % 5 == 0 else 1,
                "min_conformance": 3 if j % 7 == 0 else 1,
                "limits": {"warning": [float(lo), float(hi)], "critical": [float(lo - span), float(hi + span)]},
            }
        return MonitorConfig.from_dict({"channels": chans, "incident_window_s": 30.0})

    def config_toml(self) -> str:
        """:meth:`config` as TOML text (for ``vigil fleet worker --config``)."""
        import tomli_w

        cfg = self.config()
        data = {"incident_window_s": cfg.incident_window_s, "channels": {}}
        for name, ch in cfg.channels.items():
            lim = ch.limits
            data["channels"][name] = {
                "subsystem": ch.subsystem,
                "rate_hz": ch.rate_hz,
                "min_violations": ch.min_violations,
                "min_conformance": ch.min_conformance,
                "limits": {"warning": list(lim.warning), "critical": list(lim.critical)},
            }
        return tomli_w.dumps(data)

    def values(self, sc: str) -> np.ndarray:
        """``[time, channel]`` values of one satellite (NaN: the channel did not report)."""
        if sc in self._cache:
            return self._cache[sc]
        k = self.names.index(sc)
        rng = np.random.default_rng([self.seed, k])
        phase = rng.uniform(0, 2 * np.pi)
        t = self.time - T0
        v = self._base + self._amp * np.sin(2 * np.pi * t[:, None] / PERIOD_S + phase)
        v = v + rng.normal(0, 1, v.shape) * self._noise
        n, c = v.shape
        for _ in range(self.excursions_per_spacecraft):
            j, start, length = int(rng.integers(c)), int(rng.integers(10, n - 20)), int(rng.integers(2, 8))
            span = 2 * self._amp[j] + 12 * self._noise[j]
            jump = span * rng.choice([0.8, 2.5]) * rng.choice([-1, 1])
            v[start : start + length, j] += jump
            self.truth.append({"spacecraft": sc, "kind": "excursion", "channel": self.channels[j],
                               "start": float(self.time[start]), "end": float(self.time[start + length - 1])})  # fmt: skip
        for _ in range(self.dropouts_per_spacecraft):
            j, start = int(rng.integers(c)), int(rng.integers(10, n - 30))
            v[start : start + 15, j] = np.nan
            self.truth.append({"spacecraft": sc, "kind": "dropout", "channel": self.channels[j],
                               "start": float(self.time[start]), "end": float(self.time[start + 14])})  # fmt: skip
        if self.degrade is not None and self.degrade[0] == sc:
            j = self.channels.index(self.degrade[1])
            v[:, j] += np.linspace(0, self.degrade_by * self._noise[j], n)
            self.truth.append({"spacecraft": sc, "kind": "degradation", "channel": self.degrade[1],
                               "start": float(self.time[0]), "end": float(self.time[-1])})  # fmt: skip
        self._cache[sc] = v
        return v

    def frames(self, sc: str):
        """``(time, channels, values)`` per second: what one telemetry message carries."""
        v = self.values(sc)
        names = np.array(self.channels)
        for i, t in enumerate(self.time.tolist()):
            ok = np.isfinite(v[i])
            yield t, names[ok].tolist(), v[i, ok].tolist()

    def write(self, folder: str | Path) -> list[Path]:
        """``config.toml`` and one wide CSV per satellite (``SAT-00.csv``...); returns the CSVs."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.toml").write_text(self.config_toml())
        paths = []
        for sc in self.names:
            v = self.values(sc)
            path = folder / f"{sc}.csv"
            with open(path, "w") as fh:
                fh.write("time," + ",".join(self.channels) + "\n")
                for i, t in enumerate(self.time.tolist()):
                    cells = ["" if not np.isfinite(x) else f"{x:.6g}" for x in v[i].tolist()]
                    fh.write(f"{t:.3f}," + ",".join(cells) + "\n")
            paths.append(path)
        return paths
