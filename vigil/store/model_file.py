"""The fitted model, saved once beside the alarm store and loaded at restart instead of refitted.

A model file is a small header line, then a pickle::

    VIGIL-MODEL 1\\n
    pickle({"detector": pickle(<fitted Detector, stream at its start>), "info": {...}})

``info`` records what the model came from: ``history`` (the nominal file's name and the SHA-256 of
its bytes), ``config`` (the SHA-256 of the validated configuration), the channels fitted and those
the history lacked (they run on limits only until a refit with history that has them), the Vigil
version, the time it was fitted and ``model_id`` (the SHA-256 of the pickled detector), which names
the model in the monitor's checkpoint, so a restart under another model is detected.

>>> import tempfile, pathlib
>>> from vigil.detect.limits import LimitCheck
>>> from vigil.model import TelemetryBlock
>>> det = LimitCheck({}).fit(TelemetryBlock.from_arrays([0.0], [[1.0]], ["T"]))
>>> path = pathlib.Path(tempfile.mkdtemp()) / "vigil.sqlite.model"
>>> model_id = save_model(path, det, {"config": "abc"})
>>> loaded, info = load_model(path)
>>> loaded.channels_, info["config"], info["format"], info["model_id"] == model_id
(('T',), 'abc', 1, True)
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from pathlib import Path
from typing import Any

from vigil.errors import ConfigError

MAGIC = b"VIGIL-MODEL"
#: The model file format this Vigil writes and reads.
FORMAT = 1


def model_path(store_path: str | Path) -> Path:
    """Where the model of the store ``store_path`` lives: ``<store>.model`` beside it."""
    return Path(f"{store_path}.model")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def config_sha256(config) -> str:
    """SHA-256 of a validated configuration (its content, not its file: comments do not count)."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()


def save_model(path: str | Path, detector, info: dict[str, Any]) -> str:
    """Write the fitted ``detector`` and ``info`` atomically (temporary file, fsync, rename).
    Returns the model id: the SHA-256 of the pickled detector (the same fit gives the same id)."""
    path = Path(path)
    model = pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)
    model_id = hashlib.sha256(model).hexdigest()
    info = {**info, "format": FORMAT, "vigil": _version(), "fitted_at": time.time(), "model_id": model_id}
    body = pickle.dumps({"detector": model, "info": info}, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + b" " + str(FORMAT).encode() + b"\n" + body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return model_id


def load_model(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The fitted detector and its ``info``; a clear :class:`ConfigError` for a file that is not a
    Vigil model or is of another format version."""
    path = Path(path)
    with open(path, "rb") as fh:
        header = fh.readline()
        parts = header.split()
        if len(parts) != 2 or parts[0] != MAGIC:
            raise ConfigError("not a Vigil model file", source=str(path))
        if parts[1] != str(FORMAT).encode():
            raise ConfigError(
                f"model file format {parts[1].decode(errors='replace')}; this Vigil reads {FORMAT}: refit with --refit",
                source=str(path),
            )
        try:
            saved = pickle.load(fh)  # noqa: S301 - a file this Vigil wrote beside its own store
        except Exception as err:
            raise ConfigError(
                f"unreadable model file ({type(err).__name__}: {err}): refit with --refit", source=str(path)
            ) from None
    return pickle.loads(saved["detector"]), saved["info"]  # noqa: S301 - as above


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vigil-telemetry")
    except PackageNotFoundError:
        return "unknown"
