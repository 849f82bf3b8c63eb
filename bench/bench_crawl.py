"""Crawl throughput on loopback against the demo site, beside a plain `requests` loop with 8 threads.

Our crawler runs with robots.txt and politeness on (per-host delay 0 for loopback), writes
gzip WARC files and extracts links; the peer only GETs the same URL list with `requests.get`
(a fresh connection per page, as a plain loop does) and, for reference, with one
`requests.Session` per thread. All three hit the same server process; one untimed round warms
up imports and caches, then the three take turns in each repeat. Prints medians over repeats,
the ratio vs the plain loop, and the CPU time per page of client and server (the machine's
cores, shared with the server, are what bounds every variant).

    python bench/bench_crawl.py [--repeats 5] [--pages 530]    # HELPERS=n: crawl helper processes
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


def run_crawler(base: str, pages: int, server_pid: int) -> tuple[tuple[float, float, float], list[str]]:
    """One crawl of ``pages`` pages from ``base``: its measures and the URLs it recorded."""
    from lmforge.collect.config import CollectConfig
    from lmforge.collect.crawl import crawl
    from lmforge.collect.readers import iter_records

    cfg = CollectConfig(max_pages=pages, per_host_delay=0, concurrency=THREADS, per_host_concurrency=THREADS,
                        helper_processes=helper_processes())
    with tempfile.TemporaryDirectory() as out:
        stats = {}
        measures = measure(lambda: stats.update(crawl(cfg, out, [base + "/"], progress=False)) or stats["fetched"],
                           server_pid)
        urls = [r.url for name in stats["warc_files"] for r in iter_records(os.path.join(out, name))]
    return measures, urls


def helper_processes() -> int:
    """The crawl's helper processes: ``HELPERS`` from the environment, else the config default."""
    from lmforge.collect.config import default_helper_processes

    return int(os.environ.get("HELPERS", default_helper_processes()))


def run_plain(urls: list[str], session_per_thread: bool, server_pid: int) -> tuple[float, float, float]:
    import requests

    local = threading.local()

    def get(url):
        if session_per_thread:
            local.s = getattr(local, "s", None) or requests.Session()
            return len(local.s.get(url, timeout=30).content)
        return len(requests.get(url, timeout=30).content)

    def fetch_all():
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(get, urls))
        return len(urls)

    return measure(fetch_all, server_pid)


def measure(run, server_pid: int) -> tuple[float, float, float]:
    """(pages/s, client CPU ms/page, server CPU ms/page) of ``run()``, which returns its page count."""
    wall, cpu, server = time.perf_counter(), _client_cpu(), _process_cpu(server_pid)
    pages = run()
    wall, cpu, server = time.perf_counter() - wall, _client_cpu() - cpu, _process_cpu(server_pid) - server
    return pages / wall, cpu / pages * 1e3, server / pages * 1e3


def _client_cpu() -> float:
    """CPU seconds of this process and of its children that have ended (the crawl's helpers)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _process_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextlib.contextmanager
def demo_server_process():
    """The demo site in its own process (`lmforge demo-site`), so client and server do not share a GIL."""
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "demo-site"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        yield line.split(" at ", 1)[1].split("/ ", 1)[0], proc.pid
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pages", type=int, default=530)
    args = ap.parse_args()
    print(f"threads: {THREADS} client threads; crawl helper processes: {helper_processes()} (HELPERS=n to change); "
          f"machine cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}; "
          "server: demo site (ThreadingHTTPServer) in its own process")
    names = ("lmforge crawl (robots, politeness, WARC, links)", f"requests.get loop, {THREADS} threads",
             f"requests.Session per thread, {THREADS} threads")
    results = {name: [] for name in names}
    with demo_server_process() as (base, pid):
        for repeat in range(args.repeats + 1):  # round 0 warms up and is not counted
            crawled, urls = run_crawler(base, args.pages, pid)
            rounds = (crawled, run_plain(urls, False, pid), run_plain(urls, True, pid))
            for name, measures in zip(names, rounds):
                if repeat:
                    results[name].append(measures)
    print(f"pages per run: {len(urls)}; repeats: {args.repeats} after one warm-up round; medians:")
    medians = {name: [statistics.median(m[i] for m in runs) for i in range(3)] for name, runs in results.items()}
    for name, (rate, cpu, server) in medians.items():
        print(f"{name + ':':50s} {rate:7.1f} pages/s  (CPU per page: client {cpu:.2f} ms, server {server:.2f} ms)")
    ours, plain, session = (medians[name][0] for name in names)
    print(f"ratio vs requests.get loop: {ours / plain:.2f}x (goal >= 1.2x); vs Session loop: {ours / session:.2f}x; "
          f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
