"""The monitor's checkpoint: everything that decides a future alarm, written with the alarms it caused.

A checkpoint has two parts, saved in one store transaction with the alarm changes of the block
that was just scored (``SqliteStore.save_checkpoint(key, position, state=...)``):

* ``position`` (JSON, readable with ``vigil alarms``-style tools): checkpoint ``version``, the
  last scored row ``time``, ``rows`` scored, ``items`` consumed from the source (records and bad
  records, in arrival order: where a replay resumes), and the ``identity`` it was written under
  (hashes of the configuration and of the model).
* ``state`` (a pickle): the monitor's per-channel counters, staleness and latest values, its
  pending records and duplicate window, the stream clock and its quarantine, the detector's
  :meth:`~vigil.detect.base.Detector.stream_state` and the alarm manager's violation and
  conformance runs (:meth:`vigil.alarms.AlarmManager.stream_state`).

The history rings behind the console's plots are not part of it (display only, and 6 arrays of
``history_points`` per channel would make every checkpoint large); after a restart they refill.
"""

from __future__ import annotations

import pickle
from collections import Counter, deque

import numpy as np

#: The monitor attributes a checkpoint holds, besides the detector's and the manager's state.
MONITOR_ATTRS = (
    "counts_", "last_seen_", "last_value_", "last_level_", "stale_", "_recent", "_pend_t", "_pend_j",
    "_pend_v", "_max_seen", "_emitted", "unparsable", "replayed", "errors", "rows", "position_", "_delay",
    "_playback_t",
)  # fmt: skip


def capture(monitor) -> bytes:
    """The monitor's stream state as bytes (see the module docstring)."""
    state = {name: getattr(monitor, name) for name in MONITOR_ATTRS}
    state["unknown"] = dict(monitor.unknown)
    state["recent_errors"] = list(monitor.recent_errors)
    state["clock"] = monitor.clock_.state()
    state["detector"] = monitor.detector.stream_state()
    stream_state = getattr(monitor.manager, "stream_state", None)
    state["manager"] = stream_state() if stream_state is not None else None
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def restore(monitor, blob: bytes) -> None:
    """Put a :func:`capture`\\ d state back into a monitor built on the same configuration and model."""
    state = pickle.loads(blob)  # noqa: S301 - our own store, written by capture()
    counts = state.pop("counts_")
    for name in MONITOR_ATTRS:
        if name != "counts_":
            setattr(monitor, name, state[name])
    for name, column in counts.items():  # a counter added since is kept at zero
        monitor.counts_[name] = np.asarray(column)
    monitor.unknown = Counter(state["unknown"])
    monitor.recent_errors = deque(state["recent_errors"], maxlen=monitor.recent_errors.maxlen)
    monitor.clock_.set_state(state["clock"])
    monitor.detector.set_stream_state(state["detector"])
    if state["manager"] is not None and hasattr(monitor.manager, "set_stream_state"):
        monitor.manager.set_stream_state(state["manager"])
