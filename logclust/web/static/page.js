// The sidecar's page: fetches /api/overview or /api/cluster and draws them.
// Data is only ever set as text (text nodes, textContent, attributes): never as markup.
"use strict";

const REFRESH_MS = 5000;
const FRESH_MS = 15000;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function rate(v) {
  if (!v) return "0";
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toFixed(1);
  return v.toFixed(2);
}

function clock(t) {
  return new Date(t).toLocaleTimeString([], { hour12: false });
}

function ago(t, now) {
  if (!t) return "–";
  const s = Math.max(0, (now - t) / 1000);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return (s / 3600).toFixed(1) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

// The rate of change as a badge: rows/s now against the window before.
function change(now, before) {
  if (!before) return now ? el("span", { class: "chg up", title: "no rows in the window before" }, "▲ from 0") : null;
  const pct = Math.round((now / before - 1) * 100);
  if (Math.abs(pct) < 5) return el("span", { class: "chg flat" }, "±0%");
  return el("span", { class: pct > 0 ? "chg up" : "chg down" }, (pct > 0 ? "▲ " : "▼ ") + Math.abs(pct) + "%");
}

function setStatus(text, bad) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.classList.toggle("bad", !!bad);
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.status);
  return doc;
}

function sparkline(points, w, h) {
  const box = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "spark" });
  const vals = points.filter((p) => p[1] !== null);
  if (vals.length === 0) return box;
  const t0 = vals[0][0], t1 = vals[vals.length - 1][0];
  const top = Math.max(...vals.map((p) => p[1])) || 1;
  const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * (w - 4) + 2 : w / 2);
  const y = (v) => h - 2 - (v / top) * (h - 4);
  const line = vals.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
  box.append(svg("polyline", { points: line, class: "spark-line" }));
  const last = vals[vals.length - 1];
  box.append(svg("circle", { cx: x(last[0]), cy: y(last[1]), r: 2, class: "spark-dot" }));
  const title = svg("title");
  title.textContent = `p99 max ${ms(top)} ms over ${vals.length} windows`;
  box.append(title);
  return box;
}

// A chart over time of windows `step` ms wide: series = [{name, cls, points: [[start, v]]}],
// drawn as lines through the windows' middles, or as bars filling them.
function chart(series, opts) {
  const W = 640, H = 220, L = 52, R = 12, T = 12, B = 28, step = opts.step;
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
  if (all.length === 0) {
    const t = svg("text", { x: W / 2, y: H / 2, class: "axis", "text-anchor": "middle" });
    t.textContent = "no data yet";
    box.append(t);
    return box;
  }
  const ts = all.map((p) => p[0]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts) + step;
  const top = Math.max(...all.map((p) => p[1])) * 1.1 || 1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / top) * (H - T - B);
  for (const f of [0, 0.5, 1]) {
    const v = top * f;
    box.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const lab = svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    lab.textContent = opts.fmt(v);
    box.append(lab);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const lab = svg("text", { x: x(t), y: H - 8, class: "axis", "text-anchor": anchor });
    lab.textContent = clock(t);
    box.append(lab);
  }
  const mid = (t) => x(t + step / 2);
  for (const s of series) {
    const pts = s.points.filter((p) => p[1] !== null);
    if (opts.bars) {
      const bw = Math.max(1, (x(t0 + step) - x(t0)) * 0.8);
      for (const p of pts) {
        box.append(svg("rect", { x: mid(p[0]) - bw / 2, y: y(p[1]), width: bw, height: H - B - y(p[1]), class: s.cls }));
      }
    } else {
      box.append(svg("polyline", { points: pts.map((p) => `${mid(p[0])},${y(p[1])}`).join(" "), class: s.cls }));
      for (const p of pts) box.append(svg("circle", { cx: mid(p[0]), cy: y(p[1]), r: 2.2, class: s.cls + " dot" }));
    }
  }
  const legend = el("div", { class: "legend" }, ...series.map((s) => el("span", { class: "key " + s.cls }, s.name)));
  const wrap = el("div", {});
  wrap.append(box, legend);
  return wrap;
}

// ---- the cluster table -----------------------------------------------------------------

const COLUMNS = [
  { key: "id", label: "#", num: true },
  { key: "template", label: "Template and exemplars" },
  { key: "rows_per_s", label: "rows/s", num: true },
  { key: "p50_ms", label: "p50 ms", num: true },
  { key: "p99_ms", label: "p99 ms", num: true },
  { key: "spark", label: "p99 history", sortable: false },
  { key: "first_seen_ms", label: "first seen", num: true },
];
const view = { sortKey: "p99_ms", desc: true, filter: "", data: null };

function matches(c, words) {
  if (words.length === 0) return true;
  const hay = [c.template, c.source, String(c.id), ...c.exemplars].join("\n").toLowerCase();
  return words.every((w) => hay.includes(w));
}

function sorted(clusters) {
  const k = view.sortKey, sign = view.desc ? -1 : 1;
  return [...clusters].sort((a, b) => {
    const va = a[k], vb = b[k];
    if (va === vb) return (b.size - a.size);
    if (va === null || va === undefined) return 1; // no value: last either way
    if (vb === null || vb === undefined) return -1;
    return (va < vb ? -1 : 1) * sign;
  });
}

function header() {
  const tr = el("tr");
  for (const col of COLUMNS) {
    const th = el("th", { "data-key": col.key, class: col.num ? "num" : null });
    th.append(col.label);
    if (col.sortable !== false) {
      th.classList.add("sortable");
      if (view.sortKey === col.key) {
        th.classList.add("sorted");
        th.setAttribute("aria-sort", view.desc ? "descending" : "ascending");
        th.append(el("span", { class: "arrow" }, view.desc ? " ▼" : " ▲"));
      }
      th.addEventListener("click", () => {
        if (view.sortKey === col.key) view.desc = !view.desc;
        else { view.sortKey = col.key; view.desc = col.key !== "template"; }
        drawTables();
      });
    }
    tr.append(th);
  }
  return el("thead", {}, tr);
}

function clusterRow(c, now) {
  const link = el("a", { href: "/cluster?" + new URLSearchParams({ source: c.source, id: String(c.id) }) });
  link.textContent = c.template || "(no template yet)";
  const tmpl = el("td", { class: "template" }, link);
  if (c.new_since_ms) tmpl.prepend(el("span", { class: "badge new" }, "new"));
  const ex = c.exemplars.filter((e) => e !== c.template).slice(0, 2);
  if (ex.length) tmpl.append(el("div", { class: "exemplars" }, ...ex.map((e) => el("div", { class: "exemplar" }, e))));
  const rows = el("td", { class: "num rows" }, rate(c.rows_per_s), " ", change(c.rows_per_s, c.rows_per_s_before));
  const tr = el("tr", { class: c.new_since_ms ? "cluster is-new" : "cluster", "data-id": String(c.id) },
    el("td", { class: "num id" }, String(c.id)),
    tmpl,
    rows,
    el("td", { class: "num p50" }, ms(c.p50_ms)),
    el("td", { class: "num p99" }, ms(c.p99_ms)),
    el("td", { class: "spark-cell" }, sparkline(c.spark, 120, 28)),
    el("td", { class: "num first", title: c.first_seen_ms ? new Date(c.first_seen_ms).toISOString() : "" }, ago(c.first_seen_ms, now)));
  return tr;
}

function drawTables() {
  const doc = view.data;
  if (!doc) return;
  const words = view.filter.toLowerCase().split(/\s+/).filter(Boolean);
  const host = document.getElementById("tables");
  const parts = [];
  let shown = 0;
  for (const src of doc.sources) {
    const rows = sorted(src.clusters.filter((c) => matches(c, words)));
    shown += rows.length;
    const total = src.clusters.reduce((a, c) => a + c.rows_per_s, 0);
    const title = el("h2", { class: "source" }, "source ", el("span", { class: "name" }, src.name),
      el("span", { class: "hint" }, ` ${rows.length} of ${src.clusters.length} clusters · ${rate(total)} rows/s`));
    const table = el("table", { class: "clusters", "data-source": src.name }, header(),
      el("tbody", {}, ...rows.map((c) => clusterRow(c, doc.now_ms))));
    parts.push(el("section", { class: "source-block" }, title, table));
  }
  host.replaceChildren(...parts);
  document.getElementById("empty").hidden = doc.sources.length > 0;
  return shown;
}

function drawNewKinds(doc) {
  const box = document.getElementById("new-kinds");
  box.hidden = doc.new_kinds.length === 0;
  document.getElementById("new-list").replaceChildren(...doc.new_kinds.slice(0, 8).map((e) => {
    const a = el("a", { href: "/cluster?" + new URLSearchParams({ source: e.source, id: String(e.id) }) });
    a.textContent = e.template || "(no template)";
    return el("li", {}, el("span", { class: "when" }, clock(e.seen_ms)), " ",
      el("span", { class: "src" }, e.source + " #" + e.id), " ", a);
  }));
}

async function refreshOverview() {
  try {
    const doc = await getJSON("/api/overview");
    view.data = doc;
    document.body.dataset.now = String(doc.now_ms);
    document.getElementById("rate-window").textContent = String(doc.rate_window_s);
    drawNewKinds(doc);
    drawTables();
    setStatus("updated " + clock(doc.now_ms));
  } catch (e) {
    setStatus("cannot reach the sidecar: " + e.message, true);
  }
}

// ---- one cluster -------------------------------------------------------------------------

function stat(label, value, extra) {
  return el("div", { class: "stat" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value, extra || null));
}

async function refreshCluster() {
  const q = new URLSearchParams(location.search);
  try {
    const c = await getJSON("/api/cluster?" + new URLSearchParams({ source: q.get("source") || "", id: q.get("id") || "" }));
    document.title = `logclust · ${c.source} #${c.id}`;
    document.getElementById("title").replaceChildren("cluster #" + c.id + " of ", el("span", { class: "name" }, c.source));
    document.getElementById("template").textContent = c.template || "(no template yet)";
    document.getElementById("new-badge").hidden = !c.new_since_ms;
    document.getElementById("stats").replaceChildren(
      stat("rows/s now", rate(c.rows_per_s), change(c.rows_per_s, c.rows_per_s_before)),
      stat("rows/s before", rate(c.rows_per_s_before)),
      stat("p50 ms", ms(c.p50_ms)),
      stat("p99 ms", ms(c.p99_ms)),
      stat("rows", c.size.toLocaleString()),
      stat("first seen", ago(c.first_seen_ms, Date.now())),
      stat("last seen", ago(c.last_seen_ms, Date.now())));
    const per = c.window_ms / 1000;
    document.getElementById("latency-chart").replaceChildren(chart([
      { name: "p99", cls: "p99", points: c.series.map((p) => [p[0], p[3]]) },
      { name: "p50", cls: "p50", points: c.series.map((p) => [p[0], p[2]]) },
    ], { fmt: ms, step: c.window_ms }));
    document.getElementById("rows-chart").replaceChildren(chart([
      { name: `rows/s (${per} s windows)`, cls: "rows", points: c.series.map((p) => [p[0], p[1] / per]) },
    ], { fmt: rate, bars: true, step: c.window_ms }));
    document.getElementById("exemplars").replaceChildren(...c.exemplars.map((e) => el("li", {}, e)));
    const aliases = c.aliases.map((a) => el("li", {}, el("span", { class: "src" }, "#" + a.id + " "), a.template));
    document.getElementById("aliases").replaceChildren(...(aliases.length ? aliases : [el("li", { class: "hint" }, "none")]));
    document.getElementById("error").hidden = true;
    setStatus("updated " + clock(Date.now()));
  } catch (e) {
    const err = document.getElementById("error");
    err.hidden = false;
    err.textContent = String(e.message);
    setStatus("error", true);
  }
}

function start() {
  const page = document.body.dataset.page;
  const refresh = page === "cluster" ? refreshCluster : refreshOverview;
  if (page === "overview") {
    const f = document.getElementById("filter");
    f.addEventListener("input", () => { view.filter = f.value; drawTables(); });
    document.getElementById("every").textContent = String(REFRESH_MS / 1000);
  }
  const auto = document.getElementById("auto");
  // Every REFRESH_MS; every second while there is nothing to show yet or a cluster is
  // younger than FRESH_MS (its template and figures are still settling).
  const tick = async () => {
    if (!auto || auto.checked) await refresh();
    const doc = view.data;
    const settling = page === "overview" && (!doc || !doc.sources.length ||
      doc.sources.some((s) => s.clusters.some((c) => doc.now_ms - c.first_seen_ms < FRESH_MS)));
    setTimeout(tick, settling ? 1000 : REFRESH_MS);
  };
  tick();
}

document.addEventListener("DOMContentLoaded", start);
