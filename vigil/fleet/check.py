"""The fleet check: each channel compared with the same channel on its sibling spacecraft.

No single-spacecraft check sees a satellite whose battery or heater slowly departs from how its
identical siblings behave while staying inside its limits. Siblings fly at different orbital
phases, so each spacecraft is compared at a comparable phase: with itself one orbit earlier
(``period_s``). The orbit-to-orbit change ``x(t) - x(t - period)`` cancels the orbital cycle; per
window of ``window_s`` each spacecraft's channel is summarised by the median of that change (a
short excursion, already a limit alarm, or a dropout does not move it; a drift does); the fleet's median and its robust spread (1.4826 x MAD across siblings)
are learned from the siblings themselves in that same window, with no labels and no per-channel
setting. A spacecraft whose mean is more than ``z_max`` robust deviations from its siblings' median
in ``persist`` consecutive windows is reported.

>>> import numpy as np
>>> t = np.arange(1200.0)
>>> rng = np.random.default_rng(0)
>>> fleet = {f"S{k}": rng.normal(0, 1, (1200, 1)) for k in range(8)}
>>> fleet["S3"][:, 0] += np.linspace(0, 3, 1200)    # S3 drifts, well inside any +-6 limit
>>> [(f.spacecraft, f.channel) for f in FleetCheck(period_s=300, window_s=300, hop_s=150).run(t, fleet, ["T"])]
[('S3', 'T')]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from vigil.model import format_time


@dataclass(frozen=True)
class FleetFinding:
    """One spacecraft's channel departing from its siblings."""

    spacecraft: str
    channel: str
    start: float  # start of the first window it departed in
    end: float  # end of the last one
    z: float  # peak robust deviations from the siblings' median
    value: float  # its median orbit-to-orbit change at the peak
    median: float  # the siblings' median then
    spread: float  # the siblings' robust spread then
    siblings: int

    def explain(self) -> str:
        side = "above" if self.value > self.median else "below"
        return (
            f"{self.spacecraft} {self.channel}: changed by {self.value:.4g} since the previous orbit, "
            f"{self.z:.1f} robust deviations {side} the median change {self.median:.4g} of its {self.siblings} "
            f"siblings (spread {self.spread:.3g}) "
            f"from {format_time(self.start)} to {format_time(self.end)}"
        )


@dataclass
class FleetCheck:
    """See the module docstring. ``min_siblings``: fewer spacecraft reporting a channel in a window
    than this, and the channel is not judged then (a median of three says little)."""

    period_s: float = 600.0
    window_s: float = 600.0
    hop_s: float = 150.0
    z_max: float = 6.0
    persist: int = 2
    min_siblings: int = 5

    def window_medians(self, time: np.ndarray, fleet: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Window start times ``[w]`` and medians ``[spacecraft, w, channel]`` (NaN: no sample). A
        median, so a short excursion (already a limit alarm) does not move it; a drift does."""
        starts = np.arange(time[0], time[-1] - self.window_s + 1 + 1e-9, self.hop_s)
        lo = np.searchsorted(time, starts)
        hi = np.searchsorted(time, starts + self.window_s)
        out = np.full((len(fleet), starts.size, next(iter(fleet.values())).shape[1]), np.nan)
        for k, values in enumerate(fleet.values()):
            for w in range(starts.size):
                chunk = values[lo[w] : hi[w]]
                if chunk.size:
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: NaN, said so
                        out[k, w] = np.nanmedian(chunk, axis=0)
        return starts, out

    def scores(self, means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Robust z of each spacecraft against its siblings, per window and channel; median; spread."""
        med = np.nanmedian(means, axis=0)
        mad = np.nanmedian(np.abs(means - med), axis=0) * 1.4826
        spread = np.maximum(mad, 1e-9 + 1e-6 * np.abs(med))  # a fleet in perfect agreement
        z = np.abs(means - med) / spread
        enough = np.isfinite(means).sum(axis=0) >= self.min_siblings
        return np.where(enough & np.isfinite(z), z, 0.0), med, spread

    def run(self, time: np.ndarray, fleet: dict[str, np.ndarray], channels: list[str]) -> list[FleetFinding]:
        """Findings over a common time grid ``time[n]`` and per-spacecraft ``values[n, channel]``."""
        time = np.asarray(time, dtype=np.float64)
        if time.size == 0:
            return []
        lag = int(np.searchsorted(time, time[0] + self.period_s))
        if lag >= time.size or time[-1] - time[lag] < self.window_s:
            return []
        if not np.allclose(time[lag:] - time[:-lag], self.period_s, atol=0.5 * self.hop_s):
            raise ValueError("the fleet check needs a regular time grid (one orbit is the same number of samples)")
        change = {sc: v[lag:] - v[:-lag] for sc, v in fleet.items()}
        starts, means = self.window_medians(time[lag:], change)
        z, med, spread = self.scores(means)
        names = list(fleet)
        out = []
        flagged = z > self.z_max
        for k, j in zip(*np.nonzero(flagged.any(axis=1))):
            run, best = _longest_run(flagged[k, :, j])
            if run < self.persist:
                continue
            w = int(np.argmax(np.where(flagged[k, :, j], z[k, :, j], -1)))
            first = int(np.argmax(flagged[k, :, j]))
            last = flagged.shape[1] - 1 - int(np.argmax(flagged[k, ::-1, j]))
            out.append(FleetFinding(
                names[k], channels[j], float(starts[first]), float(starts[last] + self.window_s), float(z[k, w, j]),
                float(means[k, w, j]), float(med[w, j]), float(spread[w, j]), int(np.isfinite(means[:, w, j]).sum()) - 1,
            ))  # fmt: skip
        return sorted(out, key=lambda f: -f.z)


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    best = cur = end = 0
    for i, m in enumerate(mask.tolist()):
        cur = cur + 1 if m else 0
        if cur > best:
            best, end = cur, i
    return best, end
