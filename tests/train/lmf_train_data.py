"""Synthetic token runs for the train tests: shards written with write_shard, a manifest, no tokenizer."""

from __future__ import annotations

import json

import numpy as np

from lmforge.config import config_from_dict
from lmforge.rundir import RunDir
from lmforge.tokenizer.shards import write_shard

VOCAB, BOS = 64, 63


def synthetic_tokens(n: int, seed: int) -> np.ndarray:
    """Documents of BOS + a walk where each token mostly decides the next: learnable, not constant."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        tok = int(rng.integers(0, 60))
        out.append(BOS)
        for _ in range(int(rng.integers(20, 80))):
            out.append(tok)
            tok = (tok * 7 + 3) % 60 if rng.random() < 0.9 else int(rng.integers(0, 60))
    return np.array(out[:n], dtype=np.uint16)


def make_token_run(root, sources: dict[str, int], val_tokens: int = 2000, shards: int = 2) -> RunDir:
    """A run dir with tokens/<source>/{train,val}_*.bin and tokens/manifest.json."""
    rd = RunDir(root)
    manifest = {"version": 1, "vocab_size": VOCAB, "bos_id": BOS, "dtype": "uint16", "sources": {}}
    for s, (name, n) in enumerate(sources.items()):
        entry = {"train": [], "val": []}
        parts = np.array_split(synthetic_tokens(n, seed=s), shards)
        for i, part in enumerate(parts):
            rel = f"{name}/train_{i:06d}.bin"
            write_shard(rd.tokens / rel, part, VOCAB)
            entry["train"].append({"path": rel, "tokens": len(part), "documents": int((part == BOS).sum())})
        if val_tokens:
            val = synthetic_tokens(val_tokens, seed=100 + s)
            rel = f"{name}/val_000000.bin"
            write_shard(rd.tokens / rel, val, VOCAB)
            entry["val"].append({"path": rel, "tokens": len(val), "documents": int((val == BOS).sum())})
        manifest["sources"][name] = entry
    (rd.tokens / "manifest.json").write_text(json.dumps(manifest))
    return rd


def tiny_config(root, **train) -> "RunConfig":  # noqa: F821
    data = {"name": root.name, "runs_dir": str(root.parent), "seed": 7,
            "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "seq_len": 32},
            "train": {"max_steps": 6, "batch_size": 4, "lr": 1e-2, "warmup_steps": 2, "eval_every": 0,
                      "eval_batches": 2, "device": "cpu", "log_every": 1, "dtype": "float32",
                      "optimizer": "adamw", "schedule": "cosine", **train}}
    return config_from_dict(data)



def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
