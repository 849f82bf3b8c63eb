"""URL rules, crash repair of WARC files, the demo site and the stage entry point."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lmforge.collect.frontier import backoff_seconds, parse_retry_after
from lmforge.collect.readers import iter_records
from lmforge.collect.urls import Scope, extract_links, normalize_url, page_links
from lmforge.collect.warcout import Journal, RotatingWarcWriter, repair_open_files, warcinfo_fields
from lmforge.config import config_from_dict
from lmforge.errors import ConfigError, LmforgeError
from lmforge.rundir import RunDir


@pytest.mark.parametrize("url, expected", [
    ("HTTP://Example.COM:80/a?b=2&a=1#top", "http://example.com/a?b=2&a=1"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("ftp://example.com/file", None),
    ("mailto:someone@example.com", None),
    ("javascript:void(0)", None),
    ("http://[::1]:8080/p", "http://[::1]:8080/p"),
    ("http://bad:port/", None),
])
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected


def test_normalize_url_sorted_query():
    assert normalize_url("http://a.org/?b=2&a=1&a=0", sort_query=True) == "http://a.org/?a=0&a=1&b=2"


def test_scope_rules():
    host = Scope("host", ["http://a.org/docs/index.html"], exclude=[r"\.pdf$"])
    assert "http://a.org/other" in host and "http://b.org/" not in host and "http://a.org/x.pdf" not in host
    prefix = Scope("prefix", ["http://a.org/docs/index.html"])
    assert "http://a.org/docs/deep/page" in prefix and "http://a.org/blog/" not in prefix
    hosts = Scope("hosts", ["http://a.org/"], allowed_hosts=["b.org", "c.org:8080"], include=["/keep/"])
    assert "http://b.org/keep/1" in hosts and "http://b.org/drop/1" not in hosts and "http://a.org/keep/" not in hosts


def test_extract_links_base_href_relative_and_nofollow():
    page = """<html><head><base href="/sub/"></head><body>
      <a href="page.html">1</a> <a href="../up.html">2</a> <a href="https://x.org/abs">3</a>
      <a href="#frag">4</a> <a href="ads.html" rel="nofollow sponsored">5</a> <area href="map.html">
    </body></html>"""
    assert extract_links(page, "http://a.org/dir/index.html") == [
        "http://a.org/sub/page.html", "http://a.org/up.html", "https://x.org/abs", "http://a.org/sub/#frag",
        "http://a.org/sub/map.html"]
    assert extract_links("", "http://a.org/") == []
    assert page_links(page, "http://a.org/dir/index.html") == [
        "http://a.org/sub/page.html", "http://a.org/up.html", "https://x.org/abs", "http://a.org/sub/map.html"]
    query = '<a href="?page=2#top">2</a><a href="mailto:x@y.z">m</a><a href="//cdn.org">c</a>'
    assert page_links(query, "http://a.org/list.html?page=1") == ["http://a.org/list.html?page=2", "http://cdn.org/"]
    xhtml = '<?xml version="1.0" encoding="utf-8"?><html><body><a href="x">x</a></body></html>'
    assert extract_links(xhtml, "http://a.org/") == ["http://a.org/x"]


def test_retry_after_and_backoff():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now
    assert parse_retry_after("soon") is None and parse_retry_after("") is None
    waits = [backoff_seconds(3, base=0.5, cap=2.0) for _ in range(200)]
    assert 0 <= min(waits) and max(waits) <= 2.0 and len(set(waits)) > 100  # capped, and jittered


def _exchange(writer: RotatingWarcWriter, i: int):
    body = f"<html>page {i}</html>".encode()
    return writer.write_exchange(f"http://a.org/{i}", ("GET", f"/{i}", [("Host", "a.org")]),
                                 ("HTTP/1.1", "200 OK", [("Content-Type", "text/html")], body), {})


def test_repair_keeps_journaled_records_and_drops_a_torn_tail(tmp_path):
    writer = RotatingWarcWriter(tmp_path, 1 << 30, warcinfo_fields("ua"))
    journal = Journal(tmp_path / "state" / "journal.jsonl")
    for i in range(3):
        name, end = _exchange(writer, i)
        if i < 2:  # the third page is written but the crash comes before its journal line
            journal.write(ev="done", url=f"http://a.org/{i}", file=name, end=end)
    writer._file.write(b"\x1f\x8b\x08\x00torn")  # and a record half written
    writer._file.flush()
    journal.close()
    (tmp_path / ".crawl-00009.warc.gz.open").write_bytes(b"nothing journaled")
    events = Journal.read(tmp_path / "state" / "journal.jsonl")
    assert repair_open_files(tmp_path, events) == ["crawl-00000.warc.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crawl-00000.warc.gz", "state"]
    skipped = Counter()
    assert [r.url for r in iter_records(tmp_path / "crawl-00000.warc.gz", skipped=skipped)] == [
        "http://a.org/0", "http://a.org/1"]
    assert skipped["truncated"] == 0
    assert RotatingWarcWriter(tmp_path, 1 << 30, {}).index == 1  # the next file follows the kept one


def test_rotation_at_warc_max_bytes(tmp_path):
    writer = RotatingWarcWriter(tmp_path, 1500, warcinfo_fields("ua"))
    for i in range(6):
        _exchange(writer, i)
    writer.close()
    files = sorted(tmp_path.glob("*.warc.gz"))
    assert len(files) >= 2 and [f.name for f in files] == writer.files_written
    assert sum(1 for f in files for _ in iter_records(f)) == 6


def test_journal_ignores_a_line_cut_short(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"ev": "add", "url": "u", "depth": 0}\n{"ev": "do')
    assert Journal.read(path) == [{"ev": "add", "url": "u", "depth": 0}]


def test_stage_without_seeds_says_how_to_give_some_and_writes_nothing(tmp_path):
    from lmforge.collect.crawl import run_stage

    rd = RunDir(tmp_path / "run")
    with pytest.raises(LmforgeError, match=r"no seeds; set \[collect\] seeds"):
        run_stage(config_from_dict({}), rd)
    assert not rd.root.exists()


def test_config_rejects_bad_values_together():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"collect": {"scope": "world", "include": ["("], "seeds": ["ftp://x"], "retries": -1}})
    assert len(err.value.problems) == 4


def test_demo_site_missing_names_the_package(monkeypatch):
    from lmforge.collect import demo_site

    monkeypatch.setattr(demo_site, "CANDIDATES", ("/nonexistent/python3*/html",))
    with pytest.raises(LmforgeError, match="apt-get install python3-doc"):
        demo_site.find_demo_root()


def test_demo_site_serves_pages_and_its_robots(tmp_path):
    import requests

    from lmforge.collect.demo_site import serve_demo

    (tmp_path / "index.html").write_text("<html><a href='a.html'>a</a></html>")
    with serve_demo(tmp_path, state_dir=tmp_path / "state") as base:
        assert base.startswith("http://127.0.0.1:")
        assert "Disallow: /_sources/" in requests.get(base + "/robots.txt", timeout=5).text
        assert "a.html" in requests.get(base + "/", timeout=5).text
    assert (tmp_path / "state" / "demo_port").read_text() == base.rsplit(":", 1)[1]


def test_local_sites_each_on_a_port_with_a_generated_index(tmp_path):
    import requests

    from lmforge.collect.config import CollectConfig, LocalSite
    from lmforge.collect.demo_site import serve_sites

    help_root, faq_root = tmp_path / "help", tmp_path / "faq"
    (help_root / "ko" / "text").mkdir(parents=True)
    (help_root / "ko" / "text" / "b.html").write_text("<p>나</p>")
    (help_root / "a.html").write_text("<p>가</p>")
    (help_root / "logo.png").write_bytes(b"png")
    faq_root.mkdir()
    (faq_root / "index.ko.html").write_text("<a href='x.ko.html'>x</a>")
    (faq_root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    cfg = CollectConfig(local_sites=[LocalSite(str(help_root), source="ko"),
                                     LocalSite(str(faq_root), start="/index.ko.html", source="faq")])
    with serve_sites(cfg, state_dir=tmp_path / "state") as sites:
        (help_site, faq_site) = sites
        assert help_site.base != faq_site.base and help_site.seed == help_site.base
        assert faq_site.seed == faq_site.base + "index.ko.html" and (help_site.source, faq_site.source) == ("ko", "faq")
        index = requests.get(help_site.base, timeout=5).text  # no index.html: every page, linked
        assert '<a href="a.html">' in index and '<a href="ko/text/b.html">' in index and "logo.png" not in index
        assert requests.get(help_site.base + "robots.txt", timeout=5).text == "User-agent: *\nDisallow:\n"
        assert "Disallow: /private/" in requests.get(faq_site.base + "robots.txt", timeout=5).text
    assert (tmp_path / "state" / "demo_port_2").read_text() == faq_site.base.rstrip("/").rsplit(":", 1)[1]


def test_a_runs_demo_site_takes_the_fixed_port_when_free(tmp_path):
    """The same URLs in every run of the demo (they key the split), another port when it is taken."""
    import socket

    from lmforge.collect.demo_site import DEMO_PORT, serve_demo

    (tmp_path / "index.html").write_text("<html></html>")
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEMO_PORT))
        except OSError:
            pytest.skip(f"port {DEMO_PORT} is in use here")
    with serve_demo(tmp_path, state_dir=tmp_path / "one") as base:
        assert base == f"http://127.0.0.1:{DEMO_PORT}"
        with serve_demo(tmp_path, state_dir=tmp_path / "two") as other:  # taken now: any free port
            assert other != base and other.startswith("http://127.0.0.1:")


@pytest.mark.skipif(not list(Path("/usr/share/doc").glob("python3*/html/index.html")), reason="python3-doc missing")
def test_stage_crawls_the_demo_site(tmp_path):
    from lmforge.collect.crawl import run_stage

    cfg = config_from_dict({"runs_dir": str(tmp_path), "collect": {
        "serve_demo": True, "max_pages": 25, "per_host_delay": 0, "concurrency": 4, "per_host_concurrency": 4}})
    stats = run_stage(cfg, RunDir(cfg.run_path))
    assert stats["fetched"] == 25 and stats["by_status"] == {"200": 25}
    records = [r for p in sorted((cfg.run_path / "crawl").glob("*.warc.gz")) for r in iter_records(p)]
    assert len(records) == 25 and all("/_sources/" not in r.url for r in records)
