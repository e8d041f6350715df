// Plots (uPlot) and the time conductor. Every time on an axis, in a legend or a label is UTC: uPlot
// formats dates in the browser's zone unless told otherwise, so the x axis gets its own UTC formatter
// (the browser's local time is only in the legend's hover text).

export const SEV = ["nominal", "watch", "warning", "distress", "critical", "severe"];
export const SEV_COLOUR = ["#3d8b5a", "#4fb3d9", "#e3c14b", "#f08a3c", "#e5484d", "#d04ed6"];
export const isEpoch = (t) => t != null && Math.abs(t) > 1e8;
const pad2 = (n) => String(n).padStart(2, "0");

/** "2026-01-01 00:10:05Z" (epoch seconds) or "t=12.0" (stream seconds). */
export function fmtTime(t) {
  if (t == null) return "—";
  if (isEpoch(t)) return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
  return `t=${t.toFixed(1)}`;
}

export function fmtClock(t) {
  if (t == null) return "—";
  return isEpoch(t) ? new Date(t * 1000).toISOString().slice(11, 19) : t.toFixed(0);
}

/** A duration for a person: "45 s", "12 min", "3 h 20 min", "2 d 4 h". */
export function fmtDuration(s) {
  if (s == null || !isFinite(s)) return "—";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) { const m = Math.round(s / 60); return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ""}`; }
  const h = Math.round(s / 3600);
  return `${Math.floor(h / 24)} d${h % 24 ? ` ${h % 24} h` : ""}`;
}

/** Tick labels in UTC, precise enough for the spacing between ticks. */
export function utcTicks(splits, step) {
  return splits.map((t) => {
    if (t == null) return "";
    if (!isEpoch(t)) return String(+t.toFixed(3));
    const d = new Date(t * 1000);
    const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    if (step >= 86400) return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
    if (step >= 60) return d.getUTCHours() === 0 && d.getUTCMinutes() === 0 ? `${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}` : hm;
    return `${hm}:${pad2(d.getUTCSeconds())}`;
  });
}

// ---------- the time conductor: live (the latest `width` seconds) or a chosen span ----------
export const conductor = {
  live: true,
  width: 900, // seconds shown
  end: null, // end of a chosen span (epoch s); null while live
  /** The span to show now, given the data clock. */
  span(clock) {
    const end = this.live || this.end == null ? clock : this.end;
    return end == null ? [null, null] : [end - this.width, end];
  },
  setSpan(t0, t1) { this.live = false; this.width = Math.max(1, t1 - t0); this.end = t1; },
  goLive() { this.live = true; this.end = null; },
  pan(clock, fraction) {
    const [t0, t1] = this.span(clock);
    if (t0 == null) return;
    const shift = (t1 - t0) * fraction;
    this.setSpan(t0 + shift, t1 + shift);
    if (clock != null && this.end >= clock) this.goLive(); // panned back up to now: follow live again
  },
  zoom(clock, factor) {
    const [t0, t1] = this.span(clock);
    if (t0 == null) return;
    const mid = this.live ? t1 : (t0 + t1) / 2;
    const w = Math.max(10, (t1 - t0) * factor);
    if (this.live) this.width = w; else this.setSpan(mid - w / 2, mid + w / 2);
  },
  label(clock) {
    const [t0, t1] = this.span(clock);
    const mode = this.live ? "live" : "span";
    return t0 == null ? mode : `${mode}: ${fmtTime(t0)} – ${fmtTime(t1)} (${fmtDuration(t1 - t0)}, UTC)`;
  },
};

// ---------- limits over a span: the ranges in force at each time, from the run-time changes ----------
function boundAt(t, key, side, current, changes) {
  // The last change at or before t says what was in force; before the first change, its "old" ranges.
  let pick = null;
  for (const c of changes) { if (c.data_time != null && c.data_time <= t) pick = c.new; }
  if (pick == null) pick = changes.length && changes[0].data_time != null && t < changes[0].data_time ? changes[0].old : current;
  const rng = pick?.[key];
  return rng ? rng[side] : null;
}

export function limitSeries(limits, times, changes = []) {
  const keys = new Set(Object.keys(limits || {}));
  changes.forEach((c) => { Object.keys(c.old || {}).forEach((k) => keys.add(k)); Object.keys(c.new || {}).forEach((k) => keys.add(k)); });
  const out = [];
  for (const sev of SEV.slice(1).filter((s) => keys.has(s))) {
    const colour = SEV_COLOUR[SEV.indexOf(sev)];
    for (const [side, name] of [[0, "low"], [1, "high"]]) {
      const data = times.map((t) => boundAt(t, sev, side, limits, changes));
      if (data.some((v) => v != null)) out.push({ label: `${sev} ${name}`, data, stroke: colour, dash: [6, 4] });
    }
  }
  return out;
}

// ---------- drawing ----------
// Shade alarm periods, mark reference-timeline events, project the time until limit.
function overlays(periods, events, ttl) {
  return {
    hooks: {
      drawClear: (u) => {
        const ctx = u.ctx;
        ctx.save();
        for (const p of periods) {
          if (p.start == null) continue;
          const x0 = u.valToPos(p.start, "x", true);
          const x1 = u.valToPos(p.end ?? u.scales.x.max, "x", true);
          ctx.fillStyle = (SEV_COLOUR[SEV.indexOf(p.severity)] || "#888") + "33";
          ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
        }
        ctx.strokeStyle = "#9fb7d8";
        ctx.fillStyle = "#9fb7d8";
        ctx.setLineDash([2, 3]);
        ctx.font = `${10 * devicePixelRatio}px DejaVu Sans`;
        for (const e of events.filter((ev) => ev.time >= u.scales.x.min && ev.time <= u.scales.x.max)) {
          const x = u.valToPos(e.time, "x", true);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillText(String(e.n), x + 3, u.bbox.top + 11 * devicePixelRatio);
        }
        ctx.restore();
      },
      draw: (u) => { if (ttl) drawTtl(u, ttl); },
    },
  };
}

// The trend toward the limit: a dashed line from the latest sample to the limit at the forecast time,
// the uncertainty as a bar on the limit, and the sentence at the top right.
function drawTtl(u, ttl) {
  const ctx = u.ctx;
  const { x0, y0, limit, seconds, seconds_low: lo, seconds_high: hi, severity } = ttl;
  const colour = SEV_COLOUR[SEV.indexOf(severity)] || "#e5484d";
  ctx.save();
  ctx.beginPath();
  ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
  ctx.clip();
  ctx.strokeStyle = colour;
  ctx.lineWidth = 1.5 * devicePixelRatio;
  ctx.setLineDash([4, 4]);
  ctx.beginPath();
  ctx.moveTo(u.valToPos(x0, "x", true), u.valToPos(y0, "y", true));
  ctx.lineTo(u.valToPos(x0 + seconds, "x", true), u.valToPos(limit, "y", true));
  ctx.stroke();
  ctx.setLineDash([]);
  const yl = u.valToPos(limit, "y", true);
  const a = u.valToPos(x0 + lo, "x", true);
  const b = u.valToPos(x0 + (hi ?? seconds * 2), "x", true);
  ctx.fillStyle = colour + "66";
  ctx.fillRect(a, yl - 3 * devicePixelRatio, Math.max(2, b - a), 6 * devicePixelRatio);
  ctx.restore();
  ctx.save();
  ctx.fillStyle = colour;
  ctx.font = `bold ${11 * devicePixelRatio}px DejaVu Sans`;
  ctx.textAlign = "right";
  const range = `${fmtDuration(lo)} – ${hi == null ? "?" : fmtDuration(hi)}`;
  ctx.fillText(`${severity} ${limit} in ~${fmtDuration(seconds)} (${range})`, u.bbox.left + u.bbox.width - 6,
    u.bbox.top + 14 * devicePixelRatio);
  ctx.restore();
}

/**
 * A uPlot chart of one channel's history `h` (from /api/channels/{name}/history) over `span`.
 * opts: title, height, units, events, changes (run-time limit changes), ttl, sync, legend, onSelect.
 */
export function makePlot(el, h, span, opts) {
  const lims = limitSeries(h.limits, h.time, opts.changes || []);
  const axis = { stroke: "#8a93a3", grid: { stroke: "#232a34" }, ticks: { stroke: "#2a303b" } };
  const epoch = isEpoch(h.time[0] ?? span[0]);
  const series = [
    { value: (u, v) => (v == null ? "—" : epoch ? `${fmtTime(v)} (local ${new Date(v * 1000).toLocaleTimeString()})` : fmtTime(v)) },
    { label: "low", stroke: "#3b5b86", width: 1 },
    { label: "high", stroke: "#3b5b86", width: 1 },
    { label: "expected", stroke: "#5b9cf0", dash: [3, 3], width: 1 },
    { label: h.name, stroke: "#e8ecf2", width: 1.4, points: { show: false } },
    ...lims.map((l) => ({ label: l.label, stroke: l.stroke, dash: l.dash, width: 1, points: { show: false } })),
  ];
  const data = [h.time, h.low, h.high, h.expected, h.value, ...lims.map((l) => l.data)];
  const head = document.createElement("div");
  head.className = "plot-title";
  head.innerHTML = opts.title;
  el.appendChild(head);
  const holder = document.createElement("div");
  el.appendChild(holder);
  const [t0, t1] = span;
  const ttl = opts.ttl;
  const plot = {
    width: Math.max(300, el.clientWidth - 12),
    height: opts.height,
    scales: {
      // Live with a forecast: a quarter of the span ahead, so the trend toward the limit shows.
      x: { time: epoch, range: (u, lo, hi) => (t0 != null ? [t0, t1 + (ttl ? (t1 - t0) / 4 : 0)] : [lo, hi]) },
      y: ttl ? { range: (u, lo, hi) => { const a = Math.min(lo, ttl.limit), b = Math.max(hi, ttl.limit); const p = (b - a) * 0.05 || 1; return [a - p, b + p]; } } : {},
    },
    // Splits aligned to UTC (not the browser's zone); the labels come from utcTicks.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    series,
    bands: [{ series: [2, 1], fill: "rgba(91,156,240,0.13)" }],
    axes: [
      { ...axis, values: (u, splits, _ax, _space, incr) => utcTicks(splits, incr), label: epoch ? "UTC" : "", labelSize: 14 },
      { ...axis, label: opts.units || "", size: 60 },
    ],
    cursor: { drag: { x: true, y: false, setScale: false }, ...(opts.sync ? { sync: { key: opts.sync } } : {}) },
    legend: { show: opts.legend !== false, live: true },
    plugins: [overlays(h.alarms || [], opts.events || [], ttl)],
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 4 || !opts.onSelect) return;
        opts.onSelect(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
      }],
    },
  };
  return new uPlot(plot, data, holder);
}
