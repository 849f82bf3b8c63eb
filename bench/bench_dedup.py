"""Dedup: MinHash signatures per CPU-second against datasketch, and the four-stage dedup's peak
memory and wall time as the corpus grows.

1. Signatures: the same synthetic documents (plain words, so both sides cut the same 5-gram
   shingles), 112 hashes (14 bands x 8 rows) each. The peer is datasketch's MinHash fed the
   shingles as Python cuts them (split, join); ours is lmforge.clean.dedup.minhash.signatures
   in batches of 512. CPU seconds of the process (all threads), median of the repeats.
2. Scale: corpora of N synthetic documents (10% near copies, 2% exact copies) written as clean
   parts, then the sign, pair and cluster stages over ``--workers`` processes, each scale in a
   fresh process: wall time, and the peak RSS of the largest process (the driver, or a worker,
   from getrusage).

    python bench/bench_dedup.py [--sizes 10000,100000,1000000] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOCAB = 30_000
DOC_WORDS = (60, 240)
DOCS_PER_PART = 10_000
DOCS_PER_BUCKET = 100_000


def synthetic_texts(n: int, seed: int, words: tuple[int, int] = DOC_WORDS) -> list[str]:
    """``n`` documents of Zipf-distributed made-up words; 10% near copies (every 25th word
    changed) and 2% exact copies of earlier ones."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:x}" for i in range(VOCAB)])
    lengths = rng.integers(*words, size=n)
    ids = np.minimum(rng.zipf(1.2, size=int(lengths.sum())), VOCAB) - 1
    ends = np.cumsum(lengths)
    texts = [" ".join(vocab[ids[e - k:e]]) for e, k in zip(ends.tolist(), lengths.tolist())]
    for i in range(1, n):
        roll = rng.random()
        if roll < 0.02:
            texts[i] = texts[rng.integers(0, i)]
        elif roll < 0.12:
            ws = texts[rng.integers(0, i)].split()
            ws[::25] = vocab[rng.integers(0, VOCAB, size=len(ws[::25]))].tolist()
            texts[i] = " ".join(ws)
    return texts


def datasketch_signatures(texts: list[str], num_perm: int) -> None:
    from datasketch import MinHash

    base = MinHash(num_perm=num_perm, seed=1)
    for text in texts:
        ws = text.lower().split()
        m = base.copy()
        m.update_batch([" ".join(ws[i:i + 5]).encode() for i in range(len(ws) - 4)])
        m.hashvalues


def our_signatures(texts: list[str], num_perm: int) -> None:
    from lmforge.clean.dedup.minhash import signatures

    for i in range(0, len(texts), 512):
        signatures(texts[i:i + 512], num_perm)


def our_shingles(texts: list[str]) -> None:
    from lmforge.clean.dedup.minhash import shingle_hashes

    for i in range(0, len(texts), 512):
        shingle_hashes(texts[i:i + 512])


def cpu_seconds(fn, *args) -> float:
    t0 = time.process_time()
    fn(*args)
    return time.process_time() - t0


def bench_signatures(docs: int, repeats: int) -> None:
    texts = synthetic_texts(docs, seed=1, words=(200, 1200))
    mb = sum(map(len, texts)) / 1e6
    ours = statistics.median(cpu_seconds(our_signatures, texts, 112) for _ in range(repeats))
    shingling = statistics.median(cpu_seconds(our_shingles, texts) for _ in range(repeats))
    peer = statistics.median(cpu_seconds(datasketch_signatures, texts, 112) for _ in range(repeats))
    print(f"signatures: {docs} docs ({mb:.1f} MB), 112 hashes, median of {repeats}")
    print(f"  datasketch  {docs / peer:9.0f} docs per CPU-second")
    print(f"  lmforge     {docs / ours:9.0f} docs per CPU-second   ratio {peer / ours:.1f}x (goal >= 10x); "
          f"shingling {100 * shingling / ours:.0f}% of it")


def write_parts(folder: Path, n: int) -> list[int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    indexes = []
    for index, start in enumerate(range(0, n, DOCS_PER_PART)):
        texts = synthetic_texts(min(DOCS_PER_PART, n - start), seed=start)
        count = len(texts)
        pq.write_table(pa.table({"id": [f"d{start + i}" for i in range(count)], "url": [""] * count, "text": texts,
                                 "order_file": [0] * count, "order_record": list(range(start, start + count))}),
                       folder / f"{index:05d}.docs.parquet", compression="zstd")
        indexes.append(index)
    return indexes


def run_scale(n: int, workers: int) -> dict:
    """One scale, in this (fresh) process: the dedup stages' wall time and peak RSS."""
    from lmforge.clean.dedup.settings import MinHashConfig
    from lmforge.clean.dedup.stages import deduplicate, process_map

    with tempfile.TemporaryDirectory() as tmp:
        indexes = write_parts(Path(tmp) / "parts", n)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        start = time.time()
        counts = deduplicate(Path(tmp) / "parts", indexes, True, True, MinHashConfig(docs_per_bucket=DOCS_PER_BUCKET),
                             by_url=False, map_fn=process_map(workers))
        wall = time.perf_counter() - t0
        work = Path(tmp) / "parts" / "dedup"
        # when each stage's last file appeared: the stage's end, from the start of dedup
        ends = [max(p.stat().st_mtime for p in (work / stage).iterdir()) - start for stage in ("signs", "pairs")]
        ends.append((work / "removed").stat().st_mtime - start)
    return {"docs": n, "wall_s": wall, "stages_s": [ends[0], ends[1] - ends[0], ends[2] - ends[1]], "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "driver_rss_before_mb": before / 1024,
            "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "removed": counts["exact_dedup"]["dropped_exact_duplicate"] + counts["near_dedup"]["dropped_near_duplicate"]}


def bench_scale(sizes: list[int], workers: int) -> None:
    print(f"four-stage dedup, {workers} worker processes, parts of {DOCS_PER_PART} docs, "
          f"buckets of {DOCS_PER_BUCKET} docs; peak RSS of the largest process")
    print(f"  {'docs':>9} {'wall s':>8} {'us/doc':>7} {'sign/pair/cluster s':>20} {'driver MB':>10} "
          f"{'worker MB':>10} {'removed':>8}")
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--scale-one", str(n), "--workers", str(workers)],
                             capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"the {n}-document run failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        stages = "/".join(f"{x:.1f}" for x in r["stages_s"])
        print(f"  {n:>9} {r['wall_s']:>8.1f} {1e6 * r['wall_s'] / n:>7.0f} {stages:>20} {r['driver_rss_mb']:>10.0f} "
              f"{r['worker_rss_mb']:>10.0f} {r['removed']:>8}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--signature-docs", type=int, default=3000)
    p.add_argument("--scale-one", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.scale_one:
        print(json.dumps(run_scale(args.scale_one, args.workers)))
        return
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}, cpus={os.cpu_count()}")
    bench_signatures(args.signature_docs, args.repeats)
    bench_scale([int(s) for s in args.sizes.split(",")], args.workers)


if __name__ == "__main__":
    main()
