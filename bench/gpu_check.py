"""GPU readiness: a 124M-parameter model, bf16 autocast, torch.compile, synthetic tokens; then 2-process DDP.

    python bench/gpu_check.py [--steps 300] [--batch 16] [--no-compile] [--no-ddp]

Trains lmforge's GPT at GPT-2 small's shape (12 layers, 768 wide, 12 heads, 1024 tokens of context,
vocabulary 50304: 124M parameters) with the trainer's own optimizer (Muon + AdamW) and prints
tokens/s, MFU against the card's dense bf16 peak (lmforge.train.dist.GPU_PEAK_FLOPS) and peak
memory. Then, with two or more GPUs, the same shape through ``torchrun --nproc_per_node=2`` and the
trainer's DDP path on synthetic shards (one node).
Needs a CUDA GPU; prints why and exits 0 without one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = dict(n_layer=12, n_head=12, n_embd=768, seq_len=1024, vocab_size=50304)


def single_gpu(args) -> dict:
    import torch

    from lmforge.model.config import ModelConfig
    from lmforge.model.gpt import GPT
    from lmforge.train.config import TrainConfig
    from lmforge.train.dist import peak_flops
    from lmforge.train.optim import build_optimizer, lr_factor, set_lr

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = ModelConfig(**SHAPE, **args.options)
    model = GPT(cfg).cuda()
    tc = TrainConfig(optimizer="muon", schedule="wsd", max_steps=args.steps, warmup_steps=20)
    opt = build_optimizer(model, tc, "cuda")
    fwd = torch.compile(model) if args.compile else model
    peak = peak_flops(0, "cuda")
    flops_per_step = model.flops_per_token() * args.batch * cfg.seq_len
    torch.cuda.reset_peak_memory_stats()
    t_compile = time.time()
    times = []
    for step in range(args.steps):
        x = torch.randint(0, cfg.vocab_size, (args.batch, cfg.seq_len), device="cuda")
        set_lr(opt, lr_factor(step, tc))
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(x, x)[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        if step == 0:
            print(f"first step (compile) {time.time() - t_compile:.1f}s, loss {loss.item():.3f}", flush=True)
    steady = sorted(times[min(10, len(times) // 2):])
    median = steady[len(steady) // 2]
    tok_s = args.batch * cfg.seq_len / median
    out = {"gpu": torch.cuda.get_device_name(), "params": model.num_params(), "batch": args.batch,
           "seq_len": cfg.seq_len, "compile": args.compile, "median_ms": round(1000 * median, 1),
           "tok_per_s": round(tok_s), "mfu": round(flops_per_step / median / peak, 4) if peak else None,
           "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "final_loss": round(loss.item(), 3)}
    print(json.dumps(out), flush=True)
    return out


def two_process_ddp(args) -> int:
    """torchrun --nproc_per_node=2 -m lmforge train on synthetic shards (the trainer's DDP path)."""
    import numpy as np

    from lmforge.tokenizer.shards import write_shard

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "runs" / "ddp"
        rng = np.random.default_rng(0)
        manifest = {"version": 1, "vocab_size": 50304, "bos_id": 50303, "dtype": "uint16",
                    "sources": {"synthetic": {"train": [], "val": []}}}
        for kind, n in (("train", 4_000_000), ("val", 200_000)):
            rel = f"synthetic/{kind}_000000.bin"
            write_shard(run / "tokens" / rel, rng.integers(0, 50303, n).astype(np.uint16), 50304)
            manifest["sources"]["synthetic"][kind].append({"path": rel, "tokens": n, "documents": 0})
        (run / "tokens" / "manifest.json").write_text(json.dumps(manifest))
        config = Path(tmp) / "gpu_check.toml"
        config.write_text(f'name = "ddp"\nruns_dir = "{run.parent}"\n[model]\nn_layer = 12\nn_head = 12\n'
                          f'n_embd = 768\nseq_len = 1024\n[train]\nmax_steps = {min(args.steps, 50)}\n'
                          f'batch_size = {args.batch}\noptimizer = "muon"\nschedule = "wsd"\neval_every = 0\n'
                          f'eval_batches = 2\nlog_every = 10\ncompile = {str(args.compile).lower()}\n')
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "lmforge", "train", str(config)]
        print("$", " ".join(cmd), flush=True)
        return subprocess.run(cmd, env=dict(os.environ)).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--no-ddp", dest="ddp", action="store_false")
    args = ap.parse_args()
    args.options = {}
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU visible to this torch; nothing to check here")
        return 0
    print(f"torch {torch.__version__}, {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name()}")
    single_gpu(args)
    if args.ddp and torch.cuda.device_count() >= 2:
        return two_process_ddp(args)
    if args.ddp:
        print("one GPU: the 2-process DDP check needs two")
    return 0


if __name__ == "__main__":
    sys.exit(main())
