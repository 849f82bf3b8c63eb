"""Training throughput on this machine's CPU for candidate demo shapes, against HF transformers.

    python bench/bench_train.py [--threads 2] [--steps 4] [--repeats 3] [--shapes A,B] [--learn-steps 0] [--keep DIR]
                                [--before REV]

Data: Debian's python3-doc reST sources (the demo's text), a 4096-token BPE trained on them,
about 1.5 M tokens. For each shape it times optimizer steps of our GPT (median ms/step over
repeats of ``--steps`` steps, after a warm-up step) and, for the default shape, the same step of
transformers' LlamaForCausalLM with the same weights: the peer, measured in the same run. Our
step is the trainer's (the fused head and loss); the default shape uses configs/demo.toml's
[model] options. ``--before REV`` also times the same shape with lmforge's code at git revision
REV (e.g. 064bdf8, before the Muon/WSD/fused-head work), in a subprocess between the rounds.
``--learn-steps N`` then trains the recommended shape for N steps with the demo settings
and prints its validation losses.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {  # name: (n_layer, n_head, n_embd, seq_len, batch)
    "L2-E128-T256-B16": (2, 4, 128, 256, 16),
    "L4-E192-T256-B16": (4, 6, 192, 256, 16),
    "L4-E256-T256-B16": (4, 4, 256, 256, 16),
    "L6-E256-T256-B16": (6, 4, 256, 256, 16),
    "L4-E256-T128-B32": (4, 4, 256, 128, 32),
    "L4-E128-T256-B16": (4, 4, 128, 256, 16),
    "L2-E128-T128-B32": (2, 4, 128, 128, 32),
}
DEFAULT_SHAPE = "L4-E256-T256-B16"
ALL_SHAPES = dict(SHAPES)
SOURCES = "/usr/share/doc/python3*/html/_sources/**/*.txt"


def prepare(root: Path, max_bytes: int = 6_000_000) -> tuple[int, dict]:
    """Tokenizer + token shards of the python docs under root/ (a run dir); returns (vocab, manifest)."""
    import numpy as np

    from lmforge.tokenizer.shards import write_shard
    from lmforge.tokenizer.train import train_tokenizer

    files = sorted(glob.glob(SOURCES, recursive=True))
    if not files:
        sys.exit("needs Debian's python3-doc (apt-get install python3-doc)")
    texts, size = [], 0
    for f in files:
        texts.append(Path(f).read_text(encoding="utf-8", errors="replace"))
        size += len(texts[-1])
        if size > max_bytes:
            break
    tok = train_tokenizer(texts, vocab_size=4096)
    tok.save(root / "tokenizer")
    manifest = {"version": 1, "vocab_size": tok.vocab_size, "bos_id": tok.bos_id, "dtype": "uint16",
                "sources": {"pydocs": {"train": [], "val": []}}}
    split = {"train": [], "val": []}
    for i, text in enumerate(texts):
        split["val" if i % 20 == 0 else "train"] += [tok.bos_id, *tok.encode(text)]
    for kind, ids in split.items():
        rel = f"pydocs/{kind}_000000.bin"
        write_shard(root / "tokens" / rel, np.array(ids, dtype=np.uint16), tok.vocab_size)
        manifest["sources"]["pydocs"][kind].append({"path": rel, "tokens": len(ids), "documents": 0})
    (root / "tokens" / "manifest.json").write_text(json.dumps(manifest))
    return tok.vocab_size, manifest


class StepTimer:
    """Times AdamW steps (forward, backward, update) of one model on fixed batches."""

    def __init__(self, model, batches, hf: bool = False):
        import torch

        self.model, self.batches, self.hf, self.i = model, batches, hf, 0
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
        self.times: list[float] = []
        self.step()  # warm-up

    def step(self) -> None:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        loss = self.model(input_ids=x, labels=x).loss if self.hf else self.model(x, y, return_logits=False)[1]
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def run(self, steps: int) -> None:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.times.append((time.perf_counter() - t0) / steps * 1000)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times)


def demo_model_options() -> dict:
    """configs/demo.toml's [model] options beyond the shape (untied head, zero-init, ...)."""
    import tomllib

    model = tomllib.loads((Path(__file__).parent.parent / "configs" / "demo.toml").read_text())["model"]
    return {k: v for k, v in model.items() if k not in ("n_layer", "n_head", "n_embd", "seq_len")}


REVISION_STEP = """
import json, sys, time
import numpy as np, torch
from lmforge.model.config import ModelConfig
from lmforge.model.gpt import GPT
p = json.loads(sys.argv[1])
torch.set_num_threads(p["threads"])
torch.manual_seed(0)
model = GPT(ModelConfig(**p["shape"]))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
data = np.load(p["batches"])
batches = [(torch.from_numpy(data["x"][i]), torch.from_numpy(data["y"][i])) for i in range(len(data["x"]))]
done = 0
def step():
    global done
    x, y = batches[done % len(batches)]
    done += 1
    model(x, y)[1].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
step()
print("ready", flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    for _ in range(int(line)):
        step()
    print((time.perf_counter() - t0) / int(line) * 1000, flush=True)
"""


class RevisionTimer:
    """Steps of lmforge's GPT as it was at a git revision (its default options, its forward and loss).

    One worker process imports that revision's package and keeps its model warm between rounds,
    as StepTimer does in this process.
    """

    def __init__(self, rev: str, batches, vocab: int, root: Path):
        import numpy as np
        import torch

        self.rev, self.times = rev, []
        folder = root / f"lmforge-{rev}"  # inside the bench's folder, removed with it
        folder.mkdir(parents=True, exist_ok=True)
        repo = Path(__file__).resolve().parent.parent
        try:
            archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "lmforge"], capture_output=True)
        except OSError as exc:  # no git, or not a clone
            sys.exit(f"--before {rev}: needs git and a clone of the repository ({exc})")
        if archive.returncode:
            sys.exit(f"--before {rev}: git archive failed: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        np.savez(folder / "batches.npz", x=np.stack([x.numpy() for x, _ in batches]),
                 y=np.stack([y.numpy() for _, y in batches]))
        layers, heads, embd, seq, _ = SHAPES[DEFAULT_SHAPE]
        params = {"threads": torch.get_num_threads(), "batches": str(folder / "batches.npz"),
                  "shape": dict(n_layer=layers, n_head=heads, n_embd=embd, seq_len=seq, vocab_size=vocab)}
        self.proc = subprocess.Popen([sys.executable, "-c", REVISION_STEP, json.dumps(params)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": str(folder)})
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit(f"--before {rev}: that revision's model did not start (its error is above)")

    def run(self, steps: int) -> None:
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        self.times.append(float(self.proc.stdout.readline()))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times)


def bench_shapes(root: Path, vocab: int, args) -> None:
    """Round-robin over the shapes (and the peer) in each repeat, so a busy machine slows all alike."""
    import numpy as np
    import torch

    from lmforge.model.config import ModelConfig
    from lmforge.model.gpt import GPT, to_hf
    from lmforge.tokenizer.shards import read_shard

    tokens = np.asarray(read_shard(root / "tokens/pydocs/train_000000.bin"), dtype=np.int64)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, train tokens {len(tokens):,}, "
          f"vocab {vocab}, median of {args.repeats} x {args.steps} steps, shapes interleaved")
    timers = {}
    for name, (layers, heads, embd, seq, batch) in SHAPES.items():
        options = demo_model_options() if name == DEFAULT_SHAPE else {}
        cfg = ModelConfig(n_layer=layers, n_head=heads, n_embd=embd, seq_len=seq, vocab_size=vocab, **options)
        torch.manual_seed(0)
        model = GPT(cfg)
        starts = np.random.default_rng(0).integers(0, len(tokens) - seq - 1, size=(4, batch))
        batches = [(torch.from_numpy(np.stack([tokens[s:s + seq] for s in row])),
                    torch.from_numpy(np.stack([tokens[s + 1:s + seq + 1] for s in row]))) for row in starts]
        timers[name] = StepTimer(model, batches)
        if name == DEFAULT_SHAPE:
            timers["peer"] = StepTimer(to_hf(model).train(), batches, hf=True)
    before = None
    if args.before and DEFAULT_SHAPE in timers:
        before = RevisionTimer(args.before, timers[DEFAULT_SHAPE].batches, vocab, root)
    for _ in range(args.repeats):
        for timer in timers.values():
            timer.run(args.steps)
        if before:
            before.run(args.steps)
    if before:
        before.close()
    print(f"{'shape':<20} {'params':>9} {'ms/step':>8} {'tok/s':>8} {'GFLOP/s':>8}  peer")
    for name, timer in timers.items():
        if name == "peer":
            continue
        layers, heads, embd, seq, batch = SHAPES[name]
        ms, model = timer.median_ms, timer.model
        tok_s = batch * seq / ms * 1000
        peer = ""
        if name == DEFAULT_SHAPE:
            hf_ms = timers["peer"].median_ms
            peer = f"HF LlamaForCausalLM (same weights) {hf_ms:.0f} ms/step; ours/HF time ratio {ms / hf_ms:.2f}"
            if before and before.times:
                peer += (f"; lmforge at {args.before} {before.median_ms:.0f} ms/step, tokens/s now/then "
                         f"{before.median_ms / ms:.2f}x")
        print(f"{name:<20} {model.num_params() / 1e6:>8.2f}M {ms:>8.0f} {tok_s:>8.0f} "
              f"{model.flops_per_token() * tok_s / 1e9:>8.1f}  {peer}", flush=True)


def learn(root: Path, shape: str, steps: int, threads: int) -> None:
    """Train the recommended demo settings for ``steps`` steps and print the validation losses."""
    from lmforge.config import config_from_dict
    from lmforge.rundir import RunDir
    from lmforge.train.loop import train

    layers, heads, embd, seq, batch = ALL_SHAPES[shape]
    cfg = config_from_dict({"name": root.name, "runs_dir": str(root.parent), "seed": 1337,
                            "model": {"n_layer": layers, "n_head": heads, "n_embd": embd, "seq_len": seq},
                            "train": {"max_steps": steps, "batch_size": batch, "lr": 3e-3, "warmup_steps": 30,
                                      "eval_every": max(1, steps // 5), "eval_batches": 8, "threads": threads,
                                      "log_every": 25, "device": "cpu"}})
    root.mkdir(parents=True, exist_ok=True)
    for shared in ("tokens", "tokenizer"):  # the data prepared above, beside this run
        if not (root / shared).exists():
            (root / shared).symlink_to(root.parent / shared)
    stats = train(cfg, RunDir(root))
    print(f"learned: {stats['steps']} steps in {stats['train_seconds']:.0f}s, final val loss "
          f"{stats.get('val_loss', float('nan')):.3f} (ln vocab = {math.log(4096):.2f}), bpb {stats.get('val_bpb')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--learn-steps", type=int, default=0, help="then train the demo settings this many steps")
    ap.add_argument("--learn-shape", default="L2-E128-T256-B16", choices=list(SHAPES))
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated names")
    ap.add_argument("--keep", metavar="DIR", help="build the data in DIR (kept) instead of a temp folder")
    ap.add_argument("--before", metavar="REV", help="also time the default shape with lmforge at git revision REV")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for name in list(SHAPES):
        if name not in args.shapes.split(","):
            del SHAPES[name]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp) / "bench"
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        vocab, _ = prepare(root)
        print(f"data ready in {time.time() - t0:.0f}s")
        bench_shapes(root, vocab, args)
        if args.learn_steps:
            learn(root / "learn", args.learn_shape, args.learn_steps, args.threads)


if __name__ == "__main__":
    main()
