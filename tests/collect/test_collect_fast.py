"""The crawler's fast paths against their references: regex link scan vs lxml, ISA-L gzip vs zlib,
precomputed digests vs warcio's, helper processes vs none, and the urllib3 client's proxy rules."""

from __future__ import annotations

import glob
import hashlib
import os
import signal
import zlib
from io import BytesIO

import pytest

from collect_servers import html, start
from lmforge.collect.config import CollectConfig
from lmforge.collect.crawl import Helpers, crawl, pack_page
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
    assert base == "/b/"
    assert hrefs == ["quoted-gt", "bare", "single", "amp?a=1&b=2", "spaced", "first", "map", "right", "tight",
                     "slash"]
    doc = _parse_html(page, None)  # and lxml agrees
    assert hrefs == _hrefs(doc) and _base_href(doc, "http://a.org/") == "http://a.org/b/"


def test_page_links_decodes_with_the_page_charset():
    body = '<a href="/\u65e5\u672c.html">y</a>'.encode("euc-jp")
    assert page_links(body, "http://a.org/", "euc_jp") == [normalize_url("http://a.org/\u65e5\u672c.html")]


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


def test_helpers_run_pack_page_and_survive_a_dead_helper():
    args = ("http://a.org/dir/p.html", ("GET", "/dir/p.html", [("Host", "a.org")]),
            ("HTTP/1.1", "200 OK", [("Content-Type", "text/html; charset=utf-8")], b'<a href="q.html">q</a>'),
            True, True, False, 1 << 20, 2)
    in_thread = pack_page(*args)
    helpers = Helpers(1)
    try:
        links, members = helpers.run(pack_page, *args)
        assert links == in_thread[0] == ["http://a.org/dir/q.html"] and len(members) > 100
        for proc in list(helpers.pool._processes.values()):
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
        assert helpers.run(pack_page, *args)[0] == links  # done in this process instead
        assert helpers.pool is None
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
