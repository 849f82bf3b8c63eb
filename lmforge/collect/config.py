"""Config of the collect stage: what to crawl and how politely."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CollectConfig:
    """``[collect]``: the crawler. With no seeds and ``serve_demo = false`` the stage is skipped."""

    seeds: list[str] = field(default_factory=list)
    """Start URLs (http or https)."""
    seeds_file: str = ""
    """A file with one seed URL per line (blank lines and ``#`` comments ignored)."""
    serve_demo: bool = False
    """Serve Debian's python3-doc HTML on 127.0.0.1 and crawl it (the demo website)."""
    demo_root: str = ""
    """Folder served by ``serve_demo``; empty finds /usr/share/doc/python3*/html."""
    scope: str = "host"
    """Which links are followed: ``host`` (the seeds' hosts), ``hosts`` (``allowed_hosts``), ``prefix`` (under a seed URL)."""
    allowed_hosts: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    """Regexes; when set, a URL must match one of them."""
    exclude: list[str] = field(default_factory=list)
    """Regexes; a URL matching any of them is not fetched."""
    max_depth: int = 10
    max_pages: int = 200
    max_page_bytes: int = 5_000_000
    max_total_bytes: int = 500_000_000
    max_seconds: float = 600.0
    user_agent: str = "lmforge-crawler/0.1"
    concurrency: int = 8
    """Fetches in flight at once, across all hosts."""
    per_host_concurrency: int = 2
    per_host_delay: float = 1.0
    """Seconds between two requests to one host (robots.txt Crawl-delay wins when larger)."""
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 3
    warc_max_bytes: int = 1_000_000_000
    """Rotate to a new WARC file past this size."""

    def validate(self) -> list[str]:
        problems = []
        if self.scope not in ("host", "hosts", "prefix"):
            problems.append(f"scope: {self.scope!r} is not one of host, hosts, prefix")
        for name in ("max_depth", "max_pages", "max_page_bytes", "max_total_bytes", "concurrency", "per_host_concurrency"):
            if getattr(self, name) < 1 and name != "max_depth":
                problems.append(f"{name}: must be at least 1")
        if self.max_depth < 0:
            problems.append("max_depth: must be 0 or more")
        if self.per_host_delay < 0 or self.max_seconds <= 0:
            problems.append("per_host_delay must be >= 0 and max_seconds > 0")
        problems += [f"seeds: {s!r} is not an http(s) URL" for s in self.seeds if not s.startswith(("http://", "https://"))]
        return problems
