"""Greedy decoding speed: lmforge's KV-cache path against transformers' generate() on the same weights.

    python bench/bench_decode.py [CHECKPOINT] [--threads 2] [--new 64] [--repeats 3]

CHECKPOINT is a run directory or step folder (its model is exported with lmforge.model.gpt.to_hf, as
`lmforge export-hf` does); without one, a randomly initialised model of the demo's shape (4 layers,
256 wide, vocabulary 4096). Batch 1 runs ``lmforge.sample.engine.Engine.generate`` (temperature 0),
batch 8 ``Engine.generate_batch`` (8 prompts decoded together). Both check that the tokens equal
transformers' (do_sample=False, no stop token) on --checks sets of random prompts, and time each
side in interleaved rounds, printing the median tokens/s, their ratio (goal >= 1.5x) with the
range of the per-round ratios, and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new", type=int, default=64, help="new tokens per sequence")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checks", type=int, default=3, help="prompt sets whose tokens must equal transformers'")
    args = ap.parse_args()
    import torch

    from lmforge.model.config import ModelConfig
    from lmforge.model.gpt import GPT, to_hf
    from lmforge.sample.engine import Engine, load_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.checkpoint:
        model, _ = load_model(args.checkpoint, with_tokenizer=False)
    else:
        model = GPT(ModelConfig(n_layer=4, n_head=4, n_embd=256, seq_len=256, vocab_size=4096))
    model.eval()
    from lmforge.errors import LmforgeError

    try:
        hf = to_hf(model)
    except LmforgeError as e:
        raise SystemExit(f"cannot compare with transformers: {e}")
    hf.generation_config.pad_token_id = 0
    vocab = model.config.vocab_size
    print(f"load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}, {torch.get_num_threads()} threads, {model.num_params():,} parameters, "
          f"{args.new} new tokens after {args.prompt_len}, median of {args.repeats} interleaved rounds")
    engine = Engine(model)
    for batch in (1, 8):
        prompts = torch.randint(0, vocab, (batch, args.prompt_len))

        def ours():
            if batch == 1:
                return torch.tensor([list(engine.generate(prompts[0].tolist(), args.new, temperature=0))])
            return torch.tensor(engine.generate_batch(prompts.tolist(), args.new))

        def theirs():
            with torch.no_grad():
                return hf.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                                   max_new_tokens=args.new, min_new_tokens=args.new)[:, args.prompt_len:]

        same = torch.equal(ours(), theirs())  # also the warm-up of both
        for _ in range(args.checks - 1):
            saved, prompts = prompts, torch.randint(0, vocab, (batch, args.prompt_len))
            same = same and torch.equal(ours(), theirs())
            prompts = saved
        times = {"lmforge": [], "transformers": []}
        for _ in range(args.repeats):
            for name, fn in (("lmforge", ours), ("transformers", theirs)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        tok_s = {k: batch * args.new / statistics.median(v) for k, v in times.items()}
        rounds = [b / a for a, b in zip(times["lmforge"], times["transformers"])]
        print(f"batch {batch}: lmforge {tok_s['lmforge']:,.0f} tok/s, transformers generate() "
              f"{tok_s['transformers']:,.0f} tok/s, ratio {tok_s['lmforge'] / tok_s['transformers']:.2f}x "
              f"(rounds {min(rounds):.2f}-{max(rounds):.2f}x; goal >= 1.5x); identical tokens on "
              f"{args.checks} prompt sets: {same}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()
