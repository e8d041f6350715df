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
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import numpy as np

from vigil.detect.base import Detector, Scores
from vigil.ingest.records import BadRecord, Record
from vigil.model import TelemetryBlock
from vigil.monitor import checkpoint
from vigil.monitor.clock import StreamClock
from vigil.monitor.history import Rings, absorb, decimate

#: Most cells (rows x channels) scored in one detector call when records are gridded.
MAX_CELLS = 2_000_000
#: Most distinct unknown channel names tracked; the rest are counted together.
MAX_UNKNOWN = 1_000
#: Seconds behind the latest time within which a late record is checked against the samples
#: already taken (a duplicate) rather than counted as out-of-order without looking.
DUPLICATE_WINDOW_S = 60.0

COUNTERS = (
    "received", "scored", "missing", "out_of_order", "duplicate", "malformed", "quarantined", "stale", "unscored",
)  # fmt: skip
#: Version of the checkpoint the monitor writes; one it cannot read is refused with a clear error.
CHECKPOINT_VERSION = 3


class CheckpointMismatch(ValueError):
    """The store's checkpoint was written under another configuration, model or checkpoint version."""


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
        self._delay = math.inf  # the live stream's usual delay, reception - generation (its minimum)
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
        self.stale_limit_ = _stale_limits(config, self.channels)
        self.counts_ = {name: np.zeros(c, dtype=np.int64) for name in COUNTERS}
        self.last_seen_ = np.full(c, np.nan)
        self.last_value_ = np.full(c, np.nan)
        self.last_level_ = np.zeros(c, dtype=np.int8)
        self.stale_ = np.zeros(c, dtype=np.bool_)
        self.rings_ = Rings(c, history_points)
        self._recent: dict[float, np.ndarray] = {}  # scored row time -> which channels had a sample
        self._playback_t: set[float] = set()  # pending row times that hold a playback record
        self._pend_t = np.empty(0)
        self._pend_j = np.empty(0, dtype=np.int64)
        self._pend_v = np.empty(0)
        self._max_seen = -math.inf
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
        ts: list[float] = []
        js: list[int] = []
        vs: list[float] = []
        index = self._index
        for item in items:
            if isinstance(item, BadRecord):
                self._count_bad(item.channel, str(item))
                continue
            try:
                t, channel, v = item if type(item) is Record else _as_record(item)
            except (TypeError, ValueError) as err:
                self._count_bad(_channel_of(item), f"record {item!r}: {err}")
                continue
            j = index.get(channel)
            if j is None:
                self._count_unknown(channel)
                continue
            ts.append(t)
            js.append(j)
            vs.append(v)
        return self._ingest(
            np.asarray(ts, dtype=np.float64), np.asarray(js, dtype=np.int64), np.asarray(vs, dtype=np.float64), received
        )

    def feed_columns(self, time, channel, value, names=None, received: float | None = None) -> list:
        """Take records as columns (the bulk form of :meth:`feed_records`); returns alarm events.

        ``channel`` holds names, or, with ``names``, codes indexing ``names`` (as
        :class:`~vigil.ingest.bulk.RecordBatch` carries them). Names are mapped to channels once
        per distinct name; unknown ones are counted by name, a non-finite time as malformed.
        ``received`` as in :meth:`feed_records`.
        """
        t = np.asarray(time, dtype=np.float64)
        self.position_ = {**self.position_, "records": self.position_["records"] + int(t.size)}
        v = np.asarray(value, dtype=np.float64)
        if names is None:
            names, codes = np.unique(np.asarray(channel, dtype=object).astype(str), return_inverse=True)
            names = names.tolist()
        else:
            codes = np.asarray(channel, dtype=np.int64)
        if not (t.shape == v.shape == codes.shape):
            raise ValueError(f"time, channel and value differ in length: {t.shape}, {codes.shape}, {v.shape}")
        lut = np.fromiter((self._index.get(n, -1) for n in names), np.int64, len(names))
        j = lut[codes] if codes.size else codes
        known = j >= 0
        if not known.all():
            per_name = np.bincount(codes[~known], minlength=len(names))
            for k in np.flatnonzero(per_name).tolist():
                self._count_unknown(names[k], int(per_name[k]))
            t, j, v = t[known], j[known], v[known]
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
        values, present = self._aligned(block)
        if block.n_samples == 0:
            return []
        self.position_ = {**self.position_, "records": self.position_["records"] + block.n_samples}
        events = self.flush(before=float(block.time[0]))
        if self._pend_t.size:  # records for times the block now covers arrived too early to fit in
            np.add.at(self.counts_["out_of_order"], self._pend_j, 1)
            self._pend_t, self._pend_j, self._pend_v = self._pend_t[:0], self._pend_j[:0], self._pend_v[:0]
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
        self._max_seen = max(self._max_seen, float(time[-1]))
        self.clock_.advance(self._max_seen, None)
        events += self._score(time, values)
        return events

    def flush(self, before: float | None = None) -> list:
        """Score pending rows (all, or those before ``before``) without waiting for later records."""
        if not self._pend_t.size:
            return []
        done = np.ones(self._pend_t.size, dtype=bool) if before is None else self._pend_t < before
        return self._emit(done)

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
        if received is not None:
            self._note_playback(t, received)
        # A record is late when its row was already final on arrival: at or before the last scored
        # row, or more than lateness_s before the latest time seen until then.
        prev_max = np.maximum.accumulate(np.concatenate(([self._max_seen], t)))[:-1]
        late = (t <= self._emitted) | (t < prev_max - self.lateness_s)
        if late.any():
            self._count_late(t, j, late, prev_max)
            t, j, v = t[~late], j[~late], v[~late]
        if t.size == 0:
            return []
        self._max_seen = max(self._max_seen, float(t.max()))
        n_old = self._pend_t.size
        all_t = np.concatenate((self._pend_t, t))
        all_j = np.concatenate((self._pend_j, j))
        all_v = np.concatenate((self._pend_v, v))
        # Pending records were de-duplicated before, and the earliest arrival is kept, so only
        # this batch's records can repeat a (time, channel) pair.
        dup = _repeats(all_t, all_j)[n_old:]
        np.add.at(self.counts_["duplicate"], j[dup], 1)
        np.add.at(self.counts_["missing"], j[~dup & ~np.isfinite(v)], 1)
        keep = np.concatenate((np.ones(n_old, dtype=bool), ~dup))
        all_t, all_j, all_v = all_t[keep], all_j[keep], all_v[keep]
        all_v = np.where(np.isinf(all_v), np.nan, all_v)
        self._pend_t, self._pend_j, self._pend_v = all_t, all_j, all_v
        return self._emit(all_t < self._max_seen - self.lateness_s)

    def _note_playback(self, t: np.ndarray, received: float) -> None:
        """Live: remember the times of records received long after their generation (playback).

        The stream's usual delay is the least seen (reception - generation); quarantined times
        never reach here, so a corrupt future time cannot make live data look like playback.
        """
        delay = received - t
        self._delay = min(self._delay, float(delay.min()))
        old = delay > self._delay + self.playback_after_s
        if old.any():
            self._playback_t.update(t[old].tolist())

    def _count_quarantined(self) -> None:
        """Count (per channel) and report the records the stream clock refuted."""
        refuted, self.clock_.refuted = self.clock_.refuted, []
        for t, j, jump in refuted:
            self.counts_["quarantined"][j] += 1
            self.recent_errors.append(
                f"channel {self.channels[j]}: time {t!r} is {jump:.6g} s ahead of the stream clock and the stream "
                f"did not follow it; quarantined (not scored)"
            )

    def _count_late(self, t: np.ndarray, j: np.ndarray, late: np.ndarray, prev_max: np.ndarray) -> None:
        """Late records: duplicates of a sample already taken, or out-of-order.

        A late record is a duplicate when a record for the same time and channel arrived before it
        and that time is within :data:`DUPLICATE_WINDOW_S` of the latest time seen until then; the
        rule depends only on the arrival order, never on how the stream was chunked.
        """
        seen = set(zip(self._pend_t.tolist(), self._pend_j.tolist()))
        for k in range(t.size):
            key = (float(t[k]), int(j[k]))
            if not late[k]:
                seen.add(key)  # taken before the late records that follow it
                continue
            dup = False
            if key[0] >= prev_max[k] - DUPLICATE_WINDOW_S:
                row = self._recent.get(key[0])
                dup = key in seen or (row is not None and bool(row[key[1]]))
            self.counts_["duplicate" if dup else "out_of_order"][j[k]] += 1

    def _emit(self, done: np.ndarray) -> list:
        """Grid the pending records marked ``done`` into rows and score them."""
        if not done.any():
            return []
        t, j, v = self._pend_t[done], self._pend_j[done], self._pend_v[done]
        self._pend_t, self._pend_j, self._pend_v = self._pend_t[~done], self._pend_j[~done], self._pend_v[~done]
        times, row = np.unique(t, return_inverse=True)
        order = np.argsort(row, kind="stable")
        row, j, v = row[order], j[order], v[order]
        c = len(self.channels)
        step = max(1, MAX_CELLS // max(c, 1))
        events: list = []
        for a in range(0, times.size, step):
            b = min(a + step, times.size)
            lo, hi = np.searchsorted(row, [a, b])
            values = np.full((b - a, c), np.nan)
            values[row[lo:hi] - a, j[lo:hi]] = v[lo:hi]
            has = np.zeros((b - a, c), dtype=bool)  # a NaN record is a sample too (a missing one)
            has[row[lo:hi] - a, j[lo:hi]] = True
            events += self._score(times[a:b], values, has, self._playback_rows(times[a:b]))
        return events

    def _playback_rows(self, times: np.ndarray) -> np.ndarray | None:
        """Which of these rows hold a playback record (``None``: none do)."""
        if not self._playback_t:
            return None
        rows = np.fromiter((x in self._playback_t for x in times.tolist()), dtype=bool, count=times.size)
        self._playback_t.difference_update(times[rows].tolist())
        return rows if rows.any() else None

    # -- scoring -----------------------------------------------------------------------------------
    def _score(
        self, time: np.ndarray, values: np.ndarray, has: np.ndarray | None = None, playback: np.ndarray | None = None
    ) -> list:
        """Score rows; ``has`` marks the (row, channel) cells that had a sample (default: finite);
        ``playback`` the rows generated long before they arrived."""
        block = self._block(time, values)
        try:
            scores = self.detector.score(block)
        except Exception as err:  # a running monitor keeps going; the rows are counted as unscored
            self._fault("detector", err, block)
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
        for kind, i, j, seen in _in_time_order(changes, time, self.stale_limit_):
            upto = i + 1 if kind == 0 else i
            if upto > done and not skip_manager:
                events += self._update(block, scores, done, upto, playback)
                done = upto
            when = float(time[i]) if kind == 0 else float(seen + self.stale_limit_[j])
            events += self._report_staleness(bool(kind), int(j), when, float(seen))
        if done < time.size and not skip_manager:
            events += self._update(block, scores, done, time.size, playback)
        self._remember(time, finite if has is None else has)
        self._emitted = float(time[-1])
        self.rows += time.size
        if self._resume_t is not None and self._emitted > self._resume_t:
            self._resume_t = None
        self._checkpoint_if_due()
        return events

    def _block(self, time: np.ndarray, values: np.ndarray) -> TelemetryBlock:
        """A block of the monitor's channels, built without re-validation.

        The monitor made ``time`` (sorted, unique, finite) and ``values`` (``[n, c]`` float64)
        itself; re-building the name index of 10,000 channels would cost more than scoring a tick.
        """
        block = object.__new__(TelemetryBlock)
        fields = {"time": time, "values": values, "channels": self.channels, "commands": None}
        for name, value in (*fields.items(), ("source", "monitor"), ("_index", self._index)):
            object.__setattr__(block, name, value)
        return block

    def _update(self, block: TelemetryBlock, scores: Scores, a: int, b: int, playback=None) -> list:
        if a > 0 or b < block.n_samples:
            block = self._block(block.time[a:b], block.values[a:b])
            scores = Scores(
                *(getattr(scores, f)[a:b] for f in ("level", "score", "expected", "low", "high")),
                detector=scores.detector,
                by=scores.by[a:b],
            )
        try:
            if playback is not None and playback[a:b].any():
                return list(self.manager.update(block, scores, playback=playback[a:b]) or [])
            return list(self.manager.update(block, scores) or [])
        except Exception as err:  # counted and reported; the stream goes on
            self._fault("alarm manager", err, block)
            return []

    def _fault(self, where: str, err: Exception, block: TelemetryBlock) -> None:
        self.errors += 1
        message = f"{where} failed on rows t={block.time[0]}..{block.time[-1]}: {type(err).__name__}: {err}"
        self.recent_errors.append(message)
        log.error(message, exc_info=err)

    def _report_staleness(self, stale: bool, j: int, time: float, last_seen: float) -> list:
        channel = self.channels[j]
        if stale:
            self.counts_["stale"][j] += 1
        try:
            out = (
                self.manager.report_stale(channel, time, last_seen)
                if stale
                else self.manager.report_fresh(channel, time)
            )
        except Exception as err:  # counted and reported like a failed update; the stream goes on
            self.errors += 1
            message = f"alarm manager failed on staleness of {channel} at t={time}: {type(err).__name__}: {err}"
            self.recent_errors.append(message)
            log.error(message, exc_info=err)
            return []
        if out is None:
            return []
        return list(out) if isinstance(out, list | tuple) else [out]

    def check_staleness(self, now: float) -> list:
        """Report channels whose last sample is older than their limit at stream time ``now``.

        For quiet periods with no rows to score (live sources call this on every idle tick). A
        channel goes stale at event time ``last sample + limit``, the time a replay at any speed
        finds when its next row arrives; ``now`` only decides whether that time has passed.
        """
        age = now - self.last_seen_
        newly = np.flatnonzero(~self.stale_ & np.isfinite(age) & (age > self.stale_limit_))
        if newly.size == 0:
            return []
        when = self.last_seen_[newly] + self.stale_limit_[newly]
        events: list = []
        with self.store.transaction() if self.store is not None else nullcontext():
            for k in np.lexsort((newly, when)).tolist():
                j = int(newly[k])
                self.stale_[j] = True
                events += self._report_staleness(True, j, float(when[k]), float(self.last_seen_[j]))
            self._checkpoint()
        return events

    # -- bookkeeping -------------------------------------------------------------------------------
    def _aligned(self, block: TelemetryBlock) -> tuple[np.ndarray, np.ndarray]:
        """The block's values in the monitor's channel order, and which channels the block has."""
        present = np.zeros(len(self.channels), dtype=np.int64)
        if block.channels == self.channels:
            present[:] = 1
            return block.values, present
        values = np.full((block.n_samples, len(self.channels)), np.nan)
        for k, name in enumerate(block.channels):
            j = self._index.get(name)
            if j is None:
                n = int(np.isfinite(block.values[:, k]).sum())
                if n:
                    self._count_unknown(name, n)
            else:
                values[:, j] = block.values[:, k]
                present[j] = 1
        return values, present

    def _remember(self, time: np.ndarray, has: np.ndarray) -> None:
        horizon = self._max_seen - DUPLICATE_WINDOW_S
        for i in range(int(np.searchsorted(time, horizon)), time.size):
            self._recent[float(time[i])] = has[i]
        while self._recent and next(iter(self._recent)) < horizon:
            del self._recent[next(iter(self._recent))]

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
        key = channel if channel in self.unknown or len(self.unknown) < MAX_UNKNOWN else "<other>"
        self.unknown[key] += n

    def _checkpoint_if_due(self) -> None:
        """Checkpoint when this transaction changes an alarm, or ``checkpoint_every_s`` after the last."""
        changed = getattr(self.manager, "changed_in_transaction", None)
        if changed is None or changed() or not self._emitted - self._checkpointed_t < self.checkpoint_every_s:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Save the position and the full stream state (inside the caller's store transaction)."""
        if self.store is not None:
            self._checkpointed_t = self._emitted
            position = {
                "version": CHECKPOINT_VERSION,
                "time": None if math.isinf(self._emitted) else self._emitted,
                "rows": self.rows,
                "items": self.position_["records"] + self.position_["bad"],
                "input": dict(self.position_),
                "identity": self.identity,
            }
            self.store.save_checkpoint(self.checkpoint_key, position, state=checkpoint.for_store(self))

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
        position = self.store.load_checkpoint(self.checkpoint_key)
        if position is None:
            return None
        version = position.get("version", 1)
        if version not in checkpoint.READABLE_VERSIONS:
            raise CheckpointMismatch(
                f"the checkpoint {self.checkpoint_key!r} in {getattr(self.store, 'path', 'the store')} is version "
                f"{version}; this Vigil reads {checkpoint.READABLE_VERSIONS}: start without resuming (--no-resume) or use a "
                f"new store"
            )
        changed = sorted(k for k in set(self.identity) | set(position.get("identity", {}))
                         if self.identity.get(k) != position.get("identity", {}).get(k))  # fmt: skip
        if changed:
            raise CheckpointMismatch(
                f"the {' and '.join(changed)} changed since the checkpoint in {getattr(self.store, 'path', 'the store')} "
                f"(after {position.get('items')} records, t={position.get('time')}): resuming would continue the "
                f"stream with state that no longer fits. Restore the previous {' and '.join(changed)}, or score the "
                f"source again from its start with --no-resume (alarms already stored are kept, none raised twice)"
            )
        blob = self.store.load_stream_state(self.checkpoint_key)
        if blob is not None:
            checkpoint.restore(self, blob)
            self.rows_at_resume = self.rows
            self._checkpointed_t = self._emitted
        if not replayable and position.get("time") is not None:
            self._resume_t = float(position["time"])
        return position

    # -- output ------------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback`` after every scored block with a ``{"type": "values", ...}`` dict."""
        self._subscribers.append(callback)

    def add_block_sink(self, sink: Callable) -> None:
        """Call ``sink(time, values, scores)`` with every scored block (``scores`` None if the detector
        failed), after its alarms are committed: the archive keeps every accepted sample this way."""
        self._block_sinks.append(sink)

    def _publish(self, time: np.ndarray, finite: np.ndarray) -> None:
        idx = np.flatnonzero(finite.any(axis=0))
        tick = {
            "type": "values",
            "time": float(time[-1]),
            "channels": [self.channels[j] for j in idx.tolist()],
            "value": self.last_value_[idx].tolist(),
            "level": self.last_level_[idx].tolist(),
            "stale": self.stale_[idx].tolist(),
        }
        for callback in list(self._subscribers):
            callback(tick)

    def latest(self) -> dict[str, tuple[float, float, int]]:
        """Per channel that has reported: (time, value, level) of its last sample."""
        seen = np.flatnonzero(np.isfinite(self.last_value_))
        return {
            self.channels[j]: (float(self.last_seen_[j]), float(self.last_value_[j]), int(self.last_level_[j]))
            for j in seen.tolist()
        }

    def history(
        self, channel: str, t0: float | None = None, t1: float | None = None, max_points: int = 2000
    ) -> dict[str, list]:
        """Recent samples of ``channel`` between ``t0`` and ``t1``, min/max-decimated to ``max_points``.

        Keys: time, value, expected, low, high (NaN where undefined) and level.
        """
        j = self._index.get(channel)
        if j is None:
            raise KeyError(f"no channel {channel!r} in the monitor")
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {max_points}")
        horizon = self._emitted - self.history_s
        t0 = horizon if t0 is None else max(t0, horizon)
        series = decimate(self.rings_.window(j, t0, t1), max_points)
        return {name: a.astype(np.float64 if name != "level" else np.int64).tolist() for name, a in series.items()}

    def counters(self, nonzero: bool = False) -> dict:
        """Per-channel counts (received, scored, missing, out_of_order, duplicate, malformed, stale,
        unscored: rows a failing detector could not score), plus ``unknown`` channels,
        ``unparsable`` lines, ``replayed`` records (skipped on resume), ``errors`` (detector or
        manager failures), scored ``rows``, pending records and the latest error messages.

        With ``nonzero``, only channels with a problem count (missing and up) are listed.
        """
        table = np.stack([self.counts_[k] for k in COUNTERS], axis=1).tolist()
        rows = {}
        for j, name in enumerate(self.channels):
            counts = dict(zip(COUNTERS, table[j]))
            if nonzero and not any(table[j][2:]):
                continue
            counts["is_stale"] = bool(self.stale_[j])
            rows[name] = counts
        return {
            "channels": rows,
            "totals": {k: int(self.counts_[k].sum()) for k in COUNTERS},
            "unknown": dict(self.unknown),
            "unparsable": self.unparsable,
            "replayed": self.replayed,
            "errors": self.errors,
            "rows": self.rows,
            "pending": int(self._pend_t.size),
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


def _as_record(item) -> tuple[float, str, float]:
    t, channel, v = item
    v = math.nan if v is None else float(v)
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"time {t!r} is not finite")
    return t, str(channel), v


def _channel_of(item) -> str | None:
    """The channel a malformed record names, if it names one."""
    try:
        return str(item[1])
    except (TypeError, IndexError, KeyError):
        return None


def _repeats(t: np.ndarray, j: np.ndarray) -> np.ndarray:
    """True for each (time, channel) pair seen earlier in the arrays (the first one is kept)."""
    order = np.lexsort((np.arange(t.size), j, t))
    ts, js = t[order], j[order]
    again = np.zeros(t.size, dtype=bool)
    again[order[1:]] = (ts[1:] == ts[:-1]) & (js[1:] == js[:-1])
    return again


def _stale_limits(config, channels: tuple[str, ...]) -> np.ndarray:
    """Seconds without a sample after which each channel is stale (inf: never), from the config's
    ``stale_timeout_s`` (``stale_after_s``, else three periods of ``rate_hz``)."""
    limits = np.full(len(channels), np.inf)
    table = getattr(config, "channels", None) or {}
    for j, name in enumerate(channels):
        timeout = getattr(table.get(name), "stale_timeout_s", None)
        if timeout is not None:
            limits[j] = float(timeout)
    return limits


def _in_time_order(changes: list, time: np.ndarray, limit: np.ndarray) -> list:
    """Staleness changes by event time (stale: last sample + limit; fresh: the row's time), then
    fresh before stale at one time, then channel: the order a replay at any pace reports them in."""

    def key(ch):
        kind, i, j, seen = ch
        return (float(seen + limit[j]) if kind else float(time[i]), kind, int(j))

    return sorted(changes, key=key)
