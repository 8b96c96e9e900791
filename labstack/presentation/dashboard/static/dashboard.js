// labstack dashboard: one event stream for what changes, plain fetches for the rest.
// No framework and nothing from the network but this server.
"use strict";

const state = { version: null, runsDigest: null, token: "", controlEnabled: false, lastUpdate: null };
window.labstack = state;  // read by the tests and the latency benchmark

const $ = (id) => document.getElementById(id);
const text = (id, value) => { $(id).textContent = value == null ? "" : String(value); };
const esc = (s) => String(s == null ? "" : s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const utc = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "");

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

async function inlineSVG(target, url) {
  const r = await fetch(url, { cache: "no-store" });
  const el = $(target);
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    el.innerHTML = `<p class="note">${esc(body.error || r.statusText)}</p>`;
    return;
  }
  el.innerHTML = await r.text();
  el.dataset.loaded = url;
}

// ------------------------------------------------------------ live snapshot
function applyLive(snap) {
  const r = snap.running;
  $("running").hidden = !r;
  $("running-none").hidden = !!r;
  if (r) {
    text("running-node", r.node);
    text("running-phase", r.phase);
    text("running-acquisition", r.acquisition);
    text("running-run", r.id);
    $("progress").value = r.fraction == null ? 0 : r.fraction;
    text("progress-text", r.points_total ? `${r.points_done} / ${r.points_total} points` : `${r.points_done || 0} points`);
  }
  const s = snap.session;
  state.hasSession = !!s;  // the chip's layout comes from a calibration's station file
  text("session", s ? `calibration ${s.id}: ${s.status}; nodes touched: ${s.nodes_touched.join(", ") || "none yet"}` : "no calibration yet");
  const versionChanged = snap.state_version !== state.version;
  if (versionChanged) {
    state.version = snap.state_version;
    text("state-version", `v${snap.state_version}`);
    refreshState();
  }
  // a served lab's clock runs on between passes: re-judge node status as it moves
  const clock = JSON.stringify(snap.lab_clock || null);
  if (clock !== state.labClock) {
    const first = state.labClock === undefined;
    state.labClock = clock;
    if (!first && !versionChanged) refreshNodes();
  }
  if (snap.runs_digest !== state.runsDigest) {
    state.runsDigest = snap.runs_digest;
    refreshRuns();
  }
  state.lastUpdate = { seq: snap.seq, version: snap.state_version, t: Date.now() };
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("update", (e) => applyLive(JSON.parse(e.data)));
  source.onopen = () => { $("connection").className = "on"; text("connection", "live"); };
  source.onerror = () => { $("connection").className = "off"; text("connection", "reconnecting…"); };
}

// ------------------------------------------------------------ state-driven views
// Refreshes coalesce: one runs at a time, and a change that arrives meanwhile causes
// exactly one more, so a fast-changing state is never starved nor drawn out of order.
function coalesced(draw) {
  let running = false, again = false;
  return async function () {
    if (running) { again = true; return; }
    running = true;
    try {
      do { again = false; await draw(); } while (again);
    } catch (e) {
      console.warn(e);
    } finally { running = false; }
  };
}

const refreshState = coalesced(drawState);
const refreshRuns = coalesced(drawRuns);
const refreshNodes = coalesced(async () => drawNodes(await getJSON("/api/nodes")));

// Which clock node status is judged by, in words for the header.
const CLOCKS = {
  served: "the served lab's clock, now",
  virtual: "the last state update (an in-process virtual lab's clock)",
  wall: "the wall clock, now",
};

function drawNodes(s) {
  if (s.state_version < (state.nodesVersion || 0)) return;  // an older answer, overtaken
  state.nodesVersion = s.state_version;
  text("as-of", utc(s.as_of));
  text("clock", CLOCKS[s.clock] || s.clock);
  $("clock").dataset.clock = s.clock;
  text("graph-note", s.note);
  $("graph").innerHTML = s.svg;
  $("nodes").tBodies[0].innerHTML = s.nodes.map((n) => `<tr class="${esc(n.status)}" data-node="${esc(n.name)}">
    <td>${esc(n.name)}</td><td class="status">${esc(n.status)}</td><td>${esc(utc(n.calibrated_utc))}</td>
    <td>${esc(utc(n.valid_until_utc))}</td><td>${n.flagged || ""}</td><td>${esc(n.reason)}</td></tr>`).join("");
  state.nodesDrawn = { version: s.state_version, asOf: s.as_of, t: Date.now() };
}

async function drawState() {
  const s = await getJSON("/api/summary");
  text("data-dir", s.data_dir);
  drawNodes(s);
  const cells = $("cells");
  cells.tHead.innerHTML = `<tr><th>cell</th>${s.cells.columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr>`;
  cells.tBodies[0].innerHTML = s.cells.rows.map((row) => `<tr><th>cell ${row.cell}</th>${row.values.map((v) =>
    `<td data-key="${esc(v.key)}" class="${v.valid ? "" : "bad"}" title="${esc(v.note)}">${esc(v.text)}</td>`).join("")}</tr>`).join("");
  text("cells-note", s.cells.note || "");
  state.cellsDrawn = { version: s.state_version, t: Date.now() };
  fillSelect("history-param", s.parameters);
  fillSelect("chip-colour", s.chip_colours);
  state.controlEnabled = s.control_enabled;
  updateControl();
  await Promise.all([
    inlineSVG("history", `/api/history.svg?param=${$("history-param").value}&v=${s.state_version}`),
    state.hasSession ? inlineSVG("chip", `/api/chip.svg?color=${$("chip-colour").value}&v=${s.state_version}`)
      : Promise.resolve(text("chip", "no calibration yet: the chip's layout is unknown")),
  ]);
  $("history").dataset.version = s.state_version;
  state.drawn = { version: s.state_version, t: Date.now() };
}

function fillSelect(id, options) {
  const el = $(id);
  if (el.options.length) return;
  el.innerHTML = Object.entries(options).map(([k, label]) => `<option value="${esc(k)}">${esc(label)}</option>`).join("");
  el.addEventListener("change", () => {
    if (id === "history-param") inlineSVG("history", `/api/history.svg?param=${el.value}`);
    else inlineSVG("chip", `/api/chip.svg?color=${el.value}`);
  });
}

async function drawRuns() {
  const data = await getJSON("/api/runs?limit=15");
  $("runs").tBodies[0].innerHTML = data.runs.map((r) => {
    const progress = r.points_total ? `${r.points_done} / ${r.points_total}` : (r.points_done || "");
    const part = r.part_of ? ` (part of ${esc(r.part_of)})` : (r.derived_from ? " (merged)" : "");
    return `<tr class="${r.status === "running" ? "running" : ""}"><td><code>${esc(r.id)}</code></td>
      <td>${esc(r.node || r.name)}${part}</td><td>${esc(r.mode)}</td><td>${esc(r.status)}</td><td>${esc(progress)}</td>
      <td>${esc(utc(r.created_utc))}</td><td><a href="${esc(r.report)}" target="_blank">report</a></td></tr>`;
  }).join("");
  refreshFigures(data.runs);
}

// The gallery of the latest node runs' figures: drawing them takes seconds, so it is
// refreshed at most every FIGURES_EVERY_MS and never twice at once.
const FIGURES_EVERY_MS = 20000;
let figuresBusy = false, figuresAt = 0, figuresPending = null, figuresTimer = null;
async function refreshFigures(runs) {
  figuresPending = runs;
  if (figuresBusy || figuresTimer) return;
  const wait = figuresAt + FIGURES_EVERY_MS - Date.now();
  if (wait > 0) {
    figuresTimer = setTimeout(() => { figuresTimer = null; refreshFigures(figuresPending); }, wait);
    return;
  }
  figuresBusy = true;
  figuresAt = Date.now();
  try { await drawFigures(figuresPending); } finally { figuresBusy = false; }
}

async function drawFigures(runs) {
  const latest = {};
  for (const r of runs) {
    if (r.node && r.status === "completed" && !r.part_of && !latest[r.node]) latest[r.node] = r;
  }
  const html = [];
  for (const [node, r] of Object.entries(latest)) {
    const figs = await getJSON(`/api/runs/${r.id}/figures`).catch(() => ({ figures: [] }));
    if (!figs.figures.length) continue;
    html.push(`<h3>${esc(node)} <small class="note">run ${esc(r.id)} · <a href="${esc(r.report)}" target="_blank">report</a></small></h3>`
      + figs.figures.map((f) => `<img loading="lazy" alt="${esc(f.title)}" title="${esc(f.title)}" src="${esc(f.png)}">`).join(""));
  }
  $("figures").innerHTML = html.join("");
}

// ------------------------------------------------------------ run control (token)
function updateControl() {
  const on = state.controlEnabled && state.token.length > 0;
  for (const b of document.querySelectorAll("#control button")) b.disabled = !on;
  text("control-mode", !state.controlEnabled ? "read-only (control disabled)" : on ? "control enabled" : "read-only: enter the token to control runs");
}

async function sendControl(action) {
  const r = await fetch(`/api/control/${action}`, {
    method: "POST", headers: { "X-Labstack-Token": state.token, "Content-Type": "application/json" },
    body: JSON.stringify({ reason: "from the dashboard" }),
  });
  const body = await r.json().catch(() => ({}));
  text("control-result", r.ok ? `${action} requested` : `refused: ${body.error || r.status}`);
}

function setupControl() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem("labstack-token", fromUrl);
    history.replaceState(null, "", location.pathname);  // keep the token out of the address bar
  }
  state.token = sessionStorage.getItem("labstack-token") || "";
  $("token").value = state.token;
  $("token").addEventListener("input", (e) => { state.token = e.target.value; sessionStorage.setItem("labstack-token", state.token); updateControl(); });
  for (const b of document.querySelectorAll("#control button")) b.addEventListener("click", () => sendControl(b.dataset.action));
  updateControl();
}

document.addEventListener("DOMContentLoaded", () => { setupControl(); connect(); });
