"""The crawl stage: a polite, resumable crawler that writes what it fetches as WARC files.

Threads sharing one urllib3 pool manager (keep-alive connections; a body is streamed, so a
page stops past its size limit; see fetcher.py) take URLs from a :class:`Frontier` that
enforces per-host concurrency and delay. Every exchange (pages, error pages and each redirect
hop) is written as a response + request record pair; the journal under ``state/`` makes a
rerun continue where a killed crawl stopped (see warcout.py). What costs CPU per page (links,
charset, gzip, digests) is :func:`pack_page`, run in helper processes (helpers.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from lmforge.collect.config import CollectConfig
from lmforge.collect.frontier import Frontier, Item, backoff_seconds, parse_retry_after
from lmforge.collect.helpers import Helpers
from lmforge.collect.urls import Scope, host_of, normalize_url, page_links
from lmforge.errors import LmforgeError

HTML_TYPES = ("text/html", "application/xhtml+xml")
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class Fetched:
    """One HTTP exchange: what is written to the WARC file."""

    status: int
    reason: str
    protocol: str
    headers: list
    body: bytes
    request_headers: list
    retry_after: float | None = None

    def header(self, name: str) -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), "")


class Skip(Exception):
    """A page not recorded, for a counted reason (too_large, non_html)."""


def pack_page(url: str, request: tuple, response: tuple, page: bool, follow: bool, sort_query: bool,
              max_payload: int, level: int) -> tuple[list[str], bytes]:
    """The CPU work on a fetched exchange: charset, links (when ``follow``) and the packed WARC
    records. A pure function of its arguments, so that a helper process can run it."""
    from lmforge.collect.charset import detect_charset
    from lmforge.collect.readers import decode_content_encoding
    from lmforge.collect.warcout import pack_exchange

    protocol, status_line, headers, body = response
    charset, links = None, []
    if page:
        header = {k.lower(): v for k, v in reversed(headers)}  # the first of a repeated header wins
        payload = decode_content_encoding(body, header.get("content-encoding"), max_payload)
        charset = detect_charset(payload, _header_charset(header.get("content-type", "")))
        if follow:
            links = page_links(payload, url, charset, sort_query)
    extra = {"WARC-Identified-Content-Charset": charset} if charset else {}
    return links, pack_exchange(url, request, response, extra, level)


def load_seeds(cfg: CollectConfig) -> list[str]:
    seeds = list(cfg.seeds)
    if cfg.seeds_file:
        path = Path(cfg.seeds_file)
        if not path.is_file():
            raise LmforgeError(f"seeds_file {path}: no such file (one URL per line)")
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                seeds.append(line)
    bad = [s for s in seeds if normalize_url(s) is None]
    if bad:
        raise LmforgeError(f"seed {bad[0]!r} is not an http(s) URL; give full URLs like https://example.org/")
    return seeds


def run_stage(cfg, rd) -> dict:
    """The pipeline stage: crawl ``cfg.collect`` into ``rd.crawl``; resumes an interrupted crawl."""
    collect = cfg.collect
    if not (collect.seeds or collect.seeds_file or collect.serve_demo):
        return {"skipped": "no seeds"}
    rd.crawl.mkdir(parents=True, exist_ok=True)
    if not collect.serve_demo:
        return crawl(collect, rd.crawl, load_seeds(collect))
    from lmforge.collect.demo_site import serve_demo

    with serve_demo(collect.demo_root or None, state_dir=rd.crawl / "state") as base:
        return crawl(collect, rd.crawl, [base + "/", *load_seeds(collect)])


def crawl(cfg: CollectConfig, out_dir: str | Path, seeds: list[str], progress: bool = True) -> dict:
    """Crawl from ``seeds`` into ``out_dir/*.warc.gz``; returns the stats of this run."""
    return Crawler(cfg, Path(out_dir), seeds, progress).run()


class Crawler:
    """One crawl: frontier, robots cache, WARC writer, journal and counters."""

    def __init__(self, cfg: CollectConfig, out_dir: Path, seeds: list[str], progress: bool = True):
        from lmforge.collect.robots import RobotsCache
        from lmforge.collect.warcout import Journal, RotatingWarcWriter, repair_open_files, warcinfo_fields

        self.cfg, self.out_dir, self.progress = cfg, out_dir, progress
        out_dir.mkdir(parents=True, exist_ok=True)
        self.seeds = [normalize_url(s, cfg.sort_query) for s in seeds]
        self.scope = Scope(cfg.scope, self.seeds, cfg.allowed_hosts, cfg.include, cfg.exclude)
        self.robots = RobotsCache(cfg.user_agent, cfg.obey_robots)
        self.frontier = Frontier(cfg.per_host_concurrency, cfg.per_host_delay)
        self.lock = threading.Lock()  # seen set and counters
        self.io_lock = threading.Lock()  # WARC file and journal, in the order they are written
        self.stats = Counter()
        self.by_status: Counter = Counter()
        self.errors: Counter = Counter()
        events = Journal.read(out_dir / "state" / "journal.jsonl")
        self.repaired = repair_open_files(out_dir, events)
        self.journal = Journal(out_dir / "state" / "journal.jsonl")
        self.writer = RotatingWarcWriter(out_dir, cfg.warc_max_bytes,
                                         warcinfo_fields(cfg.user_agent, "obey" if cfg.obey_robots else "ignore"),
                                         cfg.warc_gzip_level)
        self.seen: set[str] = set()
        self._resume(events)

    def _resume(self, events: list[dict]) -> None:
        """Rebuild seen/done sets and the frontier from the journal, then queue new seeds."""
        done, queued = set(), []
        self.prev_pages = self.prev_bytes = 0
        for ev in events:
            if ev.get("ev") == "add":
                self.seen.add(ev["url"])
                queued.append(ev)
            elif ev.get("ev") in ("done", "skip"):
                done.add(ev["url"])
                self.prev_pages += ev.get("page", 0)
                self.prev_bytes += ev.get("bytes", 0)
        self.resumed = bool(events)
        for ev in queued:
            if ev["url"] not in done and ev["url"] in self.scope:
                self.frontier.push(Item(ev["url"], ev["depth"]))
        for seed in self.seeds:
            self._enqueue(seed, 0)

    def _enqueue(self, url: str, depth: int, chain: tuple = ()) -> None:
        self._enqueue_many([url], depth, chain)

    def _enqueue_many(self, urls: list[str], depth: int, chain: tuple = ()) -> None:
        """Queue the URLs not seen before and in scope (one lock round for a page's links)."""
        new = []
        with self.lock:
            for url in urls:
                if url in self.seen:
                    continue
                self.seen.add(url)
                if url in self.scope:
                    new.append(url)
                else:
                    self.stats["out_of_scope"] += 1
        if not new:
            return
        with self.io_lock:  # journaled before queued: a resumed crawl knows every URL it promised
            self.journal.write_many([{"ev": "add", "url": url, "depth": depth} for url in new])
        for url in new:
            self.frontier.push(Item(url, depth, chain))

    # -- the crawl loop ---------------------------------------------------------------------
    def run(self) -> dict:
        from tqdm import tqdm

        from lmforge.collect.fetcher import Client

        self.t0 = time.monotonic()
        self.deadline = self.t0 + self.cfg.max_seconds
        # What pack_page imports (7 ms) is imported once here, not in each helper on its first
        # page, which every other page waits for at the start of a crawl.
        from lmforge.collect import charset, readers  # noqa: F401
        from lmforge.collect.warcout import gzip_member

        gzip_member(b"", self.cfg.warc_gzip_level)
        # first: forked before any thread of ours starts; a window holds a page and its
        # records (more runs in this process), its memory taken only as it is written
        self.helpers = Helpers(self.cfg.helper_processes, self.cfg.concurrency,
                               min(64 << 20, 2 * self.cfg.max_page_bytes + (1 << 20)))
        self.client = Client(self.cfg.per_host_concurrency, (self.cfg.connect_timeout, self.cfg.read_timeout))
        self.bar = tqdm(total=self.cfg.max_pages, initial=min(self.prev_pages, self.cfg.max_pages), unit="page",
                        desc="crawl", disable=not self.progress, dynamic_ncols=True)
        workers = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.cfg.concurrency)]
        for w in workers:
            w.start()
        try:
            for w in workers:
                while w.is_alive():
                    w.join(timeout=max(0.01, min(0.5, self.deadline - time.monotonic())))
                    if time.monotonic() >= self.deadline and not self.frontier.stopped:
                        self.stats["stopped_max_seconds"] = 1
                        self.frontier.stop()
        finally:
            self.frontier.stop()
            for w in workers:  # on Ctrl-C, give the pages in flight a moment to be recorded
                w.join(timeout=2.0)
            with self.io_lock:
                self.writer.finish()
                self.journal.close()
            self.bar.close()
            self.client.clear()
            self.helpers.close()
        return self._report()

    def _budget_left(self, in_flight: int) -> bool:
        pages = self.prev_pages + self.stats["fetched"] + in_flight
        return pages < self.cfg.max_pages and self.prev_bytes + self.stats["bytes"] < self.cfg.max_total_bytes

    def _worker(self) -> None:
        while (item := self.frontier.take(self._budget_left)) is not None:
            requested = False
            try:
                requested = self._process(item)
            except Exception as exc:  # a bug or an odd page must not stop the other pages
                kind = f"error_{type(exc).__name__}"
                if not self.errors[kind]:  # the first of each kind with its traceback, the rest counted
                    logging.getLogger(__name__).warning("%s: unexpected %s", item.url, kind, exc_info=True)
                self._skip(item.url, kind, error=True)
                requested = True
            finally:
                self.frontier.release(item, requested)

    def _process(self, item: Item) -> bool:
        """Fetch one URL and record it; return whether a request went out (for politeness)."""
        host = host_of(item.url)
        if not self.robots.allowed(item.url, host, self.client):
            self._skip(item.url, "robots_blocked")
            return False
        self.frontier.set_delay(host, max(self.cfg.per_host_delay, self.robots.delay(host)))
        try:
            fetched = self._fetch(item.url)
        except Skip as why:
            self._skip(item.url, str(why))
            return True
        if isinstance(fetched, str):
            self._skip(item.url, fetched, error=True)
            return True
        if 300 <= fetched.status < 400 and fetched.header("Location"):
            self._follow_redirect(item, fetched)
            self._record(item, fetched, page=False)
        else:
            self._record(item, fetched, page=True)
        return True

    # -- fetching ----------------------------------------------------------------------------
    def _fetch(self, url: str) -> Fetched | str:
        """GET with retries on connection errors, timeouts, 429 and 5xx; a str names the final error."""
        from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

        cfg = self.cfg
        for attempt in range(cfg.retries + 1):
            try:
                fetched = self._attempt(url)
            except NewConnectionError:  # refused or unresolved: urllib3 files it under timeouts
                error, wait = "connection", None
            except TimeoutError:
                error, wait = "timeout", None
            except (HTTPError, OSError):
                error, wait = "connection", None
            else:
                if fetched.status not in RETRY_STATUSES or attempt == cfg.retries:
                    return fetched
                error, wait = None, fetched.retry_after
            if attempt == cfg.retries:
                return error
            with self.lock:
                self.stats["retries"] += 1
            if wait is not None and wait > cfg.max_retry_wait:
                return error or "retry_after_too_long"
            time.sleep(wait if wait is not None else backoff_seconds(attempt, cfg.backoff_base, cfg.max_retry_wait))
            time.sleep(self.frontier.reserve(host_of(url)))  # a retry is a request too: same politeness
        return "retries_exhausted"

    def _attempt(self, url: str) -> Fetched:
        from lmforge.collect.fetcher import finish

        headers = {"User-Agent": self.cfg.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
                   "Accept-Encoding": "gzip, deflate"}
        resp = self.client.get(url, headers)
        complete = False
        try:
            got = Fetched(resp.status, resp.reason or "", "HTTP/1.0" if resp.version == 10 else "HTTP/1.1",
                          [(k, v) for k, v in resp.headers.items() if k.lower() != "transfer-encoding"],
                          b"", list(headers.items()))
            got.body, sniff = self._check_and_read(resp, got)
            complete = True
        finally:
            finish(resp, complete)
        if sniff and not _looks_like_html(got.body):
            raise Skip("non_html")
        return got

    def _check_and_read(self, resp, got: Fetched) -> tuple[bytes, bool]:
        """The body, unless type or size rule the page out first (raises Skip); and whether its
        type is unknown, so that the body must show it is HTML."""
        if got.status in RETRY_STATUSES:  # retried (or recorded as it is), whatever its type
            got.retry_after = parse_retry_after(got.header("Retry-After"))
            return self._read_body(resp), False
        ctype = got.header("Content-Type").split(";")[0].strip().lower()
        redirect = 300 <= got.status < 400
        if not redirect and ctype and ctype not in HTML_TYPES:
            raise Skip("non_html")
        length = got.header("Content-Length")
        if length.isdigit() and int(length) > self.cfg.max_page_bytes:
            raise Skip("too_large")
        return self._read_body(resp, length.isdigit()), not redirect and not ctype

    def _read_body(self, resp, known_length: bool = False) -> bytes:
        """The raw payload bytes as sent (content-encoding kept), stopping past max_page_bytes."""
        if known_length:  # checked against the limit: one read (http.client stops at the length)
            return resp.read(decode_content=False)
        chunks, size = [], 0
        for chunk in resp.stream(65536, decode_content=False):
            size += len(chunk)
            if size > self.cfg.max_page_bytes:
                raise Skip("too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- recording ---------------------------------------------------------------------------
    def _record(self, item: Item, got: Fetched, page: bool) -> None:
        parts = urlsplit(item.url)
        request = ("GET", parts.path + (f"?{parts.query}" if parts.query else ""), [("Host", parts.netloc)] +
                   [(k, v) for k, v in got.request_headers if k.lower() != "host"])
        response = (got.protocol, f"{got.status} {got.reason}".strip(), got.headers, got.body)
        follow = page and 200 <= got.status < 300 and item.depth < self.cfg.max_depth
        links, members = self.helpers.run(pack_page, item.url, request, response, page, follow, self.cfg.sort_query,
                                          self.cfg.max_page_bytes * 4, self.cfg.warc_gzip_level)
        # Links are journaled before the page is marked done, so a crash between loses none.
        if links:
            self._enqueue_many(links, item.depth + 1)
        with self.io_lock:  # the page counts as fetched only once its records are flushed
            name, end = self.writer.append(members)
            self.journal.write(ev="done", url=item.url, file=name, end=end, status=got.status,
                               page=int(page), bytes=len(got.body))
        with self.lock:
            self.stats["bytes"] += len(got.body)
            self.by_status[str(got.status)] += 1
            if page:
                self.stats["fetched"] += 1
                self.bar.update(1)
                self._postfix()

    def _follow_redirect(self, item: Item, got: Fetched) -> None:
        target = normalize_url(urljoin(item.url, got.header("Location").strip()), self.cfg.sort_query)
        with self.lock:
            self.stats["redirects"] += 1
        chain = (*item.chain, item.url)
        if target is None:
            self._count_error("redirect_bad_location")
        elif target in chain:
            self._count_error("redirect_loop")
        elif len(chain) > self.cfg.max_redirects:
            self._count_error("too_many_redirects")
        else:
            self._enqueue(target, item.depth, chain)

    def _skip(self, url: str, reason: str, error: bool = False) -> None:
        with self.io_lock:
            self.journal.write(ev="skip", url=url, reason=reason)
        with self.lock:
            (self.errors if error else self.stats)[reason] += 1
            self._postfix()

    def _count_error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] += 1

    def _postfix(self) -> None:
        if self.progress:
            self.bar.set_postfix(MB=f"{self.stats['bytes'] / 1e6:.1f}", errors=sum(self.errors.values()), refresh=False)

    def _report(self) -> dict:
        seconds = time.monotonic() - self.t0
        out = {k: self.stats.get(k, 0) for k in ("fetched", "bytes", "robots_blocked", "out_of_scope", "too_large",
                                                  "non_html", "retries", "redirects")}
        out.update(by_status=dict(sorted(self.by_status.items())), errors=dict(self.errors),
                   pending=self.frontier.pending(), resumed=self.resumed, previously_fetched=self.prev_pages,
                   repaired_warc_files=self.repaired, warc_files=self.writer.files_written,
                   crawl_seconds=round(seconds, 2), pages_per_s=round(self.stats["fetched"] / max(seconds, 1e-9), 2))
        if self.stats.get("stopped_max_seconds"):
            out["stopped"] = "max_seconds"
        return out


def _header_charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            return value.strip("\"' ") or None
    return None


def _looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<meta", b"<!--", b"<title", b"<p"))
