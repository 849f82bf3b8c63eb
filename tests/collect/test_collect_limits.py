"""Limits that stop a crawl early (time, pages) and robots.txt answers that are not 200."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from collect_servers import html, start  # noqa: E402

from lmforge.collect.config import CollectConfig  # noqa: E402
from lmforge.collect.crawl import crawl  # noqa: E402
from lmforge.collect.readers import iter_records  # noqa: E402

FAST = dict(per_host_delay=0, concurrency=1, per_host_concurrency=1, read_timeout=2, connect_timeout=1, retries=0)


def _chain_site(n: int, delay: float = 0.0):
    def page(i):
        def serve(handler):
            time.sleep(delay)
            handler.reply(*html(f'<a href="/p{i + 1}.html">next</a>' if i + 1 < n else "end"))
        return serve
    return start({"/robots.txt": (404, {}, b""), **{f"/p{i}.html": page(i) for i in range(n)}})


def test_max_seconds_stops_and_a_rerun_finishes_the_queue(tmp_path):
    server = _chain_site(8, delay=0.1)
    first = crawl(CollectConfig(max_seconds=0.35, **FAST), tmp_path, [server.base + "/p0.html"], progress=False)
    assert first["stopped"] == "max_seconds" and 0 < first["fetched"] < 8 and first["pending"] == 1
    second = crawl(CollectConfig(**FAST), tmp_path, [server.base + "/p0.html"], progress=False)
    server.shutdown()
    assert second["resumed"] and first["fetched"] + second["fetched"] == 8
    pages = Counter(path for _, path in server.log if path != "/robots.txt")  # robots.txt: once per run
    assert len(pages) == 8 and max(pages.values()) == 1
    urls = [r.url for p in sorted(tmp_path.glob("*.warc.gz")) for r in iter_records(p)]
    assert len(urls) == len(set(urls)) == 8


def test_max_pages_and_max_depth(tmp_path):
    server = _chain_site(10)
    by_pages = crawl(CollectConfig(max_pages=3, **FAST), tmp_path / "a", [server.base + "/p0.html"], progress=False)
    by_depth = crawl(CollectConfig(max_depth=2, **FAST), tmp_path / "b", [server.base + "/p0.html"], progress=False)
    server.shutdown()
    assert by_pages["fetched"] == 3 and by_depth["fetched"] == 3  # p0 (depth 0), p1, p2


@pytest.mark.parametrize("status, fetched, blocked", [(404, 1, 0), (503, 0, 1)])
def test_robots_txt_missing_allows_and_unreachable_disallows(tmp_path, status, fetched, blocked):
    # RFC 9309 2.3.1: 4xx means no rules; 5xx means assume complete disallow.
    server = start({"/robots.txt": (status, {}, b""), "/": html("home")})
    stats = crawl(CollectConfig(**FAST), tmp_path, [server.base + "/"], progress=False)
    server.shutdown()
    assert (stats["fetched"], stats["robots_blocked"]) == (fetched, blocked)
