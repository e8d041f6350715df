// Vigil operator console. Plain ES modules over the /api endpoints; uPlot (vendored) draws the plots.
// Live updates arrive on the /api/live WebSocket as hints: the page re-reads state over HTTP,
// throttled, so it stays correct whatever the tick format and after any dropped message.

import { conductor, fmtClock, fmtDuration, fmtTime, makePlot, SEV, SEV_COLOUR } from "./plots.js";
import { askToken, doVerb, editLimits, showTokenState, toast } from "./operator.js";

const MAX_ALARM_ROWS = 400;
const OPEN_STATES = new Set(["active", "acknowledged", "shelved", "rtn_unacknowledged", "latched"]);
const LINE_H = 15; // px per line of a channel row (names wrap rather than being cut)

const $ = (sel) => document.querySelector(sel);
const state = {
  meta: new Map(), // name -> channel configuration
  latest: null, // columnar snapshot from /api/latest
  index: new Map(), // name -> position in latest
  rows: [], // filtered, sorted channel indices shown in the list
  rowH: 20,
  subsystem: null,
  selected: null, // {kind: "channel", name, alarm?} or {kind: "incident", id}
  alarms: [],
  incidents: [],
  nominal: [], // operator-nominal patterns
  plots: [],
  events: [], // reference timeline of a replayed scenario: {time, kind, label}
};
window.__vigil = { state, conductor }; // for the browser tests and the curious
const MARKED = new Set(["call", "los", "milestone", "fault_message"]); // timeline kinds drawn on plots

// ---------- helpers ----------
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
// A name that may wrap after its separators (never cut): BATT_T_1 -> BATT_<wbr>T_<wbr>1.
const wrapName = (s) => esc(s).replace(/([_.:/-])/g, "$1<wbr>");

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

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

const clock = () => state.latest?.data_time ?? null;
const incidentNames = (inc) => (inc.channels || []).map((c) => (Array.isArray(c) ? c[0] : c.channel ?? c.name ?? c));

// ---------- channels: snapshot, tiles, virtual list ----------
async function loadMeta() {
  const list = await getJSON("/api/channels");
  state.meta = new Map(list.map((c) => [c.name, c]));
  fitRowHeight();
}

// Rows are as tall as the longest names need once wrapped in the name column: nothing is cut. The
// longest few are laid out in a hidden probe row of the list's own width and measured.
function fitRowHeight() {
  const longest = [...state.meta.keys()].sort((a, b) => b.length - a.length).slice(0, 20);
  const probe = document.createElement("div");
  probe.className = "row probe";
  probe.style.cssText = "position:absolute;visibility:hidden;height:auto;left:0;right:0";
  probe.innerHTML = `<span class="dot"></span><span class="name"></span><span class="num val">-0.00000e+00 units</span><span></span><span></span>`;
  $("#chanlist .vrows").appendChild(probe);
  const cell = probe.querySelector(".name");
  let lines = 1;
  for (const name of longest) {
    cell.innerHTML = wrapName(name);
    lines = Math.max(lines, Math.round(cell.getBoundingClientRect().height / LINE_H));
  }
  probe.remove();
  state.rowH = Math.min(8, lines) * LINE_H + 5;
  document.documentElement.style.setProperty("--row-h", `${state.rowH}px`);
}

async function refreshLatest() {
  const snap = await getJSON("/api/latest");
  state.latest = snap;
  if (snap.channels.length !== state.index.size) {
    state.index = new Map(snap.channels.map((n, i) => [n, i]));
    if (snap.channels.some((n) => !state.meta.has(n))) await loadMeta();
  }
  $("#clock").textContent = fmtTime(snap.data_time);
  $("#span-label").textContent = conductor.label(clock());
  renderTiles();
  filterRows();
}

function worst(i) {
  const s = state.latest;
  return Math.max(s.alarm[i], s.level[i]);
}

// Worst subsystem first, so a critical one is never below the fold; the box scrolls for the rest.
function renderTiles() {
  const s = state.latest;
  const groups = new Map();
  s.channels.forEach((n, i) => {
    const sub = state.meta.get(n)?.subsystem || "other";
    const g = groups.get(sub) || { n: 0, worst: 0, alarm: 0, stale: 0 };
    g.n += 1; g.worst = Math.max(g.worst, worst(i)); g.alarm += s.alarm[i] > 0; g.stale += s.stale[i];
    groups.set(sub, g);
  });
  const sorted = [...groups].sort((a, b) => b[1].worst - a[1].worst || b[1].stale - a[1].stale || a[0].localeCompare(b[0]));
  $("#subsystems").innerHTML = sorted.map(([sub, g]) =>
    `<div class="tile l${g.worst}${g.stale ? " stale" : ""}${state.subsystem === sub ? " sel" : ""}" data-sub="${esc(sub)}"
      title="${esc(sub)}: worst ${SEV[g.worst]}, ${g.alarm} in alarm, ${g.stale} stale">
      <div class="tname">${esc(sub)}</div><div class="n">${g.n} ch · ${g.alarm} alarm${g.stale ? ` · ${g.stale} stale` : ""}</div></div>`).join("");
  const counts = [0, 0, 0, 0, 0, 0];
  s.alarm.forEach((l) => counts[l]++);
  $("#counts").innerHTML = SEV.slice(1).map((name, k) =>
    `<span class="sevkey">${name}</span><span class="pill" style="background:${SEV_COLOUR[k + 1]}"
      title="channels whose worst open alarm is ${name}">${counts[k + 1]}</span>`).join("");
  const box = $("#subsystems");
  $("#tiles-more").textContent = box.scrollHeight > box.clientHeight + 2 ? `${groups.size} subsystems: scroll for more ↓` : "";
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
    if (view === "ttl" && !ttlOf(name)) continue;
    if (q && !name.toLowerCase().includes(q) && !sub.toLowerCase().includes(q)) continue;
    rows.push(i);
  }
  // Most severe first, then stale, then by name: the channels needing attention are on top.
  rows.sort((a, b) => worst(b) - worst(a) || s.stale[b] - s.stale[a] || (s.channels[a] < s.channels[b] ? -1 : 1));
  state.rows = rows;
  $("#chanlist .vspacer").style.height = `${rows.length * state.rowH}px`;
  $("#chan-foot").textContent = `${rows.length} of ${s.channels.length} channels`;
  renderRows();
}

// "45s", "12m", "2h22", "3d4h": short enough for the list's column.
function fmtShort(s) {
  if (s < 90) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  if (s < 86400) { const m = Math.round(s / 60); return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}`; }
  const h = Math.round(s / 3600);
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

function ttlBadge(ttl) {
  if (!ttl) return "";
  const colour = SEV_COLOUR[SEV.indexOf(ttl.severity)];
  return `<span class="ttl" style="color:${colour}" title="reaches ${esc(ttl.severity)} ${fmtNum(ttl.limit)} in about ${fmtDuration(ttl.seconds)} (${fmtDuration(ttl.seconds_low)} – ${fmtDuration(ttl.seconds_high)})">→${esc(ttl.severity.slice(0, 4))} ${fmtShort(ttl.seconds)}</span>`;
}

function renderRows() {
  const box = $("#chanlist");
  const s = state.latest;
  const first = Math.max(0, Math.floor(box.scrollTop / state.rowH) - 5);
  const last = Math.min(state.rows.length, first + Math.ceil(box.clientHeight / state.rowH) + 10);
  const sel = state.selected?.kind === "channel" ? state.selected.name : null;
  const out = [];
  for (let k = first; k < last; k++) {
    const i = state.rows[k];
    const name = s.channels[i];
    const m = state.meta.get(name) || {};
    const cls = `row l${worst(i)}${s.stale[i] ? " stale" : ""}${name === sel ? " sel" : ""}`;
    out.push(`<div class="${cls}" data-name="${esc(name)}" title="${esc(m.subsystem || "")}${m.description ? `: ${esc(m.description)}` : ""}">
      <span class="dot"></span><span class="name">${wrapName(name)}</span>
      <span class="num val">${fmtNum(s.value[i])} ${esc(m.units || "")}</span><span class="ttlcol">${ttlBadge(ttlOf(name))}</span>
      <span class="num age">${s.stale[i] ? "STALE " : ""}${fmtAge(s.age[i])}</span></div>`);
  }
  const rowsEl = box.querySelector(".vrows");
  rowsEl.style.transform = `translateY(${first * state.rowH}px)`;
  rowsEl.innerHTML = out.join("");
}

// ---------- plots over the conductor's span ----------
async function history(name, span, points) {
  const q = new URLSearchParams({ max_points: String(points) });
  if (span[0] != null) q.set("start", String(span[0]));
  if (span[1] != null && !conductor.live) q.set("end", String(span[1]));
  return getJSON(`/api/channels/${encodeURIComponent(name)}/history?${q}`);
}

// The forecast for a channel, unless it is already beyond that limit (its alarm says so then).
function ttlOf(name) {
  const i = state.index.get(name);
  const ttl = i == null ? null : state.latest.time_to_limit?.[i];
  return ttl && !beyond(name, ttl, state.latest.value[i]) ? { ...ttl, x0: state.latest.time[i], y0: state.latest.value[i] } : null;
}

function beyond(name, ttl, value) {
  const [lo, hi] = state.meta.get(name)?.limits?.[ttl.severity] || [null, null];
  return (lo != null && value < lo) || (hi != null && value > hi);
}

function plotOptions(name, extra) {
  const m = state.meta.get(name) || {};
  const span = conductor.span(clock());
  return {
    units: m.units, events: state.events.filter((e) => e.n != null),
    changes: state.limitChanges.filter((c) => c.channel === name),
    ttl: conductor.live ? ttlOf(name) : null,
    onSelect: (a, b) => { conductor.setSpan(a, b); drawSelected(); },
    span, ...extra,
  };
}

function clearPlots() {
  state.plots.forEach((p) => p.destroy());
  state.plots = [];
  $("#plots").innerHTML = "";
}

async function drawSelected() {
  const sel = state.selected;
  $("#span-label").textContent = conductor.label(clock());
  document.querySelectorAll("#conductor [data-width]").forEach((b) =>
    b.classList.toggle("on", conductor.live && Number(b.dataset.width) === conductor.width));
  $("#live-btn").classList.toggle("on", conductor.live);
  if (!sel) return;
  state.limitChanges = await getJSON("/api/limits/changes").catch(() => []);
  if (sel.kind === "channel") await drawChannel(sel);
  else await drawIncident(sel);
}

async function drawChannel(sel) {
  const box = $("#plots");
  const opts = plotOptions(sel.name, {});
  const [h, detail] = await Promise.all([
    history(sel.name, opts.span, Math.max(200, box.clientWidth)),
    sel.alarm ? getJSON(`/api/alarms/${sel.alarm}`) : null,
  ]);
  const m = state.meta.get(sel.name) || {};
  const i = state.index.get(sel.name);
  const stale = i != null && state.latest.stale[i];
  const ttl = ttlOf(sel.name);
  $("#plot-head").innerHTML = `<b class="fullname">${esc(sel.name)}</b> · ${esc(m.subsystem || "")} ${m.description ? `· ${esc(m.description)}` : ""}
    ${stale ? `· <span style="color:var(--distress)">STALE (${fmtAge(state.latest.age[i])} without data)</span>` : ""}
    <button type="button" id="limits-btn" title="change this channel's limits (token, recorded)">limits…</button>`;
  $("#detail").innerHTML = (detail ? alarmDetail(detail) : channelDetail(h, m)) + ttlNote(sel.name, ttl, m) + timelineNote(h.time[0], h.time[h.time.length - 1]);
  clearPlots();
  const source = h.source === "archive" ? " · from the archive" : "";
  const height = Math.max(200, box.clientHeight - 70);
  state.plots.push(makePlot(box, h, opts.span, { ...opts, title: `value · expected band · limits · alarm periods shaded${source}`, height }));
}

function alarmDetail({ alarm: a, audit }) {
  const notes = audit.filter((e) => e.user !== "system");
  const marked = state.nominal.filter((p) => p.alarm_id === a.id);
  // A limit (or staleness) alarm is the mission's own rule: it is changed with the limit, not marked nominal.
  const learned = !/^(limits|xtce|staleness)/.test(a.detector || "");
  const verbs = verbsOf(a).concat(["comment"], marked.length ? ["unmark-nominal"] : learned ? ["mark-nominal"] : []);
  return `<div class="alarm-detail" data-id="${esc(a.id)}">
    <div><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span> <b>alarm #${esc(a.id)}</b> · ${esc(a.state)}
      · from ${fmtTime(a.first_time)} to ${a.rtn_time != null ? fmtTime(a.rtn_time) : "now"}
      ${a.incident_id != null ? `· incident #${esc(a.incident_id)}` : ""}</div>
    <div class="why explanation">${esc(a.explanation || "")}</div>
    ${marked.map((p) => `<div class="nominal-note">${esc(p.explanation)}: ${esc(p.comment)}</div>`).join("")}
    <div class="verbs">${verbs.map((v) => `<button type="button" data-verb="${v}">${v}</button>`).join("")}</div>
    ${notes.length ? `<div class="notes"><b>operator actions and notes</b>${notes.map((e) =>
      `<div>${fmtTime(e.wall_time)} <b>${esc(e.user)}</b> ${esc(e.action)}${e.comment ? `: ${esc(e.comment)}` : ""}</div>`).join("")}</div>` : ""}
  </div>`;
}

function channelDetail(h, m) {
  const open = (h.alarms || []).filter((a) => OPEN_STATES.has(a.state));
  const alarms = state.alarms.filter((a) => a.channel === h.name);
  const why = new Map(alarms.map((a) => [a.id, a.explanation]));
  const lim = Object.entries(m.limits || {}).map(([sev, [lo, hi]]) => `${sev} [${lo ?? "−∞"}, ${hi ?? "+∞"}]`).join(" · ");
  const pats = state.nominal.filter((p) => p.channel === h.name);
  return (open.length ? open.map((a) => `<div class="alarm-line"><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span>
      #${esc(a.id)} ${esc(a.state)} from ${fmtTime(a.start)} to ${fmtTime(a.end)}<div class="why">${esc(why.get(a.id) || "")}</div></div>`).join("")
    : "<div>no open alarms on this channel</div>")
    + `<div>limits: ${esc(lim || "none")}</div>`
    + pats.map((p) => `<div class="nominal-note">${esc(p.explanation)}: ${esc(p.comment)} · ${p.matched_samples} samples judged nominal</div>`).join("");
}

function ttlNote(name, ttl, m) {
  if (!ttl) return "";
  const units = m.units ? ` ${m.units}` : "";
  return `<div class="ttl-note" style="color:${SEV_COLOUR[SEV.indexOf(ttl.severity)]}">${esc(name)} reaches ${esc(ttl.severity)} ${fmtNum(ttl.limit)}${esc(units)}
    in about ${fmtDuration(ttl.seconds)} (${fmtDuration(ttl.seconds_low)} – ${ttl.seconds_high == null ? "?" : fmtDuration(ttl.seconds_high)}), at ${fmtTime(ttl.x0 + ttl.seconds)}</div>`;
}

function timelineNote(t0, t1) {
  if (t0 == null || t1 == null) return "";
  const shown = state.events.filter((e) => e.n != null && e.time >= t0 && e.time <= t1);
  if (!shown.length) return "";
  const rel = (e) => (e.t_from_ei_s != null ? `EI${e.t_from_ei_s >= 0 ? "+" : ""}${e.t_from_ei_s}s` : fmtClock(e.time));
  return `<div class="timeline"><b>reference timeline</b> (dotted lines)<br>${shown
    .map((e) => `${e.n}. ${esc(rel(e))} ${esc(e.kind)}: ${esc(e.label)}`).join("<br>")}</div>`;
}

// An incident's view follows the incident as it grows: it is looked up by id at every redraw, and
// every channel in it is plotted (the box scrolls).
async function drawIncident(sel) {
  const box = $("#plots");
  const inc = state.incidents.find((x) => x.id === sel.id);
  if (!inc) return;
  const names = incidentNames(inc);
  const opts = plotOptions(names[0], {});
  const hs = await Promise.all(names.map((n) => history(n, opts.span, Math.max(200, box.clientWidth))));
  $("#plot-head").innerHTML = `<b>incident #${esc(inc.id)}</b> · ${esc(inc.subsystem || "")} · <span id="incident-n">${names.length}</span> channels, ranked · ${inc.active ? "active" : "closed"}`;
  $("#detail").innerHTML = `<b>explanation</b><div class="why">${esc(inc.explanation || "").replace(/\n/g, "<br>")}</div>`
    + timelineNote(opts.span[0], opts.span[1]);
  clearPlots();
  const height = Math.max(130, Math.min(220, Math.floor((box.clientHeight - 10) / names.length) - 24));
  hs.forEach((h, k) => {
    const rank = inc.channels[k];
    const score = Array.isArray(rank) ? rank[1] : rank?.score ?? rank?.rank_score;
    const title = `<b class="fullname">${k + 1}. ${esc(h.name)}</b> ${score != null ? `rank score ${fmtNum(score)}` : ""}`;
    state.plots.push(makePlot(box, h, opts.span, { ...plotOptions(h.name, { ttl: null }), title, height, sync: "incident", legend: false }));
  });
}

// Selecting an alarm or incident puts the conductor on its span (live while it is still going on).
function focusSpan(t0, t1, ongoing) {
  const pad = Math.max(60, ((t1 ?? clock() ?? t0) - t0) * 0.5);
  if (ongoing) { conductor.goLive(); conductor.width = Math.max(conductor.width, (clock() ?? t0) - t0 + pad); }
  else conductor.setSpan(t0 - pad, (t1 ?? t0) + pad);
}

// ---------- alarms, incidents, audit, nominal patterns ----------
function verbsOf(a) {
  const verbs = [];
  if (a.state === "active" || a.state === "rtn_unacknowledged") verbs.push("acknowledge");
  if (a.state !== "shelved" && a.state !== "cleared") verbs.push("shelve");
  if (a.state === "shelved") verbs.push("unshelve");
  if (a.state === "latched") verbs.push("clear"); // back to normal and acknowledged: waits for a reset
  return verbs;
}

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
    const sel = a.id === selId;
    return `<tr class="alarm state-${esc(a.state)}${sel ? " sel" : ""}" data-k="${k}" data-id="${esc(a.id)}">
      <td><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></td><td class="name">${wrapName(a.channel)}</td>
      <td class="state">${wrapName(a.state)}</td><td class="num">${fmtNum(value)}</td><td>${fmtClock(a.first_time)}</td>
      <td>${verbsOf(a).map((v) => `<button type="button" data-verb="${v}">${v === "acknowledge" ? "ack" : v}</button>`).join("")}</td></tr>
      ${sel ? `<tr class="why-row"><td colspan="6" class="why">${esc(a.explanation || "")}</td></tr>` : ""}`;
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
  const selId = state.selected?.kind === "incident" ? state.selected.id : null;
  $("#incidents").innerHTML = incs.map((inc, k) => {
    const names = incidentNames(inc);
    return `<li data-k="${k}" data-id="${esc(inc.id)}" class="${inc.id === selId ? "sel" : ""}"><b>#${esc(inc.id)} ${esc(inc.subsystem || "")}</b> ${fmtTime(inc.first_time)}
      · ${names.length} channels: <span class="names">${esc(names.join(", "))}</span>
      <div class="why">${esc(inc.explanation || "").replace(/\n/g, "<br>")}</div></li>`;
  }).join("");
}

async function refreshNominal() {
  state.nominal = await getJSON("/api/nominal");
  $("#nominal-count").textContent = state.nominal.length || "";
  $("#nominal").innerHTML = state.nominal.length ? state.nominal.map((p) => `<li data-alarm="${esc(p.alarm_id)}">
      <b>${esc(p.channel)}</b> · pattern ${esc(p.id)} from alarm #${esc(p.alarm_id)} (${fmtTime(p.start)}, ${esc(p.samples)} samples)
      <button type="button" data-verb="unmark-nominal">unmark</button>
      <div class="why">${esc(p.explanation)}: ${esc(p.comment)}</div>
      <div class="why">${esc(p.matched_samples)} samples judged nominal since${p.last_match != null ? `, last at ${fmtTime(p.last_match)}` : ""}</div></li>`).join("")
    : `<li class="why">No pattern marked nominal. Select an alarm and use “mark-nominal”: when the same episode recurs on that channel it will not alarm.</li>`;
}

async function refreshAudit() {
  const [trail, changes] = await Promise.all([getJSON("/api/audit?limit=300"), getJSON("/api/limits/changes")]);
  const rows = trail.map((e) => ({ when: e.wall_time, text: `alarm ${e.alarm_id} ${e.action} by ${e.user} (${e.from_state ?? "—"} → ${e.to_state}) at data ${fmtTime(e.time)}${e.comment ? `: ${e.comment}` : ""}` }))
    .concat(changes.map((c) => ({ when: c.wall_time, text: `limits of ${c.channel} changed by ${c.user}: ${JSON.stringify(c.old)} → ${JSON.stringify(c.new)}: ${c.comment}` })));
  rows.sort((a, b) => (b.when ?? 0) - (a.when ?? 0));
  $("#audit").innerHTML = rows.map((r) => `<li>${fmtTime(r.when)} ${esc(r.text)}</li>`).join("");
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
const plotSoon = throttle(drawSelected, 1500);
const alarmsSoon = throttle(async () => {
  await Promise.all([refreshAlarms(), refreshIncidents(), refreshNominal()]);
  if (state.selected) plotSoon(); // the selected alarm's details and the incident's channels follow
}, 700);
const countersSoon = throttle(refreshCounters, 5000);
const resyncSoon = throttle(refreshAll, 1000);  // a client that missed messages re-reads, at most once a second

function connect(delay = 500) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
  const link = $("#link");
  ws.onopen = () => { link.dataset.state = "live"; link.textContent = "live"; delay = 500; refreshAll(); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "hello") return;
    if (msg.type === "values") { latestSoon(); if (state.selected && conductor.live) plotSoon(); countersSoon(); return; }
    if (msg.type === "resync") { resyncSoon(); return; }
    if (msg.type === "limits") { loadMeta().then(() => plotSoon()); return; }
    alarmsSoon(); latestSoon();
  };
  ws.onclose = () => {
    link.dataset.state = "down";
    link.textContent = "live: disconnected, retrying";
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

async function refreshAll() {
  await Promise.all([refreshLatest(), refreshAlarms(), refreshIncidents(), refreshCounters(), refreshNominal()]);
  if (state.selected) await drawSelected();
}

// ---------- wiring ----------
function afterVerb() { alarmsSoon(); latestSoon(); }

function selectAlarm(alarm) {
  state.selected = { kind: "channel", name: alarm.channel, alarm: alarm.id };
  focusSpan(alarm.first_time, alarm.rtn_time ?? alarm.last_time, OPEN_STATES.has(alarm.state) && alarm.rtn_time == null);
  $("#filter").value = "";
  renderRows();
  drawSelected();
  refreshAlarms();
}

function wireConductor() {
  $("#conductor").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    const now = clock();
    if (b.id === "live-btn") conductor.goLive();
    else if (b.dataset.width) { conductor.goLive(); conductor.width = Number(b.dataset.width); }
    else if (b.dataset.pan) conductor.pan(now, Number(b.dataset.pan));
    else if (b.dataset.zoom) conductor.zoom(now, Number(b.dataset.zoom));
    drawSelected();
  });
  $("#span-end").addEventListener("change", (e) => {
    const t = Date.parse(e.target.value.trim().replace(" ", "T").replace(/Z?$/, "Z")) / 1000;
    if (!isFinite(t)) { toast("end time: YYYY-MM-DD HH:MM:SS (UTC)", true); return; }
    conductor.setSpan(t - conductor.width, t);
    drawSelected();
  });
  // Wheel over the plots: zoom in/out; with shift, scroll back and forth in time.
  $("#plots").addEventListener("wheel", (e) => {
    if (!state.selected || !e.target.closest("canvas, .u-over")) return;
    e.preventDefault();
    if (e.shiftKey) conductor.pan(clock(), e.deltaY > 0 ? 0.25 : -0.25);
    else conductor.zoom(clock(), e.deltaY > 0 ? 1.5 : 1 / 1.5);
    plotSoon();
  }, { passive: false });
}

function wire() {
  $("#chanlist").addEventListener("scroll", () => requestAnimationFrame(renderRows));
  $("#chanlist").addEventListener("click", (e) => {
    const row = e.target.closest(".row");
    if (!row) return;
    state.selected = { kind: "channel", name: row.dataset.name };
    renderRows();
    drawSelected();
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
    if (verb) doVerb(verb, alarm, afterVerb);
    else selectAlarm(alarm);
  });
  $("#center").addEventListener("click", async (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.id === "limits-btn") { editLimits(state.meta.get(state.selected.name), () => loadMeta().then(drawSelected)); return; }
    const box = b.closest(".alarm-detail");
    if (box && b.dataset.verb) {
      const alarm = (await getJSON(`/api/alarms/${box.dataset.id}`)).alarm;
      doVerb(b.dataset.verb, alarm, afterVerb);
    }
  });
  $("#nominal").addEventListener("click", async (e) => {
    const li = e.target.closest("li[data-alarm]");
    if (!li) return;
    const alarm = (await getJSON(`/api/alarms/${li.dataset.alarm}`)).alarm;
    if (e.target.closest("button")) doVerb("unmark-nominal", alarm, afterVerb);
    else selectAlarm(alarm);
  });
  $("#incidents").addEventListener("click", (e) => {
    const li = e.target.closest("li");
    if (!li) return;
    const inc = state.incidents[Number(li.dataset.k)];
    state.selected = { kind: "incident", id: inc.id };
    focusSpan(inc.first_time, inc.last_time, inc.active);
    refreshIncidents();
    drawSelected();
  });
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("hidden", t.id !== `tab-${b.dataset.tab}`));
    if (b.dataset.tab === "audit") refreshAudit();
  }));
  $("#token-btn").addEventListener("click", askToken);
  window.addEventListener("resize", throttle(() => { fitRowHeight(); filterRows(); return drawSelected(); }, 500));
  wireConductor();
}

async function loadEvents() {
  const events = await getJSON("/api/events");
  let n = 0;
  state.events = events.map((e) => ({ ...e, n: MARKED.has(e.kind) ? ++n : null }));
}

async function main() {
  state.limitChanges = [];
  wire();
  showTokenState();
  setInterval(() => refreshHealth().catch(() => {}), 2000);
  await Promise.all([loadMeta(), loadEvents()]);
  await refreshAll();
  connect();
}

main().catch((e) => toast(`console failed to start: ${e.message}`, true));
