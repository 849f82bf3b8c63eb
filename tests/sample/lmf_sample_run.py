"""A tiny trained run with the real tokenizer: tokenizer/, tokens/, checkpoints/ (a few seconds)."""

from __future__ import annotations

import json

import numpy as np

from lmforge.config import config_from_dict
from lmforge.rundir import RunDir
from lmforge.tokenizer.shards import write_shard

TEXT = ("def add(a, b):\n    return a + b\n\nThe list type holds values in order. "
        "A dict maps keys to values. Use print() to show a value.\n") * 40


def build_run(root) -> tuple[RunDir, object]:
    from lmforge.tokenizer.train import train_tokenizer

    rd = RunDir(root)
    tok = train_tokenizer([TEXT], vocab_size=320)
    tok.save(rd.tokenizer)
    docs = [TEXT[i:i + 400] for i in range(0, len(TEXT), 400)]
    ids = np.array([t for d in docs for t in [tok.bos_id, *tok.encode(d)]], dtype=np.uint16)
    split = int(len(ids) * 0.8)
    manifest = {"version": 1, "vocab_size": tok.vocab_size, "bos_id": tok.bos_id, "dtype": "uint16",
                "sources": {"docs": {"train": [], "val": []}}}
    for kind, part in (("train", ids[:split]), ("val", ids[split:])):
        rel = f"docs/{kind}_000000.bin"
        write_shard(rd.tokens / rel, part, tok.vocab_size)
        manifest["sources"]["docs"][kind].append({"path": rel, "tokens": len(part), "documents": 1})
    (rd.tokens / "manifest.json").write_text(json.dumps(manifest))
    return rd, tok


def run_config(root, **sample):
    return config_from_dict({
        "name": root.name, "runs_dir": str(root.parent), "seed": 1,
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "seq_len": 48},
        "train": {"max_steps": 60, "batch_size": 8, "lr": 1e-2, "warmup_steps": 5, "eval_every": 0,
                  "eval_batches": 2, "device": "cpu"},
        "sample": {"prompts": ["def ", "The list"], "num_samples": 2, "max_new_tokens": 12, **sample}})
