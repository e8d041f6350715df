"""The live monitor: records or blocks in, scored rows through the detector and the alarm manager.

Records ``(time, channel, value)`` are grouped into rows by time: one row per distinct time, with
NaN (missing) for channels that did not report then. A row is *final*, and gets scored, once a
record more than ``lateness_s`` later has arrived (or on :meth:`Monitor.flush`). A record for a
time already final is counted per channel as ``duplicate`` (that channel already had a value at
that time) or ``out_of_order`` and is not scored; NaN/inf values are counted as ``missing``;
lines that could not be read are ``malformed`` (per channel where the line named one, else per
source); records of channels the detector does not know are counted under ``unknown``. Nothing
is dropped without being counted, and nothing in the input stops the monitor.

Final rows are scored in blocks (many rows per detector call when replaying fast, one row per
tick live). Detectors and the alarm manager are streaming, so scoring a stream in any chunking
gives exactly what scoring it as one block gives.

This module is the loop and the per-channel state it keeps; the rules it applies live beside it:
:mod:`~vigil.monitor.intake` (inputs as channel indices), :mod:`~vigil.monitor.ordering` (lateness,
duplicates, playback: records into rows), :mod:`~vigil.monitor.clock` (corrupt times),
:mod:`~vigil.monitor.staleness`, :mod:`~vigil.monitor.handover` (calls into the alarm manager),
:mod:`~vigil.monitor.views` (ticks, history, counters), :mod:`~vigil.monitor.checkpoint` and
:mod:`~vigil.monitor.position` (checkpoint and resume).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import numpy as np

from vigil.detect.base import Detector, Scores
from vigil.ingest.records import BadRecord
from vigil.model import TelemetryBlock
from vigil.monitor import checkpoint, handover, intake, position, staleness, views
from vigil.monitor.clock import StreamClock
from vigil.monitor.history import Rings, absorb
from vigil.monitor.ordering import PendingRecords, grid, monitor_field
from vigil.monitor.position import CHECKPOINT_VERSION, CheckpointMismatch

#: Most cells (rows x channels) scored in one detector call when records are gridded.
MAX_CELLS = 2_000_000

COUNTERS = (
    "received", "scored", "missing", "out_of_order", "duplicate", "malformed", "quarantined", "stale", "unscored",
)  # fmt: skip
__all__ = ["CHECKPOINT_VERSION", "COUNTERS", "MAX_CELLS", "CheckpointMismatch", "Monitor"]

log = logging.getLogger(__name__)


class Monitor:
    """Score a live stream with ``detector`` and feed ``manager``; keep counters, latest values, history.

    Args:
        config: a ``MonitorConfig``; its channels' ``rate_hz``/``stale_after_s`` set staleness.
        detector: any fitted :class:`~vigil.detect.base.Detector`; its channels are the monitor's.
        manager: the alarm manager (``update(block, scores)``, ``report_stale``, ``report_fresh``).
        history_s: seconds of history :meth:`history` returns (older samples are left out).
        history_points: ring length per channel (samples kept at most): the live plot; older spans
            come from the archive (vigil.archive) when one is kept.
        lateness_s: how long after a later record a row still accepts records.
        max_jump_s: a record more than this far ahead of the stream clock is quarantined until the
            stream confirms the jump (see :mod:`vigil.monitor.clock`); ``None`` trusts every time.
        store: where the stream checkpoint is saved (``save_checkpoint``/``load_checkpoint``).
        checkpoint_key: the checkpoint's name in the store.
        checkpoint_every_s: stream seconds between checkpoints of a block that changed no alarm
            (0: every block). A block that changes any alarm is always checkpointed in the same
            transaction, so the blocks after the last checkpoint changed none, and a restart that
            replays them from it gives exactly the uninterrupted run. A live source that cannot be
            replayed loses at most this much stream state (never an alarm) to a kill.
        identity: what the checkpoint must have been written under to be resumed (configuration
            and model hashes); a mismatch is refused by :meth:`resume` with a clear error.
        live_slack_s: live, a record may be at most this far ahead of the stream clock plus the wall
            time elapsed since the clock last advanced (``received`` given to :meth:`feed_records`).
        playback_after_s: live, a record received more than this long after its generation time
            (beyond the stream's usual delay) is *playback*: scored, but alarms it raises are marked.
    """

    # The reorder buffer's fields, under the names the checkpoint (checkpoint.MONITOR_ATTRS) uses.
    _pend_t, _pend_j, _pend_v, _max_seen, _recent, _playback_t, _delay = (
        monitor_field(f) for f in ("t", "j", "v", "max_seen", "recent", "playback_t", "delay")
    )

    def __init__(
        self,
        config,
        detector: Detector,
        manager,
        history_s: float = 3600.0,
        history_points: int = 256,
        lateness_s: float = 0.0,
        max_jump_s: float | None = 3600.0,
        store=None,
        checkpoint_key: str = "monitor",
        identity: dict | None = None,
        live_slack_s: float = 60.0,
        playback_after_s: float = 300.0,
        checkpoint_every_s: float = 10.0,
    ) -> None:
        channels = getattr(detector, "channels_", None)
        if channels is None:
            raise RuntimeError(f"{type(detector).__name__} is not fitted: call fit() first")
        if lateness_s < 0 or history_s <= 0:
            raise ValueError(f"lateness_s must be >= 0 and history_s > 0, got {lateness_s}, {history_s}")
        self.config = config
        self.detector = detector
        self.manager = manager
        self.history_s = history_s
        self.lateness_s = lateness_s
        self.max_jump_s = max_jump_s
        self.clock_ = StreamClock(max_jump_s, slack_s=live_slack_s)
        self.playback_after_s = playback_after_s
        self.pending = PendingRecords(lateness_s, playback_after_s)
        self.store = store
        self.checkpoint_every_s = checkpoint_every_s
        self._checkpointed_t = -math.inf  # stream time of the last checkpoint (derived, not saved)
        self.checkpoint_key = checkpoint_key
        self.identity = dict(identity or {})
        # Input consumed, for resuming a replay: records and unreadable lines (BadRecord), each in
        # the order the source gave them.
        self.position_ = {"records": 0, "bad": 0}
        self.channels: tuple[str, ...] = tuple(channels)
        self._index = {name: j for j, name in enumerate(self.channels)}
        c = len(self.channels)
        self.stale_limit_ = staleness.stale_limits(config, self.channels)
        self.counts_ = {name: np.zeros(c, dtype=np.int64) for name in COUNTERS}
        self.last_seen_ = np.full(c, np.nan)
        self.last_value_ = np.full(c, np.nan)
        self.last_level_ = np.zeros(c, dtype=np.int8)
        self.stale_ = np.zeros(c, dtype=np.bool_)
        self.rings_ = Rings(c, history_points)
        self._emitted = -math.inf  # time of the last scored row
        self._resume_t: float | None = None
        self.unknown: Counter[str] = Counter()
        self.unparsable = 0
        self.replayed = 0
        self.errors = 0
        self.rows = 0
        self.rows_at_resume = 0  # rows scored before the checkpoint this monitor resumed from
        self.recent_errors: deque[str] = deque(maxlen=20)
        self._subscribers: list[Callable[[dict], None]] = []
        self._block_sinks: list[Callable] = []

    # -- input -------------------------------------------------------------------------------------
    def feed_records(self, items: Iterable, received: float | None = None) -> list:
        """Take records ``(time, channel, value)`` (or :class:`BadRecord`); score the rows they finalise.

        ``received``: the wall time the batch arrived (live sources); it bounds how far ahead of the
        stream clock a record may be, and marks records received long after generation as playback.
        Returns the alarm events raised while scoring (manager events and staleness reports).
        """
        items = items if isinstance(items, list | tuple) else list(items)
        n_bad = sum(1 for item in items if isinstance(item, BadRecord))
        self.position_ = {
            "records": self.position_["records"] + len(items) - n_bad,
            "bad": self.position_["bad"] + n_bad,
        }
        t, j, v = intake.records(items, self._index, self._count_bad, self._count_unknown)
        return self._ingest(t, j, v, received)

    def feed_columns(self, time, channel, value, names=None, received: float | None = None) -> list:
        """Take records as columns (the bulk form of :meth:`feed_records`); returns alarm events.

        ``channel`` holds names, or, with ``names``, codes indexing ``names`` (as
        :class:`~vigil.ingest.bulk.RecordBatch` carries them). Names are mapped to channels once
        per distinct name; unknown ones are counted by name, a non-finite time as malformed.
        ``received`` as in :meth:`feed_records`.
        """
        t = np.asarray(time, dtype=np.float64)
        self.position_ = {**self.position_, "records": self.position_["records"] + int(t.size)}
        t, j, v = intake.columns(t, channel, value, names, self._index, self._count_unknown)
        bad_t = ~np.isfinite(t)
        if bad_t.any():
            for k in np.flatnonzero(bad_t)[:5].tolist():
                self.recent_errors.append(f"channel {self.channels[j[k]]}: time {t[k]!r} is not finite")
            np.add.at(self.counts_["malformed"], j[bad_t], 1)
            t, j, v = t[~bad_t], j[~bad_t], v[~bad_t]
        return self._ingest(t, j, v, received)

    def feed_block(self, block: TelemetryBlock) -> list:
        """Score a block of rows (after flushing pending records before it). Returns alarm events.

        Rows at or before the last scored time are counted as out-of-order and skipped; channels
        the detector does not know are counted under ``unknown``; NaN/inf cells count as missing.
        The block's rows count as input consumed (``position_["records"]``: where a replay of
        blocks, e.g. ``vigil packets monitor`` on a file, resumes).
        """
        values, present = intake.aligned(block, self.channels, self._index, self._count_unknown)
        if block.n_samples == 0:
            return []
        self.position_ = {**self.position_, "records": self.position_["records"] + block.n_samples}
        events = self.flush(before=float(block.time[0]))
        if self.pending.t.size:  # records for times the block now covers arrived too early to fit in
            self.pending.drop(self.counts_)
        time = block.time
        if self._resume_t is not None:  # before the lateness check: the checkpoint's rows are replays
            done = time <= self._resume_t
            self.replayed += int(np.isfinite(values[done]).sum())
            time, values = time[~done], values[~done]
        late = time <= self._emitted
        if late.any():
            self.counts_["out_of_order"] += np.isfinite(values[late]).sum(axis=0)
            time, values = time[~late], values[~late]
        if time.size == 0:
            return events
        finite = np.isfinite(values)
        self.counts_["received"] += values.shape[0] * present
        self.counts_["missing"] += (~finite).sum(axis=0) * present
        if not finite.all():
            values = np.where(finite, values, np.nan)
        self.pending.max_seen = max(self.pending.max_seen, float(time[-1]))
        self.clock_.advance(self.pending.max_seen, None)
        events += self._score(time, values)
        return events

    def flush(self, before: float | None = None) -> list:
        """Score pending rows (all, or those before ``before``) without waiting for later records."""
        pend_t = self.pending.t
        if not pend_t.size:
            return []
        return self._emit(np.ones(pend_t.size, dtype=bool) if before is None else pend_t < before)

    def end_of_stream(self) -> list:
        """The source has ended: score every pending row. Records still quarantined (a jump ahead
        that nothing confirmed) are counted as ``quarantined``, not dropped."""
        self.clock_.end()
        self._count_quarantined()
        events = self.flush()
        if self.store is not None:
            self.save()  # the end is always checkpointed, whatever the cadence
        else:
            self._store_latest()
        return events

    def _store_latest(self) -> None:
        store_latest = getattr(self.manager, "store_latest", None)
        if store_latest is not None:
            store_latest()

    # -- the record path ---------------------------------------------------------------------------
    def _ingest(self, t: np.ndarray, j: np.ndarray, v: np.ndarray, received: float | None = None) -> list:
        """The one place records enter: ``time[n]``, channel index ``[n]``, value ``[n]`` in arrival order."""
        if t.size == 0:
            return []
        np.add.at(self.counts_["received"], j, 1)
        if self._resume_t is not None:
            replay = t <= self._resume_t
            self.replayed += int(replay.sum())
            t, j, v = t[~replay], j[~replay], v[~replay]
        t, j, v = self.clock_.screen(t, j, v, received)
        self._count_quarantined()
        if t.size == 0:
            return []
        return self._emit(self.pending.admit(t, j, v, self._emitted, self.counts_, received))

    def _count_quarantined(self) -> None:
        """Count (per channel) and report the records the stream clock refuted."""
        refuted, self.clock_.refuted = self.clock_.refuted, []
        for t, j, jump in refuted:
            self.counts_["quarantined"][j] += 1
            self.recent_errors.append(
                f"channel {self.channels[j]}: time {t!r} is {jump:.6g} s ahead of the stream clock and the stream "
                f"did not follow it; quarantined (not scored)"
            )

    def _emit(self, done: np.ndarray) -> list:
        """Score the pending records marked ``done``, as rows."""
        if not done.any():
            return []
        events: list = []
        for times, values, has in grid(*self.pending.take(done), len(self.channels), MAX_CELLS):
            events += self._score(times, values, has, self.pending.playback_rows(times))
        return events

    # -- scoring -----------------------------------------------------------------------------------
    def _score(
        self, time: np.ndarray, values: np.ndarray, has: np.ndarray | None = None, playback: np.ndarray | None = None
    ) -> list:
        """Score rows; ``has`` marks the (row, channel) cells that had a sample (default: finite);
        ``playback`` the rows generated long before they arrived."""
        block = handover.block_of(time, values, self.channels, self._index)
        try:
            scores = self.detector.score(block)
        except Exception as err:  # a running monitor keeps going; the rows are counted as unscored
            self._fault(f"detector failed on rows t={block.time[0]}..{block.time[-1]}", err)
            scores = None
        # Alarms and the checkpoint commit together: after a kill, a restart resumes exactly after
        # the last block whose alarms were stored.
        with self.store.transaction() if self.store is not None else nullcontext():
            events = self._apply(block, scores, has, playback)
        if self._subscribers:
            self._publish(time, np.isfinite(values))
        for sink in self._block_sinks:
            sink(time, values, scores)
        return events

    def _apply(self, block: TelemetryBlock, scores: Scores | None, has: np.ndarray | None, playback=None) -> list:
        time, values = block.time, block.values
        finite = np.isfinite(values)
        self.counts_["scored" if scores is not None else "unscored"] += finite.sum(axis=0)
        if scores is None:
            scores = Scores.empty(time.size, values.shape[1], "none")
            skip_manager = True
        else:
            skip_manager = False
        r = self.rings_
        a = r.arrays
        changes = absorb(
            time, values, scores.level, scores.expected, scores.low, scores.high,
            self.last_seen_, self.last_value_, self.last_level_, self.stale_limit_, self.stale_,
            a["time"], a["value"], a["expected"], a["low"], a["high"], a["level"], r.head, r.count,
        )  # fmt: skip
        # The manager hears rows and staleness changes in time order, whatever the chunking: a channel
        # went stale at its last sample + its limit (event time), before the row that showed it; it
        # is fresh again at the row that brings its sample, after that row.
        events: list = []
        done = 0
        for upto, stale, j, when, seen in staleness.in_time_order(changes, time, self.stale_limit_):
            if upto > done and not skip_manager:
                events += self._update(block, scores, done, upto, playback)
                done = upto
            events += self._report_staleness(stale, j, when, seen)
        if done < time.size and not skip_manager:
            events += self._update(block, scores, done, time.size, playback)
        self.pending.remember(time, finite if has is None else has)
        self._emitted = float(time[-1])
        self.rows += time.size
        if self._resume_t is not None and self._emitted > self._resume_t:
            self._resume_t = None
        self._checkpoint_if_due()
        return events

    def _update(self, block: TelemetryBlock, scores: Scores, a: int, b: int, playback=None) -> list:
        try:
            return handover.update(self.manager, block, scores, a, b, playback)
        except Exception as err:  # counted and reported; the stream goes on
            self._fault(f"alarm manager failed on rows t={block.time[a]}..{block.time[b - 1]}", err)
            return []

    def _fault(self, what: str, err: Exception) -> None:
        """Count and report a detector or alarm manager failure; the stream goes on."""
        self.errors += 1
        message = f"{what}: {type(err).__name__}: {err}"
        self.recent_errors.append(message)
        log.error(message, exc_info=err)

    def _report_staleness(self, stale: bool, j: int, time: float, last_seen: float) -> list:
        channel = self.channels[j]
        if stale:
            self.counts_["stale"][j] += 1
        try:
            return handover.staleness(self.manager, stale, channel, time, last_seen)
        except Exception as err:  # counted and reported like a failed update; the stream goes on
            self._fault(f"alarm manager failed on staleness of {channel} at t={time}", err)
            return []

    def check_staleness(self, now: float) -> list:
        """Report channels whose last sample is older than their limit at stream time ``now``.

        For quiet periods with no rows to score (live sources call this on every idle tick). A
        channel goes stale at event time ``last sample + limit``, the time a replay at any speed
        finds when its next row arrives; ``now`` only decides whether that time has passed.
        """
        due = staleness.due(now, self.last_seen_, self.stale_, self.stale_limit_)
        if not due:
            return []
        events: list = []
        with self.store.transaction() if self.store is not None else nullcontext():
            for j, when in due:
                self.stale_[j] = True
                events += self._report_staleness(True, j, when, float(self.last_seen_[j]))
            self._checkpoint()
        return events

    # -- bookkeeping -------------------------------------------------------------------------------
    def _count_bad(self, channel: str | None, message: str) -> None:
        j = None if channel is None else self._index.get(channel)
        if j is not None:
            self.counts_["malformed"][j] += 1
        elif channel is not None:
            self._count_unknown(channel)
        else:
            self.unparsable += 1
        self.recent_errors.append(message)

    def _count_unknown(self, channel: str, n: int = 1) -> None:
        intake.count_unknown(self.unknown, channel, n)

    def _checkpoint_if_due(self) -> None:
        """Checkpoint when this transaction changes an alarm, or ``checkpoint_every_s`` after the last."""
        changed = getattr(self.manager, "changed_in_transaction", None)
        if changed is None or changed() or not self._emitted - self._checkpointed_t < self.checkpoint_every_s:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Save the position and the full stream state (inside the caller's store transaction)."""
        if self.store is not None:
            self._checkpointed_t = self._emitted
            at = position.position(self._emitted, self.rows, self.position_, self.identity)
            self.store.save_checkpoint(self.checkpoint_key, at, state=checkpoint.for_store(self))

    def save(self) -> None:
        """Checkpoint now (pending records and quarantine included), e.g. before a clean stop."""
        if self.store is not None:
            with self.store.transaction():
                self._checkpoint()
                self._store_latest()

    def resume(self, replayable: bool = False) -> dict | None:
        """Continue from the store's checkpoint; returns its position (``None``: no checkpoint).

        The full stream state is restored, so the rest of the stream gives exactly the alarms of an
        uninterrupted run. ``replayable``: the source starts again from its beginning and will skip
        the ``position["items"]`` items already consumed (a file replay); otherwise (live) records at
        or before the checkpoint time are passed over and counted as ``replayed``.

        Raises :class:`CheckpointMismatch` when the checkpoint was written under another
        configuration or model (``identity``) or checkpoint version: resuming would score the rest
        of the stream with state that no longer fits, and skipping it would say "nothing to do".
        """
        if self.store is None:
            return None
        at = self.store.load_checkpoint(self.checkpoint_key)
        if at is None:
            return None
        position.check(at, self.identity, self.checkpoint_key, getattr(self.store, "path", "the store"))
        blob = self.store.load_stream_state(self.checkpoint_key)
        if blob is not None:
            checkpoint.restore(self, blob)
            self.rows_at_resume = self.rows
            self._checkpointed_t = self._emitted
        if not replayable and at.get("time") is not None:
            self._resume_t = float(at["time"])
        return at

    # -- output ------------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback`` after every scored block with a ``{"type": "values", ...}`` dict."""
        self._subscribers.append(callback)

    def add_block_sink(self, sink: Callable) -> None:
        """Call ``sink(time, values, scores)`` with every scored block (``scores`` None if the detector
        failed), after its alarms are committed: the archive keeps every accepted sample this way."""
        self._block_sinks.append(sink)

    def _publish(self, time: np.ndarray, finite: np.ndarray) -> None:
        tick = views.values_tick(time, finite, self.channels, self.last_value_, self.last_level_, self.stale_)
        for callback in list(self._subscribers):
            callback(tick)

    def latest(self) -> dict[str, tuple[float, float, int]]:
        """Per channel that has reported: (time, value, level) of its last sample."""
        return views.latest(self.channels, self.last_seen_, self.last_value_, self.last_level_)

    def history(
        self, channel: str, t0: float | None = None, t1: float | None = None, max_points: int = 2000
    ) -> dict[str, list]:
        """Recent samples of ``channel`` between ``t0`` and ``t1``, min/max-decimated to ``max_points``.

        Keys: time, value, expected, low, high (NaN where undefined) and level.
        """
        j = self._index.get(channel)
        if j is None:
            raise KeyError(f"no channel {channel!r} in the monitor")
        horizon = self._emitted - self.history_s
        return views.history(self.rings_, j, horizon if t0 is None else max(t0, horizon), t1, max_points)

    def counters(self, nonzero: bool = False) -> dict:
        """Per-channel counts (received, scored, missing, out_of_order, duplicate, malformed, stale,
        unscored: rows a failing detector could not score), plus ``unknown`` channels,
        ``unparsable`` lines, ``replayed`` records (skipped on resume), ``errors`` (detector or
        manager failures), scored ``rows``, pending records and the latest error messages.

        With ``nonzero``, only channels with a problem count (missing and up) are listed.
        """
        rows, totals = views.counter_table(self.counts_, COUNTERS, self.channels, self.stale_, nonzero)
        return {
            "channels": rows,
            "totals": totals,
            "unknown": dict(self.unknown),
            "unparsable": self.unparsable,
            "replayed": self.replayed,
            "errors": self.errors,
            "rows": self.rows,
            "pending": int(self.pending.t.size),
            "quarantine_held": int(self.clock_.held[0].size),
            "position": dict(self.position_),
            "last_time": None if math.isinf(self._emitted) else self._emitted,
            "recent_errors": list(self.recent_errors),
        }

    def state_nbytes(self, include_history: bool = True) -> int:
        """Bytes of per-channel state held by the monitor (not the detector or manager)."""
        arrays = [*self.counts_.values(), self.last_seen_, self.last_value_, self.last_level_, self.stale_]
        arrays += [self.stale_limit_]
        return sum(a.nbytes for a in arrays) + (self.rings_.nbytes if include_history else 0)
