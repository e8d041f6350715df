"""The checkpoint's position: where the stream was, under what identity, and whether it may be resumed.

A monitor checkpoint is a position (JSON, this module) plus the stream state (a pickle,
:mod:`vigil.monitor.checkpoint`), saved in one store transaction with the alarms of the block just
scored. The position says which checkpoint ``version`` wrote it, the last scored row's ``time``,
the ``rows`` scored, the ``items`` consumed from the source (records and unreadable lines, in
arrival order: where a replay resumes, also per kind under ``input``), and the ``identity`` it was
written under (hashes of the configuration and of the model).

Kept apart from the monitor because deciding whether a checkpoint may be resumed is about the
store and the run's identity, not about scoring: a checkpoint of another version, configuration or
model is refused with :class:`CheckpointMismatch`, whose message says what to do.

>>> p = position(emitted=12.0, rows=3, consumed={"records": 7, "bad": 1}, identity={"model": "ab"})
>>> p["items"], p["time"]
(8, 12.0)
>>> check(p, {"model": "cd"}, "monitor", "s.sqlite")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
vigil.monitor.position.CheckpointMismatch: the model changed since the checkpoint in s.sqlite (after 8 records, t=12.0): ...
"""

from __future__ import annotations

import math

from vigil.monitor.checkpoint import READABLE_VERSIONS

#: Version of the checkpoint the monitor writes; an older or newer one is refused with a clear error.
CHECKPOINT_VERSION = 3


class CheckpointMismatch(ValueError):
    """The store's checkpoint was written under another configuration, model or checkpoint version."""


def position(emitted: float, rows: int, consumed: dict[str, int], identity: dict) -> dict:
    """The position of a checkpoint taken after the row at ``emitted`` (``-inf``: none scored yet)."""
    return {
        "version": CHECKPOINT_VERSION,
        "time": None if math.isinf(emitted) else emitted,
        "rows": rows,
        "items": consumed["records"] + consumed["bad"],
        "input": dict(consumed),
        "identity": identity,
    }


def check(position: dict, identity: dict, key: str, where: str) -> None:
    """Refuse (:class:`CheckpointMismatch`) a checkpoint ``key`` in store ``where`` that was written
    by another checkpoint version or under another ``identity`` (configuration, model)."""
    version = position.get("version", 1)
    if version not in READABLE_VERSIONS:
        raise CheckpointMismatch(
            f"the checkpoint {key!r} in {where} is version {version}; this Vigil reads {READABLE_VERSIONS}: "
            f"start without resuming (--no-resume) or use a new store"
        )
    saved = position.get("identity", {})
    changed = sorted(k for k in set(identity) | set(saved) if identity.get(k) != saved.get(k))
    if changed:
        what = " and ".join(changed)
        raise CheckpointMismatch(
            f"the {what} changed since the checkpoint in {where} (after {position.get('items')} records, "
            f"t={position.get('time')}): resuming would continue the stream with state that no longer fits. "
            f"Restore the previous {what}, or score the source again from its start with --no-resume (alarms "
            f"already stored are kept, none raised twice)"
        )
