"""WARC read throughput: lmforge's reader (iter_records) vs plain fastwarc iteration, same file.

The file is a crawl of the demo site (gzip per record, as Common Crawl writes it), repeated to
make it larger. The peer iterates with fastwarc, parses HTTP headers and reads each payload;
ours does the same and also builds RawRecords, undoes chunking/content-encoding, counts
skipped records and checks for a cut gzip tail. Prints medians over repeats in MB/s of file
read, and the ratio.

    python bench/bench_warc_read.py [--repeats 5] [--copies 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def build_file(folder: Path, copies: int) -> Path:
    from lmforge.collect.config import CollectConfig
    from lmforge.collect.crawl import crawl
    from lmforge.collect.demo_site import serve_demo

    cfg = CollectConfig(max_pages=530, per_host_delay=0, concurrency=4, per_host_concurrency=4)
    with serve_demo() as base:
        stats = crawl(cfg, folder / "crawl", [base + "/"], progress=False)
    data = b"".join((folder / "crawl" / name).read_bytes() for name in stats["warc_files"])
    path = folder / "bench.warc.gz"
    path.write_bytes(data * copies)
    return path


def read_ours(path: Path) -> int:
    from lmforge.collect.readers import iter_records

    return sum(len(r.body or b"") + len(r.text or "") for r in iter_records(path))


def read_fastwarc(path: Path) -> int:
    from fastwarc.warc import ArchiveIterator

    with open(path, "rb") as f:
        return sum(len(rec.reader.read()) for rec in ArchiveIterator(f, parse_http=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copies", type=int, default=4)
    args = ap.parse_args()
    print(f"threads: 1 (single-threaded readers); machine cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = build_file(Path(tmp), args.copies)
        mb = path.stat().st_size / 1e6
        times = {"lmforge iter_records": [], "fastwarc ArchiveIterator": []}
        for _ in range(args.repeats):
            for name, fn in (("lmforge iter_records", read_ours), ("fastwarc ArchiveIterator", read_fastwarc)):
                t0 = time.perf_counter()
                fn(path)
                times[name].append(time.perf_counter() - t0)
    print(f"file: {mb:.1f} MB gzip per record; repeats: {args.repeats}")
    rates = {name: mb / statistics.median(ts) for name, ts in times.items()}
    for name, rate in rates.items():
        print(f"{name:26s} {rate:8.1f} MB/s (median)")
    ratio = rates["lmforge iter_records"] / rates["fastwarc ArchiveIterator"]
    print(f"ratio lmforge / fastwarc: {ratio:.2f}x (goal >= 0.8x)")


if __name__ == "__main__":
    main()
