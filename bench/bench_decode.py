"""Greedy decoding speed: lmforge's KV-cache path against transformers' generate() on the same weights.

    python bench/bench_decode.py [CHECKPOINT] [--threads 2] [--new 64] [--repeats 3]

CHECKPOINT is a run directory or step folder (its model is exported with lmforge.model.gpt.to_hf, as
`lmforge export-hf` does); without one, a randomly initialised model of the demo's shape (4 layers,
256 wide, vocabulary 4096). Batch 1 runs ``lmforge.sample.engine.Engine.generate`` (temperature 0);
batch 8 runs the same model and KV cache over 8 prompts at once (the engine generates one
sequence). Both check that the tokens equal transformers' (do_sample=False, no stop token), and
time each side in interleaved rounds (median), printing the tokens/s ratio (goal >= 1.5x).
"""

from __future__ import annotations

import argparse
import statistics
import time


def lmforge_batch_greedy(model, prompts, new: int):
    """Greedy continuation of equal-length prompts (B, T) through the model's KV cache."""
    import torch

    with torch.no_grad():
        cache = model.new_kv_cache(prompts.size(0), prompts.size(1) + new)
        logits = model(prompts, kv_cache=cache, start_pos=0)[0][:, -1]
        out, pos = [], prompts.size(1)
        for _ in range(new):
            token = logits.argmax(-1, keepdim=True)
            out.append(token)
            logits = model(token, kv_cache=cache, start_pos=pos)[0][:, -1]
            pos += 1
    return torch.cat(out, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new", type=int, default=64, help="new tokens per sequence")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {model.num_params():,} parameters, "
          f"{args.new} new tokens after {args.prompt_len}, median of {args.repeats} interleaved rounds")
    engine = Engine(model)
    for batch in (1, 8):
        prompts = torch.randint(0, vocab, (batch, args.prompt_len))

        def ours():
            if batch == 1:
                return torch.tensor([list(engine.generate(prompts[0].tolist(), args.new, temperature=0))])
            return lmforge_batch_greedy(model, prompts, args.new)

        def theirs():
            with torch.no_grad():
                return hf.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                                   max_new_tokens=args.new, min_new_tokens=args.new)[:, args.prompt_len:]

        same = torch.equal(ours(), theirs())  # also the warm-up of both
        times = {"lmforge": [], "transformers": []}
        for _ in range(args.repeats):
            for name, fn in (("lmforge", ours), ("transformers", theirs)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        ms = {k: statistics.median(v) for k, v in times.items()}
        tok_s = {k: batch * args.new / v for k, v in ms.items()}
        print(f"batch {batch}: lmforge {tok_s['lmforge']:,.0f} tok/s, transformers generate() "
              f"{tok_s['transformers']:,.0f} tok/s, ratio {tok_s['lmforge'] / tok_s['transformers']:.2f}x "
              f"(goal >= 1.5x); identical tokens: {same}", flush=True)


if __name__ == "__main__":
    main()
