"""The forecast detector's scoring kernel: one numba pass over ``[samples, channels]`` that
advances the stream state in place (see :mod:`vigil.detect.forecast` for what each check means)."""

from __future__ import annotations

import numba
import numpy as np

from vigil.detect.threshold import UNSCALED_SCORE

#: Rows per tile in the scoring kernel.
_TILE = 64


@numba.njit(cache=True)
def forecast_kernel(
    values, cmds, rates, settings,
    center, scale, intercept, coef_lags, coef_cmds,
    baseline, threshold, floor, lo, hi, margin, level_margin, stuck_after, gain,
    window, traces, n_seen, repeats, ewm, err_level, err_max, value_ewm, level_seen, level_slots, value_seen, value_slots,
    score, expected, low, high, by,
):  # fmt: skip  # pragma: no cover - numba
    n, c = values.shape
    lags = window.shape[1]
    k = cmds.shape[2]
    alpha, adapt, level_alpha, cmd_alpha = rates[0], rates[1], rates[2], rates[3]
    relative, stride = settings[0], int(settings[1])
    n_slots = level_slots.shape[1]
    # Rows in tiles, so each channel's strided column comes from cache rather than main memory.
    for start in range(0, n, _TILE):
        stop = min(start + _TILE, n)
        for j in range(c):
            e = ewm[j]
            m = err_level[j]
            e_max = err_max[j]
            v = value_ewm[j]
            seen = n_seen[j]
            rep = repeats[j]
            for i in range(start, stop):
                x = values[i, j]
                if not np.isfinite(x):  # missing: no score, no change of state
                    continue
                z = (x - center[j]) / scale[j]
                last = (seen - 1) % lags  # window slot of the previous value; older ones precede it
                # Exact repeats of the previous value: a stuck sensor repeats longer than history did.
                rep = rep + 1 if seen > 0 and z == window[j, last] else 0
                # Commanded offsets in force (the model's steady-state gains on decaying command
                # traces) widen the range checks: a commanded mode is not novel.
                up = 0.0
                down = 0.0
                if cmd_alpha > 0.0:
                    for q in range(k):
                        u = cmds[i, j, q]
                        traces[j, q] += cmd_alpha * ((u if np.isfinite(u) else 0.0) - traces[j, q])
                        shift = gain[j, q] * traces[j, q]
                        if np.isnan(shift):  # never given in history: could go either way
                            up += (hi[j] - lo[j]) * traces[j, q]
                            down += (hi[j] - lo[j]) * traces[j, q]
                        elif shift > 0.0:
                            up += shift
                        else:
                            down -= shift
                accept = False  # learn_values: only values the novelty check let pass are learned
                if level_alpha > 0.0:
                    v += level_alpha * (x - v)
                    if n_slots > 0:
                        _learn_level(j, seen, v, True, stride, level_seen, level_slots)
                if seen >= lags:
                    pred = intercept[j]
                    slot = last
                    for lag in range(lags):
                        pred += coef_lags[j, lag] * window[j, slot]
                        slot = slot - 1 if slot > 0 else lags - 1
                    for q in range(k):
                        u = cmds[i, j, q]
                        if np.isfinite(u):  # a missing command input counts as not commanded
                            pred += coef_cmds[j, q] * u
                    pred = center[j] + scale[j] * pred
                    err = abs(x - pred)
                    e = err if np.isnan(e) else e + alpha * (err - e)
                    thr = threshold[j]
                    if adapt > 0.0 and baseline[j] > 0.0:
                        thr = threshold[j] * max(1.0, m / baseline[j])
                        m += adapt * (min(e, thr) - m)
                    if relative > 0.0:
                        # The calm peak forgets at the adaptation rate, so the threshold follows
                        # the stream's recent calm errors smoothly (no step after a warm-up).
                        e_max *= 1.0 - adapt
                        if e_max > 0.0 and thr < np.inf:  # no error scale: the check stays off
                            thr = max(floor[j], min(thr, relative * e_max))
                    s = e / thr
                    if s < 1.0:
                        e_max = max(e_max, e)
                    # The largest score counts; ``by`` says which check gave it (see CHECKS).
                    check = 0
                    novelty = _beyond(x, value_seen[j, 0] - down, value_seen[j, 1] + up, margin[j, 0], margin[j, 1])
                    accept = novelty < 1.0
                    if novelty > s:
                        s, check = novelty, 1
                    if level_alpha > 0.0:
                        held = _beyond(
                            v, level_seen[j, 0] - down, level_seen[j, 1] + up, level_margin[j, 0], level_margin[j, 1]
                        )
                        if held > s:
                            s, check = held, 2
                    if rep / stuck_after[j] > s:
                        s, check = rep / stuck_after[j], 3
                    score[i, j] = s
                    by[i, j] = check
                    expected[i, j] = pred
                    if thr < np.inf:  # else no band: the history never moved
                        low[i, j] = pred - thr
                        high[i, j] = pred + thr
                    # A crossing range check is explained by the range, not the prediction band.
                    if s >= 1.0 and check == 1:
                        low[i, j] = value_seen[j, 0] - down
                        high[i, j] = value_seen[j, 1] + up
                    elif s >= 1.0 and check == 2:
                        low[i, j] = level_seen[j, 0] - down
                        high[i, j] = level_seen[j, 1] + up
                if value_slots.shape[1] > 0:
                    _learn_level(j, seen, x, accept, stride, value_seen, value_slots)
                window[j, seen % lags] = z
                seen += 1
            ewm[j] = e
            err_level[j] = m
            err_max[j] = e_max
            value_ewm[j] = v
            n_seen[j] = seen
            repeats[j] = rep


@numba.njit(cache=True)
def _beyond(x, low, high, margin_low, margin_high):  # pragma: no cover - numba
    """How far ``x`` lies outside ``[low, high]``, in units of that side's margin (0 inside); a
    margin of 0 (a history that never moved: no scale) gives ``UNSCALED_SCORE`` to any value outside."""
    if x > high:
        return (x - high) / margin_high if margin_high > 0.0 else UNSCALED_SCORE
    if x < low:
        return (low - x) / margin_low if margin_low > 0.0 else UNSCALED_SCORE
    return 0.0


@numba.njit(cache=True)
def _learn_level(j, seen, v, keep, stride, level_seen, level_slots):  # pragma: no cover - numba
    """Delay line of [min, max] per ``stride`` samples (of the values ``keep`` admits); a slot
    leaving it counts as seen."""
    n_slots = level_slots.shape[1]
    slot = (seen // stride) % n_slots
    if seen % stride == 0:
        if seen >= n_slots * stride:  # the slot holds samples n_slots * stride ago: now seen
            level_seen[j, 0] = min(level_seen[j, 0], level_slots[j, slot, 0])
            level_seen[j, 1] = max(level_seen[j, 1], level_slots[j, slot, 1])
        level_slots[j, slot, 0] = np.inf
        level_slots[j, slot, 1] = -np.inf
    if keep:
        level_slots[j, slot, 0] = min(level_slots[j, slot, 0], v)
        level_slots[j, slot, 1] = max(level_slots[j, slot, 1], v)
