"""The crawler's fast paths against their references: regex link scan vs lxml, ISA-L gzip vs zlib,
precomputed digests vs warcio's, helper processes vs none, and the urllib3 client's proxy rules."""

from __future__ import annotations

import glob
import hashlib
import os
import signal
import threading
import time
import zlib
from io import BytesIO

import pytest

from collect_servers import html, start
from lmforge.collect.config import CollectConfig
from lmforge.collect.crawl import crawl
from lmforge.collect.exchange import pack_page
from lmforge.collect.helpers import Helpers, TooLarge
from lmforge.collect.fetcher import Client, finish
from lmforge.collect.readers import iter_records
from lmforge.collect.urls import _base_href, _hrefs, _parse_html, normalize_url, page_links, scan_hrefs
from lmforge.collect.warcout import gzip_member, pack_exchange

PYTHON_DOCS = sorted(glob.glob("/usr/share/doc/python3*/html/**/*.html", recursive=True))


@pytest.mark.skipif(not PYTHON_DOCS, reason="needs Debian's python3-doc HTML")
def test_scan_hrefs_finds_what_lxml_finds_on_the_python_docs():
    step = max(1, len(PYTHON_DOCS) // 150)  # 150 pages spread over the tree: a second or two
    for path in PYTHON_DOCS[::step]:
        body = open(path, "rb").read()
        doc = _parse_html(body, "utf-8")
        base, hrefs = scan_hrefs(body.decode("utf-8", errors="replace"))
        assert hrefs == _hrefs(doc), path
        assert scan_hrefs(body, "utf-8") == (base, hrefs), path  # the scan over bytes finds the same
        url = "http://127.0.0.1:8000/" + path.split("/html/", 1)[1]
        assert (base or url) == _base_href(doc, url)


def test_scan_hrefs_follows_the_html_tokenizer():
    page = """<!DOCTYPE html><html><head><BASE HREF="/b/"><script>var s = '<a href="in-script">';</script>
    <style>a[href="in-style"] {}</style></head><body><!-- <a href="in-comment"> -->
    <a title="x > y" href="quoted-gt">1</a> <A Href=bare class=c>2</A> <a href = 'single' >3</a>
    <a href="amp?a=1&amp;b=2">4</a> <a href="  spaced  ">5</a> <a href="first" href="second">6</a>
    <a rel="&#110;ofollow" href="entity-nofollow">7</a> <a REL="NoFollow" href="nofollow">8</a>
    <a name="no-href">9</a> <area href="map" shape="rect"> <abbr href="not-a-link">10</abbr>
    <a href="">11</a> <a data-href="wrong" href="right">12</a> <a class="c"href="tight">13</a>
    <a class="c" href="slash"/> <a class="c" rel="nofollow" href="plain-nofollow">14</a></body></html>"""
    base, hrefs = scan_hrefs(page)
    assert scan_hrefs(page.encode("utf-8"), "utf-8") == (base, hrefs)
    assert base == "/b/"
    assert hrefs == ["quoted-gt", "bare", "single", "amp?a=1&b=2", "spaced", "first", "map", "right", "tight",
                     "slash"]
    doc = _parse_html(page, None)  # and lxml agrees
    assert hrefs == _hrefs(doc) and _base_href(doc, "http://a.org/") == "http://a.org/b/"


def test_page_links_decodes_with_the_page_charset():
    body = '<a href="/\u65e5\u672c.html">y</a>'.encode("euc-jp")
    assert page_links(body, "http://a.org/", "euc_jp") == [normalize_url("http://a.org/\u65e5\u672c.html")]
    assert page_links("<a href='/caf\u00e9'>".encode("cp1252"), "http://a.org/", "windows-1252") == [
        normalize_url("http://a.org/caf\u00e9")]
    # In UTF-16 (or ISO-2022-JP, Shift_JIS) a byte below 0x80 is not always an ASCII character:
    # such a page is decoded first, not scanned as bytes.
    body = '<a href="/\u30a2.html">y</a>'.encode("utf-16")
    assert page_links(body, "http://a.org/", "utf-16") == [normalize_url("http://a.org/\u30a2.html")]


@pytest.mark.parametrize("level", [1, 2, 3, 6])
def test_gzip_members_are_plain_gzip(level):
    data = b"<html>" + b"lmforge " * 5000 + b"</html>"
    member = gzip_member(data, level)
    assert member[:2] == b"\x1f\x8b" and zlib.decompress(member, 31) == data
    assert len(member) < len(data) / 20


def test_precomputed_digests_match_warcio():
    from warcio.archiveiterator import ArchiveIterator

    body = b"<html>" + bytes(range(256)) * 40 + b"</html>"
    members = pack_exchange("http://a.org/x", ("GET", "/x", [("Host", "a.org")]),
                            ("HTTP/1.1", "200 OK", [("Content-Type", "text/html")], body), {}, 2)
    records = list(ArchiveIterator(BytesIO(members), check_digests="raise"))
    assert [r.rec_type for r in records] == ["response", "request"]
    import base64

    expected = "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode()
    assert records[0].rec_headers.get_header("WARC-Payload-Digest") == expected


def test_records_are_what_warcio_writes():
    """The directly built records carry the fields, blocks and digests warcio's writer gives the
    same exchange (a non-ASCII header is percent-encoded as warcio does), and fastwarc reads them."""
    from fastwarc.warc import ArchiveIterator as FastIterator
    from warcio.archiveiterator import ArchiveIterator
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    url, body = "http://a.org/x?q=1", "<html>caf\u00e9</html>".encode()
    req_headers = [("Host", "a.org"), ("User-Agent", "lmforge-test")]
    headers = [("Content-Type", "text/html; charset=utf-8"), ("X-Name", "caf\u00e9")]
    extra = {"WARC-Identified-Content-Charset": "utf-8"}
    ours = pack_exchange(url, ("GET", "/x?q=1", req_headers), ("HTTP/1.1", "200 OK", headers, body), extra, 2)

    out = BytesIO()
    writer = WARCWriter(out, gzip=True, warc_version="WARC/1.1")
    resp = writer.create_warc_record(url, "response", payload=BytesIO(body), length=len(body), warc_headers_dict=extra,
                                     http_headers=StatusAndHeaders("200 OK", list(headers), protocol="HTTP/1.1"))
    req = writer.create_warc_record(url, "request", http_headers=StatusAndHeaders(
        "GET /x?q=1 HTTP/1.1", list(req_headers), is_http_request=True), warc_headers_dict={
        "WARC-Concurrent-To": resp.rec_headers.get_header("WARC-Record-ID")})
    writer.write_record(resp)
    writer.write_record(req)

    def fields(data):
        got = []
        for rec in ArchiveIterator(BytesIO(data), check_digests="raise"):
            warc = {k: v for k, v in rec.rec_headers.headers if k not in ("WARC-Record-ID", "WARC-Date")}
            if "WARC-Concurrent-To" in warc:
                warc["WARC-Concurrent-To"] = "<the response>"
            got.append((warc, rec.http_headers.to_bytes(), rec.content_stream().read()))
        return got

    assert fields(ours) == fields(out.getvalue())
    ids = [r.rec_headers.get_header("WARC-Record-ID") for r in ArchiveIterator(BytesIO(ours))]
    assert len(set(ids)) == 2
    assert sum(rec.verify_block_digest() for rec in FastIterator(BytesIO(ours), parse_http=False)) == 2


def test_a_non_ascii_link_path_is_recorded_percent_encoded():
    from warcio.archiveiterator import ArchiveIterator

    url = "http://a.org/\u65e5\u672c.html"  # an IRI link, kept as the page's URL
    members = pack_exchange(url, ("GET", "/\u65e5\u672c.html", [("Host", "a.org")]),
                            ("HTTP/1.1", "200 OK", [("Content-Type", "text/html")], b"<p>x"), {}, 2)
    response, request = ArchiveIterator(BytesIO(members), check_digests="raise")
    assert request.http_headers.protocol == "GET"
    assert request.http_headers.statusline == "/%E6%97%A5%E6%9C%AC.html HTTP/1.1"
    assert request.rec_headers.get_header("WARC-Target-URI") == url


def test_helpers_run_pack_page_and_survive_a_dead_helper():
    args = ("http://a.org/dir/p.html", ("GET", "/dir/p.html", [("Host", "a.org")]),
            ("HTTP/1.1", "200 OK", [("Content-Type", "text/html; charset=utf-8")], b'<a href="q.html">q</a>'),
            True, True, False, 1 << 20, 2)
    in_thread = pack_page(*args)
    helpers = Helpers(1)
    try:
        links, members = helpers.run(pack_page, *args)
        assert links == in_thread[0] == ["http://a.org/dir/q.html"] and len(members) > 100
        for proc in list(helpers.processes):
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
        assert helpers.run(pack_page, *args)[0] == links  # done in this process instead
        assert not helpers.processes
    finally:
        helpers.close()


def test_helpers_raise_the_helpers_error_and_exit_on_close():
    helpers = Helpers(2, slots=3)
    try:
        assert [helpers.run(len, b"x" * n) for n in range(6)] == list(range(6))
        with pytest.raises(ValueError, match="invalid literal"):
            helpers.run(int, "not a number")
        assert helpers.run(len, b"abc") == 3  # the helper that raised still serves
        processes = list(helpers.processes)
    finally:
        helpers.close()
    assert len(processes) == 2 and not any(p.is_alive() for p in processes)
    assert helpers.run(len, b"ab") == 2  # after close: in this process


def test_helpers_run_what_overflows_their_window_here():
    helpers = Helpers(1, window=1000)
    try:
        assert helpers.run(len, b"x" * 5000) == 5000  # the call does not fit
        assert helpers.run(bytes, 5000) == bytes(5000)  # the answer does not fit
        assert helpers.run(len, b"x" * 10) == 10 and len(helpers.processes) == 1
        # a call with side effects (a fetch) is not run twice: its answer's size is an error
        with pytest.raises(TooLarge):
            helpers.run_once(bytes, 5000)
        assert helpers.run_once(len, b"x" * 10) == 10
    finally:
        helpers.close()


def test_helper_threads_wait_side_by_side_and_the_set_up_runs_first():
    """A helper's threads each take a call: two fetches waiting on the network overlap."""
    helpers = Helpers(1, slots=3, threads=3, init=(os.environ.__setitem__, "LMFORGE_HELPER_SET_UP", "yes"))
    try:
        assert helpers.run(os.getenv, "LMFORGE_HELPER_SET_UP") == "yes"
        assert "LMFORGE_HELPER_SET_UP" not in os.environ  # it ran there, not here
        sleepers = [threading.Thread(target=helpers.run, args=(time.sleep, 0.6)) for _ in range(3)]
        start = time.monotonic()
        for t in sleepers:
            t.start()
        for t in sleepers:
            t.join()
        assert time.monotonic() - start < 1.5  # one after the other would take 1.8 s
    finally:
        helpers.close()


def test_a_slow_call_does_not_hold_up_the_calls_behind_it():
    helpers = Helpers(2, slots=4)
    slow = threading.Thread(target=helpers.run, args=(time.sleep, 1.5))
    try:
        slow.start()
        time.sleep(0.2)  # one helper is busy sleeping: every call goes to the other
        assert [helpers.run(len, b"x" * n) for n in range(8)] == list(range(8))
        assert slow.is_alive()
    finally:
        slow.join()
        helpers.close()


def test_a_helper_killed_during_a_call_does_not_hang_it():
    helpers = Helpers(2, slots=2)
    answers = []
    slow = threading.Thread(target=lambda: answers.append(helpers.run(time.sleep, 1.0)))
    try:
        slow.start()
        time.sleep(0.2)
        free_pid = helpers.run(os.getpid)  # served by the helper that is not sleeping
        busy = [p for p in helpers.processes if p.pid != free_pid]
        assert len(busy) == 1 and free_pid != os.getpid()
        os.kill(busy[0].pid, signal.SIGKILL)
        slow.join(timeout=10)
        assert not slow.is_alive() and answers == [None]  # the call was run again here
        assert not helpers.processes and helpers.run(os.getpid) == os.getpid()
    finally:
        helpers.close()


def test_crawl_with_and_without_helper_processes_records_the_same(tmp_path):
    pages = {"/robots.txt": (404, {}, b""), "/": html("".join(f'<a href="/p{i}.html">{i}</a>' for i in range(12)))}
    pages.update({f"/p{i}.html": html(f'<a href="/p{(i + 1) % 12}.html">next</a> page {i}') for i in range(12)})
    server = start(pages)
    try:
        urls = {}
        for n in (0, 1):
            cfg = CollectConfig(per_host_delay=0, helper_processes=n, concurrency=4, per_host_concurrency=4)
            stats = crawl(cfg, tmp_path / str(n), [server.base + "/"], progress=False)
            assert stats["fetched"] == 13 and not stats["errors"]
            urls[n] = sorted(r.url for name in stats["warc_files"] for r in iter_records(tmp_path / str(n) / name))
        assert urls[0] == urls[1] and len(urls[0]) == 13
    finally:
        server.shutdown()


def test_client_goes_through_the_environment_proxy_unless_no_proxy(monkeypatch):
    proxy = start({"http://site.invalid/page": html("through the proxy")})  # a proxy sees absolute URLs
    try:
        monkeypatch.setenv("http_proxy", proxy.base)
        monkeypatch.setenv("no_proxy", "bypassed.invalid")
        client = Client(2, (2.0, 2.0))
        resp = client.get("http://site.invalid/page", {"User-Agent": "t"})
        assert resp.status == 200 and b"through the proxy" in resp.read()
        finish(resp, complete=True)
        assert [path for _, path in proxy.log] == ["http://site.invalid/page"]
        assert client._manager("http://bypassed.invalid/x") is client.direct
        client.clear()
    finally:
        proxy.shutdown()


def test_config_checks_the_new_fields():
    assert CollectConfig(helper_processes=-1).validate() == ["helper_processes: must be 0 or more"]
    assert "warc_gzip_level" in CollectConfig(warc_gzip_level=0).validate()[0]


def test_robots_txt_redirect_is_followed(tmp_path):
    server = start({"/robots.txt": (301, {"Location": "/rules.txt"}, b""),
                    "/rules.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"),
                    "/": html('<a href="/private/x.html">x</a><a href="/open.html">o</a>'),
                    "/open.html": html("open"), "/private/x.html": html("secret")})
    try:
        stats = crawl(CollectConfig(per_host_delay=0), tmp_path, [server.base + "/"], progress=False)
        assert (stats["fetched"], stats["robots_blocked"]) == (2, 1)
        assert "/private/x.html" not in [path for _, path in server.log]
    finally:
        server.shutdown()


def test_an_error_while_packing_is_counted_not_retried(tmp_path, monkeypatch):
    """Only the request and the reading are network errors worth a retry; a failure after them
    is a bug in the page's handling: counted once by its type, and the crawl goes on."""
    from lmforge.collect import exchange

    pages = {"/robots.txt": (404, {}, b""), "/": html('<a href="/bad.html">b</a> <a href="/ok.html">o</a>'),
             "/bad.html": html("bad"), "/ok.html": html("ok")}
    server = start(pages)
    pack = exchange.pack_page

    def failing(url, *args):
        if url.endswith("/bad.html"):
            raise OSError("disk trouble while packing")
        return pack(url, *args)

    monkeypatch.setattr(exchange, "pack_page", failing)  # forked helpers inherit it
    try:
        for n in (0, 2):
            cfg = CollectConfig(per_host_delay=0, helper_processes=n, concurrency=2, per_host_concurrency=2)
            stats = crawl(cfg, tmp_path / str(n), [server.base + "/"], progress=False)
            assert stats["fetched"] == 2 and stats["errors"] == {"error_OSError": 1}
            assert stats["retries"] == 0
        assert sum(path == "/bad.html" for path in server.done) == 2  # once per crawl
    finally:
        server.shutdown()
