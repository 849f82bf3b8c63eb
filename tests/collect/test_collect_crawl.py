"""The crawler against a local server that misbehaves in every way the web does."""

from __future__ import annotations

import gzip
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lmforge.collect.charset import decode_html
from lmforge.collect.config import CollectConfig
from lmforge.collect.crawl import crawl
from lmforge.collect.readers import iter_records

sys.path.insert(0, str(Path(__file__).parent))
from collect_servers import html, start  # noqa: E402

JAPANESE = "日本語のページです。東京都"


def _counter_page(replies):
    """A page answering with the given (status, headers, body) replies in turn, then the last one."""
    calls = []

    def page(handler):
        calls.append(1)
        handler.reply(*replies[min(len(calls), len(replies)) - 1])
    return page


def _chunked(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for part in (b"<html><body>chunked ", b'<a href="/from-chunked.html">next</a>', b"</body></html>"):
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
    handler.wfile.write(b"0\r\n\r\n")


def _slow(handler):
    time.sleep(1.0)
    handler.reply(*html("slow"))


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    links = ["/a.html", "/a.html#part", "/private/x.html", "/limited", "/flaky", "/slow", "/loop1", "/big",
             "/file.bin", "/eucjp.html", "http://other.invalid/", "/redir", "mailto:x@y.z",
             "/gz.html", "/chunked.html"]
    index = "".join(f'<a href="{u}">x</a>' for u in links)
    pages = {
        "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\nCrawl-delay: 0.2\n"),
        "/": html(index),
        "/a.html": html('<a href="b.html">b</a>'),
        "/b.html": html("leaf"),
        "/private/x.html": html("secret"),
        "/limited": _counter_page([(429, {"Retry-After": "1"}, b""), html("ok after 429")]),
        "/flaky": _counter_page([(503, {}, b""), html("ok after 503")]),
        "/slow": _slow,
        "/loop1": (302, {"Location": "/loop2"}, b""),
        "/loop2": (301, {"Location": "/loop1"}, b""),
        "/redir": (301, {"Location": "/b.html"}, b""),
        "/big": html("x" * 200_000),
        "/file.bin": (200, {"Content-Type": "application/octet-stream"}, bytes(range(256)) * 10),
        "/gz.html": (200, {"Content-Type": "text/html", "Content-Encoding": "gzip"},
                     gzip.compress(b'<html><a href="/from-gz.html">next</a></html>')),
        "/chunked.html": _chunked,
        "/from-gz.html": html("reached through a gzip page"),
        "/from-chunked.html": html("reached through a chunked page"),
        "/eucjp.html": (200, {"Content-Type": "text/html"},
                        f'<html><head><meta charset="EUC-JP"></head><body>{JAPANESE}</body></html>'.encode("euc-jp")),
    }
    server = start(pages)
    out = tmp_path_factory.mktemp("crawl")
    cfg = CollectConfig(per_host_delay=0, read_timeout=0.4, connect_timeout=1, retries=1, backoff_base=0.05,
                        max_page_bytes=50_000, concurrency=4, per_host_concurrency=2, user_agent="lmforge-test/1")
    t0 = time.monotonic()
    stats = crawl(cfg, out, [server.base + "/"], progress=False)
    yield server, out, stats, time.monotonic() - t0
    server.shutdown()


def _paths(server):
    return Counter(path for _, path in server.log)


def test_robots_disallow_and_crawl_delay(crawled):
    server, _, stats, _ = crawled
    assert stats["robots_blocked"] == 1
    assert "/private/x.html" not in _paths(server)
    starts = [t for t, path in server.log if path != "/robots.txt"]
    # The server stamps a request when its thread gets to it, so one stamp can be late on a loaded
    # machine and shorten one gap; the span over all requests is immune to that jitter.
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert starts[-1] - starts[0] >= 0.18 * len(gaps), "robots.txt Crawl-delay 0.2 s was not honoured"
    assert min(gaps) >= 0.1, f"two requests {min(gaps):.3f} s apart despite Crawl-delay 0.2 s"


def test_retry_after_429_and_503_then_success(crawled):
    server, _, stats, _ = crawled
    times = [t for t, path in server.log if path == "/limited"]
    assert len(times) == 2 and times[1] - times[0] >= 0.95, "Retry-After: 1 was not honoured"
    assert _paths(server)["/flaky"] == 2
    assert stats["retries"] >= 3  # 429, 503 and the timed-out page


def test_timeout_loop_size_and_type_limits(crawled):
    server, _, stats, _ = crawled
    assert stats["errors"]["timeout"] == 1 and _paths(server)["/slow"] == 2
    assert stats["errors"]["redirect_loop"] == 1
    assert stats["too_large"] == 1 and stats["non_html"] == 1
    assert stats["out_of_scope"] >= 1
    assert stats["redirects"] == 3  # loop1 -> loop2 -> loop1 and redir -> b.html, each hop recorded


def test_each_page_fetched_once_and_recorded(crawled):
    server, out, stats, _ = crawled
    counts = _paths(server)
    assert counts["/a.html"] == 1 and counts["/b.html"] == 1  # fragment dropped, redirect target not refetched
    urls = Counter(r.url.removeprefix(server.base) for p in sorted(out.glob("*.warc.gz")) for r in iter_records(p))
    assert max(urls.values()) == 1
    assert {"/", "/a.html", "/b.html", "/limited", "/flaky", "/eucjp.html", "/redir", "/loop1", "/loop2"} <= set(urls)
    # /, a, b, limited, flaky, eucjp, gz, chunked and the two pages only they link to
    assert stats["fetched"] == 10 and stats["by_status"]["200"] == 10


def test_gzip_and_chunked_answers_are_stored_raw_and_read_decoded(crawled):
    server, out, _, _ = crawled
    records = {r.url.removeprefix(server.base): r for p in out.glob("*.warc.gz") for r in iter_records(p)}
    assert records["/gz.html"].body == b'<html><a href="/from-gz.html">next</a></html>'
    assert records["/chunked.html"].body.startswith(b"<html><body>chunked <a")
    raw = _raw_payload(out, server.base + "/gz.html")
    assert raw.startswith(b"\x1f\x8b")  # the WARC keeps the bytes as sent, content-encoding and all


def _raw_payload(out, url):
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for path in out.glob("*.warc.gz"):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True, auto_decode="none"):
                if rec.headers.get("WARC-Target-URI") == url:
                    return rec.reader.read()
    raise AssertionError(f"{url} not recorded")


def test_euc_jp_page_keeps_raw_bytes_and_records_charset(crawled):
    from warcio.archiveiterator import ArchiveIterator

    server, out, _, _ = crawled
    for path in out.glob("*.warc.gz"):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "response" and rec.rec_headers.get_header("WARC-Target-URI").endswith("/eucjp.html"):
                    body = rec.content_stream().read()
                    assert rec.rec_headers.get_header("WARC-Identified-Content-Charset") == "euc_jp"
                    assert JAPANESE.encode("euc-jp") in body
                    assert JAPANESE in decode_html(body, None)
                    return
    pytest.fail("the EUC-JP page is not in the WARC files")


def test_warc_files_read_back_with_warcio_and_fastwarc(crawled):
    from fastwarc.warc import ArchiveIterator as FastIterator
    from warcio.archiveiterator import ArchiveIterator

    _, out, _, _ = crawled
    files = sorted(out.glob("*.warc.gz"))
    assert files and not list(out.glob(".*.open"))
    for path in files:
        with open(path, "rb") as f:
            kinds = Counter(rec.rec_type for rec in ArchiveIterator(f, check_digests="raise"))
        assert kinds["warcinfo"] == 1 and kinds["response"] == kinds["request"] > 0
        with open(path, "rb") as f:
            for rec in FastIterator(f, parse_http=False):
                assert rec.verify_block_digest(), rec.headers.get("WARC-Target-URI")
