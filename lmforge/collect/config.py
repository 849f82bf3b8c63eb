"""Config of the collect stage: what to crawl and how politely."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import ClassVar


def default_helper_processes() -> int:
    """2 helper processes on a machine with 2 cores or more, else none: on the 2-core demo-site
    benchmark 2 helpers gave the most pages/s, 0 the fewest (docs/collect.md)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 0


@dataclass
class LocalSite:
    """``[[collect.local_sites]]``: a folder of HTML served on 127.0.0.1 and crawled, like the demo site."""

    root: str = ""
    """The folder; one without index.html gets a generated page at ``/`` linking all its HTML pages."""
    start: str = "/"
    """Path of the crawl's seed on the site (``/index.ko.html``)."""
    source: str = ""
    """The clean stage's source name for the site's pages (empty: the folder's name)."""

    def validate(self) -> list[str]:
        return [] if self.root else ["root: missing (a folder of HTML pages)"]


@dataclass
class CollectConfig:
    """``[collect]``: the crawler. With no seeds and ``serve_demo = false`` the stage is skipped."""

    # Settings that change how fast, not what: outside the stage fingerprint (lmforge/fingerprint.py).
    NOT_IN_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({
        "concurrency", "per_host_concurrency", "helper_processes", "warc_gzip_level"})

    seeds: list[str] = field(default_factory=list)
    """Start URLs (http or https)."""
    seeds_file: str = ""
    """A file with one seed URL per line (blank lines and ``#`` comments ignored)."""
    serve_demo: bool = False
    """Serve Debian's python3-doc HTML on 127.0.0.1 and crawl it (the demo website)."""
    demo_root: str = ""
    """Folder served by ``serve_demo``; empty finds /usr/share/doc/python3*/html."""
    local_sites: list[LocalSite] = field(default_factory=list)
    """More folders of HTML served on 127.0.0.1 (each on its own port) and crawled with the demo site."""
    scope: str = "host"
    """Which links are followed: ``host`` (the seeds' hosts), ``hosts`` (``allowed_hosts``), ``prefix`` (under a seed URL)."""
    allowed_hosts: list[str] = field(default_factory=list)
    """Hosts (``host`` or ``host:port``) followed when ``scope = "hosts"``."""
    include: list[str] = field(default_factory=list)
    """Regexes; when set, a URL must match one of them."""
    exclude: list[str] = field(default_factory=list)
    """Regexes; a URL matching any of them is not fetched."""
    max_depth: int = 10
    """Links followed from a seed (a seed is depth 0; redirects keep the depth)."""
    max_pages: int = 200
    """Pages recorded in all (counted across resumed runs; redirect hops not counted)."""
    max_page_bytes: int = 5_000_000
    """A page larger than this is dropped (counted as too_large) as soon as that is known."""
    max_total_bytes: int = 500_000_000
    """Stop taking new pages once this many payload bytes are recorded."""
    max_seconds: float = 600.0
    """Wall-clock limit of one crawl run; pages in flight finish, the rest stays queued for a rerun."""
    user_agent: str = "lmforge-crawler/0.1"
    """User-Agent header and the name robots.txt rules are matched against."""
    concurrency: int = 8
    """Fetches in flight at once, across all hosts."""
    per_host_concurrency: int = 2
    """Fetches in flight at once to one host."""
    per_host_delay: float = 1.0
    """Seconds between two requests to one host (robots.txt Crawl-delay wins when larger)."""
    connect_timeout: float = 10.0
    """Seconds to wait for a connection."""
    read_timeout: float = 30.0
    """Seconds to wait for the next bytes of an answer."""
    retries: int = 3
    """Retries after a connection error, a timeout, 429 or 5xx (so at most retries + 1 requests)."""
    backoff_base: float = 0.5
    """First retry waits up to this many seconds, doubling each time (full jitter) unless Retry-After says."""
    max_retry_wait: float = 60.0
    """Longest wait before a retry; a Retry-After asking for more gives the page up."""
    max_redirects: int = 10
    """Redirect hops followed from one URL before giving up (each hop is recorded)."""
    sort_query: bool = False
    """Normalise URLs by sorting their query parameters (``?b=1&a=2`` and ``?a=2&b=1`` are one page)."""
    obey_robots: bool = True
    """Fetch and obey robots.txt (turn off only for sites you own)."""
    warc_max_bytes: int = 1_000_000_000
    """Rotate to a new WARC file past this size."""
    helper_processes: int = field(default_factory=default_helper_processes)
    """Processes that fetch, parse and pack the pages (0: all in the crawl process; 2 from 2 cores; docs/collect.md)."""
    warc_gzip_level: int = 2
    """gzip level of the WARC records, 1 (fastest) to 9 (smallest); 1-3 use ISA-L when installed (docs/collect.md)."""

    def validate(self) -> list[str]:
        problems = []
        if self.scope not in ("host", "hosts", "prefix"):
            problems.append(f"scope: {self.scope!r} is not one of host, hosts, prefix")
        for name in ("max_pages", "max_page_bytes", "max_total_bytes", "concurrency", "per_host_concurrency"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1")
        if self.helper_processes < 0:
            problems.append("helper_processes: must be 0 or more")
        if not 1 <= self.warc_gzip_level <= 9:
            problems.append(f"warc_gzip_level: {self.warc_gzip_level} is not a gzip level from 1 to 9")
        if self.max_depth < 0:
            problems.append("max_depth: must be 0 or more")
        if self.per_host_delay < 0 or self.max_seconds <= 0:
            problems.append("per_host_delay must be >= 0 and max_seconds > 0")
        if self.retries < 0 or self.backoff_base < 0 or self.max_retry_wait < 0 or self.max_redirects < 0:
            problems.append("retries, backoff_base, max_retry_wait and max_redirects must be >= 0")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            problems.append("connect_timeout and read_timeout must be > 0 (seconds)")
        for name in ("include", "exclude"):
            for pattern in getattr(self, name):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problems.append(f"{name}: {pattern!r} is not a valid regex ({exc})")
        problems += [f"seeds: {s!r} is not an http(s) URL (write it as https://host/...)"
                     for s in self.seeds if not s.startswith(("http://", "https://"))]
        return problems
