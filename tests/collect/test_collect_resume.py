"""kill -9 in the middle of a crawl, rerun: nothing fetched twice, every WARC file whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from collect_servers import start  # noqa: E402

from lmforge.collect.readers import iter_records  # noqa: E402

PAGES = 60
CONCURRENCY = 2


def _page(i: int):
    links = "".join(f'<a href="/p{j}.html">p{j}</a>' for j in range(i + 1, min(i + 4, PAGES)))

    def page(handler):
        time.sleep(0.03)  # slow enough that the kill lands mid-crawl
        body = f"<html><body><p>page {i}</p>{links}</body></html>".encode()
        handler.reply(200, {"Content-Type": "text/html; charset=utf-8"}, body)
    return page


def _crawl_cmd(base: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "lmforge", "crawl", f"{base}/p0.html", "--out", str(out), "--delay", "0",
            "--concurrency", str(CONCURRENCY), "--max-pages", "1000", "--max-depth", "100", "--quiet",
            # small files so that the kill also lands between rotations
            "--set", "collect.warc_max_bytes=4000", "--set", f"collect.per_host_concurrency={CONCURRENCY}"]


def test_kill_9_then_resume_fetches_nothing_twice(tmp_path):
    server = start({"/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nAllow: /\n"),
                    **{f"/p{i}.html": _page(i) for i in range(PAGES)}})
    out = tmp_path / "crawl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(_crawl_cmd(server.base, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(server.done) < PAGES // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first_run = Counter(server.done)
    assert 0 < len(first_run) < PAGES, "the kill did not land mid-crawl"
    recorded_before = {r.url for p in out.glob("*.warc.gz") for r in iter_records(p)}

    rerun = subprocess.run(_crawl_cmd(server.base, out), env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    stats = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert stats["resumed"] and stats["previously_fetched"] > 0
    assert stats["previously_fetched"] + stats["fetched"] == PAGES
    server.shutdown()

    files = sorted(out.glob("*.warc.gz"))
    assert not [p for p in out.glob(".*") if p.name != ".lock"], "a temporary WARC file was left behind"
    urls = Counter(r.url.removeprefix(server.base) for p in files for r in iter_records(p))
    assert set(urls) == {f"/p{i}.html" for i in range(PAGES)}
    assert max(urls.values()) == 1, "a page is recorded twice"
    served = Counter(path for path in server.done if path != "/robots.txt")
    twice = {path for path, n in served.items() if n > 1}
    # Only the pages in flight when the process died may be asked for again, never a recorded one.
    assert len(twice) <= CONCURRENCY
    assert not {server.base + p for p in twice} & recorded_before
    _assert_readable(files)


def _assert_readable(files: list[Path]) -> None:
    from fastwarc.warc import ArchiveIterator as FastIterator
    from warcio.archiveiterator import ArchiveIterator

    for path in files:
        with open(path, "rb") as f:
            assert sum(1 for _ in ArchiveIterator(f, check_digests="raise")) >= 3
        with open(path, "rb") as f:
            assert all(rec.verify_block_digest() for rec in FastIterator(f, parse_http=False))
