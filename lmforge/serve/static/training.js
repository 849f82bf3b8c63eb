// Training: curves from metrics.jsonl, following the file's tail while training runs; the ETA.
"use strict";

LM.start(async () => {
  const { el, fmt, api } = LM;
  const main = document.getElementById("main");
  let prefetched = LM.early("/metrics?offset=0");
  const { run, summary } = await LM.open("/training");
  if (run !== LM.param("run")) prefetched = null;
  main.append(el("h1", { text: "Training" }));
  if (!run) { LM.notice(main, "No runs yet: make one with lmforge run configs/demo.toml"); return; }
  const base = `/api/runs/${encodeURIComponent(run)}`;
  const status = el("div", { class: "card", id: "train-status" });
  const charts = {};
  const names = [["loss", "Loss (nats/token)"], ["bpb", "Validation bits per byte"], ["lr", "Learning rate"],
    ["grad", "Gradient norm"], ["speed", "Tokens per second"]];
  main.append(status, el("div", { class: "grid2" }, names.map(([key, title]) => {
    charts[key] = el("div", { id: `chart-${key}` });
    return el("div", { class: "card" }, el("h2", { text: title }), charts[key]);
  })));
  const rows = [];
  let offset = 0, eta = null, info = summary, timer;

  function draw() {
    const train = rows.filter((r) => r.kind === "train"), val = rows.filter((r) => r.kind === "val");
    // a line of another shape (a step that is not a number, a NaN written as null) is left out of the charts
    const pts = (list, key) => list.filter((r) => Number.isFinite(r.step) && Number.isFinite(r[key])).map((r) => [r.step, r[key]]);
    LM.lineChart(charts.loss, [{ name: "train loss", points: pts(train, "loss") },
      { name: "validation loss", points: pts(val, "val_loss"), dots: true, width: 2 }], { xLabel: "step" });
    LM.lineChart(charts.bpb, [{ name: "val bits/byte", points: pts(val, "val_bpb"), dots: true }], { xLabel: "step" });
    LM.lineChart(charts.lr, [{ name: "lr", points: pts(train, "lr") }], { xLabel: "step" });
    LM.lineChart(charts.grad, [{ name: "grad norm", points: pts(train, "grad_norm") }], { xLabel: "step" });
    LM.lineChart(charts.speed, [{ name: "tokens/s", points: pts(train, "tok_per_s") }], { xLabel: "step" });
    const last = train[train.length - 1], lastVal = val[val.length - 1];
    status.textContent = "";
    status.append(el("div", { class: "controls" },
      el("span", { id: "train-step" }, el("strong", { text: "step " }), last ? `${fmt(last.step)} of ${fmt(info.max_steps)}` : "–"),
      el("span", {}, el("strong", { text: "train loss " }), last ? fmt(last.loss, 4) : "–"),
      el("span", {}, el("strong", { text: "val loss " }), lastVal ? fmt(lastVal.val_loss, 4) : "–"),
      el("span", {}, el("strong", { text: "tokens " }), last ? fmt(last.tokens) : "–"),
      el("span", { id: "eta" }, el("strong", { text: "ETA " }), info.train_state === "complete" ? "done" : LM.duration(eta)),
      el("span", { class: `chip state-${info.train_state}`, text: `train: ${info.train_state}` })));
    if (!rows.length) {
      const stage = summary.stages.find((s) => s.stage === "train");
      status.append(el("p", { class: "muted" }, "No metrics.jsonl lines yet. Start training with ", el("code", { text: stage.command })));
    }
  }

  async function poll() {
    try {
      let page;
      do {
        page = await ((offset === 0 && prefetched) || api(`${base}/metrics?offset=${offset}`));
        prefetched = null;
        if (page.reset) rows.length = 0;
        rows.push(...page.rows);
        const grew = page.offset !== offset;
        offset = page.offset;
        if (page.eta_s !== null) eta = page.eta_s;
        info = { ...info, ...page };
        if (!grew) break;
      } while (page.offset < page.size);
      draw();
    } catch (e) { /* the next poll tries again: a run being written may be briefly unreadable */ }
    timer = setTimeout(poll, document.hidden ? 5000 : 1000);
  }
  await poll();
  window.addEventListener("pagehide", () => clearTimeout(timer));
});
