"""Tokenizer benchmark: training time, encoding speed, shard writing and compression, each as a
ratio against its peer measured in the same run (rustbpe, HF tokenizers, raw tiktoken).

Corpus: the text of the Python 3.11 HTML docs (/usr/share/doc/python3.11/html), cached as a
docs Parquet under bench/.cache/. Every 10th document is held out for compression.

    .venv/bin/python bench/bench_tokenizer.py [--repeats 3] [--max-mb 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"
HTML = Path("/usr/share/doc/python3.11/html")


def build_corpus(max_mb: float) -> Path:
    """Extract the text of every docs page (lxml text_content) once; cache it as docs Parquet."""
    import lxml.html
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = CACHE / f"python_docs_{max_mb:g}mb.parquet"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    rows, total = [], 0
    for path in sorted(HTML.rglob("*.html")):
        body = lxml.html.parse(str(path)).getroot().find_class("body")
        text = "\n".join(" ".join(line.split()) for line in (body[0] if body else lxml.html.parse(str(path)).getroot())
                         .text_content().splitlines() if line.strip())
        if len(text) > 200:
            rows.append((str(path.relative_to(HTML)), text))
            total += len(text.encode())
        if total > max_mb * 1e6:
            break
    if not rows:
        raise SystemExit(f"no text found under {HTML}; install python3-doc")
    ids, texts = zip(*rows)
    table = pa.table({"id": list(ids), "url": list(ids), "source": ["pydocs"] * len(ids), "text": list(texts),
                      "language": ["en"] * len(ids), "language_score": [1.0] * len(ids)})
    pq.write_table(table, out)
    return out


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def train_rustbpe(texts, vocab, pattern):
    import rustbpe

    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(texts), vocab - 1, pattern=pattern)
    return tok


def train_hf(texts, vocab, pattern):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab, show_progress=False, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def bench_training(train, held, repeats):
    from lmforge.tokenizer.bpe import PATTERNS
    from lmforge.tokenizer.train import train_tokenizer

    pattern = PATTERNS["gpt4"]
    held_bytes = sum(len(t.encode()) for t in held)
    results = {}
    for vocab in (4096, 16384):
        t_ours, ours = median_time(lambda: train_tokenizer(train, vocab), repeats)
        t_rust, rust = median_time(lambda: train_rustbpe(train, vocab, pattern), repeats)
        t_hf, hf = median_time(lambda: train_hf(train, vocab, pattern.replace("{1,3}+", "{1,3}")), repeats)
        print(f"train vocab {vocab:>5}: lmforge {t_ours:6.2f}s | rustbpe {t_rust:6.2f}s | HF tokenizers {t_hf:6.2f}s"
              f" | lmforge/rustbpe {t_ours / t_rust:.2f}x (goal <= 1.5x), lmforge/HF {t_ours / t_hf:.2f}x")
        results[vocab] = (ours, rust, hf)
    ours, rust, hf = results[16384]
    bpt = {name: held_bytes / sum(len(x) for x in ids) for name, ids in (
        ("lmforge", [ours.encode(t) for t in held]),
        ("rustbpe", [rust.encode(t) for t in held]),
        ("HF tokenizers", [e.ids for e in hf.encode_batch(held)]))}
    print("held-out bytes/token, vocab 16384: " + " | ".join(f"{k} {v:.4f}" for k, v in bpt.items())
          + f" | lmforge/HF {bpt['lmforge'] / bpt['HF tokenizers']:.4f}x, lmforge/rustbpe {bpt['lmforge'] / bpt['rustbpe']:.4f}x")
    return ours


def bench_encoding(tok, texts, repeats):
    import tiktoken

    raw = tiktoken.Encoding("raw", pat_str=tok.pattern, mergeable_ranks=tok.mergeable_ranks,
                            special_tokens=tok.special_tokens)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    t_ours, ours = median_time(lambda: [tok.encode(t) for t in texts], repeats)
    t_raw, theirs = median_time(lambda: [raw.encode_ordinary(t) for t in texts], repeats)
    assert ours == theirs
    print(f"encode 1 thread: lmforge {mb / t_ours:6.2f} MB/s | tiktoken {mb / t_raw:6.2f} MB/s"
          f" | ratio {t_raw / t_ours:.2f}x (goal >= 0.9x)")


def bench_shards(docs: Path, tok, repeats):
    from lmforge.tokenizer.tokenize import tokenize_docs

    with tempfile.TemporaryDirectory() as tmp:
        tok.save(Path(tmp) / "tk", hf_export=False)
        times = {}
        for workers in (1, 2):
            def run(w=workers):
                out = Path(tmp) / f"tokens{w}"
                return tokenize_docs([docs], Path(tmp) / "tk", out, 1337, 0.1, 10_000_000, workers=w)
            times[workers], stats = median_time(run, repeats)
        mb = stats["bytes"] / 1e6
    print(f"tokenize stage (read parquet, encode, write shards): 1 process {mb / times[1]:.2f} MB/s | "
          f"2 processes {mb / times[2]:.2f} MB/s | speedup {times[1] / times[2]:.2f}x (goal >= 1.6x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-mb", type=float, default=8)
    args = ap.parse_args()
    import pyarrow.parquet as pq

    docs = build_corpus(args.max_mb)
    texts = pq.read_table(docs, columns=["text"])["text"].to_pylist()
    train = [t for i, t in enumerate(texts) if i % 10]
    held = texts[::10]
    print(f"corpus: {len(texts)} docs, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB "
          f"(train {len(train)}, held out {len(held)}); cpus {os.cpu_count()}, "
          f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset (all cores)')}, "
          f"encoding single-threaded; medians of {args.repeats}")
    tok = bench_training(train, held, args.repeats)
    bench_encoding(tok, held, args.repeats)
    bench_shards(docs, tok, args.repeats)


if __name__ == "__main__":
    main()
