// The dashboard's pages: fetch /v1/monitoring and the registry, draw with Plotly.
// Text from the data (titles, reasons) is always set with textContent, never as HTML.
"use strict";

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (response.status === 401 || response.status === 403) {
    window.location.href = "/dashboard/login";
    throw new Error("not signed in");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits || 4);
  return String(value);
}

function row(cells, header) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement(header ? "th" : "td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = fmt(cell);
    tr.appendChild(td);
  }
  return tr;
}

function fill(table, header, rows) {
  const el = document.getElementById(table);
  el.replaceChildren(row(header, true), ...rows.map((r) => row(r)));
  return el;
}

// Draw a chart and record how many data points it holds (browser tests read it).
// Every chart names its axes: `axes` is { x, y } (and y2 for a right-hand axis). Plotly takes
// an axis title as { text }; a bare string, as this code once passed, is not drawn.
const TIME = "time (UTC)";

async function chart(id, traces, axes, layout) {
  const el = document.getElementById(id);
  const extra = layout || {};
  const axis = (name, title) => Object.assign({ automargin: true }, extra[name] || {}, { title: { text: title } });
  const base = Object.assign({}, extra, {
    margin: { l: 60, r: axes.y2 ? 60 : 10, t: 10, b: 10 },
    // Above the plot: below it, the legend covered rotated tick labels (version names).
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
    xaxis: axis("xaxis", axes.x),
    yaxis: axis("yaxis", axes.y),
  });
  if (axes.y2) base.yaxis2 = Object.assign(axis("yaxis2", axes.y2), { overlaying: "y", side: "right" });
  await Plotly.newPlot(el, traces, base, { displaylogo: false, responsive: true });
  const points = traces.reduce((n, t) => n + (t.y || t.x || []).filter((v) => v !== null).length, 0);
  el.dataset.points = String(points);
  return el;
}

function byVersion(series, field) {
  const versions = [...new Set(series.map((r) => r.model_version))];
  return versions.map((v) => {
    const rows = series.filter((r) => r.model_version === v);
    return { name: v, x: rows.map((r) => r.period), y: rows.map((r) => r[field]), mode: "lines+markers" };
  });
}

function alertRows(alerts) {
  const el = fill("alerts", ["figure", "value", "alert when", "state"], []);
  for (const a of alerts) {
    const tr = row([a.name, a.value, a.when, a.breached === null ? "no data" : a.breached ? "BREACHED" : "ok"]);
    if (a.breached) tr.className = "breached";
    el.appendChild(tr);
  }
}

async function upload() {
  const file = document.getElementById("upload-file").files[0];
  const result = document.getElementById("upload-result");
  const list = document.getElementById("upload-errors");
  list.replaceChildren();
  if (!file) { result.textContent = "Choose a CSV file first."; return; }
  const response = await fetch("/v1/ingest/ratings", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "text/csv" }, body: file,
  });
  const body = await response.json();
  if (response.ok) {
    result.textContent = `${body.rows} rows read, ${body.new_ratings} new ratings (${fmt(body.seconds, 2)} s).`;
    return;
  }
  result.textContent = body.detail;
  for (const e of body.errors || []) {
    const li = document.createElement("li");
    li.textContent = `line ${e.line}: ${e.message}`;
    list.appendChild(li);
  }
}

async function overview() {
  document.getElementById("upload-go").onclick = upload;
  const s = await api("/v1/monitoring/summary?hours=24");
  fill("counts", ["", "count"], Object.entries(s.counts));
  const p = s.production;
  document.getElementById("production").textContent = p
    ? `${p.version}, promoted ${p.promoted_at}: RMSE ${fmt(p.metrics && p.metrics.rmse)}, NDCG@10 ${fmt(p.metrics && p.metrics["ndcg@10"])}` +
      (s.canary ? `; canary ${s.canary}` : "")
    : "no model in production";
  const j = s.last_job;
  document.getElementById("last-job").textContent = j
    ? `#${j.id} ${j.status}${j.decision ? ", " + j.decision : ""} (${j.started_at})${(j.reasons || []).length ? ": " + j.reasons.join("; ") : ""}`
    : "no job has run yet";
  alertRows(s.alerts);
  await chart("chart-served", byVersion(s.timeseries, "lists_served").map((t) => Object.assign(t, { type: "bar" })), { x: TIME, y: "lists served" });
  await chart("chart-feedback", byVersion(s.timeseries, "feedback").map((t) => Object.assign(t, { type: "bar" })), { x: TIME, y: "feedback events" });
}

async function loop() {
  const s = await api("/v1/monitoring/summary?hours=24");
  const ts = s.timeseries;
  await chart("chart-coverage", byVersion(ts, "coverage"), { x: TIME, y: "catalog shown (%)" }, { yaxis: { tickformat: ".1%" } });
  await chart("chart-gini", byVersion(ts, "gini"), { x: TIME, y: "Gini of exposure" });
  const catalog = { name: "catalog", x: ts.map((r) => r.period), y: ts.map((r) => r.catalog_popularity), mode: "lines+markers", line: { dash: "dot" } };
  await chart("chart-popularity", [...byVersion(ts, "shown_popularity"), catalog], { x: TIME, y: "mean training ratings per item" });
  await chart("chart-attribution", byVersion(ts, "attribution_share"), { x: TIME, y: "ratings answering a list (%)" }, { yaxis: { tickformat: ".0%" } });
  const positive = byVersion(ts, "positive_rate").map((t) => Object.assign(t, { name: t.name + " positive" }));
  const ctr = byVersion(ts, "click_through").map((t) => Object.assign(t, { name: t.name + " CTR" }));
  await chart("chart-response", [...positive, ...ctr], { x: TIME, y: "share of feedback (%)" }, { yaxis: { tickformat: ".0%" } });
  await chart("chart-bias", byVersion(ts, "prediction_bias"), { x: TIME, y: "predicted minus given (stars)" });
  const h = (s.drift.rating_histogram || { before: {}, after: {} });
  const share = (o) => { const t = Object.values(o).reduce((a, b) => a + b, 0) || 1; return Object.values(o).map((v) => v / t); };
  document.getElementById("psi").textContent = `(PSI ratings ${fmt(s.drift.rating_psi, 3)}, popularity ${fmt(s.drift.popularity_psi, 3)})`;
  await chart("chart-drift", [
    { type: "bar", name: "training snapshot", x: Object.keys(h.before), y: share(h.before) },
    { type: "bar", name: "since", x: Object.keys(h.after), y: share(h.after) },
  ], { x: "rating (stars)", y: "share of ratings (%)" }, { yaxis: { tickformat: ".0%" }, xaxis: { type: "category" } });
}

async function models() {
  const versions = await api("/v1/models");
  const table = fill("versions", ["", "version", "status", "RMSE", "NDCG@10", "coverage", "gate", "created", "actions"], []);
  const ticked = new Set(versions.slice(0, 3).map((v) => v.version));
  for (const v of versions) {
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = ticked.has(v.version); box.dataset.version = v.version;
    box.addEventListener("change", () => { box.checked ? ticked.add(v.version) : ticked.delete(v.version); curves(ticked); });
    const actions = document.createElement("span");
    for (const action of ["approve", "promote", "reject"]) {
      const b = document.createElement("button");
      b.className = "action"; b.textContent = action; b.dataset.action = action; b.dataset.version = v.version;
      b.addEventListener("click", () => act(`/v1/models/${encodeURIComponent(v.version)}/${action}`));
      actions.appendChild(b);
    }
    const m = v.metrics || {};
    const gate = v.gate ? (v.gate.passed ? "passed" : "failed: " + (v.gate.reasons || []).join("; ")) : "–";
    const tr = row([box, v.version, v.status, m.rmse, m["ndcg@10"], m.coverage, gate, v.created_at, actions]);
    tr.dataset.version = v.version; tr.dataset.status = v.status;
    table.appendChild(tr);
  }
  document.getElementById("rollback").onclick = () => act("/v1/models/rollback");
  await curves(ticked);
}

async function act(path) {
  const out = document.getElementById("action-result");
  try {
    const r = await api(path, { method: "POST" });
    out.textContent = `${r.action}: production is ${r.production}`;
    await models();
  } catch (e) {
    out.textContent = e.message;
  }
}

async function curves(ticked) {
  if (!ticked.size) return;
  const q = [...ticked].map((v) => "versions=" + encodeURIComponent(v)).join("&");
  const data = await api("/v1/monitoring/curves?" + q);
  const colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];
  const traces = [];
  Object.entries(data).forEach(([version, run], n) => {
    const colour = colours[n % colours.length];
    const epochs = run.history.map((h) => h.epoch);
    traces.push({ name: version + " train", x: epochs, y: run.history.map((h) => h.train_loss), mode: "lines+markers", line: { color: colour, dash: "dot" } });
    traces.push({ name: version + " valid", x: epochs, y: run.history.map((h) => h.val_loss), mode: "lines+markers", line: { color: colour } });
  });
  await chart("chart-curves", traces, { x: "epoch", y: "MSE (stars²)" });
  const ranking = [];
  Object.entries(data).forEach(([version, run], n) => {
    const colour = colours[n % colours.length];
    const h = run.ranking_history || [];
    const epochs = h.map((e) => e.epoch);
    ranking.push({ name: version + " valid NDCG@10", x: epochs, y: h.map((e) => e.val_ndcg), mode: "lines+markers", line: { color: colour } });
    ranking.push({ name: version + " train NLL", x: epochs, y: h.map((e) => e.train_loss), mode: "lines", yaxis: "y2", line: { color: colour, dash: "dot" } });
  });
  await chart("chart-ranking", ranking, { x: "epoch", y: "validation NDCG@10", y2: "training NLL" });
  const names = Object.keys(data);
  const first = data[names[0]];
  const scorers = [...names.map((v) => [v, data[v].metrics || {}]), ...Object.entries(first.baselines)];
  // RMSE (~0.9) and NDCG (~0.1) on one axis hid NDCG: each has its own.
  await chart("chart-baselines", [
    { type: "bar", name: "RMSE", x: scorers.map((s) => s[0]), y: scorers.map((s) => s[1].rmse), offsetgroup: 1 },
    { type: "bar", name: "NDCG@10", x: scorers.map((s) => s[0]), y: scorers.map((s) => s[1]["ndcg@10"]), yaxis: "y2", offsetgroup: 2 },
  ], { x: "model version or baseline", y: "RMSE (stars)", y2: "NDCG@10" }, { barmode: "group" });
}

async function items() {
  const map = await api("/v1/monitoring/item-map?n=2000");
  await chart("chart-map", [{
    type: "scattergl", mode: "markers", x: map.x, y: map.y, text: map.title,
    marker: { color: map.popularity.map((p) => Math.log10(1 + p)), colorscale: "Viridis", showscale: true, size: 5,
              colorbar: { title: { text: "log10 ratings" } } },
  }], { x: "embedding map, axis 1", y: "embedding map, axis 2" });
  const go = async () => {
    const q = document.getElementById("search").value.trim();
    if (!q) return;
    const found = await api("/v1/monitoring/items?q=" + encodeURIComponent(q));
    const list = document.getElementById("results");
    list.replaceChildren(...found.map((f) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "#"; a.textContent = `${f.title} (${f.item_id})`; a.dataset.item = f.item_id;
      a.addEventListener("click", (e) => { e.preventDefault(); item(f.item_id); });
      li.appendChild(a);
      return li;
    }));
  };
  document.getElementById("search-go").onclick = go;
  document.getElementById("search").addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  const first = map.item_id[0];
  if (first) await item(first);
}

async function item(id) {
  const it = await api("/v1/monitoring/items/" + encodeURIComponent(id));
  const box = document.getElementById("item");
  const h = document.createElement("h4");
  h.textContent = `${it.title || it.item_id}: bias ${fmt(it.bias, 3)}, ${it.training_ratings} training ratings`;
  const ul = document.createElement("ol");
  for (const s of it.similar) {
    const li = document.createElement("li");
    li.textContent = `${s.title || s.item_id} (${fmt(s.similarity, 3)})`;
    ul.appendChild(li);
  }
  const p = document.createElement("p"); p.textContent = "Nearest items:";
  box.replaceChildren(h, p, ul);
  await chart("chart-exposure", [{ type: "bar", name: "times shown", x: it.exposure.map((e) => e.period), y: it.exposure.map((e) => e.shown) }], { x: TIME, y: "times shown" });
}

async function alerts() {
  const s = await api("/v1/monitoring/summary?hours=24");
  alertRows(s.alerts);
}

window.addEventListener("DOMContentLoaded", () => {
  const pages = { overview, loop, models, items, alerts };
  const run = pages[document.body.dataset.page];
  if (run) run().then(() => { document.body.dataset.ready = "1"; });
});
