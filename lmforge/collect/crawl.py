"""The crawl stage: a polite, resumable crawler that writes what it fetches as WARC files.

Threads take URLs from a :class:`Frontier` that enforces per-host concurrency and delay, and
hand each request to a helper process (helpers.py), which fetches it with its own urllib3 pool
(keep-alive connections; a body is streamed, so a page stops past its size limit), extracts
its links and packs its WARC records (exchange.py). This process keeps the robots.txt cache,
the retries and their waits, the seen set, the WARC file and the journal. Every exchange
(pages, error pages and each redirect hop) is written as a response + request record pair; the
journal under ``state/`` makes a rerun continue where a killed crawl stopped (see warcout.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urljoin

from lmforge.collect.config import CollectConfig
from lmforge.collect.exchange import Exchange, FetchOptions, client, close_clients, fetch_exchange
from lmforge.collect.frontier import Frontier, Item, backoff_seconds
from lmforge.collect.helpers import Helpers
from lmforge.collect.urls import Scope, host_of, normalize_url
from lmforge.errors import LmforgeError


def load_seeds(cfg: CollectConfig) -> list[str]:
    seeds = list(cfg.seeds)
    if cfg.seeds_file:
        path = Path(cfg.seeds_file)
        if not path.is_file():
            raise LmforgeError(f"seeds_file {path}: no such file (one URL per line)")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LmforgeError(f"seeds_file {path}: cannot read it as UTF-8 text ({exc}); give one URL per line") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                seeds.append(line)
    return check_seeds(seeds)


def check_seeds(seeds: list[str]) -> list[str]:
    """``seeds``, if every one is an http(s) URL; else an error naming the first that is not."""
    bad = [s for s in seeds if normalize_url(s) is None]
    if bad:
        raise LmforgeError(f"seed {bad[0]!r} is not an http(s) URL; give full URLs like https://example.org/")
    return seeds


def run_stage(cfg, rd) -> dict:
    """The pipeline stage: crawl ``cfg.collect`` into ``rd.crawl``; resumes an interrupted crawl."""
    collect = cfg.collect
    if not (collect.seeds or collect.seeds_file or collect.serve_demo or collect.local_sites):
        raise LmforgeError("crawl: no page was fetched: the config has no seeds; set [collect] seeds = "
                           "[\"https://...\"] (or seeds_file, or serve_demo = true for the demo site), or give the "
                           "clean stage files with [[clean.inputs]] path = \"data/*.warc.gz\"")
    rd.crawl.mkdir(parents=True, exist_ok=True)
    if not (collect.serve_demo or collect.local_sites):
        return crawl(collect, rd.crawl, load_seeds(collect))
    from lmforge.collect.demo_site import serve_sites

    with serve_sites(collect, state_dir=rd.crawl / "state") as sites:
        write_site_sources(rd.crawl, sites)
        return crawl(collect, rd.crawl, [*(s.seed for s in sites), *load_seeds(collect)])


SITE_SOURCES = "sources.json"
"""In a crawl folder: ``{site URL prefix: source name}`` of the sites served for it, which the
clean stage uses to name each page's source (the demo site 'web', a Korean site 'ko', ...)."""


def write_site_sources(out_dir: Path, sites) -> None:
    from lmforge.rundir import write_json_atomic

    write_json_atomic(Path(out_dir) / SITE_SOURCES, {s.base: s.source for s in sites})


def crawl(cfg: CollectConfig, out_dir: str | Path, seeds: list[str], progress: bool = True) -> dict:
    """Crawl from ``seeds`` into ``out_dir/*.warc.gz``; returns the stats of this run."""
    return Crawler(cfg, Path(out_dir), check_seeds(seeds), progress).run()


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
        self.deferred = 0  # pages given back unfetched at the deadline
        self.deadline = float("inf")
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

        self.t0 = time.monotonic()
        self.deadline = self.t0 + self.cfg.max_seconds
        # What an exchange imports (about 10 ms) is imported once here, not in each helper on
        # its first page, which every other page waits for at the start of a crawl.
        from lmforge.collect import charset, fetcher, readers  # noqa: F401
        from lmforge.collect.warcout import gzip_member

        gzip_member(b"", self.cfg.warc_gzip_level)
        self.options = FetchOptions.of(self.cfg)
        self.client = client(self.options)  # this process's, for robots.txt (no connection yet)
        # Forked before any thread of ours starts, each helper making its own client at once (the
        # first request does not wait for it). Enough helper threads for every fetch in flight;
        # a window holds a page's records and links, its memory taken only as it is written.
        n = self.cfg.helper_processes
        self.helpers = Helpers(n, self.cfg.concurrency, min(64 << 20, 2 * self.cfg.max_page_bytes + (1 << 20)),
                               threads=-(-self.cfg.concurrency // n) if n else 1, init=(client, self.options))
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
            stopping = 2.0
        except BaseException:  # Ctrl-C: what is in flight gets a moment, the whole stop under 2 s
            stopping = 0.3
            raise
        finally:
            self.frontier.stop()
            end = time.monotonic() + 1.0  # on Ctrl-C, give the pages in flight a moment to be recorded
            for w in workers:
                w.join(timeout=max(0.0, end - time.monotonic()))
            with self.io_lock:
                self.writer.finish()
                self.journal.close()
            self.bar.close()
            self.helpers.close(wait=stopping)
            close_clients()
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
            failure = self.robots.failure(host)  # no answer at all: the host is down, not forbidding
            self._skip(item.url, failure or "robots_blocked", error=bool(failure))
            return False
        self.frontier.set_delay(host, max(self.cfg.per_host_delay, self.robots.delay(host)))
        got = self._fetch(item)
        if got is None:  # the deadline came first: it stays queued for a rerun
            with self.lock:
                self.deferred += 1
        elif isinstance(got, str):
            self._skip(item.url, got, error=True)
        elif got.kind == "skip":
            self._skip(item.url, got.reason)
        else:
            self._record(item, got)
        return True

    # -- fetching ----------------------------------------------------------------------------
    def _fetch(self, item: Item) -> Exchange | str | None:
        """The exchange to record or skip, with retries on connection errors, timeouts, 429 and
        5xx (the waits are here, not in a helper); a str names the final error. None: max_seconds
        came before a request or a wait could end; no request starts after it, so a crawl
        overruns it by at most one request (connect_timeout + read_timeout)."""
        cfg = self.cfg
        for attempt in range(cfg.retries + 1):
            if time.monotonic() >= self.deadline or self.frontier.stopped:
                return None
            last = attempt == cfg.retries
            got = self.helpers.run_once(fetch_exchange, item.url, self.options, last, item.depth < cfg.max_depth)
            if got.kind in ("record", "skip"):
                return got
            if last:
                return got.reason
            with self.lock:
                self.stats["retries"] += 1
            wait = got.retry_after if got.kind == "retry" else None
            if wait is not None and wait > cfg.max_retry_wait:
                return "retry_after_too_long"
            wait = wait if wait is not None else backoff_seconds(attempt, cfg.backoff_base, cfg.max_retry_wait)
            if not self._pause(wait) or not self._pause(self.frontier.reserve(host_of(item.url))):
                return None  # (the second pause: a retry is a request too, with the same politeness)
        return "retries_exhausted"

    def _pause(self, seconds: float) -> bool:
        """Sleep, unless that would pass the deadline or the crawl stops meanwhile (Ctrl-C):
        then return False at once."""
        if time.monotonic() + seconds >= self.deadline:
            return False
        return not self.frontier.wait_stopped(seconds)

    # -- recording ---------------------------------------------------------------------------
    def _record(self, item: Item, got: Exchange) -> None:
        page = not got.location
        if got.location:
            self._follow_redirect(item, got.location)
        # Links are journaled before the page is marked done, so a crash between loses none.
        if got.links:
            self._enqueue_many(got.links, item.depth + 1)
        with self.io_lock:  # the page counts as fetched only once its records are flushed
            if self.writer.finished:  # answered after the crawl stopped (Ctrl-C): fetched again by a rerun
                return
            name, end = self.writer.append(got.members)
            self.journal.write(ev="done", url=item.url, file=name, end=end, status=got.status,
                               page=int(page), bytes=got.body_bytes)
        with self.lock:
            self.stats["bytes"] += got.body_bytes
            self.by_status[str(got.status)] += 1
            if page:
                self.stats["fetched"] += 1
                self.bar.update(1)
                self._postfix()

    def _follow_redirect(self, item: Item, location: str) -> None:
        target = normalize_url(urljoin(item.url, location), self.cfg.sort_query)
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
                   pending=self.frontier.pending() + self.deferred, resumed=self.resumed, previously_fetched=self.prev_pages,
                   repaired_warc_files=self.repaired, warc_files=self.writer.files_written,
                   crawl_seconds=round(seconds, 2), pages_per_s=round(self.stats["fetched"] / max(seconds, 1e-9), 2))
        if self.stats.get("stopped_max_seconds"):
            out["stopped"] = "max_seconds"
        return out

