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

// Each point says how many events it rests on: its size grows with n, its hover text gives
// n, and a point below the minimum sample is drawn hollow (too little data to read).
// `nField` is the count behind the figure; a rate gets its Wilson interval as error bars.
let MIN_SAMPLE = 30;

function byVersion(series, field, nField, interval) {
  const versions = [...new Set(series.map((r) => r.model_version))];
  const most = Math.max(1, ...series.map((r) => r[nField || "lists_served"] || 0));
  return versions.map((v) => {
    const rows = series.filter((r) => r.model_version === v);
    const n = rows.map((r) => r[nField || "lists_served"] || 0);
    const trace = {
      name: v, x: rows.map((r) => r.period), y: rows.map((r) => r[field]), mode: "lines+markers",
      customdata: n, hovertemplate: "%{y}<br>n=%{customdata}<extra>" + v + "</extra>",
      marker: {
        size: n.map((k) => 5 + 9 * Math.sqrt(k / most)),
        symbol: n.map((k) => (k < MIN_SAMPLE ? "circle-open" : "circle")),
      },
      line: { color: versionColour(v) },
    };
    if (interval) {
      const [low, high] = interval;
      trace.error_y = {
        type: "data", symmetric: false, thickness: 1,
        array: rows.map((r) => (r[high] === null || r[field] === null ? 0 : r[high] - r[field])),
        arrayminus: rows.map((r) => (r[low] === null || r[field] === null ? 0 : r[field] - r[low])),
      };
    }
    return trace;
  });
}

// One colour per model version on every page and chart: from the version's name, so it does
// not depend on which versions a chart happens to show.
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
function versionColour(version) {
  let h = 0;
  for (const ch of String(version)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

const STATE_WORDS = { green: "healthy", amber: "watch", red: "act", grey: "too little data" };

// One line per concern: its colour, the figure with the sample it rests on, what the figure
// means, why it has that colour, and what to do.
function healthRows(table, checks) {
  const el = fill(table, ["", "concern", "value (n)", "why", "what to do"], []);
  for (const c of checks) {
    const dot = document.createElement("span");
    dot.className = "dot " + c.state; dot.title = STATE_WORDS[c.state];
    const figure = document.createElement("span");
    figure.textContent = `${fmt(c.value)} (n=${c.n})`; figure.title = c.meaning;
    const tr = row([dot, c.concern, figure, c.why, c.action]);
    tr.dataset.state = c.state; tr.dataset.name = c.name;
    if (c.state === "red") tr.className = "breached";
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

// The operator chooses the window and the time bucket; the choice is kept in the page's
// address (and this browser), so a chart keeps its bucket between visits.
const WINDOWS = { 1: "last hour", 24: "last 24 h", 168: "last 7 days", 720: "last 30 days" };
const BUCKETS = { auto: "auto", "10s": "10 s", min: "minute", h: "hour", D: "day" };
const BUCKET_MS = { "10s": 1e4, min: 6e4, h: 3.6e6, D: 8.64e7 };

function windowChoice() {
  const q = new URLSearchParams(window.location.search);
  const saved = JSON.parse(window.localStorage.getItem("recsys-window") || "{}");
  const hours = q.get("hours") || saved.hours || "24";
  const bucket = q.get("bucket") || saved.bucket || "auto";
  const bar = document.getElementById("window-bar");
  if (bar && !bar.children.length) {
    const pick = (name, options, value) => {
      const select = document.createElement("select");
      select.id = name;
      for (const [v, label] of Object.entries(options)) select.add(new Option(label, v, false, v === String(value)));
      select.addEventListener("change", () => {
        const next = { hours: document.getElementById("hours").value, bucket: document.getElementById("bucket").value };
        window.localStorage.setItem("recsys-window", JSON.stringify(next));
        window.location.search = new URLSearchParams(next).toString();
      });
      return select;
    };
    bar.append("Window ", pick("hours", WINDOWS, hours), " bucket ", pick("bucket", BUCKETS, bucket));
  }
  return { hours, bucket };
}

async function summaryFor() {
  const { hours, bucket } = windowChoice();
  const s = await api(`/v1/monitoring/summary?hours=${encodeURIComponent(hours)}&bucket=${encodeURIComponent(bucket)}`);
  MIN_SAMPLE = s.min_sample || MIN_SAMPLE;
  return s;
}

// A time axis spans at least one bucket either side of the data: with a single bucket Plotly
// otherwise zooms in until its ticks are fractions of a millisecond apart.
function timeAxis(periods, bucket) {
  const times = periods.map((p) => Date.parse(p)).filter((t) => !Number.isNaN(t));
  if (!times.length) return {};
  const pad = BUCKET_MS[bucket] || 3.6e6;
  return { xaxis: { range: [new Date(Math.min(...times) - pad).toISOString(), new Date(Math.max(...times) + pad).toISOString()] } };
}

// Why a model passed, not only why one failed: every gate it went through, in words.
function checksText(checks) {
  if (!checks || !checks.length) return "";
  const mark = (c) => (c.passed === true ? "✓ " : c.passed === false ? "✗ " : "– ");
  return " [" + checks.map((c) => mark(c) + c.detail).join("; ") + "]";
}

async function overview() {
  document.getElementById("upload-go").onclick = upload;
  const s = await summaryFor();
  fill("counts", ["", "count"], Object.entries(s.counts));
  const p = s.production;
  document.getElementById("production").textContent = p
    ? `${p.version}, promoted ${p.promoted_at}: RMSE ${fmt(p.metrics && p.metrics.rmse)}, NDCG@10 ${fmt(p.metrics && p.metrics["ndcg@10"])}` +
      (s.canary ? `; canary ${s.canary}` : "")
    : "no model in production";
  const j = s.last_job;
  document.getElementById("last-job").textContent = j
    ? `#${j.id} ${j.status}${j.decision ? ", " + j.decision : ""} (${j.started_at})${(j.reasons || []).length ? ": " + j.reasons.join("; ") : ""}${checksText(j.checks)}`
    : "no job has run yet";
  healthRows("health", s.alerts);
  const bars = (field) => byVersion(s.timeseries, field, field).map((t) => ({
    type: "bar", name: t.name, x: t.x, y: t.y, marker: { color: versionColour(t.name) },
  }));
  await chart("chart-served", bars("lists_served"), { x: TIME, y: "lists served" }, timeAxis(s.timeseries.map((r) => r.period), s.bucket));
  await chart("chart-feedback", bars("feedback"), { x: TIME, y: "feedback events" }, timeAxis(s.timeseries.map((r) => r.period), s.bucket));
}

async function loop() {
  const s = await summaryFor();
  const ts = s.timeseries;
  const axis = timeAxis(s.timeseries.map((r) => r.period), s.bucket);
  await chart("chart-coverage", byVersion(ts, "coverage"), { x: TIME, y: "catalog shown (%)" }, { ...axis, yaxis: { tickformat: ".1%" } });
  await chart("chart-gini", byVersion(ts, "gini"), { x: TIME, y: "Gini of exposure" }, axis);
  const catalog = { name: "catalog", x: ts.map((r) => r.period), y: ts.map((r) => r.catalog_popularity), mode: "lines+markers", line: { dash: "dot" } };
  await chart("chart-popularity", [...byVersion(ts, "shown_popularity"), catalog], { x: TIME, y: "mean training ratings per item" }, axis);
  await chart("chart-attribution", byVersion(ts, "attribution_share", "feedback_ratings"), { x: TIME, y: "ratings answering a list (%)" }, { ...axis, yaxis: { tickformat: ".0%" } });
  const positive = byVersion(ts, "positive_rate", "feedback", ["positive_rate_low", "positive_rate_high"]).map((t) => Object.assign(t, { name: t.name + " positive" }));
  const ctr = byVersion(ts, "click_through").map((t) => Object.assign(t, { name: t.name + " CTR", line: { color: t.line.color, dash: "dot" } }));
  await chart("chart-response", [...positive, ...ctr], { x: TIME, y: "share of feedback (%)" }, { ...axis, yaxis: { tickformat: ".0%" } });
  await chart("chart-bias", byVersion(ts, "prediction_bias", "rated_shown"), { x: TIME, y: "predicted minus given (stars)" }, axis);
  fill("explore-shares", ["share", "lists", "slots", "coverage", "Gini", "mean popularity shown", "positive per slot"],
    (s.by_explore_share || []).map((r) => [pct(r.explore_share), r.lists, r.slots, pct(r.coverage), fmt(r.gini, 3), fmt(r.shown_popularity, 1), fmt(r.positive_per_slot, 3)]));
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
    for (const action of VALID_ACTIONS[v.status] || []) {
      const b = document.createElement("button");
      b.className = "action"; b.textContent = action; b.dataset.action = action; b.dataset.version = v.version;
      b.addEventListener("click", () => act(`/v1/models/${encodeURIComponent(v.version)}/${action}`, `${action} ${v.version}`));
      actions.appendChild(b);
    }
    const m = v.metrics || {};
    const gate = v.gate ? (v.gate.passed ? "passed" : "failed: " + (v.gate.reasons || []).join("; ")) + checksText(v.gate.checks) : "–";
    const tr = row([box, v.version, v.status, m.rmse, m["ndcg@10"], m.coverage, gate, v.created_at, actions]);
    tr.dataset.version = v.version; tr.dataset.status = v.status;
    table.appendChild(tr);
  }
  document.getElementById("rollback").onclick = () => act("/v1/models/rollback", "roll production back to the previous version");
  const history = await api("/v1/models/history?limit=20");
  fill("history", ["at (UTC)", "who", "action", "production before", "version", "reason"],
    history.map((h) => [h.at, h.actor, h.action, h.from_version, h.to_version, h.reason]));
  await curves(ticked);
}

// The registry refuses what a status does not allow; the page offers only what it allows
// (production has none: roll back instead).
const VALID_ACTIONS = {
  candidate: ["approve", "promote", "reject"],
  canary: ["approve", "reject"],
  retired: ["promote"],
  rejected: ["promote"],
};

// Every action changes what users are served: it asks for confirmation and a reason, which
// the audit trail keeps with who acted.
async function act(path, what) {
  const out = document.getElementById("action-result");
  const reason = window.prompt(`Really ${what}? Give a reason (kept in the audit trail):`, "");
  if (reason === null) { out.textContent = "cancelled: nothing was changed"; return; }
  try {
    const r = await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reason: reason.trim() || null }),
    });
    out.className = "ok";
    out.textContent = `${r.action}: production is ${r.production}`;
    await models();
  } catch (e) {
    out.className = "error";
    out.textContent = e.message;
  }
}

function pct(value) {
  return value === null || value === undefined ? null : (100 * value).toFixed(1) + " %";
}

function interval(found) {
  return found ? `${fmt(found.value)} [${fmt(found.low)}, ${fmt(found.high)}]` : null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A report ranks every logged list again, so the service computes it in the background: until
// the first is ready it answers "computing" (202), and the row says so and asks again.
async function offPolicyReport(version, tr) {
  const path = `/v1/monitoring/off-policy?hours=168&version=${encodeURIComponent(version)}`;
  for (;;) {
    const r = await api(path);
    if (r.status !== "computing") return r;
    tr.replaceChildren(...row([version, "computing… (the table fills in when the report is ready)"]).children);
    await sleep(1000 * (r.retry_after_s || 5));
  }
}

// One request per version, so the table fills row by row.
async function offPolicy(ticked) {
  const table = fill("off-policy", ["version", "verdict", "SNIPS", "DR", "IPS", "effective sample", "largest weight (before clipping)", "observed by the logging versions", "computed"], []);
  for (const version of ticked) {
    const tr = row([version, "…"]);
    table.appendChild(tr);
    try {
      const r = await offPolicyReport(version, tr);
      const observed = Object.entries(r.logging || {}).map(([v, o]) => `${v}: ${interval(o.positive_rate)} (${o.lists} lists)`).join("; ");
      const e = r.estimate;
      // In words first: what the numbers support against production, and on what.
      const called = r.verdict ? `${r.verdict.call}: ${r.verdict.why}` : null;
      const weight = (w) => `${fmt(w.max_weight, 1)} (clipped at ${w.clip}: ${w.clipped} slots)`;
      const computed = `${r.computed_at} (${Math.round(r.age_s / 60)} min ago${r.refreshing ? ", a newer one is on its way" : ""})`;
      tr.replaceWith(row(e
        ? [version, called, interval(e.snips), interval(e.dr), interval(e.ips), e.effective_sample_size, weight(e), observed, computed]
        : [version, called, "no estimate: " + r.refused, null, null, null, null, observed, computed]));
    } catch (err) {
      tr.replaceWith(row([version, "no estimate: " + err.message]));
    }
  }
}

async function curves(ticked) {
  if (!ticked.size) return;
  offPolicy([...ticked]);
  const q = [...ticked].map((v) => "versions=" + encodeURIComponent(v)).join("&");
  const data = await api("/v1/monitoring/curves?" + q);
  const traces = [];
  Object.entries(data).forEach(([version, run]) => {
    const colour = versionColour(version);
    const epochs = run.history.map((h) => h.epoch);
    traces.push({ name: version + " train", x: epochs, y: run.history.map((h) => h.train_loss), mode: "lines+markers", line: { color: colour, dash: "dot" } });
    traces.push({ name: version + " valid", x: epochs, y: run.history.map((h) => h.val_loss), mode: "lines+markers", line: { color: colour } });
  });
  await chart("chart-curves", traces, { x: "epoch", y: "MSE (stars²)" });
  const ranking = [];
  Object.entries(data).forEach(([version, run]) => {
    const colour = versionColour(version);
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
  // A mean hides whether a model is better for most users or much better for a few.
  const spreads = [...names.map((v) => [v, data[v].spread.model]),
    ...Object.keys(first.baselines).map((b) => [b, first.spread[b]])].filter(([, s]) => s);
  await chart("chart-spread", spreads.map(([name, s]) => ({
    type: "box", name, q1: [s.q1], median: [s.median], q3: [s.q3], lowerfence: [s.p05],
    upperfence: [s.p95], mean: [s.mean], x: [name],
    marker: { color: name.startsWith("v") ? versionColour(name) : "#888" },
  })), { x: "model version or baseline", y: "NDCG@10 of a user" }, { showlegend: false });
  compareTable(names, data);
}

// Versions side by side: metrics, data counts and the settings that differ between them.
function compareTable(names, data) {
  const flat = (v) => ({
    ...Object.fromEntries(Object.entries(data[v].metrics || {}).map(([k, x]) => ["metric: " + k, x])),
    ...Object.fromEntries(Object.entries(data[v].data || {}).map(([k, x]) => ["data: " + k, x])),
    ...Object.fromEntries(Object.entries(data[v].config || {}).map(([k, x]) => ["setting: " + k, x])),
  });
  const rows = names.map(flat);
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const show = (x) => (x === null || x === undefined ? "–" : typeof x === "object" ? JSON.stringify(x) : x);
  const el = fill("compare", ["", ...names], []);
  for (const key of keys) {
    const values = rows.map((r) => show(r[key]));
    const differs = new Set(values.map(String)).size > 1;
    if (key.startsWith("setting: ") && !differs) continue;  // only the settings that differ
    const tr = row([key, ...values]);
    if (differs && names.length > 1) tr.className = "differs";
    el.appendChild(tr);
  }
}

// Plotly draws a trace's text as its own small HTML, links included: a title such as
// <a href="https://evil.example">sign in again</a> became a live link in the hover. Text
// from the data goes to Plotly with its markup escaped, so it is drawn as the characters.
const plotlyText = (s) => String(s ?? "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

async function items() {
  const map = await api("/v1/monitoring/item-map?n=2000");
  await chart("chart-map", [{
    type: "scattergl", mode: "markers", x: map.x, y: map.y, text: map.title.map(plotlyText),
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
  const box = document.getElementById("item");
  let it;
  try {
    it = await api("/v1/monitoring/items/" + encodeURIComponent(id));
  } catch (err) {
    // An item of the catalog that the serving model has not learned yet: say so, where the
    // item's figures would be (the promise used to be rejected and nothing shown).
    const p = document.createElement("p");
    p.textContent = `${id}: ${err.message}; it is learned at the next training run.`;
    box.replaceChildren(p);
    return;
  }
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
  const periods = it.exposure.map((e) => e.period);
  // A bar an hour wide, whatever the data: with a single hour Plotly has no spacing to
  // size bars by, and drew them zero pixels wide (an empty chart).
  const hourly = periods.map(() => 0.8 * BUCKET_MS.h);
  await chart("chart-exposure", [{ type: "bar", name: "times shown", x: periods, y: it.exposure.map((e) => e.shown), width: hourly }],
    { x: TIME, y: "times shown (per hour)" }, timeAxis(periods, "h"));
}

async function alerts() {
  const s = await api("/v1/monitoring/summary?hours=24");
  healthRows("alerts", s.alerts);
}

// Why an item is in a list, as a person would say it (the API's `because`).
function why(because) {
  if (because.reason === "liked") {
    return "you liked " + because.items.map((i) => i.title || i.item_id).join(" and ");
  }
  if (because.reason === "new") {
    return "new in " + (because.genres || []).join(" and ");
  }
  return because.reason === "exploration" ? "exploration" : "popular with users like you";
}

// A user's history, their list now (strategy, scores, the version serving them), the lists
// we served them and the feedback they gave on those. The id is kept in the address.
async function users() {
  const input = document.getElementById("user-id");
  const show = async (id) => {
    const summary = document.getElementById("user-summary");
    try {
      const u = await api("/v1/monitoring/users/" + encodeURIComponent(id));
      summary.className = "";
      summary.textContent = `served by ${u.served_by} (${u.strategy}); ${u.in_model ? "learned by the model" : "not in the model: folded in from their ratings"}`;
      fill("user-list", ["#", "title", "genres", "score", "predicted", "why"],
        u.recommendations.map((r) => [r.rank, r.title || r.item_id, r.genres.join(", "), r.score, r.predicted_rating, why(r.because)]));
      fill("user-ratings", ["rated", "title", "rating"], u.ratings.map((r) => [r.rated_at, r.title || r.item_id, r.rating]));
      fill("user-lists", ["served", "version", "strategy", "items"], u.lists.map((l) => [l.served_at, l.model_version, l.strategy, l.items.length]));
      fill("user-feedback", ["received", "title", "kind", "value", "version"],
        u.feedback.map((f) => [f.received_at, f.title || f.item_id, f.kind, f.value, f.model_version]));
    } catch (e) {
      summary.className = "error";
      summary.textContent = e.message;
      for (const t of ["user-list", "user-ratings", "user-lists", "user-feedback"]) fill(t, [], []);
    }
  };
  const go = () => {
    const id = input.value.trim();
    if (!id) return;
    history.replaceState(null, "", "?user=" + encodeURIComponent(id));
    return show(id);
  };
  document.getElementById("user-go").onclick = go;
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  const given = new URLSearchParams(window.location.search).get("user");
  if (given) { input.value = given; await show(given); }
}

window.addEventListener("DOMContentLoaded", () => {
  const pages = { overview, loop, models, items, alerts, users };
  const run = pages[document.body.dataset.page];
  if (run) run().then(() => { document.body.dataset.ready = "1"; });
});
