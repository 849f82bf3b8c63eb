// Data: the clean stage's funnel and a browser over docs/ and rejects/ (one page at a time).
"use strict";

LM.start(async () => {
  const { el, fmt, api } = LM;
  const main = document.getElementById("main");
  let state, browseFn;
  // asked for at once with the header; the funnel waits: it is a 404 (a console error) when clean is missing
  const prefetch = { facets: LM.early("/facets"), docs: LM.early("/documents?kind=docs&size=25") };
  const { run, summary } = await LM.open("/data");
  if (run !== LM.param("run")) prefetch.facets = prefetch.docs = null;
  main.append(el("h1", { text: "Data" }));
  if (!run) { LM.notice(main, "No runs yet: make one with lmforge run configs/demo.toml"); return; }
  const base = `/api/runs/${encodeURIComponent(run)}`;
  if (LM.missing(main, summary, ["clean"], "The data view")) {
    if (!summary.stages.some((s) => s.stage === "clean" && s.state === "stale")) return;
  }
  const [funnel, facets] = await Promise.all([api(`${base}/funnel`), prefetch.facets || api(`${base}/facets`)]);
  main.append(funnelCard(funnel));
  main.append(await browserCard(facets));

  function funnelCard(f) {
    const max = f.records || 1;
    const bar = (n, cls) => el("div", { class: `bar ${cls || ""}`, style: { width: `${Math.max(0, 100 * n / max)}%` } });
    const rows = [el("tr", {}, el("td", { text: "records in" }), el("td", { class: "num", "data-funnel": "records", text: fmt(f.records) }),
      el("td", {}), el("td", { class: "barcell" }, bar(f.records)))];
    for (const s of f.steps) {
      const dropped = Object.entries(s.dropped);
      rows.push(el("tr", { "data-step": s.step }, el("td", {}, el("strong", { text: s.step })),
        el("td", { class: "num" }, el("span", { "data-funnel": `${s.step}.in`, text: fmt(s.in) }), " → ",
          el("span", { "data-funnel": `${s.step}.out`, text: fmt(s.out) })),
        el("td", {}, dropped.length ? dropped.map(([reason, n]) => el("a", {
          href: "#", class: "chip state-stale", "data-funnel": `${s.step}.dropped.${reason}`, "data-count": n,
          title: `show the documents dropped by ${s.step} for ${reason}`, text: `${reason}: ${fmt(n)}`,
          onclick: (e) => { e.preventDefault(); browse({ kind: "rejects", step: s.step, reason }); } })) : el("span", { class: "muted", text: "none dropped" })),
        el("td", { class: "barcell" }, bar(s.out), dropped.length ? bar(s.in - s.out, "drop") : null)));
    }
    rows.push(el("tr", {}, el("td", {}, el("strong", { text: "kept" })), el("td", { class: "num", "data-funnel": "docs", text: fmt(f.docs) }),
      el("td", {}), el("td", { class: "barcell" }, bar(f.docs))));
    return el("div", { class: "card" }, el("h2", { text: "Clean funnel" }),
      el("p", { class: "muted small", text: "From stats/clean.json: records in, what each step kept and dropped (and why), documents kept." }),
      el("table", { id: "funnel", class: "stack" }, el("thead", {}, el("tr", {}, ["step", "in → out", "dropped (reason: count)", ""].map((h, i) =>
        el("th", { class: i === 1 ? "num" : null, text: h })))), el("tbody", {}, rows)));
  }

  function browse(changes) { browseFn(changes); }

  async function browserCard(facets) {
    const select = (id, label, values) => el("label", {}, label, el("select", { id }, el("option", { value: "", text: "any" }),
      values.map((v) => el("option", { value: v, text: v }))));
    const allReasons = [...new Set(Object.values(facets.reasons).flat())];
    const controls = el("div", { class: "controls" },
      el("label", {}, "folder", el("select", { id: "kind" }, el("option", { value: "docs", text: "docs (kept)" }),
        el("option", { value: "rejects", text: "rejects (dropped)" }))),
      select("step", "step", facets.steps), select("reason", "reason", allReasons), select("source", "source", facets.sources),
      select("language", "language", facets.languages),
      el("label", {}, "search URL and text", el("input", { id: "q", type: "search", placeholder: "words…", maxlength: 200 })));
    const list = el("ul", { class: "doclist", id: "doclist" });
    const pager = el("div", { class: "controls small", id: "pager" });
    const detail = el("div", { id: "detail" }, el("p", { class: "muted", text: "Pick a document." }));
    const $ = (id) => controls.querySelector("#" + id);
    state = { stack: [], cursor: null };
    const query = () => {
      const p = new URLSearchParams({ kind: $("kind").value, size: 25 });
      for (const key of ["step", "reason", "source", "language", "q"]) if ($(key).value) p.set(key, $(key).value);
      if (state.cursor) p.set("cursor", state.cursor);
      return p;
    };
    async function load() {
      let page;
      const url = `${base}/documents?${query()}`;
      const prefetched = prefetch.docs && url.endsWith("/documents?kind=docs&size=25") ? prefetch.docs : null;
      prefetch.docs = null;
      try { page = await (prefetched || api(url)); } catch (e) {
        list.textContent = ""; list.append(el("li", { class: "error", text: e.message })); return;
      }
      list.textContent = "";
      for (const row of page.rows) {
        const tags = [row.step, row.reason, row.language, row.source].filter(Boolean).join(" · ");
        list.append(el("li", { "data-cursor": row.cursor, onclick: (e) => open(row.cursor, e.currentTarget) },
          el("div", { class: "url", text: row.url || row.id }),
          el("div", { class: "small muted", text: `${tags}${row.detail ? " (" + row.detail + ")" : ""} · ${fmt(row.chars)} chars` }),
          el("div", { class: "preview", text: row.preview })));
      }
      if (!page.rows.length) list.append(el("li", { class: "muted", text: page.partial ? "nothing in this stretch yet: next searches further" : "no documents match" }));
      pager.textContent = "";
      const first = state.stack.length * 25 + 1;
      pager.append(
        el("button", { class: "secondary", id: "prev", disabled: !state.stack.length, text: "← previous",
          onclick: () => { state.cursor = state.stack.pop(); load(); } }),
        el("span", { id: "range", text: page.rows.length ? `${fmt(first)}–${fmt(first + page.rows.length - 1)}${page.total !== null ? " of " + fmt(page.total) : ""}` : "" }),
        el("button", { class: "secondary", id: "next", disabled: !page.next, text: "next →",
          onclick: () => { state.stack.push(state.cursor); state.cursor = page.next; load(); } }),
        el("span", { class: "muted", text: page.partial ? "(searched part of the folder; next goes on)" : "" }));
    }
    async function open(cursor, item) {
      list.querySelectorAll("li.selected").forEach((n) => n.classList.remove("selected"));
      if (item) item.classList.add("selected");
      const doc = await api(`${base}/document?kind=${$("kind").value}&cursor=${encodeURIComponent(cursor)}`);
      const fields = Object.entries(doc).filter(([k]) => !["text", "has_raw", "truncated"].includes(k));
      const rawBox = el("div", {});
      detail.textContent = "";
      detail.append(el("table", { class: "small" }, el("tbody", {}, fields.map(([k, v]) =>
        el("tr", {}, el("th", { text: k }), el("td", { class: "mono", text: typeof v === "number" ? fmt(v) : String(v) }))))),
        el("div", { class: "grid2" },
          el("div", {}, el("h2", { text: "Extracted text" }), el("pre", { id: "doc-text", text: doc.text + (doc.truncated ? "\n…" : "") })),
          el("div", {}, el("h2", { text: "Raw HTML (from the crawl)" }), rawBox)));
      if (!doc.has_raw) { rawBox.append(el("p", { class: "muted small", text: "Not in this run's crawl/ WARC files." })); return; }
      try {
        const raw = await api(`${base}/raw?id=${encodeURIComponent(doc.id)}`);
        rawBox.append(el("p", { class: "muted small", text: `${raw.file}, ${raw.content_type || "?"}${raw.truncated ? ", first 512 kB" : ""}` }),
          el("pre", { id: "doc-raw", text: raw.html })); // text, never rendered as a page
      } catch (e) { rawBox.append(el("p", { class: "muted small", text: e.message })); }
    }
    browseFn = (changes) => {
      for (const [k, v] of Object.entries(changes)) $(k).value = v;
      state = { stack: [], cursor: null };
      load();
      controls.scrollIntoView();
    };
    let timer;
    controls.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => browseFn({}), 250); });
    await load();
    return el("div", { class: "card" }, el("h2", { text: "Documents" }), controls,
      el("div", { class: "browser" }, el("div", {}, list, pager), detail));
  }
});
