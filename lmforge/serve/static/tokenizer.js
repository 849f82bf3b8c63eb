// Tokenizer: the text split into shaded tokens with ids and the count, as `lmforge tokenizer show`.
"use strict";

LM.start(async () => {
  const { el, fmt } = LM;
  const main = document.getElementById("main");
  const { runs, run } = await LM.header("/tokenizer");
  main.append(el("h1", { text: "Tokenizer" }));
  if (!run) { LM.notice(main, "No runs yet: make one with lmforge run configs/demo.toml"); return; }
  const withTok = runs.filter((r) => r.stages.some((s) => s.stage === "tokenizer" && s.state !== "missing")).map((r) => r.name);
  const current = runs.find((r) => r.name === run);
  if (!withTok.includes(run)) { LM.missing(main, current, ["tokenizer"], "The tokenizer view"); return; }
  const pick = (id, chosen) => el("select", { id }, withTok.map((n) => el("option", { value: n, selected: n === chosen, text: n })));
  const text = el("textarea", { id: "text", rows: 5, maxlength: 100000, spellcheck: "false" });
  text.value = "The base model learns from raw web pages.\n안녕하세요 👋🏽 — def add(a, b): return a + b";
  const a = pick("tok-a", run), b = pick("tok-b", withTok.find((n) => n !== run) || run);
  const compare = el("input", { type: "checkbox", id: "compare" });
  const outA = el("div", { id: "out-a" }), outB = el("div", { id: "out-b" });
  main.append(el("div", { class: "card" },
    el("div", { class: "controls" }, el("label", {}, "tokenizer", a),
      el("label", {}, el("span", {}, compare, " compare with"), b)),
    text),
    el("div", { class: "grid2" }, el("div", { class: "card" }, outA), el("div", { class: "card" }, outB)));

  let seq = 0;
  async function update() {
    const mine = ++seq;
    outB.parentElement.hidden = !compare.checked;
    const jobs = [show(a.value, outA)];
    if (compare.checked) jobs.push(show(b.value, outB));
    await Promise.all(jobs.map((job) => job.catch((e) => e)));
    async function show(name, out) {
      let view;
      try { view = await LM.post("/api/tokenize", { run: name, text: text.value }); } catch (e) {
        if (mine !== seq) return;
        out.textContent = ""; LM.notice(out, e.message, true); return;
      }
      if (mine !== seq) return; // a newer keystroke already asked again
      out.textContent = "";
      out.append(el("h2", { text: `${name} (vocabulary ${fmt(view.vocab_size)})` }),
        el("div", { class: "tokens", "data-role": "tokens" }, view.tokens.map((t, i) =>
          el("span", { class: `tok t${i % 6}`, "data-id": t.id, title: `id ${t.id} · bytes ${t.bytes.join(" ")}`, text: t.text }))),
        el("div", { class: "count", "data-role": "count", text: `Token count: ${view.count}` }),
        el("div", { class: "small muted", "data-role": "bpt",
          text: `${fmt(view.bytes)} bytes · ${view.bytes_per_token === null ? "–" : view.bytes_per_token.toFixed(2)} bytes/token` }),
        el("div", { class: "ids", "data-role": "ids", text: `[${view.ids.join(", ")}]` }));
    }
  }
  let timer;
  const soon = () => { clearTimeout(timer); timer = setTimeout(update, 120); };
  for (const node of [text, a, b, compare]) node.addEventListener(node === text ? "input" : "change", soon);
  await update();
});
