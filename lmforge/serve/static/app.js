// lmforge serve: what every page shares (API calls, the header, charts). Plain JS, no build step.
"use strict";

const LM = (() => {
  const PAGES = [["/", "Runs"], ["/data", "Data"], ["/tokenizer", "Tokenizer"], ["/training", "Training"],
    ["/playground", "Playground"]];
  const COLOURS = ["#2f5fd0", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0b7285"];

  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(path, options) {
    const response = await fetch(path, options);
    let body;
    try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
    if (!response.ok) throw new ApiError(body.error || response.statusText, response.status);
    return body;
  }

  function post(path, data) {
    return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
  }

  // Build an element; children are nodes or strings (always text: nothing from a run becomes HTML).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "style") Object.assign(node.style, value); // CSSOM: allowed by the page's CSP
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (digits !== undefined) return value.toFixed(digits);
    return Number.isInteger(value) ? value.toLocaleString("en-US") : value.toPrecision(4);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    return s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m` : `${Math.floor(s / 60)}m ${s % 60}s`;
  }

  function param(name) { return new URLSearchParams(location.search).get(name); }

  function withRun(path, run) { return run ? `${path}?run=${encodeURIComponent(run)}` : path; }

  // The header: page links that keep the chosen run, and a run picker. Resolves to {runs, run}.
  async function header(active) {
    const data = await api("/api/runs");
    const names = data.runs.map((r) => r.name);
    let run = param("run");
    if (!names.includes(run)) run = names[names.length - 1] || null;
    const nav = el("nav", {}, PAGES.map(([path, label]) =>
      el("a", { href: withRun(path, run), class: path === active ? "active" : null, text: label })));
    const picker = el("select", { id: "run-picker", "aria-label": "run" },
      names.map((n) => el("option", { value: n, selected: n === run, text: n })));
    picker.addEventListener("change", () => { location.href = withRun(active, picker.value); });
    const head = el("header", {}, el("span", { class: "brand", text: "lmforge" }), nav,
      names.length ? el("label", {}, "run ", picker) : null);
    document.body.prepend(head);
    document.title = `lmforge · ${PAGES.find(([p]) => p === active)[1]}${run ? " · " + run : ""}`;
    return { runs: data.runs, root: data.root, run };
  }

  // Start a request for the run named in the address before the header is drawn (the page's
  // requests then run at once instead of one after another); null when no run is named.
  function early(suffix) {
    const run = param("run");
    if (!run) return null;
    const request = api(`/api/runs/${encodeURIComponent(run)}${suffix}`);
    request.catch(() => null); // its error is read where it is awaited
    return request;
  }

  // The header and the chosen run's summary, asked for at once when the address names the run.
  async function open(active) {
    const wanted = param("run");
    const early = wanted ? api(`/api/runs/${encodeURIComponent(wanted)}`).catch(() => null) : null;
    const head = await header(active);
    let summary = null;
    if (head.run) summary = (head.run === wanted && await early) || await api(`/api/runs/${encodeURIComponent(head.run)}`);
    return { ...head, summary };
  }

  // What a page needs that is not there yet, and the command that makes it.
  function missing(container, summary, needed, what) {
    const stages = summary.stages.filter((s) => needed.includes(s.stage) && s.state !== "complete");
    if (!stages.length) return false;
    const box = el("div", { class: "notice" },
      el("strong", { text: `${what} needs ${stages.map((s) => s.stage).join(", ")}.` }),
      el("ul", {}, stages.map((s) => el("li", {}, `${s.stage}: ${s.state}${s.reason ? " (" + s.reason + ")" : ""} — make it with `,
        el("code", { text: s.command })))));
    container.append(box);
    return true;
  }

  function notice(container, message, isError) {
    container.append(el("div", { class: "notice" + (isError ? " error" : ""), text: message }));
  }

  // Marks the page drawn; readyMs is the time since navigation began (what the bench reports).
  function ready() {
    document.body.dataset.readyMs = String(Math.round(performance.now()));
    document.body.dataset.ready = "1";
  }

  // A line chart in SVG. series: [{name, points: [[x, y], ...], dots}]. opts: {xLabel, yLabel, logY, height}.
  function lineChart(container, series, opts = {}) {
    const W = 640, H = opts.height || 260, L = 56, R = 12, T = 10, B = 34;
    const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]) && (!opts.logY || p[1] > 0));
    container.textContent = "";
    container.classList.add("chart");
    const total = series.reduce((n, s) => n + s.points.length, 0);
    container.dataset.points = String(total);
    if (!all.length) { container.append(el("p", { class: "muted small", text: opts.empty || "no data yet" })); return; }
    const ty = (v) => (opts.logY ? Math.log10(v) : v);
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => ty(p[1]))), Math.max(...all.map((p) => ty(p[1])))];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
    const sy = (y) => T + (1 - (ty(y) - y0) / (y1 - y0)) * (H - T - B);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    if (opts.title) svg.setAttribute("aria-label", opts.title);
    const add = (tag, attrs, text) => {
      const node = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    for (let i = 0; i <= 4; i++) {
      const yv = y0 + (y1 - y0) * i / 4, y = T + (1 - i / 4) * (H - T - B);
      add("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" });
      const label = opts.logY ? Math.pow(10, yv) : yv;
      const small = label !== 0 && Math.abs(label) < 0.01;
      add("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, Math.abs(label) >= 1000 || small ? label.toExponential(1) : label.toPrecision(3));
    }
    for (let i = 0; i <= 5; i++) {
      const xv = x0 + (x1 - x0) * i / 5;
      add("text", { x: sx(xv), y: H - B + 16, "text-anchor": "middle" }, Math.round(xv));
    }
    add("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" });
    add("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" });
    if (opts.xLabel) add("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, opts.xLabel);
    series.forEach((s, i) => {
      const colour = s.colour || COLOURS[i % COLOURS.length];
      const pts = s.points.filter((p) => Number.isFinite(p[1]) && (!opts.logY || p[1] > 0));
      if (!pts.length) return;
      add("path", { d: pts.map((p, k) => `${k ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(""),
        fill: "none", stroke: colour, "stroke-width": s.width || 1.5, "data-series": s.name });
      if (s.dots) pts.forEach((p) => add("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: colour }));
    });
    container.append(svg);
    container.append(el("div", { class: "legend" }, series.map((s, i) =>
      el("span", {}, el("i", { style: { background: s.colour || COLOURS[i % COLOURS.length] } }), s.name))));
  }

  // Every complete line of a run's metrics.jsonl, following `offset` until the end of the file.
  async function allMetrics(run) {
    let offset = 0, rows = [], last;
    for (;;) {
      last = await api(`/api/runs/${encodeURIComponent(run)}/metrics?offset=${offset}`);
      rows = rows.concat(last.rows);
      if (last.offset === offset || last.offset >= last.size) break;
      offset = last.offset;
    }
    return { rows, last };
  }

  // Run a page's start function; an error becomes a notice on the page, never a stack trace.
  function start(fn) {
    window.addEventListener("DOMContentLoaded", async () => {
      try { await fn(); } catch (e) { notice(document.querySelector("main"), e.message, true); }
      ready();
    });
  }

  return { api, post, el, fmt, duration, param, withRun, header, open, early, missing, notice, lineChart, allMetrics, start, COLOURS };
})();
