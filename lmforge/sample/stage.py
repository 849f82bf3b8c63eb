"""The sample stage: continuations of the configured prompts from the latest checkpoint -> samples.json."""

from __future__ import annotations

from dataclasses import asdict

from lmforge.config import RunConfig
from lmforge.rundir import RunDir, write_json_atomic


def run_stage(cfg: RunConfig, rd: RunDir, log=print) -> dict:
    from lmforge.sample.engine import Engine, load_model
    from lmforge.train.dist import pick_device

    model, tok = load_model(rd.root, pick_device(cfg.train.device))
    engine = Engine(model, stop_ids={tok.bos_id})
    sc = cfg.sample
    results, generated = [], 0
    for prompt in sc.prompts:
        samples = []
        for i in range(sc.num_samples):
            ids = list(engine.generate([tok.bos_id, *tok.encode(prompt)], sc.max_new_tokens, sc.temperature,
                                       sc.top_k, sc.top_p, seed=sc.seed + i))
            generated += len(ids)
            samples.append(tok.decode(ids))
        results.append({"prompt": prompt, "samples": samples})
    write_json_atomic(rd.samples, {"settings": asdict(sc), "prompts": results})
    # the texts themselves are shown once, by the run's closing summary (and in report.md)
    log(f"[sample] {len(sc.prompts) * sc.num_samples} continuations of {len(sc.prompts)} prompts -> {rd.samples}")
    return {"prompts": len(sc.prompts), "samples": len(sc.prompts) * sc.num_samples, "tokens": generated}
