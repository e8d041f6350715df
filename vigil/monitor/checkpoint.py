"""The monitor's checkpoint: everything that decides a future alarm, written with the alarms it caused.

A checkpoint has two parts, saved in one store transaction with the alarm changes of the block
that was just scored (``store.save_checkpoint(key, position, state=...)``):

* ``position`` (JSON, readable with ``vigil alarms``-style tools): checkpoint ``version``, the
  last scored row ``time``, ``rows`` scored, ``items`` consumed from the source (records and bad
  records, in arrival order: where a replay resumes), and the ``identity`` it was written under
  (hashes of the configuration and of the model).
* ``state``: the monitor's per-channel counters, staleness and latest values, its pending records
  and duplicate window, the stream clock and its quarantine, the detector's
  :meth:`~vigil.detect.base.Detector.stream_state` and the alarm manager's violation and
  conformance runs (:meth:`vigil.alarms.AlarmManager.stream_state`).

The state is about 1 kB per channel (10 MB at 10,000 channels) and a 1 Hz tick changes about a
seventh of it (the running values, not the delay lines and rings), so to a store that keeps parts (:class:`~vigil.store.sqlite.SqliteStore`, version 3)
only what changed is written (:class:`PartWriter`): every array of 4 kB or more is kept as raw
bytes in pieces of :data:`PIECE_BYTES`; a piece whose elements changed gets a patch (the changed
elements' positions and values) or, when most changed, is written whole; the rest of the state (the
small arrays and Python values, and where each array's pieces are) is pickled per top-level entry
and written when its bytes changed. A piece whose patches add up to its own size is written whole again (a bounded
amount per checkpoint, so no single tick rewrites everything), which bounds what a restart reads.
Restoring applies the patches in order to the pieces: the very bytes the monitor held. Other stores
(the in-memory one, the fleet's snapshots) take the whole state as one pickle (:func:`capture`);
a version-2 checkpoint (one pickle in the SQLite store) is read as before.

The history rings behind the console's plots are not part of it (display only, and 6 arrays of
``history_points`` per channel would make every checkpoint large); after a restart they refill.
"""

from __future__ import annotations

import pickle
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from vigil.store.stream_parts import StateDelta, StoredState

#: The monitor attributes a checkpoint holds, besides the detector's and the manager's state.
MONITOR_ATTRS = (
    "counts_", "last_seen_", "last_value_", "last_level_", "stale_", "_recent", "_pend_t", "_pend_j",
    "_pend_v", "_max_seen", "_emitted", "unparsable", "replayed", "errors", "rows", "position_", "_delay",
    "_playback_t",
)  # fmt: skip
#: Checkpoint versions a monitor resumes from: 2 (the state as one pickle), 3 (in parts).
READABLE_VERSIONS = (2, 3)
#: Arrays at least this large are stored apart from the pickled rest, as raw bytes.
MIN_ARRAY_BYTES = 4096
#: Size of the pieces an array is stored in (the unit written whole or patched).
PIECE_BYTES = 65536
#: A piece is written whole again once its patches add up to this share of its size.
REBASE_SHARE = 1.0
#: Bytes of pieces written whole again per checkpoint, at least (as much as its patches when they are more:
#: the rewrites keep pace with the patches).
REBASE_BUDGET = 262144
#: Lists and tuples longer than this are pickled as they are (names of channels), not searched for arrays.
MAX_SEARCHED_ITEMS = 16
TREE = "tree/"  # prefix of the parts holding the pickled rest of the state, one per top-level entry


def state_tree(monitor) -> dict[str, Any]:
    """The monitor's stream state as nested dicts, lists and arrays (not copied where not needed)."""
    state = {name: getattr(monitor, name) for name in MONITOR_ATTRS}
    state["unknown"] = dict(monitor.unknown)
    state["recent_errors"] = list(monitor.recent_errors)
    state["clock"] = monitor.clock_.state()
    state["detector"] = monitor.detector.stream_state()
    stream_state = getattr(monitor.manager, "stream_state", None)
    state["manager"] = stream_state() if stream_state is not None else None
    return state


def capture(monitor) -> bytes:
    """The monitor's stream state as one pickle (see the module docstring)."""
    return pickle.dumps(state_tree(monitor), protocol=pickle.HIGHEST_PROTOCOL)


def for_store(monitor) -> bytes | StateDelta:
    """What ``monitor.store.save_checkpoint`` is given as ``state``: what changed since the last
    checkpoint for a store that keeps parts, else :func:`capture`'s pickle. Call it inside the store
    transaction that saves it: a rollback makes the next checkpoint write everything."""
    store = monitor.store
    if not getattr(store, "keeps_state_parts", False):
        return capture(monitor)
    writer = _writers.get(monitor)
    if writer is None or writer.store is not store or writer.key != monitor.checkpoint_key:
        writer = _writers[monitor] = PartWriter(store, monitor.checkpoint_key)
    return writer.delta(state_tree(monitor))


def restore(monitor, saved: bytes | StoredState) -> None:
    """Put a saved state (:func:`capture`'s pickle or a store's parts) back into a monitor built on
    the same configuration and model."""
    if isinstance(saved, StoredState):
        state = assemble(saved)
        _writers.pop(monitor, None)  # the next checkpoint writes everything
    else:
        state = pickle.loads(saved)  # noqa: S301 - our own store, written by capture()
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


@dataclass(frozen=True)
class _Ref:
    """Where an array stored apart sits in the pickled tree: its path, dtype, shape and pieces."""

    path: str
    dtype: str
    shape: tuple[int, ...]
    unit: int  # bytes per element as compared and patched (the item size, or 1 for odd ones)
    pieces: int


class PartWriter:
    """Turns successive state trees of one monitor into :class:`StateDelta`\\ s for one store key.

    It keeps a copy of what the store holds (``shadow``, per array) to find what changed, element
    by element and bit for bit (a NaN that stays NaN is unchanged, ``-0.0`` after ``0.0`` is a change).
    """

    def __init__(self, store: Any, key: str) -> None:
        self.store, self.key = store, key
        self.shadow: dict[str, tuple[_Ref, np.ndarray]] = {}
        self.patched: dict[str, int] = {}  # piece -> bytes of the patches it has in the store
        self.pickled: dict[str, bytes] = {}  # tree part -> the bytes the store holds
        self.seq = 0
        self.valid = False
        self._scratch = np.empty(0, dtype=np.int64)  # positions of changed elements

    def invalidate(self) -> None:
        """Forget what the store holds (a rolled-back transaction): the next delta is full."""
        self.valid = False

    def delta(self, tree: dict[str, Any]) -> StateDelta:
        """What changed since the last delta (everything after :meth:`invalidate` or at first)."""
        full, self.valid = not self.valid, False
        if full:
            self.shadow, self.patched, self.pickled, self.seq = {}, {}, {}, 0
        self.seq += 1
        arrays: dict[str, np.ndarray] = {}
        rest = _split(tree, "", arrays)
        out = StateDelta(full=full)
        refs = {}
        for path, array in arrays.items():
            refs[path] = self._diff(path, array, out)
        for path in [p for p in self.shadow if p not in arrays]:
            ref, _ = self.shadow.pop(path)
            out.drop += [_piece(path, k) for k in range(ref.pieces)]
        for name in out.drop:
            self.patched.pop(name, None)
        self._rebase(out)
        self._write_tree(_with_refs(rest, refs), out)
        if self.store.in_transaction:  # else the store's success is not known here: the next is full
            self.store.on_rollback(self.invalidate)
            self.valid = True
        return out

    def _diff(self, path: str, array: np.ndarray, out: StateDelta) -> _Ref:
        old = self.shadow.get(path)
        if old is not None and old[0].shape == array.shape and old[0].dtype == array.dtype.str:
            ref, shadow = old
            flat = _units(array, ref.unit)
            if flat.size * ref.unit <= PIECE_BYTES and flat.tobytes() == shadow.tobytes():
                return ref  # a small array that did not change: a quick look (the duplicate window's rows)
            self._changed(ref, flat, shadow, out)
            return ref
        unit = array.dtype.itemsize if array.dtype.itemsize in (1, 2, 4, 8) else 1
        flat = _units(array, unit)
        per = max(1, PIECE_BYTES // unit)
        ref = _Ref(path, array.dtype.str, array.shape, unit, -(-flat.size // per))
        if old is not None:
            out.drop += [_piece(path, k) for k in range(ref.pieces, old[0].pieces)]
        shadow = flat.copy()
        self.shadow[path] = (ref, shadow)
        for k in range(ref.pieces):
            self._whole(_piece(path, k), shadow[k * per : (k + 1) * per], out)
        return ref

    def _changed(self, ref: _Ref, flat: np.ndarray, shadow: np.ndarray, out: StateDelta) -> None:
        """Patches (or whole pieces) for the elements of ``flat`` that differ from ``shadow``, which
        is brought up to date."""
        if self._scratch.size < flat.size:
            self._scratch = np.empty(flat.size, dtype=np.int64)
        changed = self._scratch[: _take_changes(flat, shadow, self._scratch)]
        if changed.size == 0:
            return
        per = max(1, PIECE_BYTES // ref.unit)
        bounds = np.searchsorted(changed, np.arange(0, ref.pieces + 1) * per)
        for k in np.flatnonzero(np.diff(bounds)).tolist():
            at = changed[bounds[k] : bounds[k + 1]]
            name, piece = _piece(ref.path, k), shadow[k * per : (k + 1) * per]
            if at.size * (4 + ref.unit) * 2 >= piece.nbytes:  # mostly changed: whole
                self._whole(name, piece, out)
            else:
                patch = (at - k * per).astype("<u4").tobytes() + shadow[at].tobytes()
                out.patch.append((name, self.seq, patch))
                self.patched[name] = self.patched.get(name, 0) + len(patch)

    def _write_tree(self, tree: dict[str, Any], out: StateDelta) -> None:
        """Each top-level entry pickled apart, written when its bytes changed (the manager's
        list of channel names is not written again with every counter)."""
        for key, value in tree.items():
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            if self.pickled.get(TREE + key) != data:
                out.write[TREE + key] = self.pickled[TREE + key] = data
        for name in [n for n in self.pickled if n[len(TREE) :] not in tree]:
            del self.pickled[name]
            out.drop.append(name)

    def _whole(self, name: str, piece: np.ndarray, out: StateDelta) -> None:
        out.write[name] = piece.tobytes()
        self.patched.pop(name, None)

    def _rebase(self, out: StateDelta) -> None:
        """Write whole again the pieces whose patches grew to their size, most overdue first, up to a
        budget: restoring stays bounded and the rewrites spread over checkpoints."""
        sizes = {}
        for name, nbytes in self.patched.items():
            path, k = name.rsplit("@", 1)
            ref, shadow = self.shadow[path]
            per = max(1, PIECE_BYTES // ref.unit)
            piece = shadow[int(k) * per : (int(k) + 1) * per]
            if nbytes >= REBASE_SHARE * piece.nbytes:
                sizes[name] = (nbytes / piece.nbytes, piece)
        budget, done = max(REBASE_BUDGET, sum(len(p[2]) for p in out.patch)), set()
        for name in sorted(sizes, key=lambda n: -sizes[n][0]):
            if budget <= 0:
                break
            piece = sizes[name][1]
            self._whole(name, piece, out)
            done.add(name)
            budget -= piece.nbytes
        if done:  # a piece written whole needs none of this checkpoint's patches
            out.patch = [p for p in out.patch if p[0] not in done]


def assemble(saved: StoredState) -> dict[str, Any]:
    """The state tree from a store's parts: the pieces with their patches applied in order."""
    tree = {
        name[len(TREE) :]: pickle.loads(data)  # noqa: S301 - our own store, written by PartWriter
        for name, data in saved.parts.items()
        if name.startswith(TREE)
    }
    patches: dict[str, list[bytes]] = {}
    for name, _, data in saved.patches:
        patches.setdefault(name, []).append(data)
    return _resolve(tree, saved.parts, patches)


@numba.njit(cache=True)
def _take_changes(flat: np.ndarray, shadow: np.ndarray, out: np.ndarray) -> int:  # pragma: no cover - numba
    """Copy into ``shadow`` the elements of ``flat`` that differ; their positions go to ``out``
    (ascending), their number is returned. One pass, no temporaries."""
    n = 0
    for i in range(flat.size):
        if flat[i] != shadow[i]:
            shadow[i] = flat[i]
            out[n] = i
            n += 1
    return n


def _units(array: np.ndarray, unit: int) -> np.ndarray:
    """The array's bytes as a flat array of ``unit``-byte unsigned integers (one per element where
    the item size allows, else bytes)."""
    return np.ascontiguousarray(array).reshape(-1).view(f"<u{unit}")


def _piece(path: str, k: int) -> str:
    return f"{path}@{k}"


def _split(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` with every large numeric array moved into ``arrays`` (by path) and left as its path."""
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biufcmM" and obj.nbytes >= MIN_ARRAY_BYTES:
        arrays[path] = obj
        return _Ref(path, "", (), 0, 0)
    if type(obj) is dict:  # subclasses (Counter...) are pickled as they are
        return {k: _split(v, f"{path}/{_segment(k)}", arrays) for k, v in obj.items()}
    if type(obj) in (list, tuple) and len(obj) <= MAX_SEARCHED_ITEMS:
        return type(obj)(_split(v, f"{path}/{i}", arrays) for i, v in enumerate(obj))
    return obj


def _segment(key: Any) -> str:
    """A dict key as one segment of a path: ``%``, ``/`` and ``~`` escaped, a non-string marked with
    ``~`` (the float 1.0 and the string "1.0" stay apart)."""
    text = (key if isinstance(key, str) else repr(key)).replace("%", "%25").replace("/", "%2F").replace("~", "%7E")
    return text if isinstance(key, str) else "~" + text


def _with_refs(obj: Any, refs: dict[str, _Ref]) -> Any:
    if isinstance(obj, _Ref):
        return refs[obj.path]
    if type(obj) is dict:
        return {k: _with_refs(v, refs) for k, v in obj.items()}
    if type(obj) in (list, tuple) and len(obj) <= MAX_SEARCHED_ITEMS:
        return type(obj)(_with_refs(v, refs) for v in obj)
    return obj


def _resolve(obj: Any, parts: dict[str, bytes], patches: dict[str, list[bytes]]) -> Any:
    if isinstance(obj, _Ref):
        return _rebuild(obj, parts, patches)
    if type(obj) is dict:
        return {k: _resolve(v, parts, patches) for k, v in obj.items()}
    if type(obj) in (list, tuple) and len(obj) <= MAX_SEARCHED_ITEMS:
        return type(obj)(_resolve(v, parts, patches) for v in obj)
    return obj


def _rebuild(ref: _Ref, parts: dict[str, bytes], patches: dict[str, list[bytes]]) -> np.ndarray:
    pieces = []
    for k in range(ref.pieces):
        name = _piece(ref.path, k)
        piece = np.frombuffer(parts[name], dtype=f"<u{ref.unit}").copy()
        for patch in patches.get(name, ()):
            n = len(patch) // (4 + ref.unit)
            piece[np.frombuffer(patch[: 4 * n], dtype="<u4")] = np.frombuffer(patch[4 * n :], dtype=f"<u{ref.unit}")
        pieces.append(piece)
    flat = np.concatenate(pieces) if pieces else np.empty(0, dtype=f"<u{ref.unit}")
    return flat.view(np.dtype(ref.dtype)).reshape(ref.shape)


_writers: weakref.WeakKeyDictionary[Any, PartWriter] = weakref.WeakKeyDictionary()
