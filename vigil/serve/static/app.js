// Vigil operator console. Plain ES module over the /api endpoints; uPlot (vendored) draws the plots.
// Live updates arrive on the /api/live WebSocket as hints: the page re-reads state over HTTP,
// throttled, so it stays correct whatever the tick format and after any dropped message.

const SEV = ["nominal", "watch", "warning", "distress", "critical", "severe"];
const SEV_COLOUR = ["#3d8b5a", "#4fb3d9", "#e3c14b", "#f08a3c", "#e5484d", "#d04ed6"];
const ROW_H = 20;
const MAX_ALARM_ROWS = 400;
const OPEN_STATES = new Set(["active", "acknowledged", "shelved", "rtn_unacknowledged", "latched"]);

const $ = (sel) => document.querySelector(sel);
const state = {
  meta: new Map(), // name -> channel configuration
  latest: null, // columnar snapshot from /api/latest
  index: new Map(), // name -> position in latest
  rows: [], // filtered, sorted channel indices shown in the list
  subsystem: null,
  selected: null, // {kind: "channel"|"incident", ...}
  alarms: [],
  plots: [],
  events: [], // reference timeline of a replayed scenario: {time, kind, label}
};
const MARKED = new Set(["call", "los", "milestone", "fault_message"]); // timeline kinds drawn on plots

// ---------- helpers ----------
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const isEpoch = (t) => t != null && Math.abs(t) > 1e8;

function fmtTime(t) {
  if (t == null) return "—";
  if (isEpoch(t)) return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
  return `t=${t.toFixed(1)}`;
}

function fmtClock(t) {
  if (t == null) return "—";
  return isEpoch(t) ? new Date(t * 1000).toISOString().slice(11, 19) : t.toFixed(0);
}

function fmtNum(x) {
  if (x == null) return "—";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return x.toExponential(3);
  const s = x.toPrecision(5);
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s; // trailing zeros of a fraction only
}

function fmtAge(a) {
  if (a == null) return "";
  if (a < 1) return "0s";
  if (a < 120) return `${Math.round(a)}s`;
  if (a < 7200) return `${Math.round(a / 60)}m`;
  return `${Math.round(a / 3600)}h`;
}

function throttle(fn, ms) {
  let timer = null;
  let again = false;
  const run = async () => {
    again = false;
    try { await fn(); } catch (e) { console.warn(e); }
    timer = setTimeout(() => { timer = null; if (again) schedule(); }, ms);
  };
  const schedule = () => { if (timer) again = true; else { timer = -1; run(); } };
  return schedule;
}

let toastTimer;
function toast(msg, err = false) {
  const el = $("#toast");
  el.textContent = msg;
  el.className = err ? "show err" : "show";
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.className = ""), 3500);
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

// ---------- token and alarm verbs ----------
function askToken() {
  return new Promise((resolve) => {
    const dlg = $("#token-dialog");
    $("#token-input").value = "";
    dlg.onclose = () => {
      const tok = $("#token-input").value.trim();
      if (dlg.returnValue === "ok" && tok) { sessionStorage.setItem("vigil-token", tok); resolve(tok); }
      else resolve(null);
      showTokenState();
    };
    dlg.showModal();
  });
}

function askVerb(verb, alarm) {
  return new Promise((resolve) => {
    const dlg = $("#verb-dialog");
    $("#verb-title").textContent = verb[0].toUpperCase() + verb.slice(1);
    $("#verb-what").textContent = `#${alarm.id} ${alarm.channel} ${alarm.severity} (${alarm.state})`;
    $("#verb-duration-row").classList.toggle("hidden", verb !== "shelve");
    $("#verb-comment").value = "";
    dlg.onclose = () => resolve(dlg.returnValue === "ok"
      ? { comment: $("#verb-comment").value, duration_s: Number($("#verb-duration").value) } : null);
    dlg.showModal();
  });
}

async function doVerb(verb, alarm) {
  const answer = await askVerb(verb, alarm);
  if (!answer) return;
  const token = sessionStorage.getItem("vigil-token") || (await askToken());
  if (!token) return;
  const body = {};
  if (verb === "acknowledge" || verb === "shelve") body.comment = answer.comment;
  if (verb === "shelve") body.duration_s = answer.duration_s;
  const r = await fetch(`/api/alarms/${encodeURIComponent(alarm.id)}:${verb}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (r.status === 401) {
    sessionStorage.removeItem("vigil-token");
    showTokenState();
    toast("token refused: set it again", true);
    return;
  }
  const out = await r.json().catch(() => ({}));
  if (!r.ok) { toast(out.detail || `${verb} failed (${r.status})`, true); return; }
  toast(`alarm #${alarm.id}: ${out.state}`);
  refreshAlarms();
}

function showTokenState() {
  const has = Boolean(sessionStorage.getItem("vigil-token"));
  $("#token-btn").textContent = has ? "token set" : "set token";
  $("#token-btn").title = has ? "alarm actions will use the stored token; click to replace it" : "needed to acknowledge, shelve, clear";
}

// ---------- channels: snapshot, tiles, virtual list ----------
async function loadMeta() {
  const list = await getJSON("/api/channels");
  state.meta = new Map(list.map((c) => [c.name, c]));
}

async function refreshLatest() {
  const snap = await getJSON("/api/latest");
  state.latest = snap;
  if (snap.channels.length !== state.index.size) {
    state.index = new Map(snap.channels.map((n, i) => [n, i]));
    if (snap.channels.some((n) => !state.meta.has(n))) await loadMeta();
  }
  $("#clock").textContent = fmtTime(snap.data_time);
  renderTiles();
  filterRows();
}

function worst(i) {
  const s = state.latest;
  return Math.max(s.alarm[i], s.level[i]);
}

function renderTiles() {
  const s = state.latest;
  const groups = new Map();
  s.channels.forEach((n, i) => {
    const sub = state.meta.get(n)?.subsystem || "other";
    const g = groups.get(sub) || { n: 0, worst: 0, alarm: 0, stale: 0 };
    g.n += 1; g.worst = Math.max(g.worst, worst(i)); g.alarm += s.alarm[i] > 0; g.stale += s.stale[i];
    groups.set(sub, g);
  });
  const html = [...groups].sort((a, b) => a[0].localeCompare(b[0])).map(([sub, g]) =>
    `<div class="tile l${g.worst}${g.stale ? " stale" : ""}${state.subsystem === sub ? " sel" : ""}" data-sub="${esc(sub)}"
      title="${esc(sub)}: worst ${SEV[g.worst]}, ${g.alarm} in alarm, ${g.stale} stale">
      <div>${esc(sub)}</div><div class="n">${g.n} ch · ${g.alarm} alarm${g.stale ? ` · ${g.stale} stale` : ""}</div></div>`).join("");
  $("#subsystems").innerHTML = html;
  const counts = [0, 0, 0, 0, 0, 0];
  s.alarm.forEach((l) => counts[l]++);
  $("#counts").innerHTML = SEV.slice(1).map((name, k) =>
    `<span class="sevkey">${name}</span><span class="pill" style="background:${SEV_COLOUR[k + 1]}"
      title="channels whose worst open alarm is ${name}">${counts[k + 1]}</span>`).join("");
}

function filterRows() {
  const s = state.latest;
  if (!s) return;
  const q = $("#filter").value.trim().toLowerCase();
  const view = $("#chan-view").value;
  const rows = [];
  for (let i = 0; i < s.channels.length; i++) {
    const name = s.channels[i];
    const sub = state.meta.get(name)?.subsystem || "other";
    if (state.subsystem && sub !== state.subsystem) continue;
    if (view === "alarm" && !s.alarm[i]) continue;
    if (view === "stale" && !s.stale[i]) continue;
    if (q && !name.toLowerCase().includes(q) && !sub.toLowerCase().includes(q)) continue;
    rows.push(i);
  }
  // Most severe first, then stale, then by name: the channels needing attention are on top.
  rows.sort((a, b) => worst(b) - worst(a) || s.stale[b] - s.stale[a] || (s.channels[a] < s.channels[b] ? -1 : 1));
  state.rows = rows;
  $("#chanlist .vspacer").style.height = `${rows.length * ROW_H}px`;
  $("#chan-foot").textContent = `${rows.length} of ${s.channels.length} channels`;
  renderRows();
}

function renderRows() {
  const box = $("#chanlist");
  const s = state.latest;
  const first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - 5);
  const last = Math.min(state.rows.length, first + Math.ceil(box.clientHeight / ROW_H) + 10);
  const sel = state.selected?.kind === "channel" ? state.selected.name : null;
  const out = [];
  for (let k = first; k < last; k++) {
    const i = state.rows[k];
    const name = s.channels[i];
    const m = state.meta.get(name) || {};
    const cls = `row l${worst(i)}${s.stale[i] ? " stale" : ""}${name === sel ? " sel" : ""}`;
    out.push(`<div class="${cls}" data-name="${esc(name)}" title="${esc(m.description || name)}">
      <span class="dot"></span><span>${esc(name)}</span><span class="sub">${esc(m.subsystem || "")}</span>
      <span class="num">${fmtNum(s.value[i])} ${esc(m.units || "")}</span><span class="num age">${s.stale[i] ? "STALE " : ""}${fmtAge(s.age[i])}</span></div>`);
  }
  const rowsEl = box.querySelector(".vrows");
  rowsEl.style.transform = `translateY(${first * ROW_H}px)`;
  rowsEl.innerHTML = out.join("");
}

// ---------- plots ----------
function limitSeries(limits, n) {
  const out = [];
  for (const [sev, [lo, hi]] of Object.entries(limits || {})) {
    const colour = SEV_COLOUR[SEV.indexOf(sev)];
    if (lo != null) out.push({ label: `${sev} low`, data: new Array(n).fill(lo), stroke: colour, dash: [6, 4] });
    if (hi != null) out.push({ label: `${sev} high`, data: new Array(n).fill(hi), stroke: colour, dash: [6, 4] });
  }
  return out;
}

// uPlot plugin: shade alarm periods behind the series; mark reference-timeline events (calls, LOS).
function alarmShading(periods) {
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
        for (const e of eventsIn(u.scales.x.min, u.scales.x.max)) {
          const x = u.valToPos(e.time, "x", true);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillText(String(e.n), x + 3, u.bbox.top + 11 * devicePixelRatio);
        }
        ctx.restore();
      },
    },
  };
}

function eventsIn(t0, t1) {
  return state.events.filter((e) => MARKED.has(e.kind) && e.time >= t0 && e.time <= t1);
}

function timelineNote(t0, t1) {
  if (t0 == null || t1 == null) return "";
  const shown = eventsIn(t0, t1);
  if (!shown.length) return "";
  const rel = (e) => (e.t_from_ei_s != null ? `EI${e.t_from_ei_s >= 0 ? "+" : ""}${e.t_from_ei_s}s` : fmtClock(e.time));
  return `<div class="timeline"><b>reference timeline</b> (dotted lines)<br>${shown
    .map((e) => `${e.n}. ${esc(rel(e))} ${esc(e.kind)}: ${esc(e.label)}`).join("<br>")}</div>`;
}

function makePlot(el, h, { title, height, sync, legend = true }) {
  const n = h.time.length;
  const units = state.meta.get(h.name)?.units || "";
  const lims = limitSeries(h.limits, n);
  const series = [
    {},
    { label: "low", stroke: "#3b5b86", width: 1 },
    { label: "high", stroke: "#3b5b86", width: 1 },
    { label: "expected", stroke: "#5b9cf0", dash: [3, 3], width: 1 },
    { label: h.name, stroke: "#e8ecf2", width: 1.4, points: { show: false } },
    ...lims.map((l) => ({ label: l.label, stroke: l.stroke, dash: l.dash, width: 1, points: { show: false } })),
  ];
  const data = [h.time, h.low, h.high, h.expected, h.value, ...lims.map((l) => l.data)];
  const head = document.createElement("div");
  head.className = "plot-title";
  head.innerHTML = title;
  el.appendChild(head);
  const holder = document.createElement("div");
  el.appendChild(holder);
  const axis = { stroke: "#8a93a3", grid: { stroke: "#232a34" }, ticks: { stroke: "#2a303b" } };
  const opts = {
    width: Math.max(300, el.clientWidth - 12),
    height,
    scales: { x: { time: isEpoch(h.time[0]) } },
    series,
    bands: [{ series: [2, 1], fill: "rgba(91,156,240,0.13)" }],
    axes: [{ ...axis }, { ...axis, label: units, size: 60 }],
    cursor: sync ? { sync: { key: sync } } : {},
    legend: { show: legend, live: true },
    plugins: [alarmShading(h.alarms || [])],
  };
  return new uPlot(opts, data, holder);
}

function clearPlots() {
  state.plots.forEach((p) => p.destroy());
  state.plots = [];
  $("#plots").innerHTML = "";
}

async function showChannel(name) {
  state.selected = { kind: "channel", name };
  renderRows();
  await drawSelected();
}

async function drawSelected() {
  const sel = state.selected;
  if (!sel) return;
  const box = $("#plots");
  if (sel.kind === "channel") {
    const h = await getJSON(`/api/channels/${encodeURIComponent(sel.name)}/history?max_points=1500`);
    const m = state.meta.get(sel.name) || {};
    const i = state.index.get(sel.name);
    const stale = i != null && state.latest.stale[i];
    $("#plot-head").innerHTML = `<b>${esc(sel.name)}</b> · ${esc(m.subsystem || "")} · ${esc(m.description || "")}
      ${stale ? `· <span style="color:var(--distress)">STALE (${fmtAge(state.latest.age[i])} without data)</span>` : ""}`;
    const open = (h.alarms || []).filter((a) => OPEN_STATES.has(a.state));
    // Fill the detail pane first: the plot takes the height that is left.
    $("#detail").innerHTML = (open.length ? open.map((a) => `<div><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span>
      #${esc(a.id)} ${esc(a.state)} from ${fmtTime(a.start)} to ${fmtTime(a.end)}</div>`).join("") : "no open alarms on this channel")
      + timelineNote(h.time[0], h.time[h.time.length - 1]);
    clearPlots();
    state.plots.push(makePlot(box, h, { title: "value · expected band · limits · alarm periods shaded", height: Math.max(220, box.clientHeight - 70) }));
  } else {
    const inc = sel.incident;
    const names = (inc.channels || []).map((c) => (Array.isArray(c) ? c[0] : c.channel ?? c.name ?? c)).slice(0, 6);
    const pad = Math.max(30, (inc.last_time - inc.first_time) * 0.5 || 0);
    const t0 = inc.first_time - pad * 4;
    const t1 = (inc.last_time ?? inc.first_time) + pad;
    const hs = await Promise.all(names.map((n) =>
      getJSON(`/api/channels/${encodeURIComponent(n)}/history?max_points=800&t0=${t0}&t1=${t1}`)));
    $("#plot-head").innerHTML = `<b>incident #${esc(inc.id)}</b> · ${esc(inc.subsystem || "")} · ${names.length} contributing channels, ranked`;
    $("#detail").innerHTML = `<b>explanation</b><br>${esc(inc.explanation || "").replace(/\n/g, "<br>")}`
      + timelineNote(t0, t1);
    clearPlots();
    const height = Math.max(120, Math.floor((box.clientHeight - 10) / hs.length) - 24);
    hs.forEach((h, k) => {
      const rank = inc.channels[k];
      const score = Array.isArray(rank) ? rank[1] : rank?.score ?? rank?.rank_score;
      state.plots.push(makePlot(box, h, { title: `<b>${k + 1}. ${esc(h.name)}</b> ${score != null ? `rank score ${fmtNum(score)}` : ""}`, height, sync: "incident", legend: false }));
    });
  }
}

// ---------- alarms, incidents, audit ----------
async function refreshAlarms() {
  const st = $("#alarm-state").value;
  const sev = $("#alarm-severity").value;
  const q = new URLSearchParams();
  if (st !== "open") q.set("state", st); // the API's default is every unfinished alarm
  if (sev) q.set("severity", sev);
  state.alarms = await getJSON(`/api/alarms?${q}`);
  const body = $("#alarms tbody");
  const selId = state.selected?.alarm;
  body.innerHTML = state.alarms.slice(0, MAX_ALARM_ROWS).map((a, k) => {
    const value = a.peak_value ?? a.trigger_value ?? a.value;
    const verbs = [];
    if (a.state === "active" || a.state === "rtn_unacknowledged") verbs.push("acknowledge");
    if (a.state !== "shelved" && a.state !== "cleared") verbs.push("shelve");
    if (a.state === "shelved") verbs.push("unshelve");
    if (a.state === "latched") verbs.push("clear"); // back to normal and acknowledged: waits for a reset
    return `<tr class="alarm state-${esc(a.state)}${a.id === selId ? " sel" : ""}" data-k="${k}" data-id="${esc(a.id)}"
      title="${esc(a.explanation || "")}">
      <td><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></td><td title="${esc(a.channel)}">${esc(a.channel)}</td>
      <td class="state">${esc(a.state)}</td><td class="num">${fmtNum(value)}</td><td title="${fmtTime(a.first_time)}">${fmtClock(a.first_time)}</td>
      <td>${verbs.map((v) => `<button type="button" data-verb="${v}">${v === "acknowledge" ? "ack" : v}</button>`).join("")}</td></tr>`;
  }).join("");
  const more = state.alarms.length > MAX_ALARM_ROWS ? `, first ${MAX_ALARM_ROWS} shown` : "";
  const unacked = state.alarms.filter((a) => a.state === "active" || a.state === "rtn_unacknowledged").length;
  $("#alarm-count").textContent = `${state.alarms.length} (${unacked} unack${more})`;
  document.title = unacked ? `(${unacked}) Vigil console` : "Vigil console";
}

async function refreshIncidents() {
  const incs = await getJSON("/api/incidents");
  state.incidents = incs;
  $("#incident-count").textContent = incs.length;
  $("#incidents").innerHTML = incs.map((inc, k) => {
    const names = (inc.channels || []).map((c) => (Array.isArray(c) ? c[0] : c.channel ?? c.name ?? c));
    return `<li data-k="${k}"><b>#${esc(inc.id)} ${esc(inc.subsystem || "")}</b> ${fmtTime(inc.first_time)}
      · ${names.length} channels: ${esc(names.slice(0, 5).join(", "))}${names.length > 5 ? "…" : ""}
      <div class="why">${esc((inc.explanation || "").split("\n")[0])}</div></li>`;
  }).join("");
}

async function refreshAudit() {
  const trail = await getJSON("/api/audit?limit=300");
  $("#audit").innerHTML = trail.reverse().map((e) =>
    `<li>${esc(Object.entries(e).filter(([k]) => !k.endsWith("_utc")).map(([k, v]) => `${k}=${typeof v === "number" && k.includes("time") ? fmtTime(v) : v}`).join(" "))}</li>`).join("");
}

async function refreshCounters() {
  const c = await getJSON("/api/counters");
  const totals = { ...(c.totals || {}) };
  const unknown = Object.values(c.unknown || {}).reduce((a, b) => a + b, 0);
  if (unknown) totals["unknown channel"] = unknown;
  if (c.unparsable) totals.unparsable = c.unparsable;
  $("#counters").textContent = Object.entries(totals).filter(([, v]) => v)
    .map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(" · ");
  $("#counters").title = (c.recent_errors || []).join("\n") || "bad input counted by the monitor";
}

async function refreshHealth() {
  const h = await getJSON("/api/health");
  $("#feeders").innerHTML = (h.feeders || []).map((f) => {
    const pct = f.total_rows ? ` ${Math.round((100 * f.rows) / f.total_rows)}%` : ` ${f.rows} rows`;
    const speed = f.speed ? ` at ${f.speed}x` : "";
    const err = f.errors ? ` <span style="color:var(--critical)" title="${esc(f.last_error)}">${f.errors} errors</span>` : "";
    return `${esc(f.feeder)}${f.done ? " finished" : pct + speed}${err}`;
  }).join(" · ");
}

// ---------- live feed ----------
const latestSoon = throttle(refreshLatest, 1000);
const alarmsSoon = throttle(async () => { await refreshAlarms(); await refreshIncidents(); }, 700);
const plotSoon = throttle(drawSelected, 1500);
const countersSoon = throttle(refreshCounters, 5000);
const resyncSoon = throttle(refreshAll, 1000);  // a client that missed messages re-reads, at most once a second

function connect(delay = 500) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
  const link = $("#link");
  ws.onopen = () => { link.dataset.state = "live"; link.textContent = "live"; delay = 500; refreshAll(); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "hello") return;
    if (msg.type === "values") { latestSoon(); if (state.selected) plotSoon(); countersSoon(); return; }
    if (msg.type === "resync") { resyncSoon(); return; }
    alarmsSoon(); latestSoon();
  };
  ws.onclose = () => {
    link.dataset.state = "down";
    link.textContent = "live: disconnected, retrying";
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

async function refreshAll() {
  await Promise.all([refreshLatest(), refreshAlarms(), refreshIncidents(), refreshCounters()]);
  if (state.selected) await drawSelected();
}

// ---------- wiring ----------
function wire() {
  $("#chanlist").addEventListener("scroll", () => requestAnimationFrame(renderRows));
  $("#chanlist").addEventListener("click", (e) => {
    const row = e.target.closest(".row");
    if (row) showChannel(row.dataset.name);
  });
  $("#filter").addEventListener("input", filterRows);
  $("#chan-view").addEventListener("change", filterRows);
  $("#subsystems").addEventListener("click", (e) => {
    const t = e.target.closest(".tile");
    if (!t) return;
    state.subsystem = state.subsystem === t.dataset.sub ? null : t.dataset.sub;
    renderTiles();
    filterRows();
  });
  $("#alarm-state").addEventListener("change", refreshAlarms);
  $("#alarm-severity").addEventListener("change", refreshAlarms);
  $("#alarms tbody").addEventListener("click", (e) => {
    const tr = e.target.closest("tr.alarm");
    if (!tr) return;
    const alarm = state.alarms[Number(tr.dataset.k)];
    const verb = e.target.closest("button")?.dataset.verb;
    if (verb) { doVerb(verb, alarm); return; }
    state.selected = { kind: "channel", name: alarm.channel, alarm: alarm.id };
    $("#filter").value = "";
    drawSelected();
    refreshAlarms();
  });
  $("#incidents").addEventListener("click", (e) => {
    const li = e.target.closest("li");
    if (!li) return;
    state.selected = { kind: "incident", incident: state.incidents[Number(li.dataset.k)] };
    drawSelected();
  });
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("hidden", t.id !== `tab-${b.dataset.tab}`));
    if (b.dataset.tab === "audit") refreshAudit();
  }));
  $("#token-btn").addEventListener("click", askToken);
  window.addEventListener("resize", throttle(drawSelected, 500));
}

async function loadEvents() {
  const events = await getJSON("/api/events");
  let n = 0;
  state.events = events.map((e) => ({ ...e, n: MARKED.has(e.kind) ? ++n : null }));
}

async function main() {
  wire();
  showTokenState();
  setInterval(() => refreshHealth().catch(() => {}), 2000);
  await Promise.all([loadMeta(), loadEvents()]);
  await refreshAll();
  connect();
}

main().catch((e) => toast(`console failed to start: ${e.message}`, true));
