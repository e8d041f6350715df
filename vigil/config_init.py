"""``vigil config init``: a first channel configuration written from a history file.

Per channel: its subsystem from the name's prefix where several channels share one (``BATT_T``,
``BATT_V`` -> ``batt``), its expected rate from the median spacing of its samples, and limits
*suggested* from the history's range, written as comments for the operator to review and
uncomment (a range seen in one history is not a limit the mission agreed on).

>>> import numpy as np
>>> from vigil.model import TelemetryBlock
>>> t = np.arange(0.0, 100.0, 2.0)
>>> block = TelemetryBlock.from_arrays(t, np.c_[np.linspace(10, 30, t.size), np.ones(t.size)], ["BATT_T", "BATT_V"])
>>> text = config_text(block, source="hist.csv")
>>> import tomllib; cfg = tomllib.loads(text)
>>> cfg["channels"]["BATT_T"]
{'subsystem': 'batt', 'rate_hz': 0.5}
>>> [line for line in text.splitlines() if line.startswith("# warning")][0]
'# warning = [8.0, 32.0]'
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import tomli_w

from vigil.model import TelemetryBlock

#: Suggested limits widen the history's range by these fractions of it on each side.
MARGINS = {"warning": 0.10, "critical": 0.25}
_SEPARATORS = re.compile(r"[_\-.:/ ]")


def subsystem_of(name: str) -> str:
    """The obvious prefix of a channel name, lower case ('' when there is none).

    >>> subsystem_of("BATT_T"), subsystem_of("A-1"), subsystem_of("T12"), subsystem_of("x")
    ('batt', 'a', 't', '')
    """
    parts = _SEPARATORS.split(name, maxsplit=1)
    if len(parts) == 2 and parts[0]:
        return parts[0].lower()
    match = re.match(r"([A-Za-z]+)\d", name)
    return match.group(1).lower() if match else ""


def suggest_limits(values: np.ndarray) -> dict[str, list[float]] | None:
    """Ranges around the finite values' range (``None`` if fewer than two distinct values).

    >>> suggest_limits(np.array([0.0, 10.0, np.nan]))
    {'warning': [-1.0, 11.0], 'critical': [-2.5, 12.5]}
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() == finite.max():
        return None
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo
    return {sev: [_round(lo - m * span), _round(hi + m * span)] for sev, m in MARGINS.items()}


def expected_rate(time: np.ndarray, values: np.ndarray) -> float | None:
    """Samples per second from the median spacing of the finite samples (3 significant digits)."""
    t = time[np.isfinite(values)]
    if t.size < 2:
        return None
    step = float(np.median(np.diff(t)))
    return _round(1.0 / step) if step > 0 else None


def config_text(block: TelemetryBlock, source: str = "") -> str:
    """The configuration as TOML text (tables by tomli-w, suggestions as comments)."""
    prefixes = Counter(subsystem_of(name) for name in block.channels)
    parts = [
        f"# Written by `vigil config init` from {source or 'a history'}: {block.n_channels} channels, "
        f"{block.n_samples} time steps.",
        "# Rates are measured; limits are only suggested from the history's range: review them,",
        "# then uncomment. `vigil config check` validates the file.",
        tomli_w.dumps({"incident_window_s": 30.0}),
    ]
    for j, name in enumerate(block.channels):
        prefix = subsystem_of(name)
        table: dict = {"subsystem": prefix if prefix and prefixes[prefix] > 1 else "other"}
        rate = expected_rate(block.time, block.values[:, j])
        if rate is not None:
            table["rate_hz"] = rate
        text = tomli_w.dumps({"channels": {name: table}})
        parts.append(text + _limit_comments(text.splitlines()[0], block.values[:, j]))
    return "\n".join(parts)


def _limit_comments(header: str, values: np.ndarray) -> str:
    limits = suggest_limits(values)
    if limits is None:
        return "# no limits suggested: the history has fewer than two distinct values\n"
    finite = values[np.isfinite(values)]
    lines = [
        f"# suggested from the history's range [{_round(finite.min())}, {_round(finite.max())}] "
        f"({finite.size} samples):",
        f"# {header[:-1]}.limits]",
        *(f"# {sev} = [{lo!r}, {hi!r}]" for sev, (lo, hi) in limits.items()),  # float repr is TOML
    ]
    return "\n".join(lines) + "\n"


def _round(x: float) -> float:
    """Six significant digits: suggestions need no more.

    >>> _round(1 / 3), _round(123456789.0)
    (0.333333, 123457000.0)
    """
    return float(f"{x:.6g}")


def write_config(data: str | Path, out: str | Path) -> tuple[int, int]:
    """Read ``data`` (CSV/Parquet, long or wide), write the configuration to ``out``.

    Returns (channels, subsystems other than 'other').
    """
    from vigil.ingest.tabular import read_table

    block, _report = read_table(data, strict=False)
    text = config_text(block, source=Path(data).name)
    Path(out).write_text(text, encoding="utf-8")
    subsystems = {subsystem_of(n) for n in block.channels} - {""}
    return block.n_channels, len(subsystems)
