"""``vigil fit --archive DIR --start --end``: fit the default detector on an archived span and save it.

The model file is written with :func:`vigil.store.model_file.save_model` when that module is
present (the monitor loads it at restart); until then with :func:`_save_fallback`, the same
format (a ``VIGIL-MODEL 1`` header line, then a pickle of the pickled detector and its info).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from vigil.errors import ConfigError


def parse_time(text: str) -> float:
    """Seconds since 1970 from a number or an ISO 8601 time (UTC unless it says otherwise).

    >>> parse_time("86400"), parse_time("1970-01-02T00:00:00Z"), parse_time("1970-01-02 01:00")
    (86400.0, 86400.0, 90000.0)
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{text!r} is neither seconds since 1970 nor an ISO 8601 time", key="time") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def refit(config_path: str | Path, archive: str | Path, start: float, end: float, out: str | Path) -> dict[str, Any]:
    """Fit ``build_detector(config)`` on the archive's rows in ``[start, end]``; save it to ``out``.

    Returns the model's info (channels fitted, rows, span, model id).
    """
    from vigil.archive import ArchiveReader
    from vigil.config import load_config
    from vigil.detect import build_detector

    if not end > start:
        raise ConfigError(f"the end ({end}) must be after the start ({start})", key="end")
    config = load_config(config_path)
    history = ArchiveReader(archive).block(start, end)
    wanted = [c for c in config.channels if c in history.channels]
    missing = [c for c in config.channels if c not in history.channels]
    if not wanted:
        raise ConfigError(f"the archive has none of the configured channels between {start} and {end}", key="channels")
    if missing:
        raise ConfigError(f"the archive lacks configured channels {missing[:5]}", key="channels")
    history = history.select(wanted)
    empty = [c for j, c in enumerate(wanted) if not np.isfinite(history.values[:, j]).any()]
    if empty:
        raise ConfigError(f"no archived samples of {empty[:5]} between {start} and {end}", key="channels")
    detector = build_detector(config).fit(history)
    info = {
        "history": {"archive": str(archive), "start": start, "end": end, "rows": history.n_samples},
        "config": hashlib.sha256(config.model_dump_json().encode()).hexdigest(),
        "channels": list(wanted),
    }
    try:
        from vigil.store.model_file import save_model
    except ImportError:  # the saved-model module is not merged yet: the same format, written here
        save_model = _save_fallback
    info["model_id"] = save_model(out, detector, info)
    return info


def _save_fallback(path: str | Path, detector: Any, info: dict[str, Any]) -> str:
    """Write ``VIGIL-MODEL 1`` + pickle atomically; returns the SHA-256 of the pickled detector."""
    path = Path(path)
    model = pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)
    model_id = hashlib.sha256(model).hexdigest()
    info = {**info, "format": 1, "fitted_at": time.time(), "model_id": model_id}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(b"VIGIL-MODEL 1\n" + pickle.dumps({"detector": model, "info": info}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return model_id
