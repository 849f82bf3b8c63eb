// Playground: continuations streamed token by token (SSE) from the run's latest checkpoint; hover a
// token for the model's probability of it and its top-5 alternatives (sent by the engine).
"use strict";

LM.start(async () => {
  const { el, fmt, api } = LM;
  const main = document.getElementById("main");
  const { run, summary } = await LM.open("/playground");
  main.append(el("h1", { text: "Playground" }));
  if (!run) { LM.notice(main, "No runs yet: make one with lmforge run configs/demo.toml"); return; }
  const base = `/api/runs/${encodeURIComponent(run)}`;
  if (!summary.has_checkpoint) { LM.missing(main, summary, ["train"], "The playground"); return; }
  const num = (id, label, value, attrs) => el("label", {}, label, el("input", { id, type: "number", value, ...attrs }));
  const prompt = el("textarea", { id: "prompt", rows: 4, maxlength: 8000, spellcheck: "false" });
  prompt.value = "The ";
  const controls = el("div", { class: "controls" },
    num("temperature", "temperature", 0.8, { min: 0, max: 5, step: 0.1 }),
    num("top_k", "top-k (0 = all)", 50, { min: 0, step: 1 }),
    num("top_p", "top-p", 1, { min: 0.01, max: 1, step: 0.05 }),
    num("seed", "seed (empty = random)", "", { min: 0, step: 1 }),
    num("n", "samples", 2, { min: 1, max: 8, step: 1 }),
    num("max_tokens", "max tokens", 48, { min: 1, max: summary.seq_len || 1024, step: 1 }));
  const go = el("button", { id: "generate", text: "Generate" });
  const again = el("button", { id: "again", class: "secondary", text: "Sample again" });
  const stop = el("button", { id: "stop", class: "secondary", text: "Stop", disabled: true });
  const shots = el("button", { id: "fewshot", class: "secondary", text: "Few-shot prompt from this run's data" });
  const info = el("div", { class: "small muted", id: "gen-info" });
  const out = el("div", { id: "samples" });
  const tip = el("div", { class: "tip", hidden: true });
  document.body.append(tip);
  main.append(el("div", { class: "card" }, prompt, controls, el("div", { class: "controls" }, go, again, stop, shots), info),
    el("div", { class: "card" }, out));

  let controller = null;
  const value = (id) => controls.querySelector("#" + id).value;

  async function generate() {
    if (controller) controller.abort();
    controller = new AbortController();
    const body = { prompt: prompt.value, temperature: +value("temperature"), top_k: +value("top_k"), top_p: +value("top_p"),
      n: +value("n"), max_tokens: +value("max_tokens"), seed: value("seed") === "" ? null : +value("seed") };
    out.textContent = "";
    const generation = String(+(out.dataset.generation || 0) + 1);
    out.dataset.generation = generation; // tests and the bench wait for data-done to equal it
    info.textContent = "waiting for the model…";
    go.disabled = again.disabled = true;
    stop.disabled = false;
    const boxes = [];
    const started = performance.now();
    try {
      const response = await fetch(`${base}/generate`, { method: "POST", signal: controller.signal,
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      if (!response.ok) {
        const err = await response.json().catch(() => ({ error: response.statusText }));
        throw new Error(err.error);
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "", first = null;
      for (;;) {
        const { value: chunk, done } = await reader.read();
        if (done) break;
        buffer += chunk;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const line = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (!line.startsWith("data: ")) continue;
          const event = JSON.parse(line.slice(6));
          if (event.type === "token" && first === null) first = performance.now() - started;
          handle(event, boxes, body);
        }
      }
      info.textContent = `checkpoint step ${boxes.step ?? "?"}; first token after ${first === null ? "–" : Math.round(first) + " ms"}; ` +
        `seeds ${boxes.seeds.join(", ")} (the same seed and settings give the same text)`;
      out.dataset.done = generation;
    } catch (e) {
      info.textContent = e.name === "AbortError" ? "stopped" : "";
      if (e.name !== "AbortError") LM.notice(out, e.message, true);
    } finally {
      go.disabled = again.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  }

  function handle(event, boxes, body) {
    if (event.type === "start") {
      boxes.step = event.step;
      (boxes.seeds = boxes.seeds || []).push(event.seed);
      const gen = el("div", { class: "gen", "data-sample": event.sample }, el("span", { class: "prompt", text: body.prompt }));
      boxes[event.sample] = gen;
      out.append(el("div", { class: "sample" }, el("div", { class: "head", text: `sample ${event.sample + 1} · seed ${event.seed}` }), gen));
    } else if (event.type === "token") {
      const span = el("span", { class: "g", "data-id": event.id, text: event.text });
      span.dataset.prob = event.prob;
      span.addEventListener("mouseenter", (e) => showTip(e, event));
      span.addEventListener("mouseleave", () => { tip.hidden = true; });
      boxes[event.sample].append(span);
    } else if (event.type === "end") {
      if (event.text) boxes[event.sample].append(el("span", { text: event.text }));
      boxes[event.sample].dataset.end = event.reason;
    }
  }

  function showTip(e, event) {
    tip.textContent = "";
    tip.append(el("div", {}, el("strong", { text: `${JSON.stringify(event.token)} ` }), `p = ${(100 * event.prob).toFixed(2)}%`),
      el("table", {}, el("tbody", {}, event.top.map((t) => el("tr", {},
        el("td", { text: JSON.stringify(t.token) }), el("td", { text: `${(100 * t.prob).toFixed(2)}%` }))))));
    tip.hidden = false;
    const box = e.target.getBoundingClientRect();
    tip.style.left = `${Math.max(4, Math.min(box.left, window.innerWidth - tip.offsetWidth - 4))}px`; // on the screen, also a phone's
    tip.style.top = `${box.bottom + 6}px`;
  }

  go.addEventListener("click", generate);
  again.addEventListener("click", () => {
    const seed = controls.querySelector("#seed");
    if (seed.value !== "") seed.value = String(+seed.value + (+value("n") || 1));
    generate();
  });
  stop.addEventListener("click", () => controller && controller.abort());
  shots.addEventListener("click", async () => {
    try {
      const few = await api(`${base}/fewshot?max_tokens=${+value("max_tokens") || 32}`);
      prompt.value = few.prompt;
      controls.querySelector("#max_tokens").value = String(few.max_tokens); // what the context has left
      info.textContent = `few-shot prompt: ${few.examples} examples from docs/, ${few.tokens} tokens, ` +
        `${few.max_tokens} left for the continuation; the model should continue the pattern`;
    } catch (e) { info.textContent = e.message; }
  });
});
