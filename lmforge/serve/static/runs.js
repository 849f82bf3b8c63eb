// Runs: every run under the folder with its stages, and two runs side by side.
"use strict";

LM.start(async () => {
  const { el, fmt, api } = LM;
  const main = document.getElementById("main");
  const { runs, root } = await LM.header("/");
  main.append(el("h1", { text: "Runs" }), el("p", { class: "muted small" }, "Runs folder: ", el("code", { text: root })));
  if (!runs.length) {
    LM.notice(main, "No runs here yet. Make one with: lmforge run configs/demo.toml (or make demo), then reload.");
    return;
  }
  main.append(el("div", { class: "card" }, runsTable(runs)));
  if (runs.length >= 2) main.append(compareCard(runs));

  function runsTable(list) {
    const head = ["run", "stages", "pages", "kept docs", "tokens", "params", "val loss", "pages of the run"];
    return el("table", { id: "runs-table", class: "stack" },
      el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { class: i >= 2 && i <= 6 ? "num" : null, text: h })))),
      el("tbody", {}, list.map((r) => el("tr", { "data-run": r.name },
        el("td", { class: "name" }, el("strong", { text: r.name }),
          (r.problems || []).map((m) => el("div", { class: "small problem", text: m }))), // a file that cannot be read
        el("td", { "data-label": head[1] }, r.stages.map((s) => el("span", { class: `chip state-${s.state}`, "data-stage": s.stage,
          title: [s.state, s.reason, s.state === "complete" ? "" : s.command].filter(Boolean).join(" — "),
          text: `${s.stage}${s.state === "complete" ? "" : ": " + s.state}` }))),
        el("td", { class: "num", "data-label": head[2], text: fmt(r.pages) }),
        el("td", { class: "num", "data-label": head[3], text: fmt(r.docs) }),
        el("td", { class: "num", "data-label": head[4], text: fmt(r.tokens) }),
        el("td", { class: "num", "data-label": head[5], text: fmt(r.params) }),
        el("td", { class: "num", "data-label": head[6], text: r.val_loss === null || r.val_loss === undefined ? "–" : fmt(r.val_loss, 3) }),
        el("td", { class: "links" }, [["/data", "data"], ["/tokenizer", "tokenizer"], ["/training", "training"], ["/playground", "playground"]]
          .map(([p, label]) => [el("a", { href: LM.withRun(p, r.name), text: label }), " "]))))));
  }

  function compareCard(list) {
    const names = list.map((r) => r.name);
    const pick = (id, chosen) => el("select", { id }, names.map((n) => el("option", { value: n, selected: n === chosen, text: n })));
    const a = pick("compare-a", names[0]), b = pick("compare-b", names[1]);
    const out = el("div", { id: "compare-out" });
    const go = el("button", { id: "compare", text: "Compare", onclick: () => compare(a.value, b.value, out) });
    return el("div", { class: "card" }, el("h2", { text: "Compare two runs" }),
      el("div", { class: "controls" }, el("label", {}, "run A", a), el("label", {}, "run B", b), go), out);
  }

  async function compare(a, b, out) {
    out.textContent = "";
    // a run without stats/clean.json has no funnel: not asked for (a 404 is a console error)
    const cleaned = (name) => runs.find((r) => r.name === name).stages.some((s) => s.stage === "clean" && ["complete", "stale"].includes(s.state));
    const [fa, fb] = await Promise.all([a, b].map((r) => cleaned(r)
      ? api(`/api/runs/${encodeURIComponent(r)}/funnel`).catch((e) => ({ error: e.message })) : {}));
    const stepNames = [...new Set([...(fa.steps || []), ...(fb.steps || [])].map((s) => s.step))];
    const cell = (f, step, key) => {
      const s = (f.steps || []).find((x) => x.step === step);
      return s ? fmt(s[key]) : "–";
    };
    const table = el("table", { id: "compare-funnel" },
      el("thead", {}, el("tr", {}, el("th", { text: "clean step" }), el("th", { class: "num", text: `${a}: in → out` }),
        el("th", { class: "num", text: `${b}: in → out` }))),
      el("tbody", {},
        el("tr", {}, el("td", { text: "records in" }), el("td", { class: "num", text: fmt(fa.records) }), el("td", { class: "num", text: fmt(fb.records) })),
        stepNames.map((step) => el("tr", {}, el("td", { text: step }),
          el("td", { class: "num", text: `${cell(fa, step, "in")} → ${cell(fa, step, "out")}` }),
          el("td", { class: "num", text: `${cell(fb, step, "in")} → ${cell(fb, step, "out")}` }))),
        el("tr", {}, el("td", {}, el("strong", { text: "kept" })), el("td", { class: "num", text: fmt(fa.docs) }), el("td", { class: "num", text: fmt(fb.docs) }))));
    const chart = el("div", { id: "compare-chart" });
    out.append(el("div", { class: "grid2" }, el("div", {}, el("h2", { text: "Funnel" }), table),
      el("div", {}, el("h2", { text: "Loss" }), chart)));
    const [ma, mb] = await Promise.all([a, b].map((r) => LM.allMetrics(r)));
    const series = [];
    for (const [name, m] of [[a, ma], [b, mb]]) {
      series.push({ name: `${name} train`, points: m.rows.filter((r) => r.kind === "train").map((r) => [r.step, r.loss]) });
      series.push({ name: `${name} val`, dots: true, width: 2,
        points: m.rows.filter((r) => r.kind === "val").map((r) => [r.step, r.val_loss]) });
    }
    LM.lineChart(chart, series, { xLabel: "step", title: "loss of both runs" });
  }
});
