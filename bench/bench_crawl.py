"""Crawl throughput on loopback against the demo site, beside a plain `requests` loop with 8 threads.

Our crawler runs with robots.txt and politeness on (per-host delay 0 for loopback), writes
gzip WARC files and extracts links; the peer only GETs the same URL list with `requests.get`
(a fresh connection per page, as a plain loop does) and, for reference, with one
`requests.Session` per thread. Prints medians over repeats and the ratio vs the plain loop.

    python bench/bench_crawl.py [--repeats 3] [--pages 530]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

THREADS = 8


def run_crawler(base: str, pages: int) -> tuple[float, list[str]]:
    from lmforge.collect.config import CollectConfig
    from lmforge.collect.crawl import crawl
    from lmforge.collect.readers import iter_records

    cfg = CollectConfig(max_pages=pages, per_host_delay=0, concurrency=THREADS, per_host_concurrency=THREADS)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        stats = crawl(cfg, out, [base + "/"], progress=False)
        seconds = time.perf_counter() - t0
        urls = [r.url for name in stats["warc_files"] for r in iter_records(os.path.join(out, name))]
    return stats["fetched"] / seconds, urls


def run_plain(urls: list[str], session_per_thread: bool) -> float:
    import requests

    local = threading.local()

    def get(url):
        if session_per_thread:
            local.s = getattr(local, "s", None) or requests.Session()
            return len(local.s.get(url, timeout=30).content)
        return len(requests.get(url, timeout=30).content)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(get, urls))
    return len(urls) / (time.perf_counter() - t0)


@contextlib.contextmanager
def demo_server_process():
    """The demo site in its own process (`lmforge demo-site`), so client and server do not share a GIL."""
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "demo-site"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        yield line.split(" at ", 1)[1].split("/ ", 1)[0]
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pages", type=int, default=530)
    args = ap.parse_args()
    print(f"threads: {THREADS} client threads; machine cores: {os.cpu_count()}; "
          "server: demo site (ThreadingHTTPServer) in its own process")
    ours, plain, session = [], [], []
    with demo_server_process() as base:
        for _ in range(args.repeats):
            rate, urls = run_crawler(base, args.pages)
            ours.append(rate)
            plain.append(run_plain(urls, session_per_thread=False))
            session.append(run_plain(urls, session_per_thread=True))
    m_ours, m_plain, m_session = (statistics.median(x) for x in (ours, plain, session))
    print(f"pages per run: {len(urls)}; repeats: {args.repeats}")
    print(f"lmforge crawl (robots, politeness, WARC, links): {m_ours:8.1f} pages/s (median)")
    print(f"requests.get loop, {THREADS} threads:               {m_plain:8.1f} pages/s (median)")
    print(f"requests.Session per thread, {THREADS} threads:     {m_session:8.1f} pages/s (median)")
    print(f"ratio vs requests.get loop: {m_ours / m_plain:.2f}x (goal >= 1.2x); "
          f"vs Session loop: {m_ours / m_session:.2f}x")


if __name__ == "__main__":
    main()
