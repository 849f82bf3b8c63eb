"""Which training recipe learns most at equal wall-clock: a plain nanoGPT, lmforge as it was, lmforge's defaults.

    python bench/bench_recipe.py [--seconds 90] [--seeds 3] [--threads 2] [--ablations]

Text: Shakespeare's works (bench/data/shakespeare.txt.gz, public domain), every 20th work held
out for validation; a 2048-token BPE of lmforge trained on the rest. Every recipe trains the same
shape (4 layers, 256 wide, 256 tokens of context, batch 16) and is scored by validation bits per
byte over all the held-out windows.

  (a) nanogpt  a plain nanoGPT-style GPT written below: LayerNorm, learned positions, GELU, AdamW,
               cosine, float32.
  (b) before   lmforge with everything this recipe adds turned off: AdamW, cosine, float32.
  (c) defaults lmforge with the settings of configs/demo.toml (the recipe its --ablations chose).

Equal wall-clock, on a machine that may be shared: each recipe's step is first timed in interleaved
rounds (the fastest round), then it trains for ``seconds / median step time`` steps; the real elapsed time is
printed beside. ``--ablations`` then switches each setting of (c) back, one at a time (first seed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).parent / "data" / "shakespeare.txt.gz"
SHAPE = dict(n_layer=4, n_head=4, n_embd=256, seq_len=256)  # the demo's; --small: 128 wide, 128 context
BATCH = 16


def warmup_steps(max_steps: int) -> int:
    return max(1, min(30, max_steps // 10))  # the demo's 30, or a tenth of a short run
BEFORE = {"model": {}, "train": dict(optimizer="adamw", schedule="cosine", dtype="float32", lr=3e-3)}


def demo_settings() -> dict:
    """[model] options and [train] settings of configs/demo.toml, the ones this bench compares."""
    import tomllib

    cfg = tomllib.loads((Path(__file__).parent.parent / "configs" / "demo.toml").read_text())
    model = {k: v for k, v in cfg["model"].items() if k not in SHAPE}
    keys = ("optimizer", "schedule", "dtype", "lr", "embed_lr", "head_lr", "muon_lr", "warmdown_fraction",
            "min_lr_ratio", "weight_decay")
    return {"model": model, "train": {k: cfg["train"][k] for k in keys if k in cfg["train"]}}


# ---------------------------------------------------------------- data

def prepare(root: Path, vocab_size: int = 2048) -> None:
    """root/tokenizer, root/tokens (a run directory's layout): train on 19 of 20 works, validate on the rest."""
    import numpy as np

    from lmforge.tokenizer.shards import write_shard
    from lmforge.tokenizer.train import save_tokenizer_dir, train_tokenizer

    works = gzip.decompress(DATA.read_bytes()).decode("utf-8").split("\n\x0c\n")
    train_texts = [w for i, w in enumerate(works) if i % 20 != 7]
    tok = train_tokenizer(train_texts, vocab_size=vocab_size)
    save_tokenizer_dir(tok, root / "tokenizer", hf_export=False)
    manifest = {"version": 1, "vocab_size": tok.vocab_size, "bos_id": tok.bos_id, "dtype": "uint16",
                "sources": {"shakespeare": {"train": [], "val": []}}}
    split = {"train": [], "val": []}
    for i, text in enumerate(works):
        split["val" if i % 20 == 7 else "train"] += [tok.bos_id, *tok.encode(text)]
    for kind, ids in split.items():
        rel = f"shakespeare/{kind}_000000.bin"
        write_shard(root / "tokens" / rel, np.array(ids, dtype=np.uint16), tok.vocab_size)
        manifest["sources"]["shakespeare"][kind].append({"path": rel, "tokens": len(ids), "documents": 0})
    (root / "tokens" / "manifest.json").write_text(json.dumps(manifest))
    from lmforge.tokenizer.tokenize import tokenizer_file_sha256

    manifest["tokenizer_sha256"] = tokenizer_file_sha256(root / "tokenizer")
    (root / "tokens" / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------- (a) a plain nanoGPT

def nanogpt_class():
    """nanoGPT's model.py in brief (Karpathy): LayerNorm with bias, learned positions, GELU, tied head."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.ln_1, self.ln_2, self.h = nn.LayerNorm(d), nn.LayerNorm(d), h
            self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
            x = x + self.c_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class NanoGPT(nn.Module):
        def __init__(self, vocab, n_layer, n_head, n_embd, seq_len):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(seq_len, n_embd)
            self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab, bias=False)
            self.lm_head.weight = self.wte.weight
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                    nn.init.normal_(p, 0.0, std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

        def forward(self, idx, targets=None):
            x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
            for block in self.blocks:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            return logits, loss

    return NanoGPT


class NanoGPTRun:
    """The nanoGPT recipe over lmforge's loader and validation windows, scored like lmforge."""

    def __init__(self, root: Path, seed: int, max_steps: int):
        import torch

        from lmforge.train.data import TrainLoader, load_manifest, val_batches

        manifest = load_manifest(root / "tokens")
        torch.manual_seed(seed)
        self.model = nanogpt_class()(manifest["vocab_size"], **SHAPE)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        rest = [p for p in self.model.parameters() if p.dim() < 2]
        # nanoGPT's train.py: AdamW betas (0.9, 0.95), weight decay 0.1 on matrices, warmup + cosine to 10%;
        # lr 1e-3, the value of its small Shakespeare config.
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0}],
                                     lr=1e-3, betas=(0.9, 0.95), foreach=True)
        self.loader = TrainLoader(root / "tokens", manifest, SHAPE["seq_len"], BATCH, seed, log=lambda *_: None)
        self.val = val_batches(root / "tokens", manifest, SHAPE["seq_len"], BATCH, 10**6)
        self.bos_id, self.max_steps, self.step = manifest["bos_id"], max_steps, 0

    def train_step(self) -> float:
        import torch

        warmup, lr = warmup_steps(self.max_steps), 1e-3
        s = self.step
        f = (s + 1) / warmup if s < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * min(1, (s - warmup) / max(1, self.max_steps - warmup))))
        for g in self.opt.param_groups:
            g["lr"] = lr * f
        x, y = (torch.from_numpy(a) for a in self.loader.next_batch())
        loss = self.model(x, y)[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.detach())

    def evaluate(self, val_bytes: int) -> float:
        import torch
        import torch.nn.functional as F

        self.model.eval()
        nats = 0.0
        with torch.no_grad():
            for x, y in self.val:
                x, y = torch.from_numpy(x), torch.from_numpy(y)
                per = F.cross_entropy(self.model(x)[0].flatten(0, 1), y.flatten(), reduction="none")
                nats += float(per[y.flatten() != self.bos_id].sum())
        return nats / math.log(2) / val_bytes


# ---------------------------------------------------------------- (b), (c) through lmforge's trainer

def lmforge_trainer(root: Path, name: str, recipe: dict, seed: int, max_steps: int, threads: int):
    from lmforge.config import config_from_dict
    from lmforge.rundir import RunDir
    from lmforge.train.dist import DistEnv
    from lmforge.train.loop import Trainer

    run = root / "runs" / name
    run.mkdir(parents=True, exist_ok=True)
    for shared in ("tokens", "tokenizer"):
        if not (run / shared).exists():
            (run / shared).symlink_to(root / shared)
    train = {"max_steps": max_steps, "batch_size": BATCH, "warmup_steps": warmup_steps(max_steps), "eval_every": 0,
             "eval_batches": 10**6, "threads": threads, "device": "cpu", "log_every": 10**6, **recipe["train"]}
    cfg = config_from_dict({"name": name, "runs_dir": str(run.parent), "seed": seed,
                            "model": {**SHAPE, **recipe["model"]}, "train": train})
    return Trainer(cfg, RunDir(run), DistEnv(device="cpu"), log=lambda *_: None)


def step_ms(make, rounds: int = 6, steps: int = 2) -> tuple[dict, dict]:
    """Fastest ms per step of each recipe over interleaved rounds, and each lmforge recipe's FLOPs per step.

    The minimum, not the median: on a machine shared with other work a round is only ever slowed,
    so the fastest round is the best estimate of the recipe's own speed.
    """
    runs = {name: fn() for name, fn in make.items()}
    times = {name: [] for name in runs}
    for name, r in runs.items():  # warm-up step (first-call allocations, thread start)
        _one_step(r)
    for _ in range(rounds):
        for name, r in runs.items():
            t = time.perf_counter()
            for _ in range(steps):
                _one_step(r)
            times[name].append((time.perf_counter() - t) / steps * 1000)
    flops = {name: getattr(r, "flops_per_step", None) for name, r in runs.items()}
    return {name: min(t) for name, t in times.items()}, flops


def _one_step(run) -> None:
    if isinstance(run, NanoGPTRun):
        run.train_step()
    else:
        run._train_step()
        run.step += 1


def train_for(root: Path, name: str, recipe: dict | None, seed: int, steps: int, threads: int,
              val_bytes: int) -> dict:
    t0 = time.perf_counter()
    if recipe is None:
        run = NanoGPTRun(root, seed, steps)
        while run.step < steps:
            run.train_step()
        bpb = run.evaluate(val_bytes)
    else:
        import shutil

        shutil.rmtree(root / "runs" / name / "checkpoints", ignore_errors=True)
        trainer = lmforge_trainer(root, name, recipe, seed, steps, threads)
        trainer._save = lambda: None  # checkpoints are not part of what is compared
        bpb = trainer.run()["val_bpb"]
    return {"bpb": bpb, "seconds": time.perf_counter() - t0, "steps": steps}


def val_byte_count(root: Path) -> int:
    from lmforge.train.data import load_manifest, val_batches
    from lmforge.tokenizer.bpe import Tokenizer

    manifest = load_manifest(root / "tokens")
    tok = Tokenizer.load(root / "tokenizer")
    ids = [int(t) for _, y in val_batches(root / "tokens", manifest, SHAPE["seq_len"], BATCH, 10**6)
           for row in y for t in row if t != manifest["bos_id"]]
    return len(tok.decode_bytes(ids) if hasattr(tok, "decode_bytes") else tok.decode(ids).encode("utf-8"))


def compare(root: Path, recipes: dict, seeds: list[int], seconds: float, threads: int, val_bytes: int) -> dict:
    make = {name: (lambda r=r, n=name: NanoGPTRun(root, 0, 10**6) if r is None
                   else lmforge_trainer(root, n, r, 0, 10**6, threads)) for name, r in recipes.items()}
    ms, flops = step_ms(make)
    results = {}
    for name, recipe in recipes.items():
        steps = max(1, int(seconds * 1000 / ms[name]))
        runs = [train_for(root, name, recipe, seed, steps, threads, val_bytes) for seed in seeds]
        bpbs = [r["bpb"] for r in runs]
        results[name] = {"ms": ms[name], "tok_s": BATCH * SHAPE["seq_len"] / ms[name] * 1000, "steps": steps,
                         "bpb": statistics.mean(bpbs), "spread": max(bpbs) - min(bpbs), "bpbs": bpbs,
                         "flops": flops[name],
                         "seconds": statistics.mean(r["seconds"] for r in runs)}
        r = results[name]
        print(f"{name:<22} {r['ms']:>7.0f} {r['tok_s']:>8,.0f} {steps:>6} {r['bpb']:>8.4f} {r['spread']:>7.4f} "
              f"{r['seconds']:>8.0f}  {' '.join(f'{b:.4f}' for b in bpbs)}", flush=True)
    return results


def ablations(defaults: dict) -> dict:
    """(c) with one setting switched back (or, for an option that is off, switched on)."""
    out = {}
    flips = {"qk_norm": (True, False), "tie_embeddings": (False, True), "zero_init_proj": (True, False)}
    model = defaults["model"]
    for key, (on, off) in flips.items():
        now = model.get(key, off if key != "tie_embeddings" else True)
        out[f"{key}={not now if isinstance(now, bool) else now}"] = {
            "model": {**model, key: (not now)}, "train": defaults["train"]}
    out['mlp=' + ("swiglu" if model.get("mlp") == "relu2" else "relu2")] = {
        "model": {**model, "mlp": "swiglu" if model.get("mlp") == "relu2" else "relu2"}, "train": defaults["train"]}
    cap = model.get("logit_softcap", 0.0)
    out[f"logit_softcap={0.0 if cap else 15.0}"] = {"model": {**model, "logit_softcap": 0.0 if cap else 15.0},
                                                   "train": defaults["train"]}
    t = defaults["train"]
    if t.get("optimizer") == "muon":
        out["optimizer=adamw"] = {"model": model, "train": {**t, "optimizer": "adamw", "lr": 3e-3}}
    else:
        out["optimizer=muon"] = {"model": model, "train": {**t, "optimizer": "muon"}}
    other = "cosine" if t.get("schedule", "cosine") == "wsd" else "wsd"
    out[f"schedule={other}"] = {"model": model, "train": {**t, "schedule": other}}
    from lmforge.train.resources import cpu_has_native_bf16

    if t.get("dtype") != "auto" or cpu_has_native_bf16():  # else auto is float32 here: the same as (c)
        out["dtype=float32"] = {"model": model, "train": {**t, "dtype": "float32"}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=90.0, help="training time of every run")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ablations", action="store_true")
    ap.add_argument("--only", metavar="NAMES", help="with --ablations: just these (comma-separated, e.g. "
                    "qk_norm=False,mlp=swiglu) and no (a)/(b)/(c) comparison, so a long list splits into runs")
    ap.add_argument("--ablation-seed", type=int, default=0, help="the seed of the ablation runs")
    ap.add_argument("--small", action="store_true", help="n_embd 128, seq_len 128: 4x cheaper steps")
    ap.add_argument("--keep", metavar="DIR", help="build the data in DIR (kept) instead of a temp folder")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.small:
        SHAPE.update(n_embd=128, seq_len=128)
    defaults = demo_settings()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp) / "recipe"
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "tokens" / "manifest.json").exists():
            prepare(root)
        val_bytes = val_byte_count(root)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, shape {SHAPE} batch {BATCH}, "
              f"{args.seconds:.0f} s per run, seeds {list(range(args.seeds))}, {val_bytes:,} validation bytes")
        print(f"(c) defaults = {json.dumps(defaults)}")
        print(f"{'recipe':<22} {'ms/step':>7} {'tok/s':>8} {'steps':>6} {'val bpb':>8} {'spread':>7} "
              f"{'elapsed':>8}  per seed")
        recipes = {"(a) nanogpt": None, "(b) before": BEFORE, "(c) defaults": defaults}
        if not args.only:
            main_comparison(root, recipes, args, val_bytes)
        if args.ablations:
            variants = ablations(defaults)
            if args.only:
                wanted = args.only.split(",")
                unknown = [w for w in wanted if w not in variants]
                if unknown:
                    raise SystemExit(f"--only: unknown {', '.join(unknown)}; one of {', '.join(variants)}")
                variants = {k: v for k, v in variants.items() if k in wanted}
            print(f"\nablations of (c), seed {args.ablation_seed}, each with one setting changed:")
            compare(root, {"(c) defaults": defaults, **variants}, [args.ablation_seed], args.seconds, args.threads,
                    val_bytes)


def main_comparison(root: Path, recipes: dict, args, val_bytes: int) -> None:
    res = compare(root, recipes, list(range(args.seeds)), args.seconds, args.threads, val_bytes)
    a, b, c = (res[k] for k in recipes)
    print(f"\n(c)/(a) bits per byte {c['bpb'] / a['bpb']:.3f} (goal <= 0.80)")
    print(f"(b) - (c) bits per byte {b['bpb'] - c['bpb']:.4f}, spread over seeds (b) {b['spread']:.4f} "
          f"(c) {c['spread']:.4f} (goal: the gap larger than the spread)")
    print(f"(c)/(b) tokens per second {c['tok_s'] / b['tok_s']:.2f}x (goal >= 1.5x)")
    print_ceiling(b, c, args.threads)


def print_ceiling(b: dict, c: dict, threads: int) -> None:
    """The most (c)/(b) tokens per second could be: (c) at this machine's full matmul peak, in the same run.

    Tokens per second = FLOP/s over FLOPs per token; (b)'s FLOP/s over the peak is its MFU, so with
    (c) doing about (b)'s FLOPs per token the ratio cannot exceed 1 / MFU of (b).
    """
    from lmforge.train.resources import cpu_matmul_peaks

    peak = cpu_matmul_peaks(threads, bf16=False)["float32"]
    rate = b["flops"] / (b["ms"] / 1000)
    ceiling = peak / rate * b["flops"] / c["flops"]
    print(f"(b) runs at {rate / 1e9:.0f} GFLOP/s, {rate / peak:.0%} of this machine's best float32 matmul peak "
          f"({peak / 1e9:.0f} GFLOP/s, {threads} threads); (c) does {c['flops'] / b['flops']:.2f}x its FLOPs per "
          f"token, so in float32 (c)/(b) tokens per second can be at most {ceiling:.2f}x here, and 1.5x needs (c) "
          f"at {1.5 / ceiling:.0%} of the peak")


if __name__ == "__main__":
    main()
