"""Tokenizer benchmark: training time, encoding speed, shard writing and compression, each as a
ratio against its peer measured in the same run (rustbpe, HF tokenizers, raw tiktoken).

Corpus: the text of the Python 3.11 HTML docs (/usr/share/doc/python3.11/html), cached as a
docs Parquet under bench/.cache/. Every 10th document is held out for compression.

    .venv/bin/python bench/bench_tokenizer.py [--repeats 3] [--max-mb 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
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

    from lmforge.clean.outputs import write_table

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
    write_table(table, out)  # as the clean stage writes docs/: zstd, row groups of about 2 MB of text
    return out


def interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, object]]:
    """Median seconds (and the last result) of each function, run in turns so that a change in
    the machine's load hits every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    results = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(times[name]), results[name]) for name in fns}


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
        r = interleaved({"lmforge": lambda: train_tokenizer(train, vocab),
                         "rustbpe": lambda: train_rustbpe(train, vocab, pattern),
                         "hf": lambda: train_hf(train, vocab, pattern.replace("{1,3}+", "{1,3}"))}, repeats)
        (t_ours, ours), (t_rust, rust), (t_hf, hf) = r["lmforge"], r["rustbpe"], r["hf"]
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
    r = interleaved({"lmforge": lambda: [tok.encode(t) for t in texts],
                     "tiktoken": lambda: [raw.encode_ordinary(t) for t in texts]}, repeats)
    (t_ours, ours), (t_raw, theirs) = r["lmforge"], r["tiktoken"]
    assert ours == theirs
    print(f"encode 1 thread: lmforge {mb / t_ours:6.2f} MB/s | tiktoken {mb / t_raw:6.2f} MB/s"
          f" | ratio {t_raw / t_ours:.2f}x (goal >= 0.9x)")


STAGE_RUN = """
import json, resource, sys, time
from pathlib import Path

# imported before the clock starts: the figure is the stage's work, not Python's start-up
import multiprocessing.connection, pyarrow.compute, pyarrow.ipc, pyarrow.parquet, tqdm
import lmforge.tokenizer.bpe
from lmforge.tokenizer.tokenize import tokenize_docs

def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


docs, tokenizer, out, workers = sys.argv[1:]
cpu0, t0 = cpu(), time.perf_counter()
stats = tokenize_docs([Path(docs)], Path(tokenizer), Path(out), 1337, 0.1, 10_000_000, workers=int(workers))
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "bytes": stats["bytes"], "cpu": cpu() - cpu0}))
"""


def bench_shards(docs: Path, tok, repeats, copies: int = 3):
    """The tokenize stage with 1 and 2 processes, on the corpus and on the corpus repeated
    ``copies`` times (same documents, new ids): the stage has a fixed cost (loading the
    tokenizer, about 20 ms) that weighs less on a bigger corpus. Each run is a fresh process,
    as `lmforge tokenize` is (this one holds the corpus and three trained tokenizers, which
    would make every fork and the pages it shares dearer); the time is taken inside it, around
    the stage. Also the ceiling the machine allows: the same encoding, balanced by measured
    cost, in 2 forked processes doing nothing else."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmforge.clean.outputs import write_table

    with tempfile.TemporaryDirectory() as tmp:
        tok.save(Path(tmp) / "tk", hf_export=False)
        table = pq.read_table(docs)
        big = Path(tmp) / f"docs_x{copies}.parquet"
        ids = table.column("id").to_pylist()
        write_table(pa.concat_tables(table.set_column(table.column_names.index("id"), "id",
                                                      pa.array([f"{i}#{c}" for i in ids]))
                                     for c in range(copies)), big)
        _encode_ceiling(tok, table.column("text").to_pylist(), repeats)
        for path, label in ((docs, "corpus"), (big, f"corpus x{copies}")):
            runs = {1: [], 2: []}
            for _ in range(repeats):
                for workers in runs:  # in turns, so that a change in the machine's load hits both
                    shutil.rmtree(Path(tmp) / "tokens", ignore_errors=True)
                    runs[workers].append(_stage_run(path, Path(tmp) / "tk", Path(tmp) / "tokens", workers))
            times = {w: statistics.median(r["seconds"] for r in rs) for w, rs in runs.items()}
            cores = sum(r["cpu"] for r in runs[2]) / sum(r["seconds"] for r in runs[2])
            mb = runs[1][0]["bytes"] / 1e6
            print(f"tokenize stage (read parquet, encode, write shards), {label} ({mb:.1f} MB): "
                  f"1 process {mb / times[1]:.2f} MB/s ({times[1] * 1000:.0f} ms) | "
                  f"2 processes {mb / times[2]:.2f} MB/s ({times[2] * 1000:.0f} ms) | "
                  f"speedup {times[1] / times[2]:.2f}x (goal >= 1.6x) | "
                  f"CPU cores used by the 2-process runs: {cores:.2f} (of {os.cpu_count()})")


def _stage_run(docs: Path, tokenizer: Path, out: Path, workers: int) -> dict:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", STAGE_RUN, str(docs), str(tokenizer), str(out), str(workers)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def _encode_ceiling(tok, texts, repeats):
    """Encoding alone, split into 2 halves of equal measured cost, in 2 forked processes."""
    enc = tok.encoding

    def work(part):
        for t in part:
            enc.encode_to_numpy(t, disallowed_special=())

    cost = []
    for t in texts:
        t0 = time.perf_counter()
        work([t])
        cost.append(time.perf_counter() - t0)
    halves, totals = ([], []), [0.0, 0.0]
    for i in sorted(range(len(texts)), key=lambda i: -cost[i]):
        k = totals.index(min(totals))
        halves[k].append(texts[i])
        totals[k] += cost[i]

    def forked():
        pids = []
        for half in halves:
            pid = os.fork()
            if pid == 0:
                work(half)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)

    r = interleaved({1: lambda: work(texts), 2: forked}, repeats)
    print(f"ceiling: encoding alone, 1 process {r[1][0] * 1000:.0f} ms | 2 forked processes {r[2][0] * 1000:.0f} ms | "
          f"{r[1][0] / r[2][0]:.2f}x (what this machine gives 2 processes, no reading or writing)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
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
          f"encoding single-threaded; medians of {args.repeats}, contenders run in turns")
    print("load average at start: %.1f %.1f %.1f (other work on the machine slows every figure)" % os.getloadavg())
    tok = bench_training(train, held, args.repeats)
    bench_encoding(tok, held, args.repeats)
    bench_shards(docs, tok, args.repeats)
    print("load average at end: %.1f %.1f %.1f" % os.getloadavg())


if __name__ == "__main__":
    main()
