// What an operator does from the page: alarm verbs, notes, marking an episode nominal, changing limits.
// Every call that changes state sends the API token (kept in this tab's sessionStorage only).

import { SEV } from "./plots.js";

const $ = (sel) => document.querySelector(sel);
const TITLES = {
  acknowledge: "Acknowledge", shelve: "Shelve", unshelve: "Unshelve", clear: "Clear", comment: "Add a note",
  "mark-nominal": "Mark nominal", "unmark-nominal": "Unmark nominal",
};
const HELP = {
  "mark-nominal": "The episode of this alarm (its values and shape) becomes nominal for this channel: when it recurs "
    + "it does not alarm; a different anomaly still does. Say why (required).",
  "unmark-nominal": "The episode marked nominal from this alarm alarms again when it recurs.",
  comment: "A note kept with the alarm (audit trail).",
};
const NEEDS_TEXT = new Set(["comment", "mark-nominal"]);

let toastTimer;
export function toast(msg, err = false) {
  const el = $("#toast");
  el.textContent = msg;
  el.className = err ? "show err" : "show";
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.className = ""), 3500);
}

export function showTokenState() {
  const has = Boolean(sessionStorage.getItem("vigil-token"));
  $("#token-btn").textContent = has ? "token set" : "set token";
  $("#token-btn").title = has ? "actions will use the stored token; click to replace it" : "needed to act on alarms and limits";
}

export function askToken() {
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

/** POST with the token (asked for when missing); the reply's JSON, or null after telling the operator why. */
export async function post(url, body) {
  const token = sessionStorage.getItem("vigil-token") || (await askToken());
  if (!token) return null;
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (r.status === 401) {
    sessionStorage.removeItem("vigil-token");
    showTokenState();
    toast("token refused: set it again", true);
    return null;
  }
  const out = await r.json().catch(() => ({}));
  if (!r.ok) {
    const detail = Array.isArray(out.detail) ? out.detail.map((d) => `${d.loc?.slice(-1)[0]}: ${d.msg}`).join("; ") : out.detail;
    toast(detail || `failed (${r.status})`, true);
    return null;
  }
  return out;
}

function askVerb(verb, alarm) {
  return new Promise((resolve) => {
    const dlg = $("#verb-dialog");
    $("#verb-title").textContent = TITLES[verb] || verb;
    $("#verb-what").textContent = `#${alarm.id} ${alarm.channel} ${alarm.severity} (${alarm.state})`;
    $("#verb-help").textContent = HELP[verb] || "";
    $("#verb-duration-row").classList.toggle("hidden", verb !== "shelve");
    const comment = $("#verb-comment");
    comment.value = "";
    comment.required = NEEDS_TEXT.has(verb);
    comment.placeholder = comment.required ? "required" : "optional";
    dlg.onclose = () => resolve(dlg.returnValue === "ok"
      ? { comment: comment.value, duration_s: Number($("#verb-duration").value) } : null);
    dlg.showModal();
  });
}

/** Ask for what the verb needs, then apply it to the alarm; `done()` after a success. */
export async function doVerb(verb, alarm, done) {
  const answer = await askVerb(verb, alarm);
  if (!answer) return;
  const body = {};
  if (verb !== "unshelve" && verb !== "clear") body.comment = answer.comment;
  if (verb === "shelve") body.duration_s = answer.duration_s;
  const out = await post(`/api/alarms/${encodeURIComponent(alarm.id)}:${verb}`, body);
  if (out == null) return;
  const what = verb === "mark-nominal" ? `marked nominal (pattern ${out.id})`
    : verb === "unmark-nominal" ? "no longer nominal" : verb === "comment" ? "note added" : out.state;
  toast(`alarm #${alarm.id}: ${what}`);
  done?.();
}

// ---------- limits ----------
function limitsForm(limits) {
  return SEV.slice(1).map((sev) => {
    const [lo, hi] = limits?.[sev] || [null, null];
    return `<tr><td><span class="sev ${sev}">${sev}</span></td>
      <td><input type="number" step="any" data-sev="${sev}" data-side="0" value="${lo ?? ""}" placeholder="open"></td>
      <td><input type="number" step="any" data-sev="${sev}" data-side="1" value="${hi ?? ""}" placeholder="open"></td></tr>`;
  }).join("");
}

function readLimits() {
  const out = {};
  for (const sev of SEV.slice(1)) {
    const [lo, hi] = [0, 1].map((side) => $(`#limits-table input[data-sev="${sev}"][data-side="${side}"]`).value.trim());
    if (lo === "" && hi === "") continue; // no range at this severity
    out[sev] = [lo === "" ? null : Number(lo), hi === "" ? null : Number(hi)];
  }
  return out;
}

/** Edit a channel's limits (nested ranges per severity; empty: open side / no range), with a reason. */
export function editLimits(meta, done) {
  const dlg = $("#limits-dialog");
  $("#limits-what").textContent = `${meta.name}${meta.units ? ` (${meta.units})` : ""}`;
  $("#limits-table tbody").innerHTML = limitsForm(meta.limits);
  $("#limits-comment").value = "";
  dlg.onclose = async () => {
    if (dlg.returnValue !== "ok") return;
    const body = { comment: $("#limits-comment").value, limits: readLimits() };
    const out = await post(`/api/channels/${encodeURIComponent(meta.name)}/limits`, body);
    if (out == null) return;
    toast(`${meta.name}: limits changed`);
    done?.(out);
  };
  dlg.showModal();
}
