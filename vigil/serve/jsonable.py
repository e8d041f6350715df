"""Turn monitor and alarm objects into plain JSON: NaN and infinities become null, numpy becomes Python."""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """A JSON-safe copy of ``obj`` (dicts, lists, dataclasses, pydantic models, numpy values).

    >>> jsonable({"a": float("nan"), "b": np.arange(3), "c": (1.5, np.float32(2.0)), "d": float("inf")})
    {'a': None, 'b': [0, 1, 2], 'c': [1.5, 2.0], 'd': None}
    """
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return floats(obj) if obj.dtype.kind == "f" else obj.tolist()
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if hasattr(obj, "model_dump"):
        return jsonable(obj.model_dump())
    return str(obj)


def floats(values: Any) -> list[float | None]:
    """A float array as a list with null where not finite (fast path for plotted series).

    >>> floats([1.0, float("nan"), 3])
    [1.0, None, 3.0]
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        return [floats(row) for row in arr]
    out: list[Any] = arr.tolist()
    bad = np.flatnonzero(~np.isfinite(arr))
    for i in bad.tolist():
        out[i] = None
    return out
